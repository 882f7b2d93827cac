"""Compute kernels, each beside its PyTorch reference, behind one switch: `--kernels triton|torch`.

    attention       attention_triton.py    (packed varlen, FlashAttention-2 style) | sdpa, attention.py
    log-prob        logprob_triton.py      (fused linear log-prob + entropy, and   | logprob.py (chunked)
                                            with a loss's gradient in the forward)
    policy loss     policy_loss_triton.py  (fused clipped surrogate + KL)          | policy_loss.py
    transformers    hf_attention.py        (registers the attention with transformers, packs the vision tower;
                                            sdpa_varlen: torch's sdpa per sequence, for packed batches)
    compile check   compile_check.py       (every Triton config, ahead of time, for sm_80 / sm_90)

The package is `lmm_kernels`, not `kernels`: that name belongs to the Hugging Face kernels package, which
bitsandbytes and transformers import.

Triton runs on CUDA, or on the CPU under TRITON_INTERPRET=1 (set before the kernel modules are imported; slow, for
tests). Elsewhere the torch references run, and `select` says why.
"""

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from lmm_kernels.interpret import interpreting


@dataclass(frozen=True)
class Kernels:
    """Every swappable piece of the step; the trainer calls these and never asks which implementation it has."""
    name: str  # "triton" or "torch"
    reason: str  # why this choice (logged)
    attn_implementation: str  # passed to transformers for the language model and the vision tower
    logprobs: Callable  # (hidden, weight, targets, temperature, with_entropy, chunk_size) -> (logp, entropy | None)
    # The same with a loss of per-token terms whose gradient it computes in the forward (no recompute in the
    # backward): (hidden, weight, targets, token_loss, temperature, with_entropy, chunk_size) -> (loss, logp,
    # entropy | None), logprob.linear_logprob_loss. The trainer uses it for the token-level losses.
    logprob_loss: Callable
    # Fused kernels of policy losses, by surrogate ("clip": token-level PPO-clip + KL, rl.losses.LossSpec.plain): the
    # trainer runs the kernel where it computes the configured loss, else the torch definition. Signature: (logp,
    # old_logp, adv, mask, ref_logp, clip_eps, beta, kl_kind, clip_eps_high) -> per-token loss [N, T].
    policy_losses: dict[str, Callable]


def triton_runs_on(device: torch.device) -> tuple[bool, str]:
    try:
        import triton  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        return False, f"triton does not import ({e})"
    if device.type == "cuda":
        return True, "CUDA"
    if interpreting():
        return True, "the Triton interpreter on the CPU (TRITON_INTERPRET=1; slow)"
    return False, f"Triton needs a GPU, or TRITON_INTERPRET=1 on the {device.type}"


def select(requested: str, device: torch.device, torch_attn: str = "sdpa", packed: bool = False) -> Kernels:
    """The kernels to use: Triton where asked and possible, else the torch references (with the reason). Packed
    batches on the torch path run sdpa once per sequence ("sdpa_varlen") rather than under a [T, T] block mask."""
    if requested not in ("triton", "torch"):
        raise ValueError(f"--kernels must be 'triton' or 'torch', got {requested!r}")
    if requested == "triton":
        ok, why = triton_runs_on(device)
        if ok:
            from lmm_kernels.hf_attention import register
            from lmm_kernels.logprob_triton import triton_logprob_loss_from_hidden, triton_logprobs_from_hidden
            from lmm_kernels.policy_loss_triton import policy_loss_tokens_triton
            register()
            return Kernels("triton", f"triton kernels on {why}", "triton_varlen", triton_logprobs_from_hidden,
                           triton_logprob_loss_from_hidden, {"clip": policy_loss_tokens_triton})
        reason = f"torch kernels: {why}"
    else:
        reason = "torch kernels (--kernels torch)"
    from lmm_kernels.logprob import logprob_loss_from_hidden, logprobs_from_hidden
    if packed and torch_attn == "sdpa":
        from lmm_kernels.hf_attention import register
        register()
        torch_attn = "sdpa_varlen"
    return Kernels("torch", reason, torch_attn, logprobs_from_hidden, logprob_loss_from_hidden, {})


def prepare_model(model, kernels: Kernels):
    """After loading: the vision tower makes one packed attention call per layer (not one per window)."""
    if kernels.name == "triton":
        from lmm_kernels.hf_attention import pack_vision_attention
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
