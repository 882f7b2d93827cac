"""The update's loss computed inside the log-prob call (its gradient in the forward, lmm_kernels.logprob
.linear_logprob_loss) equals the recompute path: on plain tensors (rl.losses.token_loss against aggregate(per_token))
and through the trainer (loss, log-probs, gradients of the LM head and of a transformer layer); GSPO and a
per-sequence correction from the current log-probs keep the recompute path, and the metrics say which path ran."""

import dataclasses
import json

import pytest
import torch

import lmm_kernels
from data import load_fixture
from rl import losses as L
from rl.config import preset
from rl.run import make_trainer
from test_trainer import LengthReward

TOKEN_LEVEL = [
    dict(loss="ppo", estimator="reinforce"),  # reinforce++-style: PPO-clip, each response's token mean
    dict(loss="grpo", estimator="grpo"),
    dict(loss="dapo", estimator="grpo", clip_high=0.28),
    dict(loss="dr_grpo", estimator="grpo", scale_rewards="none"),
    dict(loss="cispo", estimator="grpo"),
    dict(loss="grpo", estimator="grpo", old_logprobs="sampler"),  # token-truncate, from the current log-probs
]


def _plain_inputs(seed=0, N=3, T=5):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(N, T, generator=g) * 3
    logp = old + 0.4 * torch.randn(N, T, generator=g)  # ratios on both sides of the clip range
    action = torch.ones(N, T, dtype=torch.bool)
    action[1, 3:] = False
    action[2, 1:] = False
    mask = action.clone()
    mask[0] = False  # a response left out of the loss (--mask-truncated): in the action mask, not the loss mask
    return dict(logp=logp, old=old, adv=torch.randn(N, T, generator=g), action=action, mask=mask,
                ref=old - 0.3 * torch.rand(N, T, generator=g), sampler=old + 0.5 * torch.randn(N, T, generator=g))


@pytest.mark.parametrize("agg", list(L.AGGREGATIONS))
@pytest.mark.parametrize("surrogate, correction, in_ratio",
                         [(L.clip_surrogate, "none", False), (L.cispo_surrogate, "token-truncate", False),
                          (L.sapo_surrogate, "sequence-mask", False), (L.clip_surrogate, "token-truncate", True),
                          (L.clip_surrogate, "token-mask", True)])
def test_token_loss_sums_to_the_aggregated_loss_and_its_gradient(agg, surrogate, correction, in_ratio):
    x = _plain_inputs()
    spec = L.LossSpec(surrogate=surrogate, agg=agg, beta=0.05, kl_kind="k3", max_len=7, correction=correction,
                      correction_cap=1.5, correction_floor=0.5, clip_delta=3.0 if in_ratio else 0.0)
    per_token = lambda *a: L.per_token(*a[:4], spec, *a[4:])  # noqa: E731  (the trainer's signature)
    logp = x["logp"].clone().requires_grad_()
    w, _ = L.correction_weight(logp if in_ratio else x["old"], x["sampler"], x["mask"], spec, in_ratio)
    want = L.aggregate(per_token(logp, x["old"], x["adv"], x["mask"], x["ref"], w), x["mask"], agg, spec.max_len)
    (want_grad,) = torch.autograd.grad(want, logp)
    terms = L.token_loss(per_token, x["action"], x["old"], x["adv"], x["mask"], x["ref"], x["sampler"], spec,
                         in_ratio)
    rows = x["logp"][x["action"]].clone().requires_grad_()
    got = sum(terms(rows[i:i + 2], slice(i, i + 2)).sum() for i in range(0, rows.numel(), 2))  # chunks of 2
    (got_grad,) = torch.autograd.grad(got, rows)
    assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-7)
    torch.testing.assert_close(got_grad, want_grad[x["action"]], rtol=1e-5, atol=1e-7)


def test_aggregation_weights_are_the_aggregations_gradient():
    x = _plain_inputs()
    per_tok = torch.randn(x["mask"].shape)
    for agg in L.AGGREGATIONS:
        w = L.aggregation_weights(x["mask"], agg, 7)
        assert (per_tok * w).sum().item() == pytest.approx(L.aggregate(per_tok, x["mask"], agg, 7).item(), rel=1e-6)
        assert (w[~x["mask"]] == 0).all()


def test_which_losses_are_sums_of_per_token_terms():
    assert L.per_token_reason(L.LossSpec()) is None
    assert L.per_token_reason(L.LossSpec(correction="sequence-truncate")) is None  # from the old log-probs: constant
    assert L.per_token_reason(L.LossSpec(correction="token-truncate"), in_ratio=True) is None
    assert "per sequence" in L.per_token_reason(L.LossSpec(level="sequence"))
    assert "per sequence" in L.per_token_reason(L.LossSpec(correction="sequence-mask"), in_ratio=True)
    with pytest.raises(ValueError, match="not a sum of per-token terms"):
        x = _plain_inputs()
        L.token_loss(None, x["action"], x["old"], x["adv"], x["mask"], x["ref"], x["sampler"],
                     L.LossSpec(level="sequence"))


# ---------------------------------------------------------------- through the trainer


