"""Our losses against TRL's own GRPOTrainer._compute_loss on the same tensors: value and gradient with respect to the
log-probs, for every loss TRL names, with clip-higher, two-sided clipping, the sequence-level ratio, the KL (with and
without the bias correction) and a rollout-correction weight. TRL is a bench-only dependency
(pip install -r bench/requirements-trl.txt): without it these tests are skipped."""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from rl import losses as L

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer", reason="TRL is not installed (bench/requirements-trl.txt)")

N, T_, MAX_LEN = 5, 7, 9


def inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 3, 1, 0, 5])  # an empty row too
    mask = torch.arange(T_)[None] < lengths[:, None]
    old = -torch.rand(N, T_, generator=g) * 2 - 0.05
    logp = old + torch.randn(N, T_, generator=g) * 0.4  # ratios well inside and outside every clip band
    ref = old + torch.randn(N, T_, generator=g) * 0.3
    adv = torch.randn(N, generator=g)
    adv[1] = 0.0
    return logp, old, ref, adv, mask  # fp32, as the losses compute


def trl_loss(loss_type, logp, old, ref, adv, mask, *, beta=0.0, eps=0.2, eps_high=None, delta=None, level="token",
             bias_kl=False, is_ratio=None):
    """TRL 1.16's _compute_loss on a stand-in trainer whose model returns `logp` as its log-probs."""
    logp = logp.clone().requires_grad_(True)
    args = SimpleNamespace(use_bias_correction_kl=bias_kl, delta=delta, sapo_temperature_pos=1.0,
                           sapo_temperature_neg=1.05, steps_per_generation=1)
    accelerator = SimpleNamespace(num_processes=1, gather=lambda x: x, reduce=lambda x, reduction="sum": x,
                                  gather_for_metrics=lambda x: x)
    stub = SimpleNamespace(
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level=level, beta=beta,
        args=args, loss_type=loss_type, epsilon_low=eps, epsilon_high=eps if eps_high is None else eps_high,
        use_vllm=is_ratio is not None, vllm_importance_sampling_correction=is_ratio is not None,
        model=SimpleNamespace(training=True), current_gradient_accumulation_steps=1, accelerator=accelerator,
        max_completion_length=MAX_LEN, _entropy_bonus_enabled=False, aux_loss_enabled=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None))
    batch = {"prompt_ids": torch.zeros(N, 2, dtype=torch.long), "prompt_mask": torch.ones(N, 2, dtype=torch.long),
             "completion_ids": torch.zeros(N, T_, dtype=torch.long), "completion_mask": mask.long(),
             "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref,
             "num_items_in_batch": mask.sum()}
    if is_ratio is not None:
        batch["importance_sampling_ratio"] = is_ratio
    loss = trl_grpo.GRPOTrainer._compute_loss(stub, None, batch)
    loss.backward()
    return loss.detach(), logp.grad


CASES = [  # (--loss, LossSpec fields, TRL arguments)
    ("grpo", {}, {}),
    ("bnpo", {}, {}),
    ("dr_grpo", {}, {}),
    ("dapo", {}, {}),
    ("dapo", {"clip_high": 0.28}, {"eps_high": 0.28}),
    ("grpo", {"clip_delta": 1.5}, {"delta": 1.5}),
    ("gspo", {"clip_low": 3e-4, "clip_high": 4e-4}, {"eps": 3e-4, "eps_high": 4e-4, "level": "sequence"}),
    ("cispo", {"clip_high": 5.0}, {"eps_high": 5.0}),
    ("cispo", {"clip_high": 1.1}, {"eps_high": 1.1}),
    ("sapo", {}, {}),
    ("grpo", {"beta": 0.04, "kl_kind": "k3"}, {"beta": 0.04}),
    ("dapo", {"beta": 0.04, "kl_kind": "k3", "kl_bias_correction": True}, {"beta": 0.04, "bias_kl": True}),
    ("gspo", {"beta": 0.04, "kl_kind": "k3", "kl_bias_correction": True}, {"beta": 0.04, "bias_kl": True,
                                                                           "level": "sequence"}),
]


@pytest.mark.parametrize("name, ours, theirs", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_and_gradient_equal_trl(name, ours, theirs, seed):
    logp, old, ref, adv, mask = inputs(seed)
    loss_type = "grpo" if name == "gspo" else name
    want, want_grad = trl_loss(loss_type, logp, old, ref, adv, mask, **theirs)
    entry = L.LOSSES[name]
    spec = L.LossSpec(surrogate=entry.surrogate, agg=entry.agg, level=entry.level, max_len=MAX_LEN,
                      **{"clip_high": ours.get("clip_low", 0.2), **ours})
    x = logp.clone().requires_grad_(True)
    got, _ = L.policy_loss(x, old, adv[:, None].expand(N, T_), mask, spec, ref_logp=ref)
    got.backward()
    torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, want_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["token-truncate", "token-mask", "sequence-truncate", "sequence-mask"])
def test_rollout_correction_is_applied_where_trl_applies_it(mode):
    """The weight multiplies the surrogate before the KL is added, as TRL's importance_sampling_ratio does."""
    logp, old, ref, adv, mask = inputs(2)
    sampler = old + torch.randn(N, T_, generator=torch.Generator().manual_seed(5)) * 0.5
    spec = L.LossSpec(surrogate=L.clip_surrogate, agg="dapo", beta=0.02, kl_kind="k3", max_len=MAX_LEN,
                      correction=mode, correction_cap=2.0, correction_floor=0.5)
    weight, _ = L.correction_weight(old, sampler, mask, spec)
    want, want_grad = trl_loss("dapo", logp, old, ref, adv, mask, beta=0.02, is_ratio=weight[:, :1]
                               if mode.startswith("sequence") else weight)
    x = logp.clone().requires_grad_(True)
    got, _ = L.policy_loss(x, old, adv[:, None].expand(N, T_), mask, spec, ref_logp=ref, sampler_logp=sampler)
    got.backward()
    torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, want_grad, rtol=1e-5, atol=1e-6)
