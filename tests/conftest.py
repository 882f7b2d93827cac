import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRITON_INTERPRET", "1")  # no GPU here: Triton kernels run in the interpreter (set before import)
if os.environ.get("PYTEST_XDIST_WORKER"):  # one worker per core (pytest.ini): one thread each, and in its subprocesses
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(items):
    """The slow tests first: spread over the workers at the start, they run beside the many short ones."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """One tiny random Qwen2.5-VL checkpoint (model + processor) for the whole session."""
    from rl.tiny_model import build_tiny_checkpoint
    return str(build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model"))
