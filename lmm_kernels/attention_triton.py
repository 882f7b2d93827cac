"""Packed variable-length attention in Triton, FlashAttention-2 style (forward and backward).

Layout (the one of `flash_attn_varlen_func`): q [total_q, Hq, D], k/v [total_k, Hkv, D], sequences packed one after
the other and described by `cu_seqlens_q` / `cu_seqlens_k` (int32 [B+1], cumulative lengths).

* causal (language model) or not (vision tower: window and full attention); when a sequence has more queries than
  keys (or fewer), the causal mask is aligned to the bottom-right corner like flash-attn: query i of a sequence sees
  key j iff j <= i + len_k - len_q. A row that sees no key (or any row of a sequence with no key) gives 0, lse -inf.
* grouped-query attention: Hq a multiple of Hkv; query head h reads kv head h // (Hq // Hkv); dK/dV are summed over
  the query heads of the group inside one program (no atomics: the backward is deterministic).
* head dims 16, 32, 64, 80, 96 and 128; the head-dim block is the next power of two (80 -> 128) with masks.
* fp32 / fp16 / bf16 inputs, fp32 accumulation and softmax statistics, output in the input dtype; logsumexp saved
  for the backward, which is: delta = rowsum(dO * O); one kernel over key blocks (dK, dV, looping over the query
  blocks of the same sequence and the query heads of the group); one kernel over query blocks (dQ).

Under `TRITON_INTERPRET=1` (CPU tests) values are upcast to fp32 right after each load (the interpreter has no bf16
dot); on a GPU the dots take the input dtype (p and dS are cast to it, as in FlashAttention-2). fp32 inputs use
`input_precision="ieee"` dots (exact fp32, no TF32).

`kernel_configs()` lists every (kernel, constexprs, num_warps, num_stages) this module launches on a GPU, with
signatures for `triton.compiler.ASTSource`, for ahead-of-time compile checks (`python -m lmm_kernels.compile_check`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from lmm_kernels.interpret import interpreting

_INTERPRET = interpreting()  # triton decides when the kernels below are defined, i.e. now

SUPPORTED_HEAD_DIMS = (16, 32, 64, 80, 96, 128)
_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453


# --------------------------------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------------------------------

@triton.jit
def _attn_fwd_kernel(
    Q, K, V, O, LSE, CU_Q, CU_K,
    sm_scale,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh, stride_lh,
    kv_group,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    seq = tl.program_id(1)
    head = tl.program_id(2)
    q_start = tl.load(CU_Q + seq)
    len_q = tl.load(CU_Q + seq + 1) - q_start
    k_start = tl.load(CU_K + seq)
    len_k = tl.load(CU_K + seq + 1) - k_start
    m0 = pid_m * BLOCK_M
    if m0 >= len_q:
        return
    kv_head = head // kv_group

    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < len_q
    mask_d = offs_d < HEAD_DIM

    q_rows = (q_start + offs_m).to(tl.int64)
    q = tl.load(Q + q_rows[:, None] * stride_qt + head * stride_qh + offs_d[None, :],
                mask=mask_m[:, None] & mask_d[None, :], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)

    qk_scale = sm_scale * 1.4426950408889634  # softmax in base 2
    diag = len_k - len_q  # query i sees key j iff j <= i + diag (bottom-right aligned)
    if CAUSAL:
        hi = tl.minimum(len_k, m0 + BLOCK_M + diag)
    else:
        hi = len_k

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for n0 in range(0, hi, BLOCK_N):
        cols = n0 + offs_n
        mask_n = cols < len_k
        k_rows = (k_start + cols).to(tl.int64)
        k = tl.load(K + k_rows[:, None] * stride_kt + kv_head * stride_kh + offs_d[None, :],
                    mask=mask_n[:, None] & mask_d[None, :], other=0.0)
        v = tl.load(V + k_rows[:, None] * stride_vt + kv_head * stride_vh + offs_d[None, :],
                    mask=mask_n[:, None] & mask_d[None, :], other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        valid = mask_n[None, :]
        if CAUSAL:
            valid = valid & (cols[None, :] <= offs_m[:, None] + diag)
        qk = tl.where(valid, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing visible yet: no -inf - -inf
        p = tl.exp2(qk - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new

    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    out = acc / l_safe[:, None]
    lse = tl.where(empty, float("-inf"), (m_i + tl.log2(l_safe)) * 0.6931471805599453)
    tl.store(O + q_rows[:, None] * stride_ot + head * stride_oh + offs_d[None, :], out.to(O.dtype.element_ty),
             mask=mask_m[:, None] & mask_d[None, :])
    tl.store(LSE + head * stride_lh + q_start + offs_m, lse, mask=mask_m)


@triton.jit
def _attn_bwd_preprocess_kernel(
    O, DO, DELTA, total_q,
    stride_ot, stride_oh, stride_dot, stride_doh, stride_dh,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """delta[h, t] = sum_d dO[t, h, d] * O[t, h, d] (fp32)."""
    pid = tl.program_id(0)
    head = tl.program_id(1)
    offs_t = pid * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_d = tl.arange(0, BLOCK_D)
    mask_t = offs_t < total_q
    mask = mask_t[:, None] & (offs_d < HEAD_DIM)[None, :]
    rows = offs_t.to(tl.int64)
    o = tl.load(O + rows[:, None] * stride_ot + head * stride_oh + offs_d[None, :], mask=mask, other=0.0)
    do = tl.load(DO + rows[:, None] * stride_dot + head * stride_doh + offs_d[None, :], mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + head * stride_dh + offs_t, delta, mask=mask_t)


@triton.jit
def _attn_bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV, CU_Q, CU_K,
    sm_scale,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
    stride_dkt, stride_dkh, stride_dvt, stride_dvh, stride_lh,
    kv_group,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    """One program per (key block, sequence, kv head): dK, dV summed over the group's query heads and query blocks."""
    pid_n = tl.program_id(0)
    seq = tl.program_id(1)
    kv_head = tl.program_id(2)
    q_start = tl.load(CU_Q + seq)
    len_q = tl.load(CU_Q + seq + 1) - q_start
    k_start = tl.load(CU_K + seq)
    len_k = tl.load(CU_K + seq + 1) - k_start
    n0 = pid_n * BLOCK_N
    if n0 >= len_k:
        return

    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_n = offs_n < len_k
    mask_d = offs_d < HEAD_DIM
    k_rows = (k_start + offs_n).to(tl.int64)
    k = tl.load(K + k_rows[:, None] * stride_kt + kv_head * stride_kh + offs_d[None, :],
                mask=mask_n[:, None] & mask_d[None, :], other=0.0)
    v = tl.load(V + k_rows[:, None] * stride_vt + kv_head * stride_vh + offs_d[None, :],
                mask=mask_n[:, None] & mask_d[None, :], other=0.0)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)

    qk_scale = sm_scale * 1.4426950408889634
    diag = len_k - len_q
    if CAUSAL:
        # the first query row that sees key n0 is n0 - diag; start at its block
        lo = tl.maximum(n0 - diag, 0)
        lo = (lo // BLOCK_M) * BLOCK_M
    else:
        lo = 0

    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for g in range(0, kv_group):
        head = kv_head * kv_group + g
        for m0 in range(lo, len_q, BLOCK_M):
            rows = m0 + offs_m
            mask_m = rows < len_q
            q_rows = (q_start + rows).to(tl.int64)
            q = tl.load(Q + q_rows[:, None] * stride_qt + head * stride_qh + offs_d[None, :],
                        mask=mask_m[:, None] & mask_d[None, :], other=0.0)
            do = tl.load(DO + q_rows[:, None] * stride_dot + head * stride_doh + offs_d[None, :],
                         mask=mask_m[:, None] & mask_d[None, :], other=0.0)
            if UPCAST:
                q = q.to(tl.float32)
                do = do.to(tl.float32)
            lse = tl.load(LSE + head * stride_lh + q_start + rows, mask=mask_m, other=0.0) * 1.4426950408889634
            delta = tl.load(DELTA + head * stride_lh + q_start + rows, mask=mask_m, other=0.0)
            qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
            valid = mask_m[:, None] & mask_n[None, :]
            if CAUSAL:
                valid = valid & (offs_n[None, :] <= rows[:, None] + diag)
            # a row with no visible key has lse = -inf, but then `valid` is False on the whole row
            p = tl.where(valid, tl.exp2(qk - lse[:, None]), 0.0)
            dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            ds = p * (dp - delta[:, None])
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    dk = dk * sm_scale
    tl.store(DK + k_rows[:, None] * stride_dkt + kv_head * stride_dkh + offs_d[None, :], dk.to(DK.dtype.element_ty),
             mask=mask_n[:, None] & mask_d[None, :])
    tl.store(DV + k_rows[:, None] * stride_dvt + kv_head * stride_dvh + offs_d[None, :], dv.to(DV.dtype.element_ty),
             mask=mask_n[:, None] & mask_d[None, :])


@triton.jit
def _attn_bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ, CU_Q, CU_K,
    sm_scale,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
    stride_dqt, stride_dqh, stride_lh,
    kv_group,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    """One program per (query block, sequence, query head): dQ over the visible key blocks."""
    pid_m = tl.program_id(0)
    seq = tl.program_id(1)
    head = tl.program_id(2)
    q_start = tl.load(CU_Q + seq)
    len_q = tl.load(CU_Q + seq + 1) - q_start
    k_start = tl.load(CU_K + seq)
    len_k = tl.load(CU_K + seq + 1) - k_start
    m0 = pid_m * BLOCK_M
    if m0 >= len_q:
        return
    kv_head = head // kv_group

    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < len_q
    mask_d = offs_d < HEAD_DIM
    q_rows = (q_start + offs_m).to(tl.int64)
    q = tl.load(Q + q_rows[:, None] * stride_qt + head * stride_qh + offs_d[None, :],
                mask=mask_m[:, None] & mask_d[None, :], other=0.0)
    do = tl.load(DO + q_rows[:, None] * stride_dot + head * stride_doh + offs_d[None, :],
                 mask=mask_m[:, None] & mask_d[None, :], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    lse = tl.load(LSE + head * stride_lh + q_start + offs_m, mask=mask_m, other=0.0) * 1.4426950408889634
    delta = tl.load(DELTA + head * stride_lh + q_start + offs_m, mask=mask_m, other=0.0)

    qk_scale = sm_scale * 1.4426950408889634
    diag = len_k - len_q
    if CAUSAL:
        hi = tl.minimum(len_k, m0 + BLOCK_M + diag)
    else:
        hi = len_k
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for n0 in range(0, hi, BLOCK_N):
        cols = n0 + offs_n
        mask_n = cols < len_k
        k_rows = (k_start + cols).to(tl.int64)
        k = tl.load(K + k_rows[:, None] * stride_kt + kv_head * stride_kh + offs_d[None, :],
                    mask=mask_n[:, None] & mask_d[None, :], other=0.0)
        v = tl.load(V + k_rows[:, None] * stride_vt + kv_head * stride_vh + offs_d[None, :],
                    mask=mask_n[:, None] & mask_d[None, :], other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        valid = mask_m[:, None] & mask_n[None, :]
        if CAUSAL:
            valid = valid & (cols[None, :] <= offs_m[:, None] + diag)
        p = tl.where(valid, tl.exp2(qk - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    dq = dq * sm_scale
    tl.store(DQ + q_rows[:, None] * stride_dqt + head * stride_dqh + offs_d[None, :], dq.to(DQ.dtype.element_ty),
             mask=mask_m[:, None] & mask_d[None, :])


# --------------------------------------------------------------------------------------------------------------------
# launch configurations
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LaunchConfig:
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


@dataclass(frozen=True)
class AttentionConfig:
    """Block sizes of the three main kernels (the preprocess kernel always uses BLOCK_T = 64, 4 warps)."""
    fwd: LaunchConfig
    dkdv: LaunchConfig
    dq: LaunchConfig


_PRE = LaunchConfig(64, 0, 4, 1)  # block_m is BLOCK_T of the preprocess kernel


def _block_d(head_dim: int) -> int:
    return max(16, triton.next_power_of_2(head_dim))


# (BLOCK_M, BLOCK_N, num_warps, num_stages) by kernel, dtype class and head-dim block: the largest candidates that
# compile without a register spill and within shared memory on both sm_80 and sm_90 for every head dim of the
# block, causal or not (searched with lmm_kernels.compile_check; fp32 uses exact "ieee" FMA dots: a debug path, small
# tiles).
_TABLE = {
    "16bit": {
        "fwd": {16: (128, 64, 4, 3), 32: (128, 64, 4, 3), 64: (128, 64, 4, 3), 128: (128, 64, 8, 3)},
        "dkdv": {16: (32, 128, 4, 2), 32: (32, 64, 8, 2), 64: (32, 64, 4, 2), 128: (32, 64, 8, 2)},
        "dq": {16: (128, 32, 4, 2), 32: (128, 32, 4, 2), 64: (128, 32, 8, 2), 128: (128, 32, 8, 2)},
    },
    "fp32": {
        "fwd": {16: (64, 32, 8, 2), 32: (32, 32, 8, 2), 64: (64, 32, 8, 2), 128: (16, 16, 4, 1)},
        "dkdv": {16: (16, 32, 8, 1), 32: (32, 32, 8, 1), 64: (32, 32, 8, 1), 128: (16, 16, 8, 1)},
        "dq": {16: (32, 16, 4, 1), 32: (32, 32, 8, 1), 64: (32, 32, 8, 1), 128: (32, 16, 4, 1)},
    },
}


def default_config(head_dim: int, dtype: torch.dtype) -> AttentionConfig:
    """Block sizes for A100 (sm_80) and H100 (sm_90): no register spill, shared memory within both limits."""
    table = _TABLE["fp32" if dtype == torch.float32 else "16bit"]
    bd = _block_d(head_dim)
    return AttentionConfig(*(LaunchConfig(*table[kernel][bd]) for kernel in ("fwd", "dkdv", "dq")))


def _precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"  # 16-bit dots ignore it


# --------------------------------------------------------------------------------------------------------------------
# host side
# --------------------------------------------------------------------------------------------------------------------

def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _check(q, k, v, cu_q, cu_k):
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError("q, k, v must be [total_tokens, heads, head_dim]")
    if k.shape != v.shape or q.shape[2] != k.shape[2]:
        raise ValueError(f"shape mismatch: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"query heads ({q.shape[1]}) must be a multiple of key/value heads ({k.shape[1]})")
    if q.shape[2] not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"head dim {q.shape[2]} not supported (supported: {SUPPORTED_HEAD_DIMS})")
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16) or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v must share one dtype among fp32/fp16/bf16, got {q.dtype}, {k.dtype}, {v.dtype}")
    if cu_q.dtype != torch.int32 or cu_k.dtype != torch.int32 or cu_q.numel() != cu_k.numel():
        raise ValueError("cu_seqlens_q / cu_seqlens_k must be int32 of the same length B+1")
    if q.device.type == "cpu" and not _INTERPRET:
        raise RuntimeError("Triton attention on CPU needs TRITON_INTERPRET=1 set before lmm_kernels.attention_triton is "
                           "imported (use the 'torch_varlen' reference instead)")


def _forward(q, k, v, cu_q, cu_k, max_q, cfg: AttentionConfig, causal: bool, scale: float):
    total_q, hq, d = q.shape
    hkv = k.shape[1]
    batch = cu_q.numel() - 1
    out = torch.zeros_like(q)
    lse = torch.full((hq, total_q), float("-inf"), dtype=torch.float32, device=q.device)
    c = cfg.fwd
    grid = (triton.cdiv(max(max_q, 1), c.block_m), batch, hq)
    if batch > 0 and total_q > 0 and k.shape[0] > 0:  # no key at all: zeros (and no empty-tensor pointer)
        _attn_fwd_kernel[grid](
            q, k, v, out, lse, cu_q, cu_k, scale,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            out.stride(0), out.stride(1), lse.stride(0), hq // hkv,
            HEAD_DIM=d, BLOCK_D=_block_d(d), BLOCK_M=c.block_m, BLOCK_N=c.block_n, CAUSAL=causal,
            UPCAST=_INTERPRET, PRECISION=_precision(q.dtype), num_warps=c.num_warps, num_stages=c.num_stages,
        )
    return out, lse


def _backward(do, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, cfg: AttentionConfig, causal: bool, scale: float):
    total_q, hq, d = q.shape
    total_k, hkv, _ = k.shape
    batch = cu_q.numel() - 1
    bd = _block_d(d)
    interp, prec = _INTERPRET, _precision(q.dtype)
    dq = torch.zeros_like(q)
    dk = torch.zeros_like(k)
    dv = torch.zeros_like(v)
    if batch == 0 or total_q == 0 or total_k == 0:
        return dq, dk, dv
    delta = torch.empty_like(lse)
    _attn_bwd_preprocess_kernel[(triton.cdiv(total_q, _PRE.block_m), hq)](
        out, do, delta, total_q, out.stride(0), out.stride(1), do.stride(0), do.stride(1), delta.stride(0),
        HEAD_DIM=d, BLOCK_D=bd, BLOCK_T=_PRE.block_m, num_warps=_PRE.num_warps, num_stages=_PRE.num_stages,
    )
    c = cfg.dkdv
    _attn_bwd_dkdv_kernel[(triton.cdiv(max(max_k, 1), c.block_n), batch, hkv)](
        q, k, v, do, lse, delta, dk, dv, cu_q, cu_k, scale,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), do.stride(0), do.stride(1),
        dk.stride(0), dk.stride(1), dv.stride(0), dv.stride(1), lse.stride(0), hq // hkv,
        HEAD_DIM=d, BLOCK_D=bd, BLOCK_M=c.block_m, BLOCK_N=c.block_n, CAUSAL=causal, UPCAST=interp, PRECISION=prec,
        num_warps=c.num_warps, num_stages=c.num_stages,
    )
    c = cfg.dq
    _attn_bwd_dq_kernel[(triton.cdiv(max(max_q, 1), c.block_m), batch, hq)](
        q, k, v, do, lse, delta, dq, cu_q, cu_k, scale,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), do.stride(0), do.stride(1),
        dq.stride(0), dq.stride(1), lse.stride(0), hq // hkv,
        HEAD_DIM=d, BLOCK_D=bd, BLOCK_M=c.block_m, BLOCK_N=c.block_n, CAUSAL=causal, UPCAST=interp, PRECISION=prec,
        num_warps=c.num_warps, num_stages=c.num_stages,
    )
    return dq, dk, dv


class VarlenAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cu_q, cu_k, max_q, max_k, causal, scale, cfg):
        q, k, v = (_last_dim_contiguous(x) for x in (q, k, v))
        out, lse = _forward(q, k, v, cu_q, cu_k, max_q, cfg, causal, scale)
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k)
        ctx.args = (max_q, max_k, cfg, causal, scale)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, do, _dlse):
        q, k, v, out, lse, cu_q, cu_k = ctx.saved_tensors
        dq, dk, dv = _backward(_last_dim_contiguous(do), q, k, v, out, lse, cu_q, cu_k, *ctx.args)
        return dq, dk, dv, None, None, None, None, None, None, None


