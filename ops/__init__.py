"""Compute kernels, each beside its PyTorch reference, behind one switch: `--kernels triton|torch`.

    attention       ops/attention_triton.py  (packed varlen FlashAttention-2 style)  | sdpa / ops/attention.py
    log-prob        ops/logprob_triton.py    (fused linear log-prob + entropy)       | ops/logprob.py (chunked)
    policy loss     ops/policy_loss.py       (fused clipped surrogate + KL)          | rl/algos.py

Triton runs on CUDA, or on the CPU under TRITON_INTERPRET=1 (set before import; slow, for tests). Elsewhere the
torch references run, and `select` says why.
"""

import contextlib
import os
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Kernels:
    name: str  # "triton" or "torch"
    reason: str  # why this choice (logged)
    logprobs: Callable  # (hidden, weight, targets, temperature, with_entropy, chunk_size) -> (logp, entropy)
    attn_implementation: str  # passed to transformers for the language model and the vision tower


def triton_runs_on(device: torch.device) -> tuple[bool, str]:
    try:
        import triton  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        return False, f"triton does not import ({e})"
    if device.type == "cuda":
        return True, "CUDA"
    if os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes"):
        return True, "the Triton interpreter on the CPU (TRITON_INTERPRET=1; slow)"
    return False, f"Triton needs a GPU, or TRITON_INTERPRET=1 on the {device.type}"


def select(requested: str, device: torch.device, torch_attn: str = "sdpa") -> Kernels:
    """The kernels to use: Triton where asked and possible, else the torch references (with the reason)."""
    if requested not in ("triton", "torch"):
        raise ValueError(f"--kernels must be 'triton' or 'torch', got {requested!r}")
    if requested == "triton":
        ok, why = triton_runs_on(device)
        if ok:
            from ops.attention import register
            from ops.logprob_triton import triton_logprobs_from_hidden
            register()
            return Kernels("triton", f"triton kernels on {why}", triton_logprobs_from_hidden, "triton_varlen")
        reason = f"torch kernels: {why}"
    else:
        reason = "torch kernels (--kernels torch)"
    from ops.logprob import logprobs_from_hidden
    return Kernels("torch", reason, logprobs_from_hidden, torch_attn)


def prepare_model(model, kernels: Kernels):
    """After loading: the vision tower makes one packed attention call per layer (not one per window)."""
    if kernels.name == "triton":
        from ops.attention import pack_vision_attention
        pack_vision_attention(model)
    return model


@contextlib.contextmanager
def reference_attention(model, kernels: Kernels, torch_attn: str = "sdpa"):
    """Run the model with the reference attention inside the block (for the run-time shadow check)."""
    if kernels.name != "triton":
        yield
        return
    model.set_attn_implementation(torch_attn)
    try:
        yield
    finally:
        model.set_attn_implementation(kernels.attn_implementation)
        prepare_model(model, kernels)
