"""Pure tensor functions for rule-based RL (OpenRLHF / LMM-R1 style).

Conventions
-----------
* Per-token tensors are ``[N, T]`` over *response* tokens; ``mask`` is ``[N, T]``
  with 1 = valid response token, 0 = padding. Rows may have different lengths.
* Rows are grouped contiguously by prompt: rows ``[i*g:(i+1)*g]`` share prompt ``i``.
* Padding is always excluded with ``torch.where`` (not by multiplying), so a
  non-finite value sitting on a padding position (e.g. ``exp`` of a garbage
  log-prob) can never leak NaN/Inf into a loss or its gradient. Every KL use
  is masked, as in the released code's training (it masks the log-ratio, or the
  shaped rewards before the returns).
* Empty rows (no valid token) are allowed everywhere: they get zero rewards,
  zero advantages/returns, contribute nothing to losses and never produce NaN.

No state, no config objects: everything is an explicit argument.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

__all__ = [
    "ESTIMATORS",
    "AGGREGATIONS",
    "REWARD_CLIP",
    "GRPO_EPS",
    "KL_KINDS",
    "masked_sum",
    "masked_mean",
    "kl_estimate",
    "outcome_advantage",
    "token_rewards",
    "discounted_returns",
    "gae",
    "whiten",
    "aggregate",
    "aggregate_count",
    "aggregate_weight",
    "policy_loss_tokens",
    "policy_stats",
    "policy_loss",
    "value_loss",
    "kl_loss",
    "compute_advantages",
]

ESTIMATORS = ("reinforce_baseline", "grpo", "rloo", "reinforce", "gae")
AGGREGATIONS = ("seq-mean-token-mean", "token-mean")
KL_KINDS = ("k1", "k2", "k3")

# Estimators whose advantages the released LMM-R1 code whitens (whiten_advantages=None): all but grpo.
_WHITEN_BY_DEFAULT = {"reinforce_baseline": True, "reinforce": True, "gae": True, "rloo": True, "grpo": False}
# The released code clips every scalar reward to this range after the group baseline, before the KL shaping.
REWARD_CLIP = 10.0
# GRPO's std epsilon in the released code.
GRPO_EPS = 1e-9


def _valid(mask: Tensor) -> Tensor:
    """Boolean view of a 0/1 mask."""
    return mask.bool() if mask.dtype != torch.bool else mask


def _zero_pad(x: Tensor, mask: Tensor) -> Tensor:
    """x on valid tokens, exact 0 on padding (NaN/Inf-safe, unlike x * mask)."""
    return torch.where(_valid(mask), x, torch.zeros((), dtype=x.dtype, device=x.device))


# ---------------------------------------------------------------------------
# Masked reductions
# ---------------------------------------------------------------------------


def masked_sum(x: Tensor, mask: Tensor, dim: Optional[int] = None) -> Tensor:
    """Sum of x over positions where mask is 1 (all positions if dim is None)."""
    # Padding excluded via where() so NaN/Inf on padding cannot propagate.
    x = _zero_pad(x, mask)
    return x.sum() if dim is None else x.sum(dim=dim)


def masked_mean(x: Tensor, mask: Tensor, dim: Optional[int] = None) -> Tensor:
    """Mean of x over valid positions; 0 (not NaN) where there are no valid positions."""
    # Count clamped to >= 1: an all-padding row/batch yields 0 instead of 0/0 = NaN.
    count = _valid(mask).to(x.dtype)
    count = count.sum() if dim is None else count.sum(dim=dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1.0)


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
# Outcome-level advantage shaping
# ---------------------------------------------------------------------------


def outcome_advantage(rewards: Tensor, group_size: int, estimator: str) -> Tensor:
    """Shape scalar per-sample rewards [N] within contiguous prompt groups of size group_size (compute_advantages
    clips the result, as the released code does)."""
    # OpenRLHF ppo_utils/experience_maker: group baselines over n_samples_per_prompt rollouts.
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {estimator!r}; expected one of {ESTIMATORS}")
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(rewards.shape)}")
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    n = rewards.shape[0]
    if n % group_size != 0:
        raise ValueError(f"N={n} rewards is not divisible by group_size={group_size}")
    if estimator in ("reinforce", "gae"):
        # Plain REINFORCE / PPO-GAE: no group baseline, the critic (gae) or nothing.
        return rewards.clone()
    r = rewards.view(-1, group_size)
    if estimator == "reinforce_baseline":
        # REINFORCE++-baseline (Hu et al. 2025): subtract the group mean only (no std
        # division: avoids GRPO's difficulty bias).
        out = r - r.mean(dim=1, keepdim=True)
    elif estimator == "grpo":
        # GRPO (DeepSeekMath, Shao et al. 2024): (r - mean) / (std + 1e-9). Unbiased std
        # (Bessel, torch default), matching OpenRLHF's `rewards.std(-1)`.
        if group_size < 2:
            raise ValueError("grpo needs group_size >= 2 (std of a single sample is undefined)")
        out = (r - r.mean(dim=1, keepdim=True)) / (r.std(dim=1, keepdim=True) + GRPO_EPS)
    else:  # rloo
        # RLOO (Ahmadian et al. 2024): leave-one-out baseline mean of the other g-1 rewards.
        if group_size < 2:
            raise ValueError("rloo needs group_size >= 2 (leave-one-out baseline)")
        out = r - (r.sum(dim=1, keepdim=True) - r) / (group_size - 1)
    return out.reshape(n)


# ---------------------------------------------------------------------------
# Token-level rewards, returns and GAE
# ---------------------------------------------------------------------------


def _last_valid_onehot(mask: Tensor) -> Tensor:
    """[N, T] bool one-hot at each row's last valid token; all-False for empty rows."""
    valid = _valid(mask)
    t = valid.shape[1]
    pos = torch.arange(1, t + 1, device=valid.device).expand_as(valid)
    last = torch.where(valid, pos, torch.zeros_like(pos)).argmax(dim=1, keepdim=True)
    onehot = torch.zeros_like(valid).scatter_(1, last, True)
    return onehot & valid.any(dim=1, keepdim=True)


