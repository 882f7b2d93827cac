"""Every Triton kernel configuration the code can launch compiles for A100 (sm_80) and H100 (sm_90), with no
register spills and within the target's shared memory - checked here without a GPU (lmm_kernels/compile_check.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_all_kernel_configs_compile_for_sm80_and_sm90(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")  # compile for real, not from an earlier cache
    proc = subprocess.run([sys.executable, "-m", "lmm_kernels.compile_check", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0, proc.stderr[-3000:] + "\n".join(str(r) for r in rows if not r["fits"])
    assert {r["capability"] for r in rows} == {80, 90}
    assert {r["module"] for r in rows} == {f"lmm_kernels.{m}_triton" for m in ("attention", "logprob", "policy_loss")}
    for r in rows:
        assert r["spill_bytes"] == 0 and r["registers"] <= 255, r
        assert r["shared"] <= {80: 166912, 90: 232448}[r["capability"]], r
        assert r["shared"] > 0 or r["name"].startswith("dlogits_from_logits"), r  # elementwise: no shared memory
    names = {r["name"] for r in rows}
    for head_dim in (64, 80, 128):  # LM (128) and vision tower (80) of Qwen2.5-VL-3B
        assert any(f"d{head_dim}_bf16" in n for n in names), head_dim
