"""Optimizer construction and learning-rate schedule (pure, no trainer state)."""

from __future__ import annotations

import math
from typing import Iterable, Union
from unittest import mock

import torch

__all__ = ["OPTIMIZERS", "schedule", "lr_at", "make_optimizer", "clip_grad_norm", "set_lr", "optimizer_step",
           "local_shards"]

OPTIMIZERS = ("adamw_8bit", "paged_adamw_8bit", "adamw", "adamw_8bit_bf16")
BF16_WEIGHTS = "adamw_8bit_bf16"  # the optimizer that keeps the weights themselves in bf16 (no fp32 master copy)


def schedule(cfg, n_data: int) -> tuple[int, int, int]:
    """(rollout steps, optimizer steps per rollout step, length of the lr schedule) of a run over `n_data` prompts.
    Sample order drops the last incomplete rollout batch of each episode; the schedule's length is the released
    count, from the data set's size (it also counts that dropped partial rollout), and a run cut short by
    --max-steps spans its own updates."""
    updates_per_step = cfg.ppo_epochs * math.ceil(cfg.prompts_per_step * cfg.n_samples / cfg.train_batch_size)
    steps = cfg.episodes * (n_data // cfg.prompts_per_step)
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps) if cfg.episodes else cfg.max_steps
        return steps, updates_per_step, steps * updates_per_step
    return steps, updates_per_step, max(1, math.ceil(
        cfg.episodes * (n_data * cfg.n_samples // cfg.train_batch_size * cfg.ppo_epochs)))


def lr_at(
    step: int,
    total_steps: int,
    base_lr: float,
    warmup_ratio: float = 0.03,
    min_lr_ratio: float = 0.1,
) -> float:
    """Learning rate for 0-indexed optimizer `step`: linear warmup then cosine decay to min_lr_ratio*base_lr."""
    # The released schedule: transformers' "cosine_with_min_lr" (a LambdaLR stepped after each optimizer step), so
    # update k uses lambda(k): k / W during the W = ceil(warmup_ratio * total) warmup steps (the first update at lr
    # 0), then min + (base - min) * 0.5 * (1 + cos(pi * (k - W) / (total - W))).
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    # -1e-9 guards float noise: 0.07*100 == 7.000000000000001 must give 7, not 8.
    warmup = max(0, math.ceil(warmup_ratio * total_steps - 1e-9))
    if step < warmup:
        return base_lr * step / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    min_lr = base_lr * min_lr_ratio
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(
    params: Iterable,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.95),
    weight_decay: float = 0.0,
    kind: str = "adamw_8bit",
) -> torch.optim.Optimizer:
    """Build one of OPTIMIZERS: torch AdamW ("adamw"); bitsandbytes 8-bit AdamW ("adamw_8bit", the default), or its
    paged variant ("paged_adamw_8bit": the states in CUDA unified memory, evicted to the CPU under memory pressure;
    the same update); torchao's 8-bit AdamW over bf16 weights with stochastic rounding ("adamw_8bit_bf16": the
    caller keeps the parameters in bf16; an update far below a bf16 weight's resolution still lands, in
    expectation)."""
    # 8-bit Adam (Dettmers et al. 2022, block-wise quantised states); bnb and torchao keep unquantised states for
    # tensors < 4096 elements. Both libraries are imported lazily.
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if kind in ("adamw_8bit", "paged_adamw_8bit"):
        bnb = _import(kind, "bitsandbytes")
        cls = bnb.optim.AdamW8bit if kind == "adamw_8bit" else bnb.optim.PagedAdamW8bit
        return cls(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if kind == BF16_WEIGHTS:
        ao = _import(kind, "torchao.optim")

        class AdamW8bitBf16(ao.AdamW8bit):
            """On the CPU the per-parameter step runs eagerly: torch.compile there costs seconds per tensor shape."""

            def step(self, closure=None):
                if any(p.device.type != "cpu" for g in self.param_groups for p in g["params"]):
                    return super().step(closure)
                with mock.patch.object(torch, "compile", lambda fn, **_: fn):  # torchao compiles at each call
                    return super().step(closure)

        return AdamW8bitBf16(params, lr=lr, betas=betas, weight_decay=weight_decay, bf16_stochastic_round=True)
    raise ValueError(f"unknown optimizer {kind!r}; expected one of {OPTIMIZERS}")


def _import(kind: str, module: str):
    import importlib
    try:
        return importlib.import_module(module)
    except Exception as e:  # ImportError, or RuntimeError from a broken native library
        raise ImportError(f"optimizer {kind!r} needs {module.split('.')[0]}, which failed to import ({e!r}); "
                          "install it (requirements.txt) or pass --optim adamw") from e


def clip_grad_norm(
    params: Union[torch.Tensor, Iterable[torch.Tensor]], max_norm: float
) -> float:
    """Clip gradients in place to total L2 norm max_norm; return the pre-clip norm as a float."""
    # Global-norm gradient clipping (Pascanu et al. 2013), as torch.nn.utils.clip_grad_norm_.
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every param group of `optimizer`."""
    # Manual per-step schedule (lr_at) instead of a stateful torch LR scheduler.
    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):  # torchao keeps lr a tensor (its compiled step reads it)
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def local_shards(params: list) -> list:
    """The tensors an optimizer updates in place: each parameter itself, or for a sharded one (an FSDP2 DTensor) a
    plain tensor over its local shard's storage, so that any optimizer (bitsandbytes' 8-bit ones included, which
    do not take DTensors) updates this rank's shard, and its state is a plain per-rank state dict."""
    from torch.distributed.tensor import DTensor
    return [torch.nn.Parameter(p._local_tensor, requires_grad=False) if isinstance(p, DTensor) else p for p in params]


def optimizer_step(optimizer: torch.optim.Optimizer, lr: float, params: list = (), shards: list = ()) -> None:
    """One update of the actor or the critic (gradients already clipped): set the lr, step, zero the gradients.
    `params` / `shards` (from `local_shards`): the shards take their parameters' gradients first."""
    for p, shard in zip(params, shards):
        if shard is not p:
            shard.grad = None if p.grad is None else p.grad._local_tensor
    set_lr(optimizer, lr)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    for p in params:
        p.grad = None
