"""Everything a session with a GPU should check, in one run (a few minutes on one H200; nothing is downloaded):

    python bench/gpu_check.py [--out DIR] [--quick]

1. kernels on CUDA against their PyTorch references, values and gradients, at the paper's shapes: the packed varlen
   attention (bf16, GQA 16/2 heads, head dim 128, a long-tailed mix of sequences up to 4096 tokens), the fused
   log-prob + entropy (T 4096, H 2048, V 151,936, bf16) and the fused policy loss; with each one's time and peak
   memory against the reference's.
2. the debug preset trained on CUDA (bf16 autocast) with `--kernels triton` and with `--kernels torch`: the metrics
   of each step side by side; both must finish with finite gradient norms.
3. the memory knobs on CUDA, gae with a reference (a debug-size run each): `--ref-offload --critic-offload`,
   `--optim adamw_8bit_bf16`, `--optim paged_adamw_8bit`, against the defaults: each must finish, with its peak.

It prints one line per check and writes DIR/gpu_check.json (DIR defaults to $OUT, else gpu_check/). A check that
fails prints its error and the others still run; the exit status is 1 if any failed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, repeats: int = 3) -> tuple[float, int, object]:
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


def max_diff(a, b) -> float:
    return float((a.float() - b.float()).abs().max())


def check_attention(quick: bool) -> dict:
    from kernels.attention import varlen_attention_torch
    from kernels.attention_triton import varlen_attention

    lens = [4096, 1800, 700, 300, 97, 33, 1] if not quick else [1024, 300, 33, 1]
    hq, hkv, d, dtype = 16, 2, 128, torch.bfloat16
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(sum(lens), hq, d, device="cuda", generator=g).to(dtype)
    k = torch.randn(sum(lens), hkv, d, device="cuda", generator=g).to(dtype)
    v = torch.randn(sum(lens), hkv, d, device="cuda", generator=g).to(dtype)
    do = torch.randn_like(q)
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device="cuda")

    def run(fn, dt):
        def step():
            x = [t.detach().to(dt).requires_grad_() for t in (q, k, v)]
            out = fn(*x, cu, cu, max(lens), max(lens), True)
            out.backward(do.to(dt))
            return out.detach(), [t.grad for t in x]
        return step

    t_tri, m_tri, (out, grads) = timed(run(varlen_attention, dtype))
    t_ref, m_ref, (ref, ref_grads) = timed(run(varlen_attention_torch, dtype))
    _, _, (exact, exact_grads) = timed(run(varlen_attention_torch, torch.float32), repeats=1)
    res = {"lens": lens, "out_vs_fp32": max_diff(out, exact), "ref_out_vs_fp32": max_diff(ref, exact),
           "grads_vs_fp32": [max_diff(a, b) for a, b in zip(grads, exact_grads)],
           "ref_grads_vs_fp32": [max_diff(a, b) for a, b in zip(ref_grads, exact_grads)],
           "time_ratio": t_tri / t_ref, "memory_ratio": m_tri / max(m_ref, 1)}
    # the kernel's bf16 error must be of the order of the bf16 reference's own (both against fp32)
    res["ok"] = res["out_vs_fp32"] <= 2 * res["ref_out_vs_fp32"] + 1e-2 and all(
        a <= 2 * b + 1e-2 for a, b in zip(res["grads_vs_fp32"], res["ref_grads_vs_fp32"]))
    return res


def check_logprob(quick: bool) -> dict:
    from kernels.logprob import logprobs_from_hidden
    from kernels.logprob_triton import triton_logprobs_from_hidden

    T, H, V = (4096, 2048, 151_936) if not quick else (1024, 2048, 151_936)
    g = torch.Generator(device="cuda").manual_seed(0)
    h = (torch.randn(T, H, device="cuda", generator=g) * 0.5).to(torch.bfloat16)
    w = (torch.randn(V, H, device="cuda", generator=g) * 0.02).to(torch.bfloat16)
    tgt = torch.randint(0, V, (T,), device="cuda", generator=g)

    def run(fn, **kw):
        def step():
            hh, ww = h.detach().requires_grad_(), w.detach().requires_grad_()
            logp, ent = fn(hh, ww, tgt, 1.0, True, **kw)
            logp.sum().backward()
            return logp.detach(), ent, hh.grad, ww.grad
        return step

    t_tri, m_tri, a = timed(run(triton_logprobs_from_hidden))
    t_ref, m_ref, b = timed(run(logprobs_from_hidden, chunk_size=1024))
    res = {"shape": [T, H, V], "logp": max_diff(a[0], b[0]), "entropy": max_diff(a[1], b[1]),
           "grad_hidden": max_diff(a[2], b[2]), "grad_weight": max_diff(a[3], b[3]),
           "time_ratio": t_tri / t_ref, "memory_ratio": m_tri / max(m_ref, 1)}
    res["ok"] = res["logp"] < 5e-2 and res["entropy"] < 5e-2 and res["grad_hidden"] < 5e-2 and \
        res["grad_weight"] < 5e-2
    return res


def check_policy_loss(quick: bool) -> dict:
    from kernels.policy_loss_triton import policy_loss_tokens_triton
    from rl.algos import policy_loss_tokens

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
            return loss.detach(), logp.grad
        return step

    t_tri, _, a = timed(run(policy_loss_tokens_triton))
    t_ref, _, b = timed(run(policy_loss_tokens))
    res = {"shape": [n, t], "loss": max_diff(a[0], b[0]), "grad": max_diff(a[1], b[1]), "time_ratio": t_tri / t_ref}
    res["ok"] = res["loss"] < 1e-5 and res["grad"] < 1e-5
    return res


def train(out: Path, *flags) -> list[dict]:
    """train_fre.py --preset debug on CUDA; its metrics lines."""
    cmd = [sys.executable, str(ROOT / "train_fre.py"), "--preset", "debug", "--device", "cuda", "--dtype", "bf16",
           "--out", str(out), "--overwrite", "--max-steps", "3", "--save-every", "0", *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode:
        raise RuntimeError(f"{' '.join(flags) or 'defaults'} failed:\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


KEYS = ("reward/mean", "response_len/mean", "loss/policy", "kl", "grad_norm", "logprob/sampler_max_diff",
        "mem/peak_gb", "time/step")


def check_training(out: Path) -> dict:
    runs = {k: train(out / f"debug_{k}", "--kernels", k) for k in ("torch", "triton")}
    res = {k: [{key: m.get(key) for key in KEYS} for m in lines] for k, lines in runs.items()}
    res["ok"] = all(m.get("grad_norm") is not None and m["grad_norm"] == m["grad_norm"]  # finished, finite
                    for lines in runs.values() for m in lines)
    return res


def check_knobs(out: Path) -> dict:
    base = ("--estimator", "gae", "--kl", "0.01")
    variants = {"defaults": (), "offload": ("--ref-offload", "--critic-offload"),
                "bf16_weights": ("--optim", "adamw_8bit_bf16"), "paged": ("--optim", "paged_adamw_8bit")}
    res = {}
    for name, flags in variants.items():
        lines = train(out / f"knobs_{name}", *base, *flags)
        res[name] = {"reward/mean": [m["reward/mean"] for m in lines], "grad_norm": [m.get("grad_norm") for m in lines],
                     "mem/peak_gb": max(m["mem/peak_gb"] for m in lines)}
    # the samples depend on the seed, the step and the prompt: the first step's rollout is the same for every knob
    res["ok"] = all(r["reward/mean"][0] == res["defaults"]["reward/mean"][0] for r in res.values())
    return res


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu_check")
    parser.add_argument("--quick", action="store_true", help="smaller kernel shapes")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check here (the CPU suite is `python -m pytest -q`)")
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    results, failed = {}, False
    checks = {"attention": lambda: check_attention(args.quick), "logprob": lambda: check_logprob(args.quick),
              "policy_loss": lambda: check_policy_loss(args.quick), "training": lambda: check_training(out),
              "knobs": lambda: check_knobs(out)}
    for name, fn in checks.items():
        t = time.perf_counter()
        try:
            results[name] = fn()
        except Exception as e:  # noqa: BLE001 - report it and go on with the other checks
            results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
        results[name]["seconds"] = time.perf_counter() - t
        failed |= not results[name]["ok"]
        shown = {k: v for k, v in results[name].items() if k != "trace"}
        print(f"{'ok  ' if results[name]['ok'] else 'FAIL'} {name}: {json.dumps(shown, default=str)}", flush=True)
        torch.cuda.empty_cache()
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
