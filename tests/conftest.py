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


LONGEST = ("test_classroom.py", "test_kernels_compile.py")  # a minute or more of one worker each


def pytest_collection_modifyitems(items):
    """The longest tests first, then the other slow ones, then the rest: idle workers take (steal) queued tests from
    busy ones (pytest.ini: --dist worksteal), so the long ones run beside the many short ones, not after them."""
    items.sort(key=lambda item: (item.path.name not in LONGEST, item.get_closest_marker("slow") is None))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """One tiny random Qwen2.5-VL checkpoint (model + processor) for the whole session."""
    from rl.tiny_model import build_tiny_checkpoint
    return str(build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(autouse=True)
def _image_limit_restored():
    """rl.run.load_samples sets the process's image limit (--max-image-pixels holds for every later draw): each test
    starts from the default, whatever ran before it in this worker."""
    from data import images

    limit = images.max_image_pixels()
    yield
    images.set_max_image_pixels(limit)
