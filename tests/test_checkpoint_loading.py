"""Checkpoints load with stock transformers, with and without torchvision, and with the loader that
`train_mgt.py --init` uses. The checkpoints of a real run (final/ and checkpoints/step_N) are checked in
tests/test_train_mgt.py with the helpers below; this file checks the files themselves and the layouts.

This suite runs without torchvision: PyPI's torchvision cannot be installed beside the CPU build of torch that
requirements.txt pins. The torchvision case then runs with a stand-in (`_write_torchvision_standin`): a package
named torchvision, with a version in its metadata, that holds only the names transformers imports at import time
(InterpolationMode, and functions that raise). transformers' own detection then reports torchvision as installed,
and everything runs through stock code: AutoProcessor picks Qwen2_5_VLProcessor, AutoImageProcessor the
torchvision-backend Qwen2VLImageProcessor, AutoVideoProcessor the real Qwen2VLVideoProcessor class, built from our
saved config. What the stand-in proves: the files we write are the ones that stock loading path accepts, the video
processor it builds has exactly the saved settings, and our hard-coded defaults equal the real class's. What it does
not prove: that real torchvision imports beside a given torch, or that images and videos then process correctly (no
pixel operation works under the stand-in). Where torchvision is installed the same checks run with the real one
and the checks of the case without it are skipped; so were they run with torch 2.14.1 + torchvision 0.29.1, beside
a debug stage-1 run, AutoProcessor on its checkpoints and train_mgt.py --preset geo-debug --init on them.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
without_torchvision = pytest.mark.skipif(HAS_TORCHVISION, reason="checks the behaviour without torchvision")
TORCHVISION_MISSING = "Qwen2VLVideoProcessor requires the Torchvision library"

# The video processor transformers 5.23 builds for Qwen/Qwen2.5-VL-3B-Instruct (Qwen2VLVideoProcessor: the image
# processor's values, the class's own video settings), with the tiny debug model's pixel bounds.
TINY_VIDEO_PROCESSOR = {
    "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True, "do_sample_frames": False,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "max_frames": 768, "max_video_tokens": 128000, "merge_size": 2, "min_frames": 4, "patch_size": 14,
    "resample": 3, "rescale_factor": 1 / 255, "return_metadata": False,
    "size": {"longest_edge": 112 * 112, "shortest_edge": 28 * 28}, "temporal_patch_size": 2,
    "video_processor_type": "Qwen2VLVideoProcessor",
}
# preprocessor_config.json of Qwen/Qwen2.5-VL-3B-Instruct (its only processor file besides the tokenizer's).
OFFICIAL_PREPROCESSOR = {
    "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
}


def layout(src: Path, dst: Path, files: dict) -> Path:
    """A checkpoint folder with src's model and tokenizer files and the given processor files."""
    dst.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(src / name, dst / name)
    for name, content in files.items():
        (dst / name).write_text(json.dumps(content, indent=2))
    return dst


@without_torchvision
def test_official_layout_without_torchvision(tiny_checkpoint, tmp_path):
    """The 3B's own layout (preprocessor_config.json only) fails the same way; our loader reads it and saves the
    video processor stock transformers derives from it."""
    from transformers import AutoProcessor

    from rl.processor import load_processor

    ckpt = layout(Path(tiny_checkpoint), tmp_path / "official", {"preprocessor_config.json": OFFICIAL_PREPROCESSOR})
    with pytest.raises(ImportError, match=TORCHVISION_MISSING):
        AutoProcessor.from_pretrained(ckpt)
    load_processor(str(ckpt)).save_pretrained(tmp_path / "saved")
    video = json.loads((tmp_path / "saved" / "processor_config.json").read_text())["video_processor"]
    assert video == {**TINY_VIDEO_PROCESSOR, "size": {"longest_edge": 12845056, "shortest_edge": 3136}}


def _write_torchvision_standin(root: Path) -> Path:
    """A package named torchvision 0.29.1 that holds only what transformers imports at import time (see the module
    docstring for what this does and does not prove)."""
    files = {
        "torchvision/__init__.py": '"""Stand-in, not torchvision: no operation works."""\n__version__ = "0.29.1"\n',
        "torchvision/_missing.py": "def __getattr__(name):\n"
                                   "    raise AttributeError(f'torchvision stand-in has no {name}')\n",
        "torchvision/io.py": "from torchvision._missing import __getattr__\n",
        "torchvision/transforms/__init__.py": textwrap.dedent("""\
            import enum
            class InterpolationMode(enum.Enum):
                NEAREST = "nearest"
                NEAREST_EXACT = "nearest-exact"
                BILINEAR = "bilinear"
                BICUBIC = "bicubic"
                BOX = "box"
                HAMMING = "hamming"
                LANCZOS = "lanczos"
            """),
        "torchvision/transforms/functional.py": "from torchvision._missing import __getattr__\n"
                                                "def pil_to_tensor(pic):\n    raise NotImplementedError\n",
        "torchvision/transforms/v2/__init__.py": "",
        "torchvision/transforms/v2/functional.py": "from torchvision.transforms import InterpolationMode\n"
                                                   "from torchvision._missing import __getattr__\n",
        "torchvision-0.29.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: torchvision\nVersion: 0.29.1\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def run_with_torchvision(tmp_path: Path, script: str, *args) -> subprocess.CompletedProcess:
    """`python -c script *args` with torchvision: the real one where it is installed, else the stand-in."""
    path = [str(ROOT)] if HAS_TORCHVISION else [str(_write_torchvision_standin(tmp_path / "standin")), str(ROOT)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(path)}
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)