def _as_int(x) -> int:
    return int(x.item()) if isinstance(x, torch.Tensor) else int(x)


def varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal, softmax_scale=None,
                     *, return_lse: bool = False, config: AttentionConfig | None = None):
    """Attention over packed sequences. q [total_q, Hq, D], k/v [total_k, Hkv, D] (Hq a multiple of Hkv),
    cu_seqlens_* int32 [B+1], max_seqlen_* the longest sequence (int or 0-d tensor). Returns out [total_q, Hq, D]
    in q's dtype (and the fp32 logsumexp [Hq, total_q] when `return_lse`). Differentiable in q, k, v.
    `config` overrides the block sizes (tests use small blocks to exercise the loops)."""
    cu_q = cu_seqlens_q.to(device=q.device, dtype=torch.int32).contiguous()
    cu_k = cu_seqlens_k.to(device=q.device, dtype=torch.int32).contiguous()
    _check(q, k, v, cu_q, cu_k)
    scale = float(softmax_scale) if softmax_scale is not None else q.shape[-1] ** -0.5
    cfg = config or default_config(q.shape[-1], q.dtype)
    out, lse = VarlenAttention.apply(q, k, v, cu_q, cu_k, _as_int(max_seqlen_q), _as_int(max_seqlen_k),
                                     bool(causal), scale, cfg)
    return (out, lse) if return_lse else out


