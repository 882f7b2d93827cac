"""The policy losses by name, on plain tensors: call `policy_loss(logp, old_logp, advantages, mask, cfg, ...)` with a
Config (or a `LossSpec`) and no model.

    per-token loss = surrogate(rho, A)  [x correction w]  [+ beta * KL(pi || pi_ref)  (x rho: --kl-bias-correction)]
    loss           = aggregation(per-token loss over valid tokens)

    rho = exp(logp - old_logp)   per token, or per sequence (GSPO: the geometric mean of its token ratios)

Each `--loss` is one entry of LOSSES: a surrogate, an aggregation and a ratio level. Where TRL's GRPOTrainer has the
same name (its `loss_type`), the value and the gradient with respect to the log-probs are TRL 1.16's on the same
inputs; `ppo` is the LMM-R1 released code's (PPO-clip, each response's token mean, then the mean over responses).
Differences from TRL are listed in docs/objectives.md.

Padding is excluded with ``torch.where`` (as everywhere in rl.algos), so garbage on padding never leaks NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from lmm_kernels.policy_loss import kl_estimate, policy_loss_tokens
from rl.algos import _valid, _zero_pad, masked_mean, masked_sum

__all__ = ["LOSSES", "AGGREGATIONS", "CORRECTIONS", "LossSpec", "per_token", "aggregate", "aggregate_count",
           "aggregation_weights", "micro_batch_weights", "per_token_reason", "token_loss",
           "policy_loss", "policy_stats", "correction_weight", "value_loss", "kl_loss", "CISPO_EPS_MAX"]

# ---------------------------------------------------------------------------
# Aggregations: a micro-batch's `part` of the loss, and what the whole is divided by (`count`, summed over the
# micro-batches of a train batch on every process: the micro-batch losses then add up to the train batch's loss)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregation:
    part: Callable[[Tensor, Tensor, int], Tensor]  # (per-token loss, valid mask, max length) -> sum-form scalar
    count: Callable[[Tensor], float]  # valid mask -> this micro-batch's share of the divisor
    rollout_level: bool = False  # the divisor spans the whole rollout batch (DAPO), not one train batch


def _row_means(x: Tensor, valid: Tensor) -> Tensor:
    return masked_mean(x, valid, dim=1)


AGGREGATIONS = {
    # LMM-R1's released ppo_actor.py (OpenRLHF): each response's token mean, then the mean over responses (an empty
    # response, which the released code never has, is left out of both)
    "seq-mean-token-mean": Aggregation(lambda x, v, L: masked_sum(_row_means(x, v), v.any(dim=1)),
                                       lambda v: float(v.any(dim=1).sum())),
    # the token mean of the train batch (every token of the optimizer step weighs the same)
    "token-mean": Aggregation(lambda x, v, L: masked_sum(x, v), lambda v: float(v.sum())),
    # TRL grpo (DeepSeekMath eq. 3): each row's token mean, then the mean over all rows (empty rows count as 0)
    "grpo": Aggregation(lambda x, v, L: _row_means(x, v).sum(), lambda v: float(v.shape[0])),
    # TRL bnpo: the token mean of each micro-batch, then the mean over micro-batches
    "bnpo": Aggregation(lambda x, v, L: masked_mean(x, v), lambda v: 1.0),
    # TRL dr_grpo (Liu et al. 2025, Dr. GRPO): token sum over rows x a constant, the max completion length
    "dr_grpo": Aggregation(lambda x, v, L: masked_sum(x, v) / L, lambda v: float(v.shape[0])),
    # TRL dapo (Yu et al. 2025, DAPO eq. 12): the token sum over the tokens of the whole rollout batch, across
    # processes; with several optimizer steps per rollout, over the rollout's tokens per optimizer step
    "dapo": Aggregation(lambda x, v, L: masked_sum(x, v), lambda v: float(v.sum()), rollout_level=True),
}


def aggregate_count(mask: Tensor, agg: str) -> float:
    """This batch's share of the divisor of aggregation `agg` (valid tokens, rows, non-empty rows, or 1)."""
    return AGGREGATIONS[_known(agg, AGGREGATIONS, "loss aggregation")].count(_valid(mask))


