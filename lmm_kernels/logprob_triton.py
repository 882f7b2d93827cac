"""Fused linear log-prob / entropy (Triton): log_softmax(hidden @ weight.T / temperature)[target] without [T, V] logits.

Same contract as the torch reference `lmm_kernels.logprob.logprobs_from_hidden` (which stays the CPU path):

    triton_logprobs_from_hidden(hidden [..., H], weight [V, H], targets [...], temperature=1.0,
                                with_entropy=False, chunk_size=1024) -> (logp [...] fp32, entropy [...] fp32 | None)

Forward (`_fused_lse_fwd_kernel`): one program owns BLOCK_T tokens and a contiguous range of vocab tiles
("split"; one split = the whole vocab). Per vocab tile it computes logits_tile = h_block @ W_tile^T with tl.dot
(fp32 accumulation, H consumed BLOCK_H at a time), divides by the temperature, and folds the tile into an online
logsumexp (running max m, running sum s = sum exp(x - m)) and, for the entropy, the running r = sum exp(x - m) * (x - m)
(rescaled like s when m grows: r <- alpha * (r + (m_old - m_new) * s_old), alpha = exp(m_old - m_new)); it also
picks up the target's logit. Per token and split it stores lse_i = m + log s, the split-local entropy
ent_i = log s - r / s (= lse_i - E_p[x], with no cancellation between two large numbers) and the target logit
(0 in the splits that do not own it). Splitting the vocab gives the GPU enough programs when T is small; the [S, T]
partials are merged in torch: lse = logsumexp_i lse_i, w_i = exp(lse_i - lse),
entropy = sum_i w_i (ent_i + lse - lse_i), logp = target_logit - lse. Only O(S * T) floats are written; lse is
saved for backward.

Backward (chosen design, as in Liger-Kernel's fused linear cross entropy): entropy is a metric (no gradient), so
d logp / d logit_j = (1[j == target] - softmax_j) / temperature. For each chunk of `chunk_size` tokens,
`_fused_dlogits_kernel` recomputes the logits tile by tile (grid = token blocks x vocab tiles, fully parallel) and
writes dlogits = grad_logp * (onehot - exp(x - lse)) / temperature into ONE reused [chunk, V] buffer (input dtype;
fp32 for fp32 inputs); then two torch matmuls: grad_hidden[chunk] = dlogits @ W and grad_W += dlogits^T @ h[chunk].
Peak extra memory is chunk x V (+ grad_W itself, accumulated in fp32 for 16-bit inputs), never T x V. Compute:
forward 1 GEMM, backward 3 GEMMs (recompute + 2), vs. 1 + 2 for the plain path.

Dtypes: fp32 / fp16 / bf16 hidden & weight (same dtype), fp32 accumulation everywhere, fp32 outputs, gradients in
the input dtypes. On a GPU 16-bit tiles go to tl.dot as they are (tensor cores); fp32 uses IEEE fp32 unless
torch.backends.cuda.matmul.allow_tf32 is set (then TF32, like torch's matmul). Under TRITON_INTERPRET=1 (CPU, tests)
every load is cast to fp32 right away since the interpreter has no bf16 arithmetic.

The chunked backward loop and the autograd Function are shared with the torch path (lmm_kernels/logprob.py,
`linear_logprobs`); this module supplies the two kernels.

The gradient in the forward (`triton_logprob_loss_from_hidden`, orchestration in lmm_kernels/logprob.py,
`linear_logprob_loss`): for a loss of per-token terms, each chunk's forward launch also stores its fp32 logits
(STORE_LOGITS), the chunk's d loss / d logp comes from autograd on its logp, and `_dlogits_from_logits_kernel`
rewrites the logits into dlogits (elementwise: in place for fp32, into a buffer of the input dtype for 16-bit); two
torch matmuls give grad_hidden and grad_W's share before the next chunk. No recompute: 3 GEMMs in all.

Dispatch: CUDA tensors -> Triton; CPU tensors with TRITON_INTERPRET=1 set before triton was imported -> Triton in
the interpreter (slow; tests only); otherwise the torch reference. Targets must lie in [0, V) (no ignore index; the
reference would raise on others, this kernel gives logp = -lse for them).

`kernel_configs()` lists every (kernel, constexpr set, pointer dtypes) this module can launch, with a
triton.compiler.ASTSource-ready signature, for ahead-of-time compile checks (sm_80 / sm_90).
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from lmm_kernels.interpret import interpreting
from lmm_kernels.logprob import linear_logprob_loss, linear_logprobs, logprob_loss_from_hidden, scratch
from lmm_kernels.logprob import logprobs_from_hidden as _torch_logprobs_from_hidden

__all__ = ["triton_logprobs_from_hidden", "triton_logprob_loss_from_hidden", "kernel_configs"]

_NEG_BIG = tl.constexpr(-1.0e30)  # finite "-inf": keeps (m_old - m_new) * s_old and alpha NaN-free


_INTERPRET = interpreting()  # triton decides when the kernels below are defined, i.e. now


# ---------------------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------------------


@triton.jit
def _logits_tile(h_ptr, w_ptr, rows, cols, row_mask, col_mask, H, stride_ht, stride_wv,
                 BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr,
                 CAST_F32: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """[BLOCK_T, BLOCK_V] fp32 tile of h @ W^T (rows x cols), H consumed BLOCK_H at a time."""
    acc = tl.zeros([BLOCK_T, BLOCK_V], dtype=tl.float32)
    offs_k = tl.arange(0, BLOCK_H)
    for k0 in range(0, H, BLOCK_H):
        ks = k0 + offs_k
        k_mask = ks < H
        h = tl.load(h_ptr + rows[:, None] * stride_ht + ks[None, :], mask=row_mask[:, None] & k_mask[None, :],
                    other=0.0)
        w = tl.load(w_ptr + cols[:, None] * stride_wv + ks[None, :], mask=col_mask[:, None] & k_mask[None, :],
                    other=0.0)
        if CAST_F32:
            h = h.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(h, tl.trans(w), acc, input_precision=DOT_PRECISION)
    return acc


@triton.jit
def _fused_lse_fwd_kernel(h_ptr, w_ptr, tgt_ptr, lse_ptr, ent_ptr, tlogit_ptr, x_ptr,
                          T, V, H, stride_ht, stride_wv, stride_xt, tiles_per_split, temperature,
                          BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr,
                          WITH_ENTROPY: tl.constexpr, STORE_LOGITS: tl.constexpr, CAST_F32: tl.constexpr,
                          DOT_PRECISION: tl.constexpr):
    """Per (token block, vocab split): split-local lse, entropy and target logit -> [S, T] partial buffers; with
    STORE_LOGITS also the logits / temperature -> x [T, V] fp32 (the in-forward gradient path reads them back)."""
    pid_t = tl.program_id(0)
    pid_s = tl.program_id(1)
    rows = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    row_mask = rows < T
    tgt = tl.load(tgt_ptr + rows, mask=row_mask, other=-1)

    m = tl.full([BLOCK_T], _NEG_BIG, dtype=tl.float32)
    s = tl.zeros([BLOCK_T], dtype=tl.float32)
    r = tl.zeros([BLOCK_T], dtype=tl.float32)
    t_logit = tl.zeros([BLOCK_T], dtype=tl.float32)

    n_tiles = tl.cdiv(V, BLOCK_V)
    tile_lo = pid_s * tiles_per_split
    tile_hi = tl.minimum(tile_lo + tiles_per_split, n_tiles)
    offs_v = tl.arange(0, BLOCK_V)
    for vt in range(tile_lo, tile_hi):
        cols = vt * BLOCK_V + offs_v
        col_mask = cols < V
        x = _logits_tile(h_ptr, w_ptr, rows, cols, row_mask, col_mask, H, stride_ht, stride_wv,
                         BLOCK_T, BLOCK_V, BLOCK_H, CAST_F32, DOT_PRECISION)
        x = x / temperature
        if STORE_LOGITS:
            tl.store(x_ptr + rows[:, None] * stride_xt + cols[None, :], x,
                     mask=row_mask[:, None] & col_mask[None, :])
        x = tl.where(col_mask[None, :], x, _NEG_BIG)
        m_new = tl.maximum(m, tl.max(x, axis=1))
        alpha = tl.exp(m - m_new)
        xc = x - m_new[:, None]
        p = tl.where(col_mask[None, :], tl.exp(xc), 0.0)
        if WITH_ENTROPY:
            r = alpha * (r + (m - m_new) * s) + tl.sum(tl.where(col_mask[None, :], p * xc, 0.0), axis=1)
        s = s * alpha + tl.sum(p, axis=1)
        m = m_new
        hit = (cols[None, :] == tgt[:, None]) & col_mask[None, :]
        t_logit += tl.sum(tl.where(hit, x, 0.0), axis=1)

    log_s = tl.log(s)
    out = pid_s * T + rows
    tl.store(lse_ptr + out, m + log_s, mask=row_mask)
    tl.store(tlogit_ptr + out, t_logit, mask=row_mask)
    if WITH_ENTROPY:
        tl.store(ent_ptr + out, log_s - r / s, mask=row_mask)


@triton.jit
def _fused_dlogits_kernel(h_ptr, w_ptr, tgt_ptr, lse_ptr, g_ptr, dl_ptr,
                          T, V, H, stride_ht, stride_wv, stride_dt, temperature,
                          BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr,
                          CAST_F32: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """dlogits[t, j] = g[t] * (1[j == target[t]] - exp(x[t, j] - lse[t])) / temperature for one [BLOCK_T, BLOCK_V]."""
    pid_t = tl.program_id(0)
    pid_v = tl.program_id(1)
    rows = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = pid_v * BLOCK_V + tl.arange(0, BLOCK_V)
    row_mask = rows < T
    col_mask = cols < V
    tgt = tl.load(tgt_ptr + rows, mask=row_mask, other=-1)
    lse = tl.load(lse_ptr + rows, mask=row_mask, other=0.0)
    g = tl.load(g_ptr + rows, mask=row_mask, other=0.0).to(tl.float32)
    x = _logits_tile(h_ptr, w_ptr, rows, cols, row_mask, col_mask, H, stride_ht, stride_wv,
                     BLOCK_T, BLOCK_V, BLOCK_H, CAST_F32, DOT_PRECISION)
    x = x / temperature
    p = tl.exp(x - lse[:, None])
    onehot = tl.where(cols[None, :] == tgt[:, None], 1.0, 0.0)
    d = (g / temperature)[:, None] * (onehot - p)
    mask = row_mask[:, None] & col_mask[None, :]
    tl.store(dl_ptr + rows[:, None] * stride_dt + cols[None, :], d.to(dl_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _dlogits_from_logits_kernel(x_ptr, tgt_ptr, lse_ptr, g_ptr, dl_ptr, T, V, stride_xt, stride_dt,
                                temperature, BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr):
    """dl[t, j] = g[t] * (1[j == target[t]] - exp(x[t, j] - lse[t])) / temperature from stored logits x (fp32);
    elementwise, so dl may be x itself (fp32 inputs: in place)."""
    pid_t = tl.program_id(0)
    pid_v = tl.program_id(1)
    rows = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = pid_v * BLOCK_V + tl.arange(0, BLOCK_V)
    row_mask = rows < T
    mask = row_mask[:, None] & (cols < V)[None, :]
    tgt = tl.load(tgt_ptr + rows, mask=row_mask, other=-1)
    lse = tl.load(lse_ptr + rows, mask=row_mask, other=0.0)
    g = tl.load(g_ptr + rows, mask=row_mask, other=0.0) / temperature
    x = tl.load(x_ptr + rows[:, None] * stride_xt + cols[None, :], mask=mask, other=0.0)
    onehot = tl.where(cols[None, :] == tgt[:, None], 1.0, 0.0)
    d = g[:, None] * (onehot - tl.exp(x - lse[:, None]))
    tl.store(dl_ptr + rows[:, None] * stride_dt + cols[None, :], d.to(dl_ptr.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------------------------------------------
# Launch configurations
# ---------------------------------------------------------------------------------------------------------------

# GPU tiles. Shared memory per program <= num_stages * (BLOCK_T + BLOCK_V) * BLOCK_H * itemsize = 72 KiB for both
# (16-bit: 3 * 192 * 64 * 2; fp32: 3 * 192 * 32 * 4); sm_80 allows 163 KiB, sm_90 227 KiB. Compiled with triton 3.7.1
# (ptxas -v): 48 KiB on sm_80, 48-72 KiB on sm_90, 64-200 registers per thread, no spills (see kernel_configs()).
_GPU_CONFIGS = {
    torch.float32: dict(BLOCK_T=64, BLOCK_V=128, BLOCK_H=32, num_warps=8, num_stages=3),
    torch.float16: dict(BLOCK_T=64, BLOCK_V=128, BLOCK_H=64, num_warps=8, num_stages=3),
    torch.bfloat16: dict(BLOCK_T=64, BLOCK_V=128, BLOCK_H=64, num_warps=8, num_stages=3),
}
# Interpreter (CPU tests): small tiles so that tiny shapes still cover several token blocks, vocab tiles and H steps.
_INTERP_CONFIG = dict(BLOCK_T=16, BLOCK_V=32, BLOCK_H=16, num_warps=4, num_stages=1)
# The elementwise dlogits-from-logits kernel (memory-bound: 8 KiB of fp32 logits per program, 16 per thread).
_ELEMENTWISE_GPU = dict(BLOCK_T=16, BLOCK_V=128, num_warps=4, num_stages=1)
_ELEMENTWISE_INTERP = dict(BLOCK_T=16, BLOCK_V=32, num_warps=4, num_stages=1)
# Target number of forward programs before the vocab is split (~4 waves on a 132-SM H100).
_TARGET_PROGRAMS = 512

_TORCH_TO_TL = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def _config(dtype: torch.dtype) -> dict:
    return dict(_INTERP_CONFIG) if _INTERPRET else dict(_GPU_CONFIGS[dtype])


def _dot_precision(dtype: torch.dtype) -> str:
    if _INTERPRET or dtype != torch.float32:
        return "ieee"  # 16-bit: tensor-core MMA with fp32 accumulation (precision flag only affects fp32 inputs)
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"


def _num_splits(n_tblocks: int, n_vtiles: int, override: Optional[int] = None) -> tuple[int, int]:
    """(splits, tiles_per_split) with every split non-empty."""
    want = override if override is not None else max(1, _TARGET_PROGRAMS // max(n_tblocks, 1))
    want = max(1, min(want, n_vtiles))
    per = triton.cdiv(n_vtiles, want)
    return triton.cdiv(n_vtiles, per), per


# Test hook: force a number of vocab splits (None = automatic).
_FORCE_SPLITS: Optional[int] = None


def kernel_configs() -> list[dict]:
    """Every configuration this module can launch, for ahead-of-time compilation.

    Each entry: name, fn (the @triton.jit kernel), signature ({arg: triton type | "constexpr"}, in argument
    order), constexprs ({arg: value}), attrs (ASTSource attrs: the 16-divisibility the JIT specialises on for
    Qwen2.5-VL shapes, H = 2048, V = 151,936, and torch's aligned allocations), num_warps, num_stages. Compile with
        triton.compile(ASTSource(e["fn"], e["signature"], e["constexprs"], e["attrs"]),
                       target=GPUTarget("cuda", 80, 32),
                       options={"num_warps": e["num_warps"], "num_stages": e["num_stages"]})
    in a process WITHOUT TRITON_INTERPRET (under the interpreter fn is not a JITFunction). Without attrs it also
    compiles, but without vectorised loads (more registers) - not what a real launch gets.
    """
    out = []
    cases = []  # (block config, dtype name, CAST_F32, DOT_PRECISION, tag)
    for dtype, cfg in _GPU_CONFIGS.items():
        precs = ["ieee", "tf32"] if dtype == torch.float32 else ["ieee"]
        for prec in precs:
            cases.append((cfg, _TORCH_TO_TL[dtype], False, prec, "gpu"))
    for dtype in _GPU_CONFIGS:
        cases.append((_INTERP_CONFIG, _TORCH_TO_TL[dtype], True, "ieee", "interpret"))
    for cfg, dt, cast, prec, tag in cases:
        blocks = {k: cfg[k] for k in ("BLOCK_T", "BLOCK_V", "BLOCK_H")}
        for with_ent in (False, True):
            for store in (False, True):
                sig = {"h_ptr": f"*{dt}", "w_ptr": f"*{dt}", "tgt_ptr": "*i64", "lse_ptr": "*fp32",
                       "ent_ptr": "*fp32", "tlogit_ptr": "*fp32", "x_ptr": "*fp32", "T": "i32", "V": "i32",
                       "H": "i32", "stride_ht": "i32", "stride_wv": "i32", "stride_xt": "i32",
                       "tiles_per_split": "i32", "temperature": "fp32"}
                const = dict(blocks, WITH_ENTROPY=with_ent, STORE_LOGITS=store, CAST_F32=cast, DOT_PRECISION=prec)
                sig.update({k: "constexpr" for k in const})
                out.append(dict(name=f"fwd[{tag},{dt},{prec},ent={int(with_ent)},store={int(store)}]",
                                kernel="fwd", fn=_fused_lse_fwd_kernel, signature=sig, constexprs=const,
                                num_warps=cfg["num_warps"], num_stages=cfg["num_stages"], dtype=dt, mode=tag))
        sig = {"h_ptr": f"*{dt}", "w_ptr": f"*{dt}", "tgt_ptr": "*i64", "lse_ptr": "*fp32", "g_ptr": "*fp32",
               "dl_ptr": f"*{dt}", "T": "i32", "V": "i32", "H": "i32", "stride_ht": "i32", "stride_wv": "i32",
               "stride_dt": "i32", "temperature": "fp32"}
        const = dict(blocks, CAST_F32=cast, DOT_PRECISION=prec)
        sig.update({k: "constexpr" for k in const})
        out.append(dict(name=f"dlogits[{tag},{dt},{prec}]", kernel="dlogits", fn=_fused_dlogits_kernel,
                        signature=sig, constexprs=const, num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
                        dtype=dt, mode=tag))
    for tag, cfg in (("gpu", _ELEMENTWISE_GPU), ("interpret", _ELEMENTWISE_INTERP)):
        for dt in _TORCH_TO_TL.values():  # dl in the input dtype (fp32: in place over the logits)
            sig = {"x_ptr": "*fp32", "tgt_ptr": "*i64", "lse_ptr": "*fp32", "g_ptr": "*fp32", "dl_ptr": f"*{dt}",
                   "T": "i32", "V": "i32", "stride_xt": "i32", "stride_dt": "i32", "temperature": "fp32",
                   "BLOCK_T": "constexpr", "BLOCK_V": "constexpr"}
            out.append(dict(name=f"dlogits_from_logits[{tag},{dt}]", kernel="dlogits_from_logits",
                            fn=_dlogits_from_logits_kernel, signature=sig,
                            constexprs={"BLOCK_T": cfg["BLOCK_T"], "BLOCK_V": cfg["BLOCK_V"]},
                            num_warps=cfg["num_warps"], num_stages=cfg["num_stages"], dtype=dt, mode=tag))
    for e in out:
        e["attrs"] = _divisibility_attrs(e["signature"], _DIVISIBLE_ARGS)
    return out


# Arguments a real launch has divisible by 16 (pointers from torch's allocator, H = 2048, V = 151,936, row strides).
_DIVISIBLE_ARGS = ("h_ptr", "w_ptr", "tgt_ptr", "lse_ptr", "ent_ptr", "tlogit_ptr", "x_ptr", "g_ptr", "dl_ptr", "V",
                   "H", "stride_ht", "stride_wv", "stride_xt", "stride_dt")


def _divisibility_attrs(signature: dict, names) -> dict:
    args = list(signature)
    return {(args.index(n),): [["tt.divisibility", 16]] for n in names if n in args}


# ---------------------------------------------------------------------------------------------------------------
# Launchers
# ---------------------------------------------------------------------------------------------------------------


def _check_i32(*sizes: int) -> None:
    # Offsets are computed in int32 inside the kernels.
    if max(sizes) >= 2 ** 31:
        raise ValueError("tensor too large for int32 offsets")


def _forward(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor, temperature: float, with_entropy: bool,
             chunk_size: int = 1024, logits: Optional[torch.Tensor] = None):
    """h [T, H] (row-contiguous), w [V, H] (row-contiguous), t [T] int64 -> (logp, entropy|None, lse) fp32 [T].
    The whole of T in one launch (the vocab split gives enough programs when T is small); chunk_size is unused.
    `logits` (fp32 [T, V], row-contiguous), if given, receives the logits / temperature."""
    T, H = h.shape
    V = w.shape[0]
    cfg = _config(h.dtype)
    n_tb, n_vt = triton.cdiv(T, cfg["BLOCK_T"]), triton.cdiv(V, cfg["BLOCK_V"])
    S, per = _num_splits(n_tb, n_vt, _FORCE_SPLITS)
    _check_i32(T * H, V * H, S * T, T * V if logits is not None else 0)
    lse_p = torch.empty((S, T), dtype=torch.float32, device=h.device)
    tl_p = torch.empty((S, T), dtype=torch.float32, device=h.device)
    ent_p = torch.empty((S, T), dtype=torch.float32, device=h.device) if with_entropy else lse_p
    store = logits is not None
    _fused_lse_fwd_kernel[(n_tb, S)](
        h, w, t, lse_p, ent_p, tl_p, logits if store else lse_p, T, V, H, h.stride(0), w.stride(0),
        logits.stride(0) if store else 0, per, float(temperature),
        BLOCK_T=cfg["BLOCK_T"], BLOCK_V=cfg["BLOCK_V"], BLOCK_H=cfg["BLOCK_H"], WITH_ENTROPY=with_entropy,
        STORE_LOGITS=store, CAST_F32=_INTERPRET, DOT_PRECISION=_dot_precision(h.dtype), num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"])
    if S == 1:
        lse, t_logit = lse_p[0], tl_p[0]
        entropy = ent_p[0] if with_entropy else None
    else:
        lse = torch.logsumexp(lse_p, dim=0)
        t_logit = tl_p.sum(0)
        entropy = None
        if with_entropy:
            wgt = torch.exp(lse_p - lse)
            entropy = (wgt * (ent_p + (lse - lse_p))).sum(0)
    return t_logit - lse, entropy, lse


def _dlogits(h, w, t, lse, g, dl, temperature: float):
    """Fill dl [c, V] with g * (onehot(t) - softmax(h @ w.T / temperature)) / temperature."""
    c, H = h.shape
    V = w.shape[0]
    cfg = _config(h.dtype)
    grid = (triton.cdiv(c, cfg["BLOCK_T"]), triton.cdiv(V, cfg["BLOCK_V"]))
    _fused_dlogits_kernel[grid](
        h, w, t, lse, g, dl, c, V, H, h.stride(0), w.stride(0), dl.stride(0), float(temperature),
        BLOCK_T=cfg["BLOCK_T"], BLOCK_V=cfg["BLOCK_V"], BLOCK_H=cfg["BLOCK_H"], CAST_F32=_INTERPRET,
        DOT_PRECISION=_dot_precision(h.dtype), num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])


def _loss_chunk(h, w, t, temperature: float, with_entropy: bool, grad_of, bufs: dict):
    """One chunk of the in-forward gradient path (lmm_kernels.logprob.linear_logprob_loss): the forward kernel
    also stores the chunk's fp32 logits; g = grad_of(logp); the elementwise kernel turns the logits into
    dlogits = g * (onehot - softmax) / temperature (in place for fp32, else into a buffer of the input dtype)."""
    c, V = h.shape[0], w.shape[0]
    logits = scratch(bufs, "logits", c, V, torch.float32, h.device) if grad_of is not None else None
    logp, entropy, lse = _forward(h, w, t, temperature, with_entropy, logits=logits)
    if grad_of is None:
        return logp, entropy, None
    g = grad_of(logp).float().contiguous()
    dl = logits if h.dtype == torch.float32 else scratch(bufs, "dl", c, V, h.dtype, h.device)
    cfg = _ELEMENTWISE_INTERP if _INTERPRET else _ELEMENTWISE_GPU
    _check_i32(c * V)
    _dlogits_from_logits_kernel[(triton.cdiv(c, cfg["BLOCK_T"]), triton.cdiv(V, cfg["BLOCK_V"]))](
        logits, t, lse, g, dl, c, V, logits.stride(0), dl.stride(0), float(temperature), BLOCK_T=cfg["BLOCK_T"],
        BLOCK_V=cfg["BLOCK_V"], num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    return logp, entropy, dl


def _use_triton(*tensors: torch.Tensor) -> bool:
    if all(x.is_cuda for x in tensors):
        return not _INTERPRET
    return _INTERPRET and all(x.device.type == "cpu" for x in tensors)


def triton_logprobs_from_hidden(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                temperature: float = 1.0, with_entropy: bool = False, chunk_size: int = 1024):
    """hidden [..., H], weight [V, H], targets [...] -> (log-prob [...], entropy [...] or None), fp32.

    Same signature and results as lmm_kernels.logprob.logprobs_from_hidden (entropy returned detached); chunk_size bounds
    the backward's dlogits buffer to chunk_size x V. Falls back to that torch reference where Triton cannot run
    (CPU tensors without TRITON_INTERPRET=1)."""
    if not _use_triton(hidden, weight, targets):
        return _torch_logprobs_from_hidden(hidden, weight, targets, temperature=temperature,
                                           with_entropy=with_entropy, chunk_size=chunk_size)
    if hidden.dtype not in _GPU_CONFIGS:
        raise TypeError(f"the Triton log-prob kernel takes fp32/fp16/bf16, got {hidden.dtype}")
    return linear_logprobs(hidden, weight, targets, temperature, with_entropy, chunk_size, _forward, _dlogits)


def triton_logprob_loss_from_hidden(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, token_loss,
                                    temperature: float = 1.0, with_entropy: bool = False, chunk_size: int = 1024):
    """The loss's gradients in the forward: same signature and results as
    lmm_kernels.logprob.logprob_loss_from_hidden -> (loss [], logp [...] detached, entropy [...] | None), fp32.
    chunk_size bounds the stored logits to chunk_size x V fp32 (+ chunk_size x V in the input dtype for 16-bit).
    Falls back to that torch reference where Triton cannot run."""
    if not _use_triton(hidden, weight, targets):
        return logprob_loss_from_hidden(hidden, weight, targets, token_loss, temperature=temperature,
                                        with_entropy=with_entropy, chunk_size=chunk_size)
    if hidden.dtype not in _GPU_CONFIGS:
        raise TypeError(f"the Triton log-prob kernel takes fp32/fp16/bf16, got {hidden.dtype}")
    return linear_logprob_loss(hidden, weight, targets, token_loss, temperature, with_entropy, chunk_size,
                               _loss_chunk)