# --------------------------------------------------------------------------------------------------------------------
# ahead-of-time compile configurations
# --------------------------------------------------------------------------------------------------------------------

_TRITON_DTYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def _signature(fn, pointers: dict[str, str], constexprs: dict) -> tuple[dict, dict]:
    """Signature for ASTSource: pointers as given, the other runtime args i32 (sm_scale fp32), constexprs marked;
    attrs: 16-divisibility of pointers and of the q/k/v/o strides (multiples of the head dim), as the JIT
    specialises them at launch."""
    sig, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in pointers:
            sig[name] = pointers[name]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name == "sm_scale":
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
            if name.startswith("stride") and name not in ("stride_lh", "stride_dh"):  # those are total_q
                attrs[(i,)] = [["tt.divisibility", 16]]
    return sig, attrs


def kernel_configs() -> list[dict]:
    """Every GPU launch of this module: for each supported head dim, dtype and causal flag, the forward, the
    backward preprocess, dK/dV and dQ kernels with their constexprs (block sizes, head-dim block, causal flag, ...),
    `signature`/`attrs` for `triton.compiler.ASTSource(fn, signature, constexprs, attrs)` and the
    `num_warps`/`num_stages` options for `triton.compile`."""
    configs = []
    for head_dim in SUPPORTED_HEAD_DIMS:
        bd = _block_d(head_dim)
        for dtype, ty in _TRITON_DTYPE.items():
            cfg = default_config(head_dim, dtype)
            prec = _precision(dtype)
            ptr = "*" + ty
            pre_const = dict(HEAD_DIM=head_dim, BLOCK_D=bd, BLOCK_T=_PRE.block_m)
            sig, attrs = _signature(_attn_bwd_preprocess_kernel, {"O": ptr, "DO": ptr, "DELTA": "*fp32"}, pre_const)
            configs.append(dict(name=f"bwd_preprocess_d{head_dim}_{ty}", kernel="bwd_preprocess",
                                fn=_attn_bwd_preprocess_kernel, signature=sig, attrs=attrs, constexprs=pre_const,
                                num_warps=_PRE.num_warps, num_stages=_PRE.num_stages, head_dim=head_dim,
                                dtype=dtype, causal=None))
            for causal in (False, True):
                for kernel, fn, launch, pointers in (
                    ("fwd", _attn_fwd_kernel, cfg.fwd,
                     dict(Q=ptr, K=ptr, V=ptr, O=ptr, LSE="*fp32", CU_Q="*i32", CU_K="*i32")),
                    ("bwd_dkdv", _attn_bwd_dkdv_kernel, cfg.dkdv,
                     dict(Q=ptr, K=ptr, V=ptr, DO=ptr, LSE="*fp32", DELTA="*fp32", DK=ptr, DV=ptr, CU_Q="*i32",
                          CU_K="*i32")),
                    ("bwd_dq", _attn_bwd_dq_kernel, cfg.dq,
                     dict(Q=ptr, K=ptr, V=ptr, DO=ptr, LSE="*fp32", DELTA="*fp32", DQ=ptr, CU_Q="*i32",
                          CU_K="*i32")),
                ):
                    const = dict(HEAD_DIM=head_dim, BLOCK_D=bd, BLOCK_M=launch.block_m, BLOCK_N=launch.block_n,
                                 CAUSAL=causal, UPCAST=False, PRECISION=prec)
                    sig, attrs = _signature(fn, pointers, const)
                    configs.append(dict(
                        name=f"{kernel}_d{head_dim}_{ty}_{'causal' if causal else 'full'}", kernel=kernel, fn=fn,
                        signature=sig, attrs=attrs, constexprs=const, num_warps=launch.num_warps,
                        num_stages=launch.num_stages, head_dim=head_dim, dtype=dtype, causal=causal))
    return configs
