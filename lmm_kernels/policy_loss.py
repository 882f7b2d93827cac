"""The torch reference of the per-token PPO clipped surrogate + beta * KL(pi || pi_ref) loss, and the KL estimators
(k1/k2/k3) it uses. `--kernels torch` runs it; the fused Triton kernel beside it (lmm_kernels/policy_loss_triton.py) has
its signature, values and gradient. rl.algos re-exports all three (and aggregates the per-token loss).

Padding is always excluded with ``torch.where`` (not by multiplying), so a non-finite value sitting on a padding
position (e.g. ``exp`` of a garbage log-prob) can never leak NaN/Inf into the loss or its gradient.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["KL_KINDS", "kl_estimate", "surrogates", "policy_loss_tokens"]

KL_KINDS = ("k1", "k2", "k3")


def _zero_pad(x: Tensor, mask: Tensor) -> Tensor:
    """x on valid tokens, exact 0 on padding (NaN/Inf-safe, unlike x * mask)."""
    valid = mask.bool() if mask.dtype != torch.bool else mask
    return torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))


# ---------------------------------------------------------------------------
# KL estimators
# ---------------------------------------------------------------------------


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: str = "k3") -> Tensor:
    """Per-token estimate of KL(pi || pi_ref) from sampled log-probs; raw (unmasked)."""
    # Schulman, "Approximating KL Divergence" (2020): k1 unbiased, k2 = 0.5*log-ratio^2,
    # k3 = (r - 1) - log r with r = pi_ref/pi (unbiased, non-negative; GRPO, DeepSeekMath eq. 4).
    # Returned raw: callers mask it.
    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio.pow(2)
    if kind == "k3":
        neg = -log_ratio  # ref_logp - logp
        return torch.exp(neg) - neg - 1.0
    raise ValueError(f"unknown KL estimator {kind!r}; expected one of {KL_KINDS}")


# ---------------------------------------------------------------------------
# PPO clipped surrogate + KL, per token
# ---------------------------------------------------------------------------


def surrogates(logp: Tensor, old_logp: Tensor, adv: Tensor, valid: Tensor, clip_lo: float, clip_hi: float):
    """(log rho, rho * A, clip(rho) * A), fp32, with the log-ratio and A zeroed on padding before exp() so that
    garbage there (NaN/Inf) can neither overflow nor leak NaN into the gradient."""
    log_ratio = _zero_pad(logp.float() - old_logp.float(), valid)
    a = _zero_pad(adv.float().expand(logp.shape), valid)
    ratio = torch.exp(log_ratio)
    return log_ratio, ratio * a, ratio.clamp(1.0 - clip_lo, 1.0 + clip_hi) * a


def policy_loss_tokens(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    ref_logp: Optional[Tensor] = None,
    clip_eps: float = 0.2,
    beta: float = 0.0,
    kl_kind: Optional[str] = "k3",
    clip_eps_high: Optional[float] = None,
) -> Tensor:
    """Per-token PPO clipped surrogate + beta * KL(pi || pi_ref) -> [N, T] fp32, exact 0 on padding.

    The one torch reference of the policy loss: `--kernels torch` runs it, and the fused Triton kernel
    (lmm_kernels/policy_loss_triton.py) has its signature, values and gradient. `adv` broadcasts to logp's shape
    ([N, T] or [N, 1]); `clip_eps_high` (DAPO clip-higher) defaults to clip_eps; gradients flow to logp only."""
    # PPO-clip (Schulman et al. 2017, eq. 7): L = -min(rho*A, clip(rho, 1-eps, 1+eps)*A), rho = exp(logp - old_logp).
    if kl_kind is not None and kl_kind not in KL_KINDS:
        raise ValueError(f"unknown KL estimator {kl_kind!r}; expected one of {KL_KINDS} or None")
    if beta != 0.0 and kl_kind is not None and ref_logp is None:
        raise ValueError("beta != 0 needs ref_logp")
    valid = (mask.bool() if mask.dtype != torch.bool else mask).expand(logp.shape)
    _, surr1, surr2 = surrogates(logp, old_logp, adv, valid, clip_eps,
                                 clip_eps if clip_eps_high is None else clip_eps_high)
    loss = -torch.min(surr1, surr2)
    if beta != 0.0 and kl_kind is not None:
        # GRPO (DeepSeekMath eq. 3-4): beta * KL as a loss term; masked like everything else.
        # The log-ratio is zeroed on padding before any exp(), as for rho: kl_estimate(d, 0) == kl_k(d).
        d = _zero_pad(logp.float() - ref_logp.float(), valid)
        loss = loss + beta * kl_estimate(d, torch.zeros_like(d), kl_kind)
    return _zero_pad(loss, valid)
