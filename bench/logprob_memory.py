"""Peak memory and time of log-prob + entropy + backward: plain full-logits path vs. our chunked paths.

    python bench/logprob_memory.py                       # T = 4096, H = 2048, V = 151,936, fp32, CPU, chunk 128
    python bench/logprob_memory.py --sizes 4096,8192,16384 --chunk-size 256 --dtype bf16 --paths ours,fused
    OMP_NUM_THREADS=1 python bench/logprob_memory.py --sizes 1024   # one thread (the default follows the variable)

Cases (each T, each path) run in a FRESH subprocess (`--worker`), so one case's freed-but-cached pages, allocator
state or peak cannot leak into another's numbers:

* plain: logits = h @ W.T (full [T, V]), log_softmax, gather of the target, entropy (no grad, a metric) from the same
  log-probs, backward. Memory grows with T x V: measured 9.3 GiB at T = 4096 (~3.5 fp32 [T, V] buffers + grad_W);
  the skip test below uses the conservative 5 x T x V x 4 bytes (11.6 GiB at T = 4096).
* ours: `lmm_kernels.logprob.logprobs_from_hidden`, the torch implementation of the kernel path's algorithm (it stands for the
  Triton kernel on this CPU-only machine; both share the orchestration in `lmm_kernels.logprob.linear_logprobs`): the forward
  keeps no graph and takes the entropy from the same [chunk, V] logits; the backward fills one reused [chunk, V]
  dlogits buffer and accumulates grad_W in place. At most chunk x V logits exist at once.
* fused: `lmm_kernels.logprob.logprob_loss_from_hidden`, the gradient in the forward: the loss sum_t c_t logp_t
  (c = the same upstream gradient; any per-token loss goes the same way) is handed to the forward, which turns each
  chunk's logits into dlogits, grad_hidden and its share of grad_W while it has them; the backward only scales
  them. No recompute: 3 GEMMs like plain, against ours' 4.

Memory measurement (Linux, CPU): torch's CPU allocator has no caching and no peak statistics, and glibc serves
these (multi-MiB) tensors with mmap, returning them to the OS on free, so resident set size tracks live tensors.
In the worker, after the inputs (h [T, H], W [V, H] with requires_grad, targets, upstream grad) are allocated and
written, the current RSS (VmRSS) is the baseline; the kernel's RSS high-water mark is then reset
(`echo 5 > /proc/self/clear_refs`) and after forward + backward the peak (VmHWM) is read:
peak_extra = VmHWM - baseline = memory the computation itself needed, including the gradients it produced
(grad_W [V, H] is 1.16 GiB in fp32 at H = 2048 for BOTH paths; it is also shown separately). Where clear_refs
cannot be written, `resource.getrusage(RUSAGE_SELF).ru_maxrss` (lifetime peak) is used instead, which is still
correct here because the computation's peak dwarfs the import-time peak. Time is wall time of forward + backward
and the process CPU time (user + sys, all threads; less sensitive to other jobs sharing the cores than wall time),
min over --repeats; memory is the max over them. On a shared 2-core machine, trust the CPU-time ratio.

The plain path is skipped (and the output says so) when its estimated peak would not fit in MemAvailable.
Default dtype: fp32 hidden/weight (CPU bf16 matmuls are slow and the plain path's fp32 upcast of the logits makes
the comparison the same); --dtype bf16 gives the mixed-precision layout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GiB = 1024 ** 3
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


# ------------------------------------------------------------------------------------------------------------------
# worker (one case per process)
# ------------------------------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_bytes(reset_ok: bool) -> int:
    hwm = _status_kib("VmHWM") if reset_ok else None
    if hwm is None:
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return hwm * 1024


def worker(args) -> dict:
    import torch
    sys.path.insert(0, str(ROOT))
    from lmm_kernels.logprob import logprob_loss_from_hidden, logprobs_from_hidden, logprobs_plain

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, DTYPES[args.dtype])
    T, H, V = args.T, args.hidden, args.vocab
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(T, H, generator=g).to(dtype).requires_grad_()
    weight = (torch.randn(V, H, generator=g) * H ** -0.5).to(dtype).requires_grad_()
    targets = torch.randint(0, V, (T,), generator=g)
    grad_out = torch.randn(T, generator=g)

    def plain():
        return logprobs_plain(hidden, weight, targets, temperature=args.temperature, with_entropy=True)

    def ours():
        return logprobs_from_hidden(hidden, weight, targets, temperature=args.temperature, with_entropy=True,
                                    chunk_size=args.chunk_size)

    def fused():  # the loss sum_t c_t logp_t, c = grad_out: the same gradients as backward(logp, grad_out)
        loss, logp, entropy = logprob_loss_from_hidden(hidden, weight, targets, lambda lp, rows: grad_out[rows] * lp,
                                                       temperature=args.temperature, with_entropy=True,
                                                       chunk_size=args.chunk_size)
        return loss, logp, entropy

    fn = {"plain": plain, "ours": ours, "fused": fused}[args.worker]
    baseline = (_status_kib("VmRSS") or 0) * 1024
    reset_ok = _reset_peak()
    if not reset_ok:
        baseline = max(baseline, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    times, cpu_times, checks = [], [], None
    for _ in range(args.repeats):
        hidden.grad = weight.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        if args.worker == "fused":
            loss, logp, entropy = fn()
            loss.backward()
        else:
            logp, entropy = fn()
            torch.autograd.backward(logp, grad_out)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        checks = dict(logp_mean=float(logp.detach().mean()), entropy_mean=float(entropy.mean()),
                      grad_h_norm=float(hidden.grad.float().norm()), grad_w_norm=float(weight.grad.float().norm()))
        del logp, entropy
    peak = _peak_bytes(reset_ok)
    return dict(path=args.worker, T=T, peak_extra=peak - baseline, baseline=baseline, time=min(times),
                cpu_time=min(cpu_times),
                grad_bytes=weight.numel() * weight.element_size() + hidden.numel() * hidden.element_size(),
                peak_method="VmHWM after clear_refs" if reset_ok else "ru_maxrss", **checks)


# ------------------------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------------------------


def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def plain_estimate(T: int, H: int, V: int, itemsize: int) -> int:
    """~5 fp32 [T, V] buffers (logits, log-softmax, grads, entropy temporaries) + inputs-sized grads."""
    return 5 * T * V * 4 + V * H * itemsize + T * H * itemsize


def run_case(path: str, T: int, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", path, "--T", str(T), "--hidden",
           str(args.hidden), "--vocab", str(args.vocab), "--dtype", args.dtype, "--chunk-size", str(args.chunk_size),
           "--threads", str(args.threads), "--temperature", str(args.temperature), "--repeats", str(args.repeats)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return dict(path=path, T=T, error=(res.stderr.strip().splitlines() or ["exit %d" % res.returncode])[-1])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="4096", help="comma-separated token counts T (default 4096)")
    ap.add_argument("--hidden", type=int, default=2048, help="hidden size H (Qwen2.5-VL-3B: 2048)")
    ap.add_argument("--vocab", type=int, default=151936, help="vocab size V (Qwen2.5-VL: 151,936)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="hidden/weight dtype (default fp32)")
    ap.add_argument("--chunk-size", type=int, default=128,
                    help="token chunk of our path (default 128; grad_W alone is 12.5%% of the plain peak at "
                         "T=4096, so the 15%% target leaves about 0.25 GiB for the [chunk, V] buffers)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1,
                    help="torch threads per case (default: OMP_NUM_THREADS, else every core)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--paths", default="plain,ours,fused", help="comma-separated subset of plain,ours,fused")
    ap.add_argument("--worker", choices=["plain", "ours", "fused"], help=argparse.SUPPRESS)
    ap.add_argument("--T", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args)))
        return

    itemsize = {"fp32": 4, "bf16": 2, "fp16": 2}[args.dtype]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    paths = [p for p in args.paths.split(",") if p]
    print(f"log-prob + entropy + backward: H={args.hidden} V={args.vocab} dtype={args.dtype} "
          f"chunk_size={args.chunk_size} threads={args.threads} (CPU; 'ours' = lmm_kernels.logprob.logprobs_from_hidden"
          f", recompute in backward; 'fused' = logprob_loss_from_hidden, gradient in the forward)")
    print(f"peak = RSS high-water mark above the post-input baseline, fresh process per case; "
          f"grad_W alone is {args.vocab * args.hidden * itemsize / GiB:.2f} GiB")
    rows = []
    for T in sizes:
        res = {}
        for path in paths:
            if path == "plain":
                est = plain_estimate(T, args.hidden, args.vocab, itemsize)
                avail = _mem_available() - (args.vocab + T) * args.hidden * itemsize
                if est > 0.9 * avail:
                    res[path] = dict(path=path, T=T, skipped=f"needs ~{est / GiB:.1f} GiB > 90% of "
                                                               f"{avail / GiB:.1f} GiB available")
                    print(f"  T={T} plain: SKIPPED ({res[path]['skipped']})", flush=True)
                    continue
            print(f"  T={T} {path}: running ...", flush=True)
            res[path] = run_case(path, T, args)
        rows.append((T, res))

    print()
    hdr = (f"{'T':>6} | {'path':5} | {'peak extra GiB':>14} | {'wall s':>7} | {'cpu s':>7} | {'logp mean':>10} | "
           f"{'entropy mean':>12}")
    print(hdr)
    print("-" * len(hdr))
    for T, res in rows:
        for path in paths:
            r = res.get(path, {})
            if "skipped" in r:
                print(f"{T:>6} | {path:5} | {'skipped (RAM)':>14} | {'-':>7} | {'-':>7} | {'-':>10} | {'-':>12}")
            elif "error" in r:
                print(f"{T:>6} | {path:5} | error: {r['error']}")
            elif r:
                print(f"{T:>6} | {path:5} | {r['peak_extra'] / GiB:14.2f} | {r['time']:7.1f} | {r['cpu_time']:7.1f} | "
                      f"{r['logp_mean']:10.4f} | {r['entropy_mean']:12.4f}")
    print()
    for T, res in rows:
        p = res.get("plain", {})
        for name in [x for x in paths if x != "plain"]:
            o = res.get(name, {})
            if "peak_extra" in p and "peak_extra" in o:
                g = o["grad_bytes"]
                print(f"T={T}: {name}/plain peak memory = {o['peak_extra'] / p['peak_extra']:.1%} (target <= 15%), "
                      f"time = {o['time'] / p['time']:.2f}x wall, {o['cpu_time'] / p['cpu_time']:.2f}x cpu "
                      f"(target <= 1.05x); excluding the gradients every path "
                      f"must produce ({g / GiB:.2f} GiB): {(o['peak_extra'] - g) / (p['peak_extra'] - g):.1%}; "
                      f"|logp mean diff| = {abs(o['logp_mean'] - p['logp_mean']):.1e}, "
                      f"grad_W norm ratio = {o['grad_w_norm'] / p['grad_w_norm']:.6f}")
            elif "peak_extra" in o:
                why = p.get("skipped", p.get("error", "not run"))
                print(f"T={T}: {name} completed, peak {o['peak_extra'] / GiB:.2f} GiB in {o['time']:.1f} s "
                      f"(plain: {why})")
    methods = {r.get("peak_method") for _, res in rows for r in res.values() if r.get("peak_method")}
    print(f"peak measured by: {', '.join(sorted(methods)) or '-'}")


if __name__ == "__main__":
    main()