# argv: checkpoint folders. Stock AutoProcessor builds the stock processor with the saved video processor, and
# load_processor (train_mgt.py --init's loader) takes that path.
STOCK_LOADS_WITH_TORCHVISION = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import is_torchvision_available
    from rl.processor import load_processor

    assert is_torchvision_available()
    for ckpt in map(Path, sys.argv[1:]):
        processor = AutoProcessor.from_pretrained(ckpt)
        assert type(processor).__name__ == "Qwen2_5_VLProcessor", type(processor)
        assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessor"
        assert type(processor.video_processor).__name__ == "Qwen2VLVideoProcessor"
        saved = json.loads((ckpt / "processor_config.json").read_text())["video_processor"]
        assert json.loads(processor.video_processor.to_json_string()) == saved
        assert type(load_processor(str(ckpt))).__name__ == "Qwen2_5_VLProcessor"
        assert type(AutoModelForImageTextToText.from_pretrained(ckpt)).__name__ == "Qwen2_5_VLForConditionalGeneration"
    print("ok")
""")

# argv: a scratch folder prepared by the test below.
_DEFAULTS_AND_LAYOUTS_WITH_TORCHVISION = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from transformers import AutoProcessor, Qwen2VLImageProcessorPil, Qwen2VLVideoProcessor
    from rl.processor import load_processor, video_processor_config
    from rl.tiny_model import build_tiny_checkpoint

    scratch = Path(sys.argv[1])
    # Our hard-coded defaults are the real class's, for the tiny model's sizes and the 3B's.
    for lo, hi in ((28 * 28, 112 * 112), (3136, 12845056)):
        kw = dict(min_pixels=lo, max_pixels=hi, patch_size=14, merge_size=2, temporal_patch_size=2)
        real = json.loads(Qwen2VLVideoProcessor(**kw).to_json_string())
        assert real == video_processor_config(Qwen2VLImageProcessorPil(**kw)), real

    # The tiny checkpoint built without torchvision loads with stock AutoProcessor, and make_processor's torchvision
    # branch writes the same files.
    processor = AutoProcessor.from_pretrained(scratch / "tiny_no_tv")
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert json.loads(processor.video_processor.to_json_string()) == json.loads(
        (scratch / "tiny_no_tv" / "processor_config.json").read_text())["video_processor"]
    build_tiny_checkpoint(scratch / "tiny")
    for name in ("processor_config.json", "tokenizer_config.json"):
        assert (scratch / "tiny" / name).read_text() == (scratch / "tiny_no_tv" / name).read_text(), name

    # The official layout: the video processor stock AutoProcessor derives equals what our loader saves from it.
    official = AutoProcessor.from_pretrained(scratch / "official").video_processor
    assert json.loads(official.to_json_string()) == json.loads((scratch / "official_saved" / "processor_config.json")
                                                               .read_text())["video_processor"]

    # A checkpoint that states no video processor (saved without torchvision before it was written): stock
    # AutoProcessor fails, our loader derives the video processor from the image processor.
    try:
        AutoProcessor.from_pretrained(scratch / "legacy")
        raise SystemExit("stock AutoProcessor loaded a checkpoint without a video processor config")
    except OSError as e:
        assert "Can't load video processor" in str(e), e
    legacy = load_processor(str(scratch / "legacy"))
    assert type(legacy).__name__ == "Qwen2_5_VLProcessor"
    assert legacy.video_processor.size.longest_edge == legacy.image_processor.size.longest_edge
    print("ok")
""")


def test_with_torchvision_defaults_and_layouts(tiny_checkpoint, tmp_path):
    from rl.processor import load_processor
    from rl.tiny_model import build_tiny_checkpoint

    scratch = tmp_path / "scratch"
    build_tiny_checkpoint(scratch / "tiny_no_tv")
    tiny = Path(tiny_checkpoint)
    layout(tiny, scratch / "official", {"preprocessor_config.json": OFFICIAL_PREPROCESSOR})
    load_processor(str(scratch / "official")).save_pretrained(scratch / "official_saved")
    image = json.loads((tiny / "processor_config.json").read_text())["image_processor"]
    layout(tiny, scratch / "legacy", {"processor_config.json": {"image_processor": image,
                                                                "processor_class": "Qwen2_5_VLProcessor"}})
    proc = run_with_torchvision(tmp_path, _DEFAULTS_AND_LAYOUTS_WITH_TORCHVISION, scratch)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