def token_rewards(outcome: Tensor, mask: Tensor, kl: Optional[Tensor] = None, beta: float = 0.0) -> Tensor:
    """Per-token rewards: -beta*KL on valid tokens plus the outcome reward on each row's last valid token."""
    # PPO-RLHF reward (Ouyang et al. 2022; OpenRLHF compute_reward): r_t = -beta*KL_t,
    # with the sequence-level reward added at the final (EOS) action. KL masked on padding.
    # Empty rows (no valid token) are skipped: their outcome is dropped and they stay all-zero.
    if outcome.dim() != 1 or outcome.shape[0] != mask.shape[0]:
        raise ValueError(f"outcome must be [N]={mask.shape[0]}, got shape {tuple(outcome.shape)}")
    dtype = outcome.dtype if outcome.is_floating_point() else torch.float32
    out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    if kl is not None and beta != 0.0:
        out = out - beta * _zero_pad(kl.to(dtype), mask)
    last = _last_valid_onehot(mask)
    return out + torch.where(last, outcome.to(dtype).unsqueeze(1), torch.zeros((), dtype=dtype, device=out.device))


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float = 1.0) -> Tensor:
    """Reward-to-go G_t = sum_{t'>=t} gamma^(t'-t) r_t' over valid tokens; 0 on padding."""
    # REINFORCE return (Williams 1992; OpenRLHF get_cumulative_returns); padding rewards zeroed.
    r = _zero_pad(rewards, mask)
    out = torch.zeros_like(r)
    running = torch.zeros_like(r[:, 0])
    for t in reversed(range(r.shape[1])):
        running = r[:, t] + gamma * running
        out[:, t] = running
    return _zero_pad(out, mask)


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Generalized Advantage Estimation -> (advantages, returns = advantages + values), 0 on padding."""
    # GAE (Schulman et al. 2016): delta_t = r_t + gamma*V_{t+1} - V_t, A_t = delta_t + gamma*lam*A_{t+1};
    # V beyond the last valid token is 0 (terminal). With gamma = lam = 1, A_t = G_t - V_t.
    r = _zero_pad(rewards, mask)
    v = _zero_pad(values, mask)
    n, t_len = r.shape
    adv = torch.zeros_like(r)
    last_gae = torch.zeros(n, dtype=r.dtype, device=r.device)
    next_v = torch.zeros(n, dtype=r.dtype, device=r.device)
    for t in reversed(range(t_len)):
        delta = r[:, t] + gamma * next_v - v[:, t]
        last_gae = delta + gamma * lam * last_gae
        adv[:, t] = last_gae
        next_v = v[:, t]
    adv = _zero_pad(adv, mask)
    returns = _zero_pad(adv + v, mask)
    return adv, returns


def whiten(
    adv: Tensor,
    mask: Tensor,
    eps: float = 1e-8,
    all_reduce: Optional[Callable[[Tensor], Optional[Tensor]]] = None,
) -> Tensor:
    """Normalise to mean 0 / std 1 over all valid tokens of the (global) batch; 0 on padding."""
    # OpenRLHF advantage normalisation (replay_buffer.py): global token-level mean and population variance,
    # x_hat = (x - mean) * rsqrt(clamp(var, eps)) + eps (the released adds its 1e-8 too). For data parallelism,
    # [sum, sum_sq, count]
    # are summed across ranks with `all_reduce` (called once; may return the summed tensor
    # or reduce in place and return None, e.g. torch.distributed.all_reduce).
    valid = _valid(mask)
    x = _zero_pad(adv, mask).to(torch.float64)  # float64: sum_sq - n*mean^2 cancellation
    stats = torch.stack([x.sum(), x.pow(2).sum(), valid.sum().to(torch.float64)])
    if all_reduce is not None:
        reduced = all_reduce(stats)
        if isinstance(reduced, Tensor):
            stats = reduced
    total, total_sq, count = stats[0], stats[1], stats[2]
    if count.item() == 0:
        return torch.zeros_like(adv)
    mean = total / count
    var = (total_sq / count - mean.pow(2)).clamp(min=eps)
    out = ((x - mean) * var.rsqrt() + eps).to(adv.dtype)
    return _zero_pad(out, mask)


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------


def aggregate(per_token: Tensor, mask: Tensor, agg: str = "seq-mean-token-mean") -> Tensor:
    """Reduce a per-token loss [N, T] to a scalar over valid tokens ("seq-mean-token-mean" | "token-mean")."""
    # GRPO (DeepSeekMath eq. 3) averages per sequence then over sequences; DAPO (Yu et al. 2025)
    # token-mean averages over all tokens of the micro-batch (no length bias toward short answers).
    # Empty rows: excluded from the sequence count (all-empty batch -> 0), never NaN.
    if agg == "token-mean":
        return masked_mean(per_token, mask)
    if agg == "seq-mean-token-mean":
        seq_mean = masked_mean(per_token, mask, dim=1)
        nonempty = _valid(mask).any(dim=1)
        return masked_mean(seq_mean, nonempty)
    raise ValueError(f"unknown loss aggregation {agg!r}; expected one of {AGGREGATIONS}")


def aggregate_count(mask: Tensor, agg: str = "seq-mean-token-mean") -> int:
    """What `aggregate` divides by: valid tokens (token-mean) or non-empty rows (seq-mean-token-mean)."""
    if agg == "token-mean":
        return int(_valid(mask).sum())
    if agg == "seq-mean-token-mean":
        return int(_valid(mask).any(dim=1).sum())
    raise ValueError(f"unknown loss aggregation {agg!r}; expected one of {AGGREGATIONS}")


def aggregate_weight(part_mask: Tensor, whole_mask: Tensor, agg: str = "seq-mean-token-mean") -> float:
    """Weight w of a micro-batch such that the sum over micro-batches of w * aggregate(part) equals
    aggregate(whole): its share of the valid tokens (token-mean) or of the non-empty rows (seq-mean-token-mean)."""
    return aggregate_count(part_mask, agg) / max(aggregate_count(whole_mask, agg), 1)


def _surrogates(logp: Tensor, old_logp: Tensor, adv: Tensor, valid: Tensor, clip_lo: float, clip_hi: float):
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
    (kernels/policy_loss_triton.py) has its signature, values and gradient. `adv` broadcasts to logp's shape
    ([N, T] or [N, 1]); `clip_eps_high` (DAPO clip-higher) defaults to clip_eps; gradients flow to logp only."""
    # PPO-clip (Schulman et al. 2017, eq. 7): L = -min(rho*A, clip(rho, 1-eps, 1+eps)*A), rho = exp(logp - old_logp).
    if kl_kind is not None and kl_kind not in KL_KINDS:
        raise ValueError(f"unknown KL estimator {kl_kind!r}; expected one of {KL_KINDS} or None")
    if beta != 0.0 and kl_kind is not None and ref_logp is None:
        raise ValueError("beta != 0 needs ref_logp")
    valid = _valid(mask).expand(logp.shape)
    _, surr1, surr2 = _surrogates(logp, old_logp, adv, valid, clip_eps,
                                  clip_eps if clip_eps_high is None else clip_eps_high)
    loss = -torch.min(surr1, surr2)
    if beta != 0.0 and kl_kind is not None:
        # GRPO (DeepSeekMath eq. 3-4): beta * KL as a loss term; masked like everything else.
        # The log-ratio is zeroed on padding before any exp(), as for rho: kl_estimate(d, 0) == kl_k(d).
        d = _zero_pad(logp.float() - ref_logp.float(), valid)
        loss = loss + beta * kl_estimate(d, torch.zeros_like(d), kl_kind)
    return _zero_pad(loss, valid)


