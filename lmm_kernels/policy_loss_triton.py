"""Per-token PPO clipped surrogate + beta * KL(pi || pi_ref) (k1/k2/k3), fused in one elementwise Triton kernel.

    per_token = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A) + beta * kl_k(logp, ref_logp)
    rho = exp(logp - old_logp);  d = logp - ref_logp
    k1 = d,  k2 = d^2 / 2,  k3 = exp(-d) + d - 1          (Schulman 2020; k3 is GRPO's, DeepSeekMath eq. 4)

The torch reference is lmm_kernels.policy_loss.policy_loss_tokens (beside this file): both share one signature and
return the per-token loss [N, T] (fp32, exactly 0 where mask == 0); aggregation stays with the caller
(rl.losses.aggregate). Gradients flow to `logp` only (old_logp, ref_logp and the advantages are constants of the
update, as in PPO/GRPO). Padding is NaN-safe: the log-ratios and advantages are zeroed on masked tokens before exp(),
so garbage there can neither overflow nor leak NaN into the gradient.

Gradient (the kernel writes it in the forward pass and the backward only scales it by the incoming gradient):
    d/dlogp -min(s1, s2) = 0 where the clipped branch is strictly smaller (s2 < s1: then rho is outside the clip
    range and the clamp has zero slope), else -A * rho. In the clip range s1 == s2 exactly and torch's
    minimum/clamp backward also yield -A * rho, so this matches autograd on the torch reference.
    d/dlogp kl: k1 -> 1, k2 -> d, k3 -> 1 - exp(-d).
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from lmm_kernels.policy_loss import KL_KINDS

__all__ = ["policy_loss_tokens_triton", "kernel_configs"]

_KL_CODE = {None: 0, "k1": 1, "k2": 2, "k3": 3}
_BLOCK = 1024
_NUM_WARPS = 4


@triton.jit
def _policy_loss_kernel(logp_ptr, old_ptr, ref_ptr, adv_ptr, mask_ptr, loss_ptr, grad_ptr,
                        n, clip_lo, clip_hi, beta,
                        BLOCK: tl.constexpr, KL_KIND: tl.constexpr, WITH_GRAD: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inb = offs < n
    valid = tl.load(mask_ptr + offs, mask=inb, other=0) != 0
    lp = tl.load(logp_ptr + offs, mask=inb, other=0.0).to(tl.float32)
    old = tl.load(old_ptr + offs, mask=inb, other=0.0).to(tl.float32)
    adv = tl.load(adv_ptr + offs, mask=inb, other=0.0).to(tl.float32)
    log_ratio = tl.where(valid, lp - old, 0.0)
    a = tl.where(valid, adv, 0.0)
    rho = tl.exp(log_ratio)
    s1 = rho * a
    s2 = tl.minimum(tl.maximum(rho, clip_lo), clip_hi) * a
    loss = -tl.minimum(s1, s2)
    grad = tl.where(s2 < s1, 0.0, -a * rho)
    if KL_KIND != 0:
        ref = tl.load(ref_ptr + offs, mask=inb, other=0.0).to(tl.float32)
        d = tl.where(valid, lp - ref, 0.0)
        if KL_KIND == 1:
            kl = d
            dkl = tl.full([BLOCK], 1.0, tl.float32)
        elif KL_KIND == 2:
            kl = 0.5 * d * d
            dkl = d
        else:
            e = tl.exp(-d)
            kl = e + d - 1.0
            dkl = 1.0 - e
        loss = loss + beta * kl
        grad = grad + beta * dkl
    tl.store(loss_ptr + offs, tl.where(valid, loss, 0.0), mask=inb)
    if WITH_GRAD:
        tl.store(grad_ptr + offs, tl.where(valid, grad, 0.0), mask=inb)


def kernel_configs() -> list[dict]:
    """Every launchable configuration (inputs are cast to fp32 / int8 mask by the wrapper): see
    lmm_kernels.logprob_triton.kernel_configs for the entry format."""
    out = []
    for kl in (0, 1, 2, 3):
        for with_grad in (False, True):
            sig = {"logp_ptr": "*fp32", "old_ptr": "*fp32", "ref_ptr": "*fp32", "adv_ptr": "*fp32", "mask_ptr": "*i8",
                   "loss_ptr": "*fp32", "grad_ptr": "*fp32", "n": "i32", "clip_lo": "fp32", "clip_hi": "fp32",
                   "beta": "fp32"}
            const = dict(BLOCK=_BLOCK, KL_KIND=kl, WITH_GRAD=with_grad)
            sig.update({k: "constexpr" for k in const})
            attrs = {(list(sig).index(a),): [["tt.divisibility", 16]] for a in sig if a.endswith("_ptr")}
            out.append(dict(name=f"policy_loss[kl={kl},grad={int(with_grad)}]", fn=_policy_loss_kernel,
                            signature=sig, constexprs=const, attrs=attrs, num_warps=_NUM_WARPS, num_stages=1))
    return out


class _PolicyLossFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logp, old, ref, adv, mask, clip_lo, clip_hi, beta, kl_code):
        shape = logp.shape
        lp = logp.float().contiguous().reshape(-1)
        n = lp.numel()
        if n >= 2 ** 31:
            raise ValueError("too many tokens for int32 offsets")
        loss = torch.empty_like(lp)
        with_grad = ctx.needs_input_grad[0]
        grad = torch.empty_like(lp) if with_grad else loss
        ref_t = ref if ref is not None else lp
        if n:
            _policy_loss_kernel[(triton.cdiv(n, _BLOCK),)](
                lp, old, ref_t, adv, mask, loss, grad, n, float(clip_lo), float(clip_hi), float(beta),
                BLOCK=_BLOCK, KL_KIND=kl_code, WITH_GRAD=with_grad, num_warps=_NUM_WARPS)
        if with_grad:
            ctx.save_for_backward(grad)
            ctx.in_dtype = logp.dtype
        ctx.shape = shape
        return loss.reshape(shape)

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        g = (grad_out.float().reshape(-1) * grad).reshape(ctx.shape).to(ctx.in_dtype)
        return g, None, None, None, None, None, None, None, None


def policy_loss_tokens_triton(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                              ref_logp: Optional[torch.Tensor] = None, clip_eps: float = 0.2, beta: float = 0.0,
                              kl_kind: Optional[str] = "k3", clip_eps_high: Optional[float] = None) -> torch.Tensor:
    """Fused Triton version of lmm_kernels.policy_loss.policy_loss_tokens (same signature, same result, same gradient
    to logp)."""
    if kl_kind not in _KL_CODE:
        raise ValueError(f"unknown KL estimator {kl_kind!r}; expected one of {KL_KINDS} or None")
    if beta != 0.0 and kl_kind is not None and ref_logp is None:
        raise ValueError("beta != 0 needs ref_logp")
    shape = logp.shape
    flat = lambda x: x.detach().float().expand(shape).contiguous().reshape(-1)  # noqa: E731
    kl_code = _KL_CODE[kl_kind] if beta != 0.0 else 0
    ref = flat(ref_logp) if kl_code else None
    m = mask.expand(shape).ne(0).to(torch.int8).contiguous().reshape(-1)
    hi = clip_eps if clip_eps_high is None else clip_eps_high
    return _PolicyLossFn.apply(logp, flat(old_logp), ref, flat(adv), m, 1.0 - clip_eps, 1.0 + hi, beta, kl_code)
