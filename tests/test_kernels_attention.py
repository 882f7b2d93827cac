"""Packed varlen attention: Triton kernels (CPU interpreter) against the PyTorch reference, and the transformers
routing of both the Qwen2.5-VL language model and its vision tower through the registered implementations."""

import os

_PREVIOUS_INTERPRET = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"  # read by triton when the kernels are defined (lmm_kernels.attention_triton import)

import importlib  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402
from collections import Counter  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

if "lmm_kernels.attention_triton" in sys.modules and not sys.modules["lmm_kernels.attention_triton"]._INTERPRET:
    importlib.reload(sys.modules["lmm_kernels.attention_triton"])  # imported earlier without the interpreter

import lmm_kernels.attention_triton as at  # noqa: E402
from lmm_kernels.attention import varlen_attention_torch  # noqa: E402
from lmm_kernels.hf_attention import (IMPLEMENTATIONS, pack_vision_attention, register,  # noqa: E402
                                  torch_varlen_attention_forward)
from lmm_kernels.attention_triton import AttentionConfig, LaunchConfig, kernel_configs, varlen_attention  # noqa: E402

# The kernels above are interpreted from now on; restore the variable so that it does not leak into other tests or
# their subprocesses (e.g. an ahead-of-time compile, which must run without it).
if _PREVIOUS_INTERPRET is None:
    del os.environ["TRITON_INTERPRET"]
else:
    os.environ["TRITON_INTERPRET"] = _PREVIOUS_INTERPRET

SMALL = AttentionConfig(LaunchConfig(16, 16, 4, 1), LaunchConfig(16, 16, 4, 1), LaunchConfig(16, 16, 4, 1))
MANY = [3, 1, 8, 2, 5, 1, 7, 4, 6, 2, 1, 9]


def _cu(lengths):
    return torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)


