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


@pytest.fixture(scope="module")
def sharp_policy(tiny_checkpoint):
    """The tiny model with larger random weights in its language model: outputs then depend on the prompt, the
    image and every position, and logits are peaked (with the stock init a random tiny model answers every prompt
    alike, with near-uniform log-probs)."""
    import torch

    from rl.policy import load_policy

    model, processor = load_policy(tiny_checkpoint)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "visual" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model, processor


@pytest.fixture(autouse=True)
def _image_limit_restored():
    """rl.run.load_samples sets the process's image limit (--max-image-pixels holds for every later draw): each test
    starts from the default, whatever ran before it in this worker."""
    from data import images

    limit = images.max_image_pixels()
    yield
    images.set_max_image_pixels(limit)