@torch.no_grad()
def policy_stats(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, clip_eps: float = 0.2) -> dict[str, float]:
    """{"clip_frac", "approx_kl"}: share of valid tokens where the clipped branch is active (surr2 < surr1), and
    the k3 estimate of KL(old || new), (rho - 1) - log rho, token-mean."""
    log_ratio, surr1, surr2 = _surrogates(logp, old_logp, adv, mask, clip_eps, clip_eps)
    return {"clip_frac": float(masked_mean((surr2 < surr1).float(), mask)),
            "approx_kl": float(masked_mean(torch.exp(log_ratio) - 1.0 - log_ratio, mask))}


def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
    agg: str = "seq-mean-token-mean",
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate loss -> (scalar loss, {"clip_frac", "approx_kl"} as floats)."""
    loss = aggregate(policy_loss_tokens(logp, old_logp, adv, mask, clip_eps=clip_eps), mask, agg)
    return loss, policy_stats(logp, old_logp, adv, mask, clip_eps)


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip: float = 0.2,
    agg: str = "seq-mean-token-mean",
) -> Tensor:
    """Clipped value loss 0.5 * max((V_clip - R)^2, (V - R)^2), aggregated over valid tokens."""
    # PPO value clipping (OpenAI baselines ppo2 / OpenRLHF ValueLoss):
    # V_clip = V_old + clamp(V - V_old, -clip, clip). Inputs zeroed on padding (NaN-free grads).
    values, old_values, returns = (_zero_pad(x, mask) for x in (values, old_values, returns))
    v_clip = old_values + (values - old_values).clamp(-clip, clip)
    per_token = 0.5 * torch.max((v_clip - returns).pow(2), (values - returns).pow(2))
    return aggregate(per_token, mask, agg)


def kl_loss(
    logp: Tensor, ref_logp: Tensor, mask: Tensor, kind: str = "k3", agg: str = "seq-mean-token-mean"
) -> Tensor:
    """GRPO-style KL-as-loss term: aggregate of kl_estimate over valid tokens."""
    # GRPO (DeepSeekMath eq. 3-4) adds beta * D_KL(pi || pi_ref) to the loss (k3 by default)
    # instead of into the reward. Inputs zeroed on padding first: masked KL, NaN-free gradients.
    logp = _zero_pad(logp, mask)
    ref_logp = _zero_pad(ref_logp, mask)
    return aggregate(kl_estimate(logp, ref_logp, kind), mask, agg)


# ---------------------------------------------------------------------------
# Glue
# ---------------------------------------------------------------------------


def compute_advantages(
    estimator: str,
    rewards: Tensor,
    mask: Tensor,
    group_size: int,
    *,
    kl: Optional[Tensor] = None,
    beta: float = 0.0,
    values: Optional[Tensor] = None,
    gamma: float = 1.0,
    lam: float = 1.0,
    whiten_advantages: Optional[bool] = None,
    all_reduce: Optional[Callable[[Tensor], Optional[Tensor]]] = None,
    reward_clip: Optional[float] = REWARD_CLIP,
) -> tuple[Tensor, Tensor]:
    """Scalar rewards [N] -> per-token (advantages, returns) [N, T] for the given estimator."""
    # LMM-R1's experience maker: group-shape the scalar reward (process_experiences) -> clip it to
    # [-reward_clip, reward_clip] (compute_reward, every estimator) -> per-token reward (KL-in-reward when
    # beta > 0) -> reward-to-go (REINFORCE family) or GAE (PPO) -> global whitening (on for all but grpo).
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {estimator!r}; expected one of {ESTIMATORS}")
    if beta != 0.0 and kl is None:
        raise ValueError("beta != 0 requires the per-token `kl` tensor (KL-in-reward)")
    outcome = outcome_advantage(rewards, group_size, estimator)
    if reward_clip is not None:
        outcome = outcome.clamp(-reward_clip, reward_clip)
    tok = token_rewards(outcome, mask, kl=kl, beta=beta)
    if estimator == "gae":
        if values is None:
            raise ValueError("estimator 'gae' requires `values` from the critic")
        adv, returns = gae(tok, values.to(tok.dtype), mask, gamma=gamma, lam=lam)
    else:
        returns = discounted_returns(tok, mask, gamma=gamma)
        adv = returns.clone()
    if whiten_advantages is None:
        whiten_advantages = _WHITEN_BY_DEFAULT[estimator]
    if whiten_advantages:
        adv = whiten(adv, mask, all_reduce=all_reduce)
    return adv, returns