def _inputs(lens_q, lens_k, hq, hkv, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(sum(lens_q), hq, d, generator=g).to(dtype).requires_grad_()
    k = torch.randn(sum(lens_k), hkv, d, generator=g).to(dtype).requires_grad_()
    v = torch.randn(sum(lens_k), hkv, d, generator=g).to(dtype).requires_grad_()
    do = torch.randn(sum(lens_q), hq, d, generator=g).to(dtype)
    return q, k, v, do


def _run(fn, q, k, v, do, lens_q, lens_k, causal, backward=True, **kw):
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    out = fn(q, k, v, _cu(lens_q), _cu(lens_k), max(lens_q), max(lens_k), causal, **kw)
    if not backward:
        return out.detach(), None
    out.backward(do.to(out.dtype))
    return out.detach(), [x.grad for x in (q, k, v)]


def _reference(q, k, v, do, lens_q, lens_k, causal, backward=True, dtype=torch.float64):
    """The torch reference in fp64 on the (possibly bf16-rounded) input values."""
    return _run(varlen_attention_torch, *(x.detach().to(dtype) for x in (q, k, v, do)), lens_q, lens_k, causal,
                backward)


def _assert_close(actual, expected, atol, rtol):
    assert torch.isfinite(actual).all()
    torch.testing.assert_close(actual.to(expected.dtype), expected, atol=atol, rtol=rtol)


# ----------------------------------------------------------------------------------------------------------------
# kernels against the reference
# ----------------------------------------------------------------------------------------------------------------

CASES_FP32 = [  # lens, hq, hkv, d, causal, config
    ([1, 5, 17, 70], 2, 2, 64, True, SMALL),  # GQA ratio 1, multi-block loops, lengths not multiples of 16
    ([1, 5, 17, 70], 2, 2, 64, False, SMALL),
    ([1, 5, 17, 70], 8, 1, 80, True, None),  # GQA ratio 8, head dim 80 padded to 128, default blocks
    ([70, 1, 17], 8, 1, 80, False, SMALL),
    (MANY, 8, 1, 64, True, None),  # many short sequences
    (MANY, 4, 2, 80, False, SMALL),
]


@pytest.mark.parametrize("lens,hq,hkv,d,causal,config", CASES_FP32)
def test_fp32_forward_backward_match_fp64_reference(lens, hq, hkv, d, causal, config):
    q, k, v, do = _inputs(lens, lens, hq, hkv, d, torch.float32)
    out, grads = _run(varlen_attention, q, k, v, do, lens, lens, causal, config=config)
    ref, ref_grads = _reference(q, k, v, do, lens, lens, causal)
    assert out.dtype == torch.float32
    _assert_close(out, ref, 2e-5, 1e-4)
    for g, rg in zip(grads, ref_grads):
        _assert_close(g, rg, 5e-5, 1e-4)


@pytest.mark.parametrize("causal", [True, False])
def test_fp32_head_dim_128_forward(causal):
    lens = [1, 19, 40]
    q, k, v, do = _inputs(lens, lens, 4, 2, 128, torch.float32)
    out, _ = _run(varlen_attention, q, k, v, do, lens, lens, causal, backward=False)
    ref, _ = _reference(q, k, v, do, lens, lens, causal, backward=False)
    _assert_close(out, ref, 2e-5, 1e-4)


BF16_CASES = [  # lens, hq, hkv, d, causal, backward, config
    ([1, 5, 17, 70], 8, 1, 64, True, True, SMALL),
    ([1, 5, 17, 70], 2, 2, 80, False, True, None),
    ([1, 33, 20], 4, 1, 128, True, False, None),
    ([1, 33, 20], 2, 2, 128, False, False, None),
]


@pytest.mark.parametrize("lens,hq,hkv,d,causal,backward,config", BF16_CASES)
def test_bf16_match_reference(lens, hq, hkv, d, causal, backward, config):
    q, k, v, do = _inputs(lens, lens, hq, hkv, d, torch.bfloat16, seed=1)
    out, grads = _run(varlen_attention, q, k, v, do, lens, lens, causal, backward=backward, config=config)
    ref, ref_grads = _reference(q, k, v, do, lens, lens, causal, backward=backward)
    assert out.dtype == torch.bfloat16
    _assert_close(out, ref, 2e-2, 2e-2)  # bf16 output rounding (eps 2^-8) on values of order 1
    for g, rg in zip(grads or [], ref_grads or []):
        assert g.dtype == torch.bfloat16
        _assert_close(g, rg, 2e-2 * rg.abs().max().item(), 2e-2)


def test_fully_masked_rows_are_zero_without_nan():
    """Causal with more queries than keys (bottom-right: the first rows see nothing), a sequence without keys and
    one without queries: zeros, -inf logsumexp, finite gradients equal to the reference."""
    lens_q, lens_k = [5, 3, 4, 0, 6], [2, 3, 0, 4, 17]
    q, k, v, do = _inputs(lens_q, lens_k, 4, 2, 64, torch.float32, seed=2)
    qq, kk, vv = (x.detach().clone().requires_grad_() for x in (q, k, v))
    out, lse = varlen_attention(qq, kk, vv, _cu(lens_q), _cu(lens_k), 6, 17, True, return_lse=True, config=SMALL)
    out.backward(do)
    masked = torch.zeros(sum(lens_q), dtype=torch.bool)
    masked[0:3] = True  # seq 0: rows 0..2 see no key (row i sees keys j <= i - 3)
    masked[8:12] = True  # seq 2: no key at all
    assert (out[masked] == 0).all() and torch.isneginf(lse[:, masked]).all()
    assert torch.isfinite(lse[:, ~masked]).all()
    assert (qq.grad[masked] == 0).all()
    ref, ref_grads = _reference(q, k, v, do, lens_q, lens_k, True)
    _assert_close(out, ref, 2e-5, 1e-4)
    for g, rg in zip((qq.grad, kk.grad, vv.grad), ref_grads):
        _assert_close(g, rg, 5e-5, 1e-4)
    assert (kk.grad[5:9] == 0).all() and (vv.grad[5:9] == 0).all()  # seq 3 has keys but no query


def test_backward_is_deterministic_and_lengths_differ_noncausal():
    lens_q, lens_k = [7, 20, 1], [30, 3, 5]
    q, k, v, do = _inputs(lens_q, lens_k, 4, 1, 64, torch.float32, seed=3)
    out1, g1 = _run(varlen_attention, q, k, v, do, lens_q, lens_k, False, config=SMALL)
    out2, g2 = _run(varlen_attention, q, k, v, do, lens_q, lens_k, False, config=SMALL)
    assert torch.equal(out1, out2) and all(torch.equal(a, b) for a, b in zip(g1, g2))
    ref, ref_grads = _reference(q, k, v, do, lens_q, lens_k, False)
    _assert_close(out1, ref, 2e-5, 1e-4)
    for g, rg in zip(g1, ref_grads):
        _assert_close(g, rg, 5e-5, 1e-4)


def test_kernel_configs_cover_every_launch():
    configs = kernel_configs()
    names = {c["name"] for c in configs}
    assert len(names) == len(configs)
    for d in at.SUPPORTED_HEAD_DIMS:
        for ty in ("fp32", "fp16", "bf16"):
            assert f"bwd_preprocess_d{d}_{ty}" in names
            for kernel in ("fwd", "bwd_dkdv", "bwd_dq"):
                assert {f"{kernel}_d{d}_{ty}_causal", f"{kernel}_d{d}_{ty}_full"} <= names
    for c in configs:
        assert list(c["signature"]) == c["fn"].arg_names
        assert all(c["signature"][k] == "constexpr" for k in c["constexprs"])
        const = c["constexprs"]
        assert const["BLOCK_D"] >= max(16, const["HEAD_DIM"]) and const["BLOCK_D"] & (const["BLOCK_D"] - 1) == 0
        if c["kernel"] != "bwd_preprocess":
            assert const["BLOCK_M"] >= 16 and const["BLOCK_N"] >= 16 and const["UPCAST"] is False
            cfg = at.default_config(c["head_dim"], c["dtype"])
            launch = {"fwd": cfg.fwd, "bwd_dkdv": cfg.dkdv, "bwd_dq": cfg.dq}[c["kernel"]]
            assert (const["BLOCK_M"], const["BLOCK_N"], c["num_warps"]) == (launch.block_m, launch.block_n,
                                                                             launch.num_warps)


# ----------------------------------------------------------------------------------------------------------------
# transformers glue
# ----------------------------------------------------------------------------------------------------------------

def _sdpa(module, q, k, v, mask4d):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    return sdpa_attention_forward(module, q, k, v, mask4d, scaling=0.3)[0]


def test_glue_padded_packed_and_decode_match_sdpa():
    torch.manual_seed(0)
    module = types.SimpleNamespace(is_causal=True, num_key_value_groups=2)
    B, L, hq, hkv, d = 3, 11, 4, 2, 16
    q, k, v = torch.randn(B, hq, L, d), torch.randn(B, hkv, L, d), torch.randn(B, hkv, L, d)
    # left-padded prompt + right-padded response, no padding, mostly padding
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0], [1] * 11, [0] * 9 + [1, 1]], dtype=torch.bool)
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    expected = _sdpa(module, q, k, v, (causal[None] & mask[:, None, :])[:, None])
    out, none = torch_varlen_attention_forward(module, q, k, v, mask, scaling=0.3)
    assert none is None and out.shape == (B, L, hq, d)
    torch.testing.assert_close(out[mask], expected[mask])
    assert (out[~mask] == 0).all()

    # no mask, no padding: plain causal
    out, _ = torch_varlen_attention_forward(module, q, k, v, None, scaling=0.3)
    torch.testing.assert_close(out, _sdpa(module, q, k, v, causal[None, None].expand(B, 1, L, L)))

    # decoding: one query against a left-padded cache
    out, _ = torch_varlen_attention_forward(module, q[:, :, -1:], k, v, None, scaling=0.3)
    torch.testing.assert_close(out, _sdpa(module, q[:, :, -1:], k, v, None))
    dmask = torch.tensor([[0, 0, 1] + [1] * 8, [1] * 11, [0] * 10 + [1]], dtype=torch.bool)
    out, _ = torch_varlen_attention_forward(module, q[:, :, -1:], k, v, dmask, scaling=0.3)
    torch.testing.assert_close(out, _sdpa(module, q[:, :, -1:], k, v, dmask[:, None, None, :]))

    # padding-free packing: three sequences in one row, by cu_seq_lens kwargs or by restarting position ids
    lens = [4, 1, 6]
    qp, kp, vp = q[:1], k[:1], v[:1]
    parts, start = [], 0
    for n in lens:
        sl = slice(start, start + n)
        parts.append(_sdpa(module, qp[:, :, sl], kp[:, :, sl], vp[:, :, sl],
                           torch.ones(n, n, dtype=torch.bool).tril()[None, None]))
        start += n
    expected = torch.cat(parts, 1)
    cu = _cu(lens)
    out, _ = torch_varlen_attention_forward(module, qp, kp, vp, None, scaling=0.3, cu_seq_lens_q=cu,
                                            cu_seq_lens_k=cu, max_length_q=6, max_length_k=6)
    torch.testing.assert_close(out, expected)
    pos = torch.cat([torch.arange(n) for n in lens])[None]
    out, _ = torch_varlen_attention_forward(module, qp, kp, vp, None, scaling=0.3, position_ids=pos)
    torch.testing.assert_close(out, expected)


