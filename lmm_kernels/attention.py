"""Packed variable-length attention, the PyTorch reference.

`varlen_attention_torch` has the signature of the Triton `varlen_attention` (lmm_kernels/attention_triton.py): a loop
over sequences, kv heads repeated for GQA, explicit masked softmax in fp32 (fp64 for fp64 inputs), causal mask
bottom-right aligned like flash-attn, a fully masked row -> 0. lmm_kernels/hf_attention.py routes transformers'
attention calls to either.
"""

from __future__ import annotations

import torch


def varlen_attention_torch(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None, causal=False,
                           softmax_scale=None):
    """Reference: q [total_q, Hq, D], k/v [total_k, Hkv, D] -> out [total_q, Hq, D] (q's dtype)."""
    hq, hkv, d = q.shape[1], k.shape[1], q.shape[2]
    if hq % hkv:
        raise ValueError(f"query heads ({hq}) must be a multiple of key/value heads ({hkv})")
    scale = softmax_scale if softmax_scale is not None else d ** -0.5
    compute = torch.promote_types(q.dtype, torch.float32)
    cu_q = [int(x) for x in cu_seqlens_q.tolist()]
    cu_k = [int(x) for x in cu_seqlens_k.tolist()]
    outs = []
    for b in range(len(cu_q) - 1):
        qs = q[cu_q[b]:cu_q[b + 1]].to(compute).transpose(0, 1)  # [Hq, Lq, D]
        ks = k[cu_k[b]:cu_k[b + 1]].to(compute).transpose(0, 1)
        vs = v[cu_k[b]:cu_k[b + 1]].to(compute).transpose(0, 1)
        ks = ks.repeat_interleave(hq // hkv, dim=0)
        vs = vs.repeat_interleave(hq // hkv, dim=0)
        lq, lk = qs.shape[1], ks.shape[1]
        if lk == 0 or lq == 0:  # no key: every row fully masked
            outs.append(qs.new_zeros(lq, hq, d))
            continue
        scores = (qs @ ks.transpose(1, 2)) * scale  # [Hq, Lq, Lk]
        visible = torch.ones(lq, lk, dtype=torch.bool, device=q.device)
        if causal:  # bottom-right aligned: query i sees key j iff j <= i + lk - lq
            visible = (torch.arange(lk, device=q.device)[None, :]
                       <= torch.arange(lq, device=q.device)[:, None] + (lk - lq))
        scores = scores.masked_fill(~visible, float("-inf"))
        row_max = scores.amax(-1, keepdim=True)
        row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max)).detach()
        p = torch.exp(scores - row_max)
        denom = p.sum(-1, keepdim=True)
        probs = p / torch.where(denom == 0, torch.ones_like(denom), denom)  # fully masked row -> 0
        outs.append((probs @ vs).transpose(0, 1))
    if not outs:
        return q.new_zeros(q.shape)
    out = torch.cat(outs, 0)
    if out.shape[0] < q.shape[0]:  # tokens past cu_seqlens_q[-1]
        out = torch.cat([out, out.new_zeros(q.shape[0] - out.shape[0], *out.shape[1:])], 0)
    return out.to(q.dtype)
