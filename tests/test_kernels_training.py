"""The training loop with --kernels triton (Triton interpreter on the CPU) gives the losses of --kernels torch, and
the run-time shadow check passes through the whole model (packed attention in the language model and the vision
tower, fused log-prob, fused PPO + KL loss)."""

import json

import pytest
import torch

import lmm_kernels
from data import load_fixture
from rl.config import preset
from rl.run import make_trainer
from rewards_for_tests import Spread


def _run(tmp_path, name):
    cfg = preset("debug", out=str(tmp_path / name), kernels=name, max_steps=1, prompts_per_step=1,
                 n_samples=3, max_new_tokens=3, train_batch_size=3, micro_batch_size=2, kl=0.01, kl_in="loss",
                 kl_estimator="k3", save_every=0, kernel_check_every=1)
    trainer = make_trainer(cfg, load_fixture("message"), Spread())
    assert trainer.kernels.name == name
    trainer.train()
    return [json.loads(line) for line in open(tmp_path / name / "metrics.jsonl")]


@pytest.mark.slow
def test_triton_kernels_match_torch_in_training(tmp_path):
    if not lmm_kernels.triton_runs_on(torch.device("cpu"))[0]:
        pytest.skip("needs TRITON_INTERPRET=1 (tests/conftest.py sets it)")
    torch_run, triton_run = _run(tmp_path, "torch"), _run(tmp_path, "triton")
    for a, b in zip(torch_run, triton_run):
        assert a["reward/mean"] == b["reward/mean"] and a["response_len/mean"] == b["response_len/mean"]
        for key in ("loss/policy", "entropy", "kl", "approx_kl"):
            assert b[key] == pytest.approx(a[key], abs=1e-5), key
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        assert b["kernel/max_abs_diff"] < 1e-4


def test_triton_falls_back_to_torch_where_it_cannot_run(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    chosen = lmm_kernels.select("triton", torch.device("cpu"))
    assert chosen.name == "torch" and "needs a GPU" in chosen.reason and chosen.attn_implementation == "sdpa"


@pytest.mark.parametrize("loss, kernel", [("ppo", "logprob_loss"), ("gspo", "logprobs")])
def test_shadow_check_stops_a_broken_kernel(tmp_path, loss, kernel):
    """A log-prob kernel that is off (here: shifted up, the 'positive log-probs' failure) stops the run at once: the
    update's in-forward loss kernel for a token-level loss, the recompute kernel for GSPO."""
    import dataclasses

    def broken(*args, **kwargs):
        *out, logp, entropy = getattr(real, kernel)(*args, **kwargs)
        return (*out, logp + 0.5, entropy)

    cfg = preset("debug", out=str(tmp_path), max_steps=1, kernel_check_every=1, save_every=0, loss=loss)
    trainer = make_trainer(cfg, load_fixture("math"), Spread())
    real = trainer.kernels
    trainer.kernels = dataclasses.replace(real, **{kernel: broken})
    with pytest.raises(RuntimeError, match="kernel check failed.*differ from the torch references by 0.5"):
        trainer.train()
