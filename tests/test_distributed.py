"""torchrun + FSDP2 on the CPU (gloo): two processes train like one with the same global batch - the same samples
and rewards, the same gradient norm, the same weights - and their checkpoint loads in one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
# One optimizer step per rollout step (train batch = rollout): the update is the same sum over the same samples.
ARGS = ["--preset", "debug", "--max-steps", "2", "--prompts-per-step", "4", "--n-samples", "4", "--gen-batch-size",
        "2", "--train-batch-size", "16", "--micro-batch-size", "4", "--save-every", "2", "--kl", "0.01",
        "--reward", "spread", "--actor-lr", "1e-5", "--critic-lr", "1e-5"]  # Adam's first steps scale float noise
# in a near-zero gradient up to the lr: a small lr keeps that below the weight tolerance
# train_fre.py with a reward that has spread in every group (the tiny random model earns no R1 reward).
SCRIPT = """
import sys
from types import SimpleNamespace


class Spread:
    def __init__(self, **options):
        pass

    def __call__(self, responses, golds, metas=None):
        return SimpleNamespace(components={"total": [len(set(r)) / 10 for r in responses]}, counts={})

    def close(self):
        pass


class HalfFlat(Spread):  # the same reward for every sample of about half the prompts: groups dynamic sampling drops

    def __call__(self, responses, golds, metas=None):
        import zlib
        spread = super().__call__(responses, golds, metas).components["total"]
        return SimpleNamespace(components={"total": [0.5 if zlib.crc32(g.encode()) %% 2 else x
                                                     for x, g in zip(spread, golds)]}, counts={})


if __name__ == "__main__":
    sys.path.insert(0, %r)
    import rewards
    rewards.REWARDS["spread"] = Spread
    rewards.REWARDS["half-flat"] = HalfFlat
    import train_fre
    train_fre.main(sys.argv[1:])
"""


def _run(out: Path, nproc: int, *extra):
    script = out.parent / "train_spread.py"
    script.write_text(SCRIPT % str(ROOT))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
                str(29500 + os.getpid() % 1000)] if nproc > 1 else [sys.executable]
    proc = subprocess.run([*launcher, str(script), *ARGS, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=900, cwd=ROOT, env=ENV)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


EVAL = ["--eval-benchmarks", "classroom-text", "--eval-limit", "5", "--eval-max-new-tokens", "8"]


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["gae"])  # the policy and the critic (the resume test runs the REINFORCE family)
def test_two_processes_train_like_one(tmp_path, estimator):
    """... and evaluate like one (--eval-benchmarks: each process generates its share of the items, the main one
    scores them all): the same accuracy before the first step and after the last, every item answered once."""
    one = _run(tmp_path / "one", 1, "--estimator", estimator, *EVAL)
    two = _run(tmp_path / "two", 2, "--estimator", estimator, *EVAL)
    assert [m["step"] for m in two] == [0, 1, 2]
    for a, b in zip(one, two):
        for key in ("eval/classroom-text/accuracy", "eval/classroom-text/response_len"):
            assert a.get(key) == b.get(key) and (key in a) == (a["step"] in (0, 2)), key
    answered = [json.loads(line)["id"] for line in
                (tmp_path / "two" / "eval" / "step_2" / "responses.jsonl").read_text().splitlines()]
    assert len(answered) == 5 and answered == [json.loads(line)["id"] for line in
                                               (tmp_path / "one" / "eval" / "step_2" / "responses.jsonl")
                                               .read_text().splitlines()]
    one, two = one[1:], two[1:]
    for a, b in zip(one, two):
        assert a["reward/mean"] == pytest.approx(b["reward/mean"], abs=1e-6) and a["reward/mean"] > 0
        assert (a["response_len/mean"], a["response_len/max"]) == (b["response_len/mean"], b["response_len/max"])
        for key in ("kl", "entropy"):  # token means over both processes' tokens
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-9), key
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    wa = load_file(tmp_path / "one" / "final" / "model.safetensors")
    wb = load_file(tmp_path / "two" / "final" / "model.safetensors")  # written by rank 0 from all shards
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=5e-5, rtol=1e-4, msg=k)
    assert any(not torch.equal(wa[k], load_file(tmp_path / "one" / "base_model" / "model.safetensors")[k])
               for k in wa)  # it trained
    ckpt = tmp_path / "two" / "checkpoints" / "step_2"
    assert sorted(p.name for p in ckpt.glob("trainer_state_rank*.pt")) == ["trainer_state_rank0.pt",
                                                                          "trainer_state_rank1.pt"]
    assert json.loads((ckpt / "trainer_state.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_two_processes_resume_exactly(tmp_path):
    """A 2-process run resumed (with 2 processes, from its run directory) after step 1 ends with the weights of the
    run that was not interrupted; another number of processes is refused with the reason. The run uses DAPO's
    dynamic sampling: both processes refill until each holds its share of informative groups."""
    import shutil
    whole = tmp_path / "whole"
    metrics = _run(whole, 2, "--save-every", "1", "--reward", "half-flat", "--dynamic-sampling", "3", "--loss", "dapo")
    assert sum(m["sampling/dropped_groups"] for m in metrics) > 0 and all(m["sampling/groups"] == 4 for m in metrics)
    cut = tmp_path / "cut"  # the same run, as if it had stopped after step 1
    shutil.copytree(whole, cut)
    shutil.rmtree(cut / "final")
    shutil.rmtree(cut / "checkpoints" / "step_2")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(30500 + os.getpid() % 1000)]
    resumed = subprocess.run([*launcher, str(tmp_path / "train_spread.py"), "--resume", str(cut)],
                             capture_output=True, text=True, timeout=900, cwd=ROOT, env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    wa, wb = (load_file(d / "final" / "model.safetensors") for d in (whole, cut))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    shutil.rmtree(cut / "final")
    one = subprocess.run([sys.executable, str(tmp_path / "train_spread.py"), "--resume", str(cut)],
                         capture_output=True, text=True, timeout=900, cwd=ROOT, env=ENV)
    assert one.returncode != 0, one.stderr[-2000:]
    assert "written by 2 processes; resume it with as many" in one.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_two_processes_train_lora_like_one(tmp_path):
    """LoRA under FSDP2: the adapters train sharded beside the frozen base, the reference is the base with the adapters
    off on each process, and rank 0 writes the adapter and the merged model gathered from both."""
    lora = ("--lora-rank", "4", "--lora-alpha", "8", "--actor-lr", "1e-3", "--warmup-ratio", "0", "--max-steps", "1")
    one, two = _run(tmp_path / "one", 1, *lora), _run(tmp_path / "two", 2, *lora)
    for a, b in zip(one, two):
        assert a["reward/mean"] == pytest.approx(b["reward/mean"], abs=1e-6)
        assert a["kl"] == pytest.approx(b["kl"], rel=1e-5, abs=1e-9) and a["grad_norm"] == pytest.approx(
            b["grad_norm"], rel=1e-4)
    for name in ("adapter/adapter_model.safetensors", "model.safetensors"):
        wa, wb = (load_file(d / "final" / name) for d in (tmp_path / "one", tmp_path / "two"))
        assert wa.keys() == wb.keys()
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], atol=5e-5, rtol=1e-4, msg=k)
    trained = load_file(tmp_path / "two" / "final" / "adapter" / "adapter_model.safetensors")
    assert any(v.abs().max() > 0 for k, v in trained.items() if "lora_B" in k)  # B starts at 0: the adapters trained