def aggregate(per_token: Tensor, mask: Tensor, agg: str = "seq-mean-token-mean", max_len: int = 1,
              count: Optional[float] = None) -> Tensor:
    """A per-token loss [N, T] as one scalar over valid tokens. `count` replaces the batch's own divisor (dapo:
    TRL's `num_items_in_batch`, the tokens of the whole generation batch); `max_len` is dr_grpo's constant."""
    spec = AGGREGATIONS[_known(agg, AGGREGATIONS, "loss aggregation")]
    valid = _valid(mask).expand(per_token.shape)
    divisor = spec.count(valid) if count is None else float(count)
    return spec.part(per_token, valid, max_len) / max(divisor, 1.0)


def aggregation_weights(mask: Tensor, agg: str, max_len: int = 1) -> Tensor:
    """d aggregate / d per-token loss, [N, T] fp32 (0 on padding). Every aggregation is linear in the per-token
    losses with weights from the mask alone, so aggregate(x, mask, agg, max_len) == (x * weights).sum() for any x:
    the weights are the aggregation's own gradient (not a second copy of its formula)."""
    x = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device, requires_grad=True)
    with torch.enable_grad():
        return torch.autograd.grad(aggregate(x, mask, agg, max_len), x)[0]


def micro_batch_weights(counts: list[float], agg: str, world: int = 1, total: Callable[[float], float] = float,
                        per_train_batch: Optional[float] = None) -> list[float]:
    """The weight of each micro-batch's loss (its aggregate) so that they add up to the train batch's loss over
    every process: its share of the divisor, times `world` (FSDP averages the processes' gradients). `counts`: this
    process's micro-batches' aggregate_count (0 for a stand-in); `total` sums a number over the processes;
    `per_train_batch`: a rollout-level divisor (dapo: the rollout's tokens over the train batches of an epoch)."""
    whole = per_train_batch if AGGREGATIONS[agg].rollout_level else total(sum(counts))
    return [c / max(whole, 1e-12) * world for c in counts]


def _known(name: str, registry: dict, what: str) -> str:
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; expected one of {tuple(registry)}")
    return name


# ---------------------------------------------------------------------------
# Surrogates: (rho, A, logp, spec) -> per-token loss before the correction weight and the KL
# ---------------------------------------------------------------------------


def clip_surrogate(rho: Tensor, a: Tensor, logp: Tensor, spec: "LossSpec") -> Tensor:
    """PPO-clip (Schulman et al. 2017, eq. 7) with DAPO's clip-higher (eps_low != eps_high) and INTELLECT-2's
    two-sided clip (the unclipped ratio capped at delta, for negative advantages): -min(rho A, clip(rho) A)."""
    clipped = rho.clamp(1.0 - spec.clip_low, 1.0 + spec.clip_high)
    if spec.clip_delta:
        rho = rho.clamp(max=spec.clip_delta)
    return -torch.min(rho * a, clipped * a)


def cispo_surrogate(rho: Tensor, a: Tensor, logp: Tensor, spec: "LossSpec") -> Tensor:
    """CISPO (MiniMax-M1, Chen et al. 2025, eq. 4): the importance weight clipped at eps_max and stopped from the
    gradient, times A times the log-prob: every token keeps a gradient, however far its ratio has moved."""
    return -rho.clamp(max=spec.clip_high).detach() * a * logp


def sapo_surrogate(rho: Tensor, a: Tensor, logp: Tensor, spec: "LossSpec") -> Tensor:
    """SAPO (Gao et al. 2025): a smooth gate instead of the hard clip, sigmoid(tau (rho - 1)) * 4 / tau, with one
    temperature for positive advantages and another for the rest."""
    tau = torch.where(a > 0, torch.full_like(a, spec.sapo_tau_pos), torch.full_like(a, spec.sapo_tau_neg))
    return -torch.sigmoid(tau * (rho - 1.0)) * 4.0 / tau * a


@dataclass(frozen=True)
class Loss:
    surrogate: Callable
    agg: str  # the aggregation --loss-agg auto picks
    level: str = "token"  # where rho is taken: "token" or "sequence"


