"""Time and peak GPU memory of each Triton kernel against its PyTorch reference, at the paper's shapes (CUDA only):

    python bench/kernels_gpu.py [--quick] [--repeats 3] [--json]

* attention: the packed varlen attention (bf16, GQA 16/2 heads, head dim 128, sequences of 4096, 1800, 700, 300, 97,
  33 and 1 tokens) against lmm_kernels/attention.py (sdpa per sequence), forward + backward;
* logprob: the fused log-prob + entropy (T 4096, H 2048, V 151,936, bf16) against lmm_kernels/logprob.py (chunk 1024),
  forward + backward;
* logprob_vs_plain, logprob_in_forward_vs_plain: the same shapes, the Triton recompute path and the Triton
  gradient-in-the-forward path (loss = sum of log-probs, chunk 1024) each against the plain full-logits autograd path
  (logprobs_plain), the issue-26 target (<= 1.05x time at <= 15 % memory);
* policy_loss: the fused PPO + k3 KL loss (256 x 4096) against lmm_kernels/policy_loss.py, forward + backward.

One line per kernel: the best time over --repeats (the first call compiles), the peak memory above what was allocated
before the call (max over the repeats), each as kernel / reference, and the max abs difference of the outputs.
--quick takes smaller shapes. The values and gradients are checked by tests/test_gpu.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GiB = 1024 ** 3


def timed(fn, repeats: int) -> tuple[float, int, object]:
    """(best seconds, peak bytes above the start, last result) of fn() on the GPU."""
    best, peak, out = float("inf"), 0, None
    for _ in range(repeats):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
        peak = max(peak, torch.cuda.max_memory_allocated() - base)
    return best, peak, out


def attention(quick: bool):
    from lmm_kernels.attention import varlen_attention_torch
    from lmm_kernels.attention_triton import varlen_attention

    lens = [4096, 1800, 700, 300, 97, 33, 1] if not quick else [1024, 300, 33, 1]
    hq, hkv, d, dtype = 16, 2, 128, torch.bfloat16
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(sum(lens), hq, d, device="cuda", generator=g).to(dtype)
    k = torch.randn(sum(lens), hkv, d, device="cuda", generator=g).to(dtype)
    v = torch.randn(sum(lens), hkv, d, device="cuda", generator=g).to(dtype)
    do = torch.randn_like(q)
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device="cuda")

    def run(fn):
        def step():
            x = [t.detach().requires_grad_() for t in (q, k, v)]
            out = fn(*x, cu, cu, max(lens), max(lens), True)
            out.backward(do)
            return out.detach()
        return step

    return f"{len(lens)} sequences, {sum(lens)} tokens", run(varlen_attention), run(varlen_attention_torch)


def _logprob_inputs(quick: bool):
    T, H, V = (4096, 2048, 151_936) if not quick else (1024, 2048, 151_936)
    g = torch.Generator(device="cuda").manual_seed(0)
    h = (torch.randn(T, H, device="cuda", generator=g) * 0.5).to(torch.bfloat16)
    w = (torch.randn(V, H, device="cuda", generator=g) * 0.02).to(torch.bfloat16)
    return f"T {T}, H {H}, V {V}", h, w, torch.randint(0, V, (T,), device="cuda", generator=g)


def _logprob_step(fn, h, w, tgt, **kw):
    def step():
        hh, ww = h.detach().requires_grad_(), w.detach().requires_grad_()
        logp, _ = fn(hh, ww, tgt, 1.0, True, **kw)
        logp.sum().backward()
        return logp.detach()
    return step


def logprob(quick: bool):
    from lmm_kernels.logprob import logprobs_from_hidden
    from lmm_kernels.logprob_triton import triton_logprobs_from_hidden

    shape, h, w, tgt = _logprob_inputs(quick)
    return (shape, _logprob_step(triton_logprobs_from_hidden, h, w, tgt),
            _logprob_step(logprobs_from_hidden, h, w, tgt, chunk_size=1024))


def logprob_vs_plain(quick: bool):
    from lmm_kernels.logprob import logprobs_plain
    from lmm_kernels.logprob_triton import triton_logprobs_from_hidden

    shape, h, w, tgt = _logprob_inputs(quick)
    return shape, _logprob_step(triton_logprobs_from_hidden, h, w, tgt), _logprob_step(logprobs_plain, h, w, tgt)


def logprob_in_forward_vs_plain(quick: bool):
    from lmm_kernels.logprob import logprobs_plain
    from lmm_kernels.logprob_triton import triton_logprob_loss_from_hidden

    shape, h, w, tgt = _logprob_inputs(quick)

    def fused():
        hh, ww = h.detach().requires_grad_(), w.detach().requires_grad_()
        loss, logp, _ = triton_logprob_loss_from_hidden(hh, ww, tgt, lambda lp, rows: lp, 1.0, True, 1024)
        loss.backward()
        return logp

    return shape, fused, _logprob_step(logprobs_plain, h, w, tgt)


def policy_loss(quick: bool):
    from lmm_kernels.policy_loss import policy_loss_tokens
    from lmm_kernels.policy_loss_triton import policy_loss_tokens_triton

    n, t = (256, 4096) if not quick else (64, 1024)
    g = torch.Generator(device="cuda").manual_seed(0)
    old = -torch.rand(n, t, device="cuda", generator=g) * 3
    logp0 = old + 0.1 * torch.randn(n, t, device="cuda", generator=g)
    ref = old + 0.1 * torch.randn(n, t, device="cuda", generator=g)
    adv = torch.randn(n, t, device="cuda", generator=g)
    mask = torch.arange(t, device="cuda")[None] < torch.randint(1, t + 1, (n, 1), device="cuda", generator=g)

    def run(fn):
        def step():
            logp = logp0.detach().requires_grad_()
            loss = fn(logp, old, adv, mask, ref, 0.2, 0.001, "k3")
            loss.sum().backward()
            return loss.detach()
        return step

    return f"{n} x {t}", run(policy_loss_tokens_triton), run(policy_loss_tokens)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller shapes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON object per kernel")
    args = parser.parse_args(argv)
    from lmm_kernels.interpret import interpreting
    if not torch.cuda.is_available() or interpreting():
        print("needs a CUDA device and the real Triton compiler (TRITON_INTERPRET unset or 0)")
        return 1
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    for name, build in (("attention", attention), ("logprob", logprob), ("logprob_vs_plain", logprob_vs_plain),
                        ("logprob_in_forward_vs_plain", logprob_in_forward_vs_plain), ("policy_loss", policy_loss)):
        shape, ours, reference = build(args.quick)
        t_k, m_k, a = timed(ours, args.repeats)
        t_r, m_r, b = timed(reference, args.repeats)
        row = dict(kernel=name, shape=shape, time_s=t_k, ref_time_s=t_r, time_ratio=t_k / t_r, peak_bytes=m_k,
                   ref_peak_bytes=m_r, memory_ratio=m_k / max(m_r, 1),
                   max_abs_diff=float((a.float() - b.float()).abs().max()))
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{name:28s} {shape:24s} time {t_k * 1e3:8.2f} / {t_r * 1e3:8.2f} ms = {row['time_ratio']:5.2f}x   "
                  f"peak {m_k / GiB:6.2f} / {m_r / GiB:6.2f} GiB = {row['memory_ratio']:5.2f}x   "
                  f"max diff {row['max_abs_diff']:.2e}", flush=True)
        del ours, reference, a, b
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