def test_register_is_idempotent_and_uses_the_flash_mask():
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import flash_attention_mask
    names = register()
    before = dict(AttentionInterface._global_mapping)
    assert register() == names and AttentionInterface._global_mapping == before
    for name in ("triton_varlen", "torch_varlen"):
        assert AttentionInterface._global_mapping[name] is IMPLEMENTATIONS[name]
        assert AttentionMaskInterface._global_mapping[name] is flash_attention_mask


# ----------------------------------------------------------------------------------------------------------------
# the real Qwen2.5-VL classes
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", ["triton_varlen", "torch_varlen"])
def test_from_pretrained_sets_lm_and_vision_tower(tiny_checkpoint, impl):
    from rl.policy import load_policy
    register()
    model, _ = load_policy(tiny_checkpoint, attn_implementation=impl)
    assert model.config._attn_implementation == impl
    assert model.model.language_model.config._attn_implementation == impl
    assert model.model.visual.config._attn_implementation == impl
    assert model.model.visual.blocks[0].attn.config is model.model.visual.config


@pytest.fixture(scope="module")
def routed(tiny_checkpoint):
    """The tiny policy, a batch (image row + text-only row, left- and right-padded) and call counters wrapped around
    the registered functions (restored afterwards)."""
    from PIL import Image
    from transformers import AttentionInterface

    from data.sample import Sample, make_messages
    from rl.batch import collate, encode_prompts
    from rl.policy import load_policy
    from rl.processor import pad_token_id

    register()
    calls = Counter()
    originals = {name: AttentionInterface._global_mapping[name] for name in IMPLEMENTATIONS}
    for name, fn in originals.items():
        def counting(module, query, *args, _fn=fn, _name=name, **kwargs):
            packed = kwargs.get("cu_seq_lens_q") is not None
            calls[(_name, type(module).__name__, packed)] += 1
            return _fn(module, query, *args, **kwargs)
        AttentionInterface.register(name, counting)

    model, processor = load_policy(tiny_checkpoint)
    img = Image.new("RGB", (84, 56), "white")
    for x in range(20, 60):
        img.putpixel((x, 30), (255, 0, 0))
    samples = [Sample(messages=make_messages("What is 3 + 4?", images=[img]), answer="7", domain="math", meta={}),
               Sample(messages=make_messages("Solve 3x + 5 = 20 for x. Show your work briefly."), answer="5",
                      domain="math", meta={})]
    rows = encode_prompts(processor, samples)
    rows[0]["response_ids"] = torch.tensor([11, 12, 13, 14, 15, 16])
    rows[1]["response_ids"] = torch.tensor([21, 22])
    batch = collate(rows, pad_token_id(processor))
    assert not batch["attention_mask"].all()
    yield model, batch, calls
    for name, fn in originals.items():
        AttentionInterface.register(name, fn)
    model.set_attn_implementation("sdpa")