LOSSES = {
    "ppo": Loss(clip_surrogate, "seq-mean-token-mean"),  # LMM-R1 released: PPO-clip, OpenRLHF's aggregation
    "grpo": Loss(clip_surrogate, "grpo"),  # DeepSeekMath (Shao et al. 2024) eq. 3
    "bnpo": Loss(clip_surrogate, "bnpo"),  # TRL's batch-normalized GRPO
    "dr_grpo": Loss(clip_surrogate, "dr_grpo"),  # Dr. GRPO (Liu et al. 2025) eq. 5
    "dapo": Loss(clip_surrogate, "dapo"),  # DAPO (Yu et al. 2025) eq. 8: token-level loss
    "gspo": Loss(clip_surrogate, "grpo", "sequence"),  # GSPO (Zheng et al. 2025) eq. 5-7; TRL: level "sequence"
    "cispo": Loss(cispo_surrogate, "dapo"),  # MiniMax-M1 (2025) eq. 4; TRL aggregates it as dapo
    "sapo": Loss(sapo_surrogate, "grpo"),  # SAPO (Gao et al. 2025); TRL aggregates it as grpo
}
CISPO_EPS_MAX = 5.0  # the ScaleRL paper's eps_max for CISPO, which TRL's docs recommend for epsilon_high

# Rollout/trainer mismatch correction (TIS: Yao et al. 2025; MIS: IcePop), TRL's vllm_importance_sampling_mode
CORRECTIONS = ("none", "token-truncate", "token-mask", "sequence-truncate", "sequence-mask")


@dataclass(frozen=True)
class LossSpec:
    """Everything the policy loss reads, resolved from a Config (its 'auto' values made concrete)."""
    surrogate: Callable = clip_surrogate
    agg: str = "seq-mean-token-mean"
    level: str = "token"
    clip_low: float = 0.2
    clip_high: float = 0.2
    clip_delta: float = 0.0  # 0 = off
    sapo_tau_pos: float = 1.0
    sapo_tau_neg: float = 1.05
    beta: float = 0.0  # KL coefficient in the loss (--kl with --kl-in loss)
    kl_kind: str = "k3"
    kl_bias_correction: bool = False
    max_len: int = 1  # dr_grpo's constant: --max-new-tokens
    correction: str = "none"
    correction_cap: float = 3.0
    correction_floor: float = 0.0  # 0 = no lower bound

    @classmethod
    def of(cls, cfg) -> "LossSpec":
        loss = LOSSES[_known(cfg.loss, LOSSES, "policy loss")]
        default_high = CISPO_EPS_MAX if loss.surrogate is cispo_surrogate else cfg.eps_clip
        return cls(surrogate=loss.surrogate, agg=loss.agg if cfg.loss_agg == "auto" else cfg.loss_agg,
                   level=loss.level if cfg.ratio_level == "auto" else cfg.ratio_level, clip_low=cfg.eps_clip,
                   clip_high=cfg.clip_high or default_high, clip_delta=cfg.clip_delta,
                   sapo_tau_pos=cfg.sapo_temperatures[0], sapo_tau_neg=cfg.sapo_temperatures[1],
                   beta=cfg.kl if cfg.kl_in == "loss" else 0.0, kl_kind=cfg.kl_estimator,
                   kl_bias_correction=cfg.kl_bias_correction, max_len=cfg.max_new_tokens,
                   correction=correction_mode(cfg), correction_cap=cfg.correction_cap,
                   correction_floor=cfg.correction_floor)

    def plain(self) -> Optional[str]:
        """None when this is the token-level PPO-clip + KL that the fused kernel computes, else why it is not."""
        extras = [(self.surrogate is not clip_surrogate, "its surrogate is not PPO-clip"),
                  (self.level != "token", "its ratio is taken per sequence"),
                  (bool(self.clip_delta), "--clip-delta"), (self.kl_bias_correction, "--kl-bias-correction"),
                  (self.correction != "none", f"the rollout correction ({self.correction})")]
        return next((why for bad, why in extras if bad), None)


