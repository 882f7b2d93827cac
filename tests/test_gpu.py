"""What only a GPU can check (marker `gpu`; every test skips, saying why, where torch sees no CUDA device):

    python -m pytest -m gpu -n 0 tests/test_gpu.py

* each Triton kernel on CUDA against its PyTorch reference, values and gradients, at the paper's shapes: the packed
  varlen attention (bf16, GQA 16/2 heads, head dim 128, a long-tailed mix of sequences up to 4096 tokens), the fused
  log-prob + entropy (T 4096, H 2048, V 151,936, bf16) and the fused policy loss (256 x 4096, k3 KL);
* the debug preset trained on CUDA (bf16 autocast) with `--kernels triton` and with `--kernels torch`: both finish
  with finite gradient norms;
* the memory knobs on CUDA, gae with a reference (a debug-size run each): `--ref-offload --critic-offload`,
  `--optim adamw_8bit_bf16`, `--optim paged_adamw_8bit`: each finishes, and its first rollout is the defaults'.

Each check runs in a fresh process with TRITON_INTERPRET=0: the CPU suite defines the kernels under the Triton
interpreter (tests/conftest.py and the kernel tests set TRITON_INTERPRET=1, which Triton reads when a kernel is
defined). Time and peak memory of each kernel against its reference: bench/kernels_gpu.py.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() "
                                                                       "is False)")]


def _compiled_env() -> dict:
    """The environment of a check's process: the real Triton compiler (not its interpreter), offline."""
    path = os.pathsep.join(p for p in (str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "TRITON_INTERPRET": "0", "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}


def _in_fresh_process(check: str) -> dict:
    """Run test_gpu.<check>() in a fresh process (kernels compiled for the GPU) and return its result."""
    code = f"import json, test_gpu; print(json.dumps(test_gpu.{check}()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=_compiled_env())
    assert proc.returncode == 0, f"{check} failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.splitlines()[-1])


def _max_diff(a, b) -> float:
    return float((a.float() - b.float()).abs().max())


# ---------------------------------------------------------------------------------------------------------------------
# kernels against their references (each run by _in_fresh_process)
# ---------------------------------------------------------------------------------------------------------------------


def attention_errors() -> dict:
    """Max abs error of the Triton attention (bf16) and of the torch reference (bf16), both against the torch
    reference in fp32: output and the gradients of q, k, v."""
    from lmm_kernels.attention import varlen_attention_torch
    from lmm_kernels.attention_triton import varlen_attention

    lens = [4096, 1800, 700, 300, 97, 33, 1]
    hq, hkv, d, dtype = 16, 2, 128, torch.bfloat16
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(sum(lens), hq, d, device="cuda", generator=g).to(dtype)
    k = torch.randn(sum(lens), hkv, d, device="cuda", generator=g).to(dtype)
    v = torch.randn(sum(lens), hkv, d, device="cuda", generator=g).to(dtype)
    do = torch.randn_like(q)
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device="cuda")

    def run(fn, dt):
        x = [t.detach().to(dt).requires_grad_() for t in (q, k, v)]
        out = fn(*x, cu, cu, max(lens), max(lens), True)
        out.backward(do.to(dt))
        return [out.detach()] + [t.grad for t in x]

    exact = run(varlen_attention_torch, torch.float32)
    ours, ref = run(varlen_attention, dtype), run(varlen_attention_torch, dtype)
    return {"ours": [_max_diff(a, b) for a, b in zip(ours, exact)],
            "reference": [_max_diff(a, b) for a, b in zip(ref, exact)]}


def logprob_errors() -> dict:
    """Max abs difference of the fused Triton log-prob + entropy and its torch reference (chunk 1024), bf16; and of
    the Triton gradient-in-the-forward path against the Triton recompute path (in_forward_*)."""
    from lmm_kernels.logprob import logprobs_from_hidden
    from lmm_kernels.logprob_triton import triton_logprob_loss_from_hidden, triton_logprobs_from_hidden

    T, H, V = 4096, 2048, 151_936
    g = torch.Generator(device="cuda").manual_seed(0)
    h = (torch.randn(T, H, device="cuda", generator=g) * 0.5).to(torch.bfloat16)
    w = (torch.randn(V, H, device="cuda", generator=g) * 0.02).to(torch.bfloat16)
    tgt = torch.randint(0, V, (T,), device="cuda", generator=g)

    def run(fn, **kw):
        hh, ww = h.detach().requires_grad_(), w.detach().requires_grad_()
        logp, ent = fn(hh, ww, tgt, 1.0, True, **kw)
        logp.sum().backward()
        return logp.detach(), ent, hh.grad, ww.grad

    def in_forward():  # the gradient in the forward, loss = sum of log-probs: the same gradients as logp.sum()
        hh, ww = h.detach().requires_grad_(), w.detach().requires_grad_()
        loss, logp, ent = triton_logprob_loss_from_hidden(hh, ww, tgt, lambda lp, rows: lp, 1.0, True, 1024)
        loss.backward()
        return logp, ent, hh.grad, ww.grad

    a, b, c = run(triton_logprobs_from_hidden), run(logprobs_from_hidden, chunk_size=1024), in_forward()
    names = ("logp", "entropy", "grad_hidden", "grad_weight")
    return {**dict(zip(names, (_max_diff(x, y) for x, y in zip(a, b)))),
            **{f"in_forward_{n}": _max_diff(x, y) for n, x, y in zip(names, c, a)}}


def policy_loss_errors() -> dict:
    """Max abs difference of the fused Triton policy loss and its torch reference: per-token loss and gradient."""
    from lmm_kernels.policy_loss import policy_loss_tokens
    from lmm_kernels.policy_loss_triton import policy_loss_tokens_triton

    n, t = 256, 4096
    g = torch.Generator(device="cuda").manual_seed(0)
    old = -torch.rand(n, t, device="cuda", generator=g) * 3
    logp0 = old + 0.1 * torch.randn(n, t, device="cuda", generator=g)
    ref = old + 0.1 * torch.randn(n, t, device="cuda", generator=g)
    adv = torch.randn(n, t, device="cuda", generator=g)
    mask = torch.arange(t, device="cuda")[None] < torch.randint(1, t + 1, (n, 1), device="cuda", generator=g)

    def run(fn):
        logp = logp0.detach().requires_grad_()
        loss = fn(logp, old, adv, mask, ref, 0.2, 0.001, "k3")
        loss.sum().backward()
        return loss.detach(), logp.grad

    a, b = run(policy_loss_tokens_triton), run(policy_loss_tokens)
    return {"loss": _max_diff(a[0], b[0]), "grad": _max_diff(a[1], b[1])}


def test_attention_kernel_matches_reference_at_paper_shapes():
    """The kernel's bf16 error is of the order of the bf16 reference's own (both against fp32)."""
    res = _in_fresh_process("attention_errors")
    for name, ours, ref in zip(("out", "grad_q", "grad_k", "grad_v"), res["ours"], res["reference"]):
        assert ours <= 2 * ref + 1e-2, f"{name}: {ours} against the bf16 reference's {ref}"


def test_logprob_kernel_matches_reference_at_paper_shapes():
    res = _in_fresh_process("logprob_errors")
    assert all(diff < 5e-2 for diff in res.values()), res


def test_policy_loss_kernel_matches_reference_at_paper_shapes():
    res = _in_fresh_process("policy_loss_errors")
    assert res["loss"] < 1e-5 and res["grad"] < 1e-5, res


# ---------------------------------------------------------------------------------------------------------------------
# debug-size training runs on CUDA
# ---------------------------------------------------------------------------------------------------------------------


def _train(out: Path, *flags) -> list[dict]:
    """train_fre.py --preset debug on CUDA (bf16), 3 steps; its metrics lines."""
    cmd = [sys.executable, str(ROOT / "train_fre.py"), "--preset", "debug", "--device", "cuda", "--dtype", "bf16",
           "--out", str(out), "--overwrite", "--max-steps", "3", "--save-every", "0", *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=_compiled_env())
    assert proc.returncode == 0, f"{' '.join(flags) or 'defaults'} failed:\n{proc.stderr[-3000:]}"
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_debug_training_with_triton_and_torch_kernels(tmp_path):
    for name in ("torch", "triton"):
        lines = _train(tmp_path / f"debug_{name}", "--kernels", name)
        assert lines, name
        for m in lines:
            assert m.get("grad_norm") is not None and math.isfinite(m["grad_norm"]), (name, m)


@pytest.mark.slow
def test_memory_knobs_on_cuda(tmp_path):
    """Each knob finishes; the samples depend on the seed, the step and the prompt, so the first step's rollout (its
    mean reward) is the defaults'."""
    base = ("--estimator", "gae", "--kl", "0.01")
    variants = {"defaults": (), "offload": ("--ref-offload", "--critic-offload"),
                "bf16_weights": ("--optim", "adamw_8bit_bf16"), "paged": ("--optim", "paged_adamw_8bit")}
    first = {name: _train(tmp_path / f"knobs_{name}", *base, *flags)[0]["reward/mean"]
             for name, flags in variants.items()}
    assert all(r == first["defaults"] for r in first.values()), first


@pytest.mark.slow
def test_lora_and_qlora_on_cuda(tmp_path):
    """LoRA over a bf16 base and QLoRA over an NF4 base train (finite gradients) with the Triton kernels, and each
    final/ (merged, NF4 dequantized) loads with stock classes."""
    from transformers import AutoModelForImageTextToText

    for name, flags in (("lora", ()), ("qlora", ("--load-in-4bit",))):
        out = tmp_path / name
        lines = _train(out, "--lora-rank", "8", "--actor-lr", "1e-3", *flags)
        assert all(math.isfinite(m["grad_norm"]) for m in lines if "grad_norm" in m), name
        assert (out / "final" / "adapter" / "adapter_model.safetensors").is_file()
        AutoModelForImageTextToText.from_pretrained(out / "final")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny-qwen3-vl", "tiny-qwen2-vl"])
def test_other_families_with_triton_kernels_on_cuda(tmp_path, model):
    """The other model families through the compiled Triton kernels (packed varlen attention in the language model
    and the vision tower, fused log-prob), checked against the torch references inside the run."""
    lines = _train(tmp_path / model, "--model", model, "--data", "fixture:message", "--kernels", "triton",
                   "--max-tokens-per-micro", "2048", "--kernel-check-every", "1")
    assert all(m["kernel/max_abs_diff"] < 5e-2 for m in lines if "kernel/max_abs_diff" in m), lines