def _logprobs_and_grads(model, batch, impl, packed_vision=False):
    from rl.policy import response_logprobs
    model.set_attn_implementation(impl)
    if packed_vision:
        pack_vision_attention(model)
    model.zero_grad()
    logp, _ = response_logprobs(model, batch)
    mask = batch["action_mask"]
    (logp * mask).sum().backward()
    params = dict(model.named_parameters())
    names = [n for n in params if n.endswith(("blocks.0.attn.qkv.weight", "blocks.1.attn.qkv.weight",
                                              "layers.0.self_attn.q_proj.weight", "layers.1.self_attn.k_proj.weight",
                                              "layers.1.self_attn.v_proj.weight"))]
    assert len(names) == 5
    return logp.detach()[mask], {n: params[n].grad.clone() for n in names}


@pytest.mark.parametrize("impl,packed_vision", [("torch_varlen", False), ("torch_varlen", True),
                                                ("triton_varlen", False), ("triton_varlen", True)])
def test_qwen2_5_vl_routes_lm_and_vision_tower(routed, impl, packed_vision):
    model, batch, calls = routed
    ref, ref_grads = _logprobs_and_grads(model, batch, "sdpa")
    calls.clear()
    logp, grads = _logprobs_and_grads(model, batch, impl, packed_vision)
    torch.testing.assert_close(logp, ref, atol=2e-5, rtol=1e-5)
    for name, g in grads.items():
        assert g.abs().max() > 0
        torch.testing.assert_close(g, ref_grads[name], atol=2e-5, rtol=1e-4)
    # 2 LM layers; vision: 1 window layer (2 windows of the 4x6-patch image) + 1 full layer, or 2 packed calls
    vision = ("flash_" + impl, "Qwen2_5_VLVisionAttention", True) if packed_vision else \
        (impl, "Qwen2_5_VLVisionAttention", False)
    assert calls == Counter({(impl, "Qwen2_5_VLAttention", False): 2, vision: 2 if packed_vision else 3})
    model.set_attn_implementation("sdpa")  # resets the vision alias too
    assert model.model.visual.config._attn_implementation == "sdpa"