def correction_mode(cfg) -> str:
    """--rollout-correction auto: token-truncate where the old log-probs are the sampler's, else none (the LMM-R1
    presets recompute them, and the released code corrects nothing)."""
    if cfg.rollout_correction != "auto":
        return cfg.rollout_correction
    return "token-truncate" if cfg.old_logprobs == "sampler" else "none"


# ---------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------


def log_ratio(logp: Tensor, old_logp: Tensor, valid: Tensor, level: str) -> Tensor:
    """log rho: per token [N, T], or per sequence [N, 1] (the mean of its token log-ratios: GSPO's geometric
    mean); zeroed on padding before any exp()."""
    d = _zero_pad(logp.float() - old_logp.float(), valid)
    if level == "token":
        return d
    if level == "sequence":
        return d.sum(dim=-1, keepdim=True) / valid.sum(dim=-1, keepdim=True).clamp(min=1)
    raise ValueError(f"unknown ratio level {level!r}; expected 'token' or 'sequence'")


def per_token(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, spec: LossSpec,
              ref_logp: Optional[Tensor] = None, weight: Optional[Tensor] = None,
              fused: Optional[Callable] = None) -> Tensor:
    """The per-token loss [N, T] (fp32, exact 0 on padding). `weight` is the rollout correction (correction_weight,
    a constant); `fused` the Triton kernel of the plain case (LossSpec.plain() is None). Gradients reach logp only."""
    valid = _valid(mask).expand(logp.shape)
    if spec.beta and ref_logp is None:
        raise ValueError("a KL term in the loss (--kl-in loss, --kl > 0) needs ref_logp")
    if spec.plain() is None and weight is None:  # one definition: the fused kernel's torch twin
        return (fused or policy_loss_tokens)(logp, old_logp, adv, valid, ref_logp, spec.clip_low, spec.beta,
                                             spec.kl_kind, spec.clip_high)
    rho = torch.exp(log_ratio(logp, old_logp, valid, spec.level))
    a = _zero_pad(adv.float().expand(logp.shape), valid)
    loss = spec.surrogate(rho, a, _zero_pad(logp.float(), valid), spec)
    if weight is not None:
        loss = loss * weight.float()
    if spec.beta:
        d = _zero_pad(logp.float() - ref_logp.float(), valid)
        kl = kl_estimate(d, torch.zeros_like(d), spec.kl_kind)
        # DeepSeek-V3.2 (TRL use_bias_correction_kl): the KL times rho, the unbiased gradient of the reverse KL
        loss = loss + spec.beta * (kl * rho if spec.kl_bias_correction else kl)
    return _zero_pad(loss.expand(logp.shape), valid)


def correction_weight(logp: Tensor, sampler_logp: Tensor, mask: Tensor, spec: LossSpec,
                      in_ratio: bool = False) -> tuple[Optional[Tensor], dict]:
    """The rollout/trainer mismatch correction as a constant weight of the per-token loss, and its metrics.

    With the trainer's old log-probs (`logp` = old_logp, recomputed): TRL's weight, r = pi_old / pi_sampler per token
    or per sequence (the product: exp of the summed log-ratios), truncated to [floor, cap] or 0 outside it.
    With the sampler's (`in_ratio`: the PPO ratio is taken against the sampler, so r is inside it; `logp` the
    current log-probs): the weight rescales that ratio, min(max(r, floor), cap) / r, or masks it."""
    if spec.correction == "none":
        return None, {}
    valid = _valid(mask).expand(logp.shape)
    w, log_r, inside = _correction(logp, sampler_logp, valid, spec, in_ratio)
    level, how = spec.correction.split("-")
    at = valid if level == "token" else valid.any(dim=-1, keepdim=True)
    r = torch.exp(log_r.clamp(max=80.0))
    stats = {"correction/ratio_mean": float(masked_mean(r, at)),
             "correction/ratio_max": float(torch.where(at, r, torch.zeros_like(r)).max()) if at.any() else 1.0,
             f"correction/{'capped' if how == 'truncate' else 'masked'}_frac": float(masked_mean((~inside).float(),
                                                                                                  at))}
    return w, stats


