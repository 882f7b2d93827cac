"""train_fre.py end to end: the debug preset runs offline, writes its metrics and a loadable checkpoint."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rl.config import PRESETS, Config, parse_config

ROOT = Path(__file__).resolve().parents[1]
REQUIRED_KEYS = ["step", "reward/mean", "reward/format", "reward/accuracy", "response_len/mean", "kl", "entropy",
                 "loss/policy", "clip_frac", "grad_norm", "lr", "time/generate", "time/reward", "time/logprob",
                 "time/update", "tokens_per_s", "mem/peak_gb", "data/gold_unparseable"]


def run(*args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "train_fre.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.slow
def test_debug_preset_end_to_end(tmp_path):
    out = tmp_path / "run"
    proc = run("--preset", "debug", "--out", str(out), "--estimator", "gae", "--save-every", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4]
    for m in lines:
        assert not [k for k in REQUIRED_KEYS if k not in m]
        assert 0 <= m["reward/mean"] <= 1.5 and m["mem/peak_gb"] > 0 and m["lr"] > 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_2", "step_4"]

    from transformers import AutoModelForImageTextToText

    from rl.processor import load_processor
    model = AutoModelForImageTextToText.from_pretrained(out / "final")
    processor = load_processor(str(out / "final"))
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert processor.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                         tokenize=False).endswith("<|im_start|>assistant\n")
    assert json.loads((out / "final" / "processor_config.json").read_text())["processor_class"] == \
        "Qwen2_5_VLProcessor"
    assert (out / "final" / "critic.pt").exists()


def test_missing_data_file_names_it(tmp_path):
    proc = run("--preset", "debug", "--out", str(tmp_path), "--data", str(tmp_path / "nope.jsonl"))
    assert proc.returncode != 0
    assert "nope.jsonl" in proc.stderr.splitlines()[-1]


def test_malformed_row_names_file_and_line(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?"}\n')
    proc = run("--preset", "debug", "--out", str(tmp_path / "o"), "--data", str(data))
    assert proc.returncode != 0
    assert f"{data}:2" in proc.stderr.splitlines()[-1]


def test_help_lists_every_flag_with_defaults():
    proc = run("--help", timeout=60)
    assert proc.returncode == 0
    for f in dataclasses.fields(Config):
        assert "--" + f.name.replace("_", "-") in proc.stdout
    assert "(default: 4e-07)" in proc.stdout  # FRE-Text actor lr
    commands = proc.stdout[proc.stdout.index("\ncommands:"):]  # their own group; no knobs of the Config
    knobs = {f.name for f in dataclasses.fields(Config)}
    for flag in ("--list-presets", "--plan", "--gpu-mem-gb", "--nproc", "--check-data", "--check-data-max-bad"):
        assert flag in commands and flag[2:].replace("-", "_") not in knobs
    for old in ("--rollout", "--policy-loss"):  # old names of --engine and --loss: accepted, not listed
        assert not re.search(old + r"\b(?!-)", proc.stdout)


def test_preset_then_flags_override():
    cfg = parse_config(["--preset", "debug", "--estimator", "grpo", "--no-gradient-checkpointing",
                        "--adam-betas", "0.8", "0.9"])
    assert cfg.preset == "debug" and cfg.model == "tiny" and cfg.estimator == "grpo"
    assert cfg.adam_betas == (0.8, 0.9) and cfg.gradient_checkpointing is False
    fre = parse_config([])
    assert (fre.estimator, fre.kl, fre.actor_lr, fre.n_samples, fre.prompts_per_step) == \
        ("reinforce_baseline", 0.001, 4e-7, 16, 256)
    assert parse_config(["--preset", "fre-multi"]).actor_lr == 1e-6
    assert parse_config(["--preset", "debug", "--rollout", "hf"]).engine == "hf"  # --engine's old name
    assert set(PRESETS) >= {"fre-text", "fre-multi", "debug"}