def _trainer(tmp_path, kernels="torch", **kw):
    cfg = preset("debug", out=str(tmp_path), kernels=kernels, max_steps=1, prompts_per_step=2, n_samples=3,
                 max_new_tokens=6, train_batch_size=6, micro_batch_size=6, kl=0.05, kl_in="loss", kl_estimator="k3",
                 save_every=0, **kw)
    lines = []
    return make_trainer(cfg, load_fixture("math"), LengthReward(), log=lines.append), lines


def _batch(trainer):
    """A micro-batch of the first step, its old log-probs moved off the current ones (ratios beyond the clip range)
    and its first response left out of the loss (in the action mask, not the loss mask)."""
    rollout, _ = trainer.make_experience(trainer.prompts_for_step(0))
    batch = rollout.batch(range(len(rollout)), trainer.pad_id, packed=trainer.packed)
    g = torch.Generator().manual_seed(1)
    shift = 0.3 * torch.randn(batch["old_logp"].shape, generator=g)
    batch["old_logp"] = torch.where(batch["action_mask"], batch["old_logp"] + shift, 0.0)
    batch["loss_mask"] = batch["loss_mask"].clone()
    batch["loss_mask"][0] = False
    assert batch["action_mask"][0].any() and batch["loss_mask"].any()
    return batch


def _grads(trainer, batch, in_forward: bool):
    """One micro-batch's loss, log-probs and the gradients of the LM head and of the first transformer layer."""
    trainer.loss_in_forward = in_forward
    trainer.policy.zero_grad(set_to_none=True)
    trainer.policy.train()
    loss, logp, stats = trainer.policy_objective(batch, trainer.cfg.old_logprobs == "sampler")
    loss.backward()
    named = [(n, p) for n, p in trainer.policy.named_parameters() if "layers.0." in n and "visual" not in n]
    grads = {n: p.grad.clone() for n, p in named if p.grad is not None}
    grads["lm_head"] = trainer.policy.get_output_embeddings().weight.grad.clone()
    assert len(grads) > 4 and grads["lm_head"].abs().sum() > 0
    return loss.detach(), logp.detach(), stats, grads


def _same_update(trainer):
    batch = _batch(trainer)
    loss_r, logp_r, stats_r, grads_r = _grads(trainer, batch, in_forward=False)
    loss_f, logp_f, stats_f, grads_f = _grads(trainer, batch, in_forward=True)
    assert loss_f.item() == pytest.approx(loss_r.item(), rel=1e-5, abs=1e-7) and loss_r.abs() > 0
    torch.testing.assert_close(logp_f, logp_r, rtol=1e-5, atol=1e-5)
    assert stats_f == pytest.approx(stats_r, rel=1e-5)
    for name, g in grads_r.items():
        torch.testing.assert_close(grads_f[name], g, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("kw", TOKEN_LEVEL, ids=lambda kw: "-".join(map(str, kw.values())))
def test_in_forward_update_equals_the_recompute_path(tmp_path, kw):
    trainer, lines = _trainer(tmp_path, **kw)
    assert trainer.loss_in_forward and not any(line.startswith("log-prob:") for line in lines)
    _same_update(trainer)


def test_in_forward_update_equals_the_recompute_path_with_the_triton_logprob_kernels(tmp_path):
    """The Triton log-prob kernels (interpreter) in both paths; torch attention keeps the test short."""
    if not lmm_kernels.triton_runs_on(torch.device("cpu"))[0]:
        pytest.skip("needs TRITON_INTERPRET=1 (tests/conftest.py sets it)")
    from lmm_kernels.logprob_triton import triton_logprob_loss_from_hidden, triton_logprobs_from_hidden

    trainer, _ = _trainer(tmp_path, loss="dapo", estimator="grpo")
    trainer.kernels = dataclasses.replace(trainer.kernels, logprobs=triton_logprobs_from_hidden,
                                          logprob_loss=triton_logprob_loss_from_hidden)
    _same_update(trainer)


@pytest.mark.parametrize("kw, why", [(dict(loss="gspo", estimator="grpo"), "its ratio is taken per sequence"),
                                     (dict(loss="grpo", estimator="grpo", old_logprobs="sampler",
                                           rollout_correction="sequence-truncate"), "sequence-truncate")])
def test_sequence_level_objectives_keep_the_recompute_path(tmp_path, monkeypatch, kw, why):
    trainer, lines = _trainer(tmp_path, **kw)
    assert not trainer.loss_in_forward
    assert any(line.startswith("log-prob: the update's backward recomputes") and why in line for line in lines)
    in_forward = []
    real = trainer.kernels.logprob_loss
    trainer.kernels = dataclasses.replace(trainer.kernels, logprob_loss=lambda *a, **k: (in_forward.append(1),
                                                                                          real(*a, **k))[1])
    trainer.train()
    metrics = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert metrics[-1]["logprob/in_forward"] == 0.0 and not in_forward and "loss/policy" in metrics[-1]


def test_token_level_training_runs_in_forward_and_logs_the_same_metrics(tmp_path):
    trainer, _ = _trainer(tmp_path, loss="dr_grpo", estimator="grpo", old_logprobs="sampler")
    trainer.train()
    last = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")][-1]
    assert last["logprob/in_forward"] == 1.0
    for key in ("loss/policy", "clip_frac", "approx_kl", "kl", "entropy", "grad_norm", "correction/ratio_mean",
                "logprob/sampler_max_diff"):
        assert key in last, key