def _correction(logp: Tensor, sampler_logp: Tensor, valid: Tensor, spec: LossSpec,
                in_ratio: bool) -> tuple[Tensor, Tensor, Tensor]:
    """correction_weight's weight [N, T] (spec.correction is not "none"), with log r and whether r lies inside
    [floor, cap] ([N, T], or [N, 1] per sequence) for its metrics."""
    d = _zero_pad(logp.detach().float() - sampler_logp.float(), valid)
    level, how = spec.correction.split("-")
    log_r = d if level == "token" else d.sum(dim=-1, keepdim=True)
    cap = math.log(spec.correction_cap)
    floor = math.log(spec.correction_floor) if spec.correction_floor > 0 else -math.inf
    inside = (log_r <= cap) & (log_r >= floor)
    if how == "truncate":
        kept = log_r.clamp(floor, cap)
        w = torch.exp(kept - log_r) if in_ratio else torch.exp(kept)
    else:
        w = inside.float() if in_ratio else torch.where(inside, torch.exp(log_r), torch.zeros_like(log_r))
    return w.expand(logp.shape), log_r, inside


# ---------------------------------------------------------------------------
# The loss as a sum of per-token terms, for the log-prob call that computes its gradient in the forward
# (lmm_kernels.logprob.linear_logprob_loss: no recompute of the logits in the backward)
# ---------------------------------------------------------------------------


def per_token_reason(spec: LossSpec, in_ratio: bool = False) -> Optional[str]:
    """None when the update's loss is a sum of per-token functions of the current log-probs, f_t(logp_t), else why
    not. The aggregations are linear with weights from the mask (aggregation_weights); the surrogates, the KL term
    and a token-level correction are per token. A sequence-level ratio (GSPO) couples a sequence's tokens, and so
    does a sequence-level correction taken from the current log-probs (`in_ratio`: --old-logprobs sampler); one
    taken from the old log-probs is a constant."""
    if spec.level != "token":
        return "its ratio is taken per sequence"
    if in_ratio and spec.correction.startswith("sequence"):
        return f"the rollout correction ({spec.correction}) is taken per sequence from the current log-probs"
    return None


def token_loss(per_token_fn: Callable, select: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor,
               ref_logp: Optional[Tensor], sampler_logp: Tensor, spec: LossSpec, in_ratio: bool = False,
               device: Optional[torch.device] = None) -> Callable[[Tensor, slice], Tensor]:
    """The update's loss as `terms(logp_rows, rows)` -> [rows] for linear_logprob_loss, whose sum over all rows is
    aggregate(per_token_fn(logp, old_logp, adv, mask, ref_logp, correction), mask, spec.agg, spec.max_len) with the
    correction of correction_weight (from old_logp, or with `in_ratio` from logp).

    `rows` index the tokens of `select` ([N, T] boolean, the action mask that the log-prob call flattens) in
    row-major order. Each term is the token's own per-token loss, per_token_fn on [1, rows] slices of the constants
    (the same function the recompute path calls), times its aggregation weight. The constants are taken to `device`
    once. Only for the losses per_token_reason accepts (a ValueError else)."""
    why = per_token_reason(spec, in_ratio)
    if why is not None:
        raise ValueError(f"the loss is not a sum of per-token terms: {why}")
    select = _valid(select)
    valid = _valid(mask).expand(select.shape)
    fixed = None if in_ratio or spec.correction == "none" else _correction(old_logp, sampler_logp, valid, spec,
                                                                             False)[0]
    weights = aggregation_weights(valid, spec.agg, spec.max_len)

    def rows_of(x: Optional[Tensor]) -> Optional[Tensor]:  # [N, T] -> [1, tokens of select]
        return None if x is None else x.expand(select.shape)[select][None].to(device or x.device)

    old, a, m, ref, smp, fix, w = map(rows_of, (old_logp, adv, valid, ref_logp, sampler_logp, fixed, weights))
    current = in_ratio and spec.correction != "none"  # the correction weight from the chunk's own log-probs

    def terms(logp_rows: Tensor, rows: slice) -> Tensor:
        lp, m_r = logp_rows[None], m[:, rows]
        corr = None if fix is None else fix[:, rows]
        if current:
            corr = _correction(lp, smp[:, rows], m_r, spec, True)[0]
        loss = per_token_fn(lp, old[:, rows], a[:, rows], m_r, None if ref is None else ref[:, rows], corr)
        return (loss * w[:, rows]).reshape(-1)

    return terms


