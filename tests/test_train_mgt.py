"""train_mgt.py: every domain's debug preset runs offline from a stage-1 checkpoint and writes the same outputs."""

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
    """A stage-1 debug run's final checkpoint, made by the real script."""
    out = tmp_path_factory.mktemp("fre")
    proc = run_script("train_fre.py", "--preset", "debug", "--out", str(out), "--max-steps", "1", "--save-every", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "final"


def run_script(script, *args):
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})


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


def test_init_is_required(tmp_path):
    proc = run_script("train_mgt.py", "--domain", "sokoban", "--out", str(tmp_path))
    assert proc.returncode != 0 and "--init" in proc.stderr


def test_paper_presets():
    geo, perce, sok = PRESETS["mgt-geo"], PRESETS["mgt-percereason"], PRESETS["mgt-sokoban"]
    assert geo["estimator"] == "gae" and geo["actor_lr"] == 1e-6 and geo["critic_lr"] == 9e-6
    assert perce["estimator"] == "reinforce_baseline" and perce["max_new_tokens"] == 8000 and perce["kl"] == 0.0
    assert sok["estimator"] == "gae" and sok["kl"] == 0.0 and sok["freeze_vision"] and sok["critic_lr"] == 5e-6