def test_generate_with_kv_cache_matches_sdpa(routed):
    """Decoding (one query against a left-padded cache) goes through the same glue."""
    model, batch, calls = routed
    P = batch["prompt_len"]
    inputs = dict(input_ids=batch["input_ids"][:, :P], attention_mask=batch["attention_mask"][:, :P],
                  mm_token_type_ids=batch["mm_token_type_ids"][:, :P], pixel_values=batch["pixel_values"],
                  image_grid_thw=batch["image_grid_thw"], max_new_tokens=6, do_sample=False, output_logits=True,
                  return_dict_in_generate=True)
    outs = {}
    calls.clear()
    for impl in ("sdpa", "torch_varlen"):
        model.set_attn_implementation(impl)
        with torch.no_grad():
            outs[impl] = model.generate(**inputs)
    model.set_attn_implementation("sdpa")
    assert torch.equal(outs["sdpa"].sequences, outs["torch_varlen"].sequences)
    torch.testing.assert_close(torch.stack(outs["torch_varlen"].logits), torch.stack(outs["sdpa"].logits),
                               atol=1e-5, rtol=1e-5)
    steps = outs["sdpa"].sequences.shape[1] - P
    assert calls == Counter({("torch_varlen", "Qwen2_5_VLAttention", False): 2 * steps,  # prefill + decode steps
                             ("torch_varlen", "Qwen2_5_VLVisionAttention", False): 3})  # 2 windows + 1 full