@torch.no_grad()
def policy_stats(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, spec: LossSpec) -> dict[str, float]:
    """{"clip_frac", "approx_kl"}: the share of valid tokens whose ratio is clipped where it matters (below
    1 - eps_low with A < 0, above 1 + eps_high with A > 0; CISPO: above eps_max with A > 0, as TRL counts them), at
    the loss's ratio level,
    and the k3 estimate of KL(old || new), (rho - 1) - log rho, token-mean."""
    valid = _valid(mask).expand(logp.shape)
    d = _zero_pad(logp.float() - old_logp.float(), valid)
    rho = torch.exp(log_ratio(logp, old_logp, valid, spec.level)).expand(logp.shape)
    a = _zero_pad(adv.float().expand(logp.shape), valid)
    if spec.surrogate is cispo_surrogate:
        clipped = (rho > spec.clip_high) & (a > 0)
    else:
        clipped = ((rho < 1 - spec.clip_low) & (a < 0)) | ((rho > 1 + spec.clip_high) & (a > 0))
    return {"clip_frac": float(masked_mean(clipped.float(), valid)),
            "approx_kl": float(masked_mean(torch.exp(d) - 1.0 - d, valid))}


def policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, cfg,
                ref_logp: Optional[Tensor] = None, sampler_logp: Optional[Tensor] = None,
                num_items: Optional[float] = None) -> tuple[Tensor, dict[str, float]]:
    """The loss of one batch on plain tensors -> (scalar, metrics). `cfg`: a Config or a LossSpec. `sampler_logp`:
    the sampler's log-probs, for the rollout correction (against `old_logp`, TRL's). `num_items`: dapo/cispo's
    divisor when the batch is part of a larger rollout (TRL's num_items_in_batch; default: this batch's tokens)."""
    spec = cfg if isinstance(cfg, LossSpec) else LossSpec.of(cfg)
    weight, stats = (None, {}) if sampler_logp is None else correction_weight(old_logp, sampler_logp, mask, spec)
    loss = aggregate(per_token(logp, old_logp, advantages, mask, spec, ref_logp, weight), mask, spec.agg,
                     spec.max_len, num_items)
    return loss, {**policy_stats(logp, old_logp, advantages, mask, spec), **stats}


# ---------------------------------------------------------------------------
# The critic's loss, and the KL as a loss of its own
# ---------------------------------------------------------------------------


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float = 0.2,
               agg: str = "seq-mean-token-mean", max_len: int = 1) -> Tensor:
    """Clipped value loss 0.5 * max((V_clip - R)^2, (V - R)^2), aggregated over valid tokens."""
    # PPO value clipping (OpenAI baselines ppo2 / OpenRLHF ValueLoss): V_clip = V_old + clamp(V - V_old, -clip, clip).
    # Inputs zeroed on padding (NaN-free grads).
    values, old_values, returns = (_zero_pad(x, mask) for x in (values, old_values, returns))
    v_clip = old_values + (values - old_values).clamp(-clip, clip)
    per_tok = 0.5 * torch.max((v_clip - returns).pow(2), (values - returns).pow(2))
    return aggregate(per_tok, mask, agg, max_len)


def kl_loss(logp: Tensor, ref_logp: Tensor, mask: Tensor, kind: str = "k3", agg: str = "seq-mean-token-mean") -> Tensor:
    """GRPO-style KL-as-loss term: aggregate of kl_estimate over valid tokens."""
    # GRPO (DeepSeekMath eq. 3-4) adds beta * D_KL(pi || pi_ref) to the loss (k3 by default) instead of into the
    # reward. Inputs zeroed on padding first: masked KL, NaN-free gradients.
    return aggregate(kl_estimate(_zero_pad(logp, mask), _zero_pad(ref_logp, mask), kind), mask, agg)
