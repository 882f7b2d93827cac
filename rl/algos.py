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

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from lmm_kernels.policy_loss import KL_KINDS, kl_estimate

__all__ = [
    "Estimator",
    "ESTIMATORS",
    "SCALES",
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
    "overlong_penalty",
    "compute_advantages",
    "max_abs_diff",
]

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
# Outcome-level advantage shaping
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimator:
    """An advantage estimator: how a prompt's group of g samples shapes its scalar rewards (`baseline`, [G, g] ->
    [G, g]) and by which standard deviation it divides them by default (`scale`), whether advantages come from a
    critic's values by GAE (else the reward-to-go), whether the released LMM-R1 code whitens them by default, and the
    smallest group it is defined for."""
    baseline: Callable[[Tensor], Tensor]
    scale: str = "none"
    critic: bool = False
    whiten: bool = True
    min_group: int = 1
    why_min_group: str = ""


def no_baseline(r: Tensor) -> Tensor:
    """Plain REINFORCE / PPO-GAE: no group baseline (the critic, for gae, or nothing)."""
    return r


def group_mean_baseline(r: Tensor) -> Tensor:
    """REINFORCE++-baseline (Hu et al. 2025): subtract the group mean only (no std division: avoids GRPO's
    difficulty bias). GRPO divides the same by the group's std (scale "group")."""
    return r - r.mean(dim=1, keepdim=True)


def leave_one_out_baseline(r: Tensor) -> Tensor:
    """RLOO (Ahmadian et al. 2024): the baseline is the mean of the other g-1 rewards."""
    return r - (r.sum(dim=1, keepdim=True) - r) / (r.shape[1] - 1)


# The registry: a new estimator is one entry. grpo alone is not whitened by the released code.
ESTIMATORS = {
    "reinforce_baseline": Estimator(group_mean_baseline),
    # GRPO (DeepSeekMath, Shao et al. 2024): (r - mean) / (std + 1e-9), as OpenRLHF's `rewards.std(-1)`
    "grpo": Estimator(group_mean_baseline, scale="group", whiten=False, min_group=2,
                      why_min_group="std of a single sample is undefined"),
    "rloo": Estimator(leave_one_out_baseline, min_group=2, why_min_group="leave-one-out baseline"),
    "reinforce": Estimator(no_baseline),
    "gae": Estimator(no_baseline, critic=True),
}
# --scale-rewards (TRL's scale_rewards): divide the baselined rewards by the std of their group (GRPO), of the whole
# rollout batch over every process (Lite PPO, Liu et al. 2025), or by nothing (Dr. GRPO, Liu et al. 2025).
# Unbiased std (Bessel) as torch and TRL; the epsilon is the released code's 1e-9 (TRL: 1e-4).
SCALES = ("group", "batch", "none")


def _std_all(r: Tensor, all_reduce: Optional[Callable[[Tensor], Optional[Tensor]]]) -> Tensor:
    """Unbiased std of every reward of the rollout batch, over every process when `all_reduce` sums across them."""
    x = r.to(torch.float64).reshape(-1)
    stats = torch.stack([x.sum(), x.pow(2).sum(), torch.tensor(float(x.numel()), dtype=torch.float64)])
    if all_reduce is not None:
        reduced = all_reduce(stats)
        stats = reduced if isinstance(reduced, Tensor) else stats
    total, total_sq, n = stats
    if n < 2:
        return torch.zeros((), dtype=r.dtype)
    return ((total_sq - total * total / n).clamp(min=0) / (n - 1)).sqrt().to(r.dtype)


def outcome_advantage(rewards: Tensor, group_size: int, estimator: str, scale: str = "auto",
                      all_reduce: Optional[Callable[[Tensor], Optional[Tensor]]] = None) -> Tensor:
    """Shape scalar per-sample rewards [N] within contiguous prompt groups of size group_size: the estimator's
    baseline, then its scale (or `scale`: group | batch | none). compute_advantages clips the result, as the
    released code does."""
    # OpenRLHF ppo_utils/experience_maker: group baselines over n_samples_per_prompt rollouts.
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {estimator!r}; expected one of {tuple(ESTIMATORS)}")
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(rewards.shape)}")
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    n = rewards.shape[0]
    if n % group_size != 0:
        raise ValueError(f"N={n} rewards is not divisible by group_size={group_size}")
    spec = ESTIMATORS[estimator]
    if group_size < spec.min_group:
        raise ValueError(f"{estimator} needs group_size >= {spec.min_group} ({spec.why_min_group})")
    scale = spec.scale if scale == "auto" else scale
    r = rewards.clone().view(-1, group_size)
    adv = spec.baseline(r)
    if scale == "group":
        if group_size < 2:
            raise ValueError("--scale-rewards group needs groups of at least 2 samples (the std of one is undefined)")
        adv = adv / (r.std(dim=1, keepdim=True) + GRPO_EPS)
    elif scale == "batch":
        adv = adv / (_std_all(r, all_reduce) + GRPO_EPS)
    elif scale != "none":
        raise ValueError(f"unknown reward scale {scale!r}; expected one of {SCALES}")
    return adv.reshape(n)


def overlong_penalty(lengths: Tensor, max_len: int, buffer: int, factor: float = 1.0) -> Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13; TRL get_soft_overlong_punishment): 0 up to
    max_len - buffer tokens, then falling linearly to -factor at max_len (and -factor beyond)."""
    if buffer <= 0:
        return torch.zeros(lengths.shape, dtype=torch.float32)
    over = lengths.float() - (max_len - buffer)
    return (-over.clamp(min=0) / buffer).clamp(min=-1.0) * factor


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
    scale: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Scalar rewards [N] -> per-token (advantages, returns) [N, T] for the given estimator."""
    # LMM-R1's experience maker: group-shape the scalar reward (process_experiences) -> clip it to
    # [-reward_clip, reward_clip] (compute_reward, every estimator) -> per-token reward (KL-in-reward when
    # beta > 0) -> reward-to-go (REINFORCE family) or GAE (PPO) -> global whitening (on for all but grpo).
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {estimator!r}; expected one of {tuple(ESTIMATORS)}")
    if beta != 0.0 and kl is None:
        raise ValueError("beta != 0 requires the per-token `kl` tensor (KL-in-reward)")
    outcome = outcome_advantage(rewards, group_size, estimator, scale, all_reduce)
    if reward_clip is not None:
        outcome = outcome.clamp(-reward_clip, reward_clip)
    tok = token_rewards(outcome, mask, kl=kl, beta=beta)
    if ESTIMATORS[estimator].critic:
        if values is None:
            raise ValueError("estimator 'gae' requires `values` from the critic")
        adv, returns = gae(tok, values.to(tok.dtype), mask, gamma=gamma, lam=lam)
    else:
        returns = discounted_returns(tok, mask, gamma=gamma)
        adv = returns.clone()
    if whiten_advantages is None:
        whiten_advantages = ESTIMATORS[estimator].whiten
    if whiten_advantages:
        adv = whiten(adv, mask, all_reduce=all_reduce)
    return adv, returns


@torch.no_grad()
def max_abs_diff(a: Tensor, b: Tensor, mask: Tensor) -> float:
    """The largest |a - b| over valid tokens (e.g. the training forward's log-probs against the sampler's)."""
    diff = (a.detach().float().cpu() - b.float().cpu()).abs()[mask.cpu()]
    return diff.max().item() if diff.numel() else 0.0
