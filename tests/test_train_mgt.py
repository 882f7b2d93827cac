"""train_mgt.py: every domain's debug preset runs offline from a stage-1 checkpoint and writes the same outputs."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rl.config import PRESETS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """A stage-1 debug run's final checkpoint, made by the real script (checkpoints/step_1 beside it)."""
    out = tmp_path_factory.mktemp("fre")
    proc = run_script("train_fre.py", "--preset", "debug", "--out", str(out), "--max-steps", "1", "--save-every", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "final"


def run_script(script, *args):
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["geo", "percereason", "sokoban", "football"])
def test_domain_debug_runs_from_stage1(stage1, tmp_path, domain):
    out = tmp_path / domain
    proc = run_script("train_mgt.py", "--preset", f"{domain}-debug", "--init", str(stage1), "--out", str(out),
                      "--max-steps", "2", "--save-every", "2", "--prompts-per-step", "2", "--n-samples", "2",
                      "--max-new-tokens", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2]
    for key in ("reward/mean", "kl", "entropy", "loss/policy", "grad_norm", "lr", "time/generate", "mem/peak_gb"):
        assert key in lines[-1]
    assert (out / "checkpoints" / "step_2" / "model.safetensors").exists()
    assert (out / "final" / "model.safetensors").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == str(stage1) and cfg["estimator"] == PRESETS[f"mgt-{domain}"].get("estimator",
                                                                                              "reinforce_baseline")
    if domain == "sokoban":
        assert "reward/solved" in lines[-1] and cfg["kl"] == 0.0 and cfg["freeze_vision"] is True



def stage1_checkpoints(stage1):
    return [stage1, stage1.parent / "checkpoints" / "step_1"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="checks the case without torchvision")
def test_stage1_checkpoints_load_without_torchvision(stage1):
    """Without torchvision (this suite's environment) stock AutoProcessor cannot build a Qwen2.5-VL processor (the
    README quotes the error); the model loads with the stock class, and load_policy, what --init calls, loads both
    checkpoints, whose files state the stock processor with its video processor for a machine with torchvision."""
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import is_torchvision_available

    from rl.policy import load_policy
    from rl.processor import ImageOnlyQwen2_5_VLProcessor
    from tests.test_checkpoint_loading import TINY_VIDEO_PROCESSOR, TORCHVISION_MISSING

    assert not is_torchvision_available()
    for ckpt in stage1_checkpoints(stage1):
        cfg = json.loads((ckpt / "processor_config.json").read_text())
        assert cfg["processor_class"] == "Qwen2_5_VLProcessor" and cfg["video_processor"] == TINY_VIDEO_PROCESSOR
        for key in ("patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std", "resample"):
            assert cfg["image_processor"][key] == cfg["video_processor"][key]
        assert json.loads((ckpt / "tokenizer_config.json").read_text())["processor_class"] == "Qwen2_5_VLProcessor"

        with pytest.raises(ImportError, match=TORCHVISION_MISSING):
            AutoProcessor.from_pretrained(ckpt)
        assert type(AutoModelForImageTextToText.from_pretrained(ckpt)).__name__ == \
            "Qwen2_5_VLForConditionalGeneration"
        model, processor = load_policy(str(ckpt))
        assert isinstance(processor, ImageOnlyQwen2_5_VLProcessor)
        assert processor.video_processor_config == cfg["video_processor"]
        text = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x?"}]}],
            add_generation_prompt=True, tokenize=False)
        batch = processor(text=[text], images=[Image.new("RGB", (56, 84), "white")], return_tensors="pt")
        assert batch["image_grid_thw"].tolist() == [[1, 6, 4]]
        assert (batch["input_ids"] == model.config.image_token_id).sum() == 6 * 4 // 4


@pytest.mark.slow
def test_stage1_checkpoints_load_with_torchvision(stage1, tmp_path):
    """With torchvision (where it is not installed, as in this suite's environment, a stand-in package that makes
    transformers believe it present: see tests/test_checkpoint_loading.py for what that proves and what not), stock AutoProcessor loads both checkpoints as Qwen2_5_VLProcessor with a
    Qwen2VLVideoProcessor of the saved settings, and load_processor (--init) takes that stock path."""
    from tests.test_checkpoint_loading import STOCK_LOADS_WITH_TORCHVISION, run_with_torchvision

    proc = run_with_torchvision(tmp_path, STOCK_LOADS_WITH_TORCHVISION, *stage1_checkpoints(stage1))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]

def test_init_is_required(tmp_path):
    proc = run_script("train_mgt.py", "--domain", "sokoban", "--out", str(tmp_path))
    assert proc.returncode != 0 and "--init" in proc.stderr


def test_paper_presets():
    geo, perce, sok = PRESETS["mgt-geo"], PRESETS["mgt-percereason"], PRESETS["mgt-sokoban"]
    assert geo["estimator"] == "gae" and geo["actor_lr"] == 1e-6 and geo["critic_lr"] == 9e-6
    assert perce["estimator"] == "reinforce_baseline" and perce["max_new_tokens"] == 8000 and perce["kl"] == 0.0
    assert sok["estimator"] == "gae" and sok["kl"] == 0.0 and sok["freeze_vision"] and sok["critic_lr"] == 5e-6
