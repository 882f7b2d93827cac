"""Packed micro-batches: text-only, one-image and two-image rows end to end in one sequence give exactly the
per-token log-probs and gradients of the same rows run one by one, unpadded (the real tiny Qwen2.5-VL: per-row 3-D
M-RoPE, image features in their slots, attention that never crosses a row)."""

import pytest
import torch
from PIL import Image

from data.sample import Sample, make_messages
from lmm_kernels.hf_attention import register
from rl import algos, losses
from rl.batch import Rollout, encode_prompts, micro_batches
from rl.policy import load_policy, response_logprobs
from rl.processor import pad_token_id
from rewards_for_tests import Spread


def _image(w, h, colour):
    img = Image.new("RGB", (w, h), "white")
    for x in range(w // 4, 3 * w // 4):
        img.putpixel((x, h // 2), colour)
    return img


@pytest.fixture(scope="module")
def rollout_and_policy(tiny_checkpoint):
    model, processor = load_policy(tiny_checkpoint)
    samples = [
        Sample(make_messages("Two pictures: which line is longer?", [_image(84, 56, (255, 0, 0)),
                                                                     _image(56, 84, (0, 0, 255))]), "A", "choice"),
        Sample(make_messages("Solve 3x + 5 = 20 for x."), "5", "math"),
        Sample(make_messages("What is 3 + 4?", [_image(112, 56, (0, 128, 0))]), "7", "math"),
        Sample(make_messages("And 2 + 2?"), "4", "math"),
    ]
    prompts = encode_prompts(processor, samples)
    assert [p.get("image_grid_thw", torch.zeros(0, 3)).shape[0] for p in prompts] == [2, 0, 1, 0]
    g = torch.Generator().manual_seed(0)
    responses = [torch.randint(10, 200, (n,), generator=g) for n in (7, 3, 5, 0)]  # an empty one too
    return Rollout(prompts, 1, responses, [True] * 4), model, pad_token_id(processor)


def _logprobs_and_grads(model, batch, weights):
    model.zero_grad(set_to_none=True)
    logp, _ = response_logprobs(model, batch)
    if batch["action_mask"].any():  # a row with an empty response has nothing to differentiate
        (algos.masked_sum(logp * weights, batch["action_mask"])).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logp.detach(), grads


@pytest.mark.parametrize("impl", ["sdpa", "sdpa_varlen", "torch_varlen",
                                  pytest.param("triton_varlen", marks=pytest.mark.slow)])
def test_packed_equals_one_by_one(rollout_and_policy, impl):
    rollout, model, pad = rollout_and_policy
    register()
    model.set_attn_implementation(impl)
    try:
        weights = torch.randn(rollout.mask.shape, generator=torch.Generator().manual_seed(1))
        packed = rollout.batch(range(4), pad, packed=True)
        assert packed["input_ids"].shape == (1, sum(rollout.lengths())) and "attention_mask" not in packed
        logp, grads = _logprobs_and_grads(model, packed, weights)
        alone_grads = {}
        for i in range(4):
            b = rollout.batch([i], pad)  # one row: no padding at all
            lp, gr = _logprobs_and_grads(model, b, weights[i:i + 1, :b["action_mask"].shape[1]])
            n = rollout.responses[i].numel()
            torch.testing.assert_close(logp[i, :n], lp[0, :n], atol=2e-5, rtol=1e-5)
            for k, v in gr.items():
                alone_grads[k] = alone_grads.get(k, 0) + v
        assert (logp[~rollout.mask[:, :logp.shape[1]]] == 0).all()
        assert alone_grads.keys() == grads.keys() and any("visual" in k for k in grads)
        for k in grads:
            torch.testing.assert_close(grads[k], alone_grads[k], atol=1e-5, rtol=1e-4, msg=k)
    finally:
        model.set_attn_implementation("sdpa")


def test_packed_loss_equals_the_padded_loss_for_every_aggregation(rollout_and_policy):
    rollout, model, pad = rollout_and_policy
    with torch.no_grad():
        padded = response_logprobs(model, rollout.batch(range(4), pad))[0]
        packed = response_logprobs(model, rollout.batch(range(4), pad, packed=True))[0]
    mask = rollout.mask
    adv = torch.randn(mask.shape, generator=torch.Generator().manual_seed(2))
    for agg in losses.AGGREGATIONS:
        spec = losses.LossSpec(agg=agg, max_len=16)
        a, _ = losses.policy_loss(padded, padded.detach() - 0.1, adv, mask, spec)
        b, _ = losses.policy_loss(packed, packed.detach() - 0.1, adv, mask, spec)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_first_fit_decreasing_fills_the_budget():
    lengths = [50, 4096, 700, 1200, 300, 2500, 90, 3000, 800, 64]
    groups = micro_batches(lengths, max_tokens=4096)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in g) <= 4096 for g in groups)
    assert len(groups) == 4  # 12,800 tokens: the fewest bins of 4,096 that can hold them
    assert micro_batches([5000, 10], max_tokens=4096) == [[0], [1]]  # too long for the budget: alone
    assert all(len(g) <= 2 for g in micro_batches(lengths, max_tokens=10**6, max_rows=2))


def test_training_packed_equals_padded(tmp_path):
    """Two steps of the trainer on image prompts (KL in the reward, both aggregations' weights): packed
    micro-batches end in the weights of padded ones."""
    from data import load_fixture
    from rl.config import preset
    from rl.run import make_trainer

    runs = {}
    for name, budget in (("padded", 0), ("packed", 400)):
        cfg = preset("debug", out=str(tmp_path / name), max_steps=2, prompts_per_step=2, n_samples=3,
                     max_new_tokens=6, train_batch_size=6, micro_batch_size=4, kl=0.01, save_every=0,
                     optim="adamw", max_tokens_per_micro=budget)
        trainer = make_trainer(cfg, load_fixture("message"), Spread())
        trainer.train()
        runs[name] = trainer
    assert runs["packed"].packed and not runs["padded"].packed
    assert runs["packed"].kernels.attn_implementation == "sdpa_varlen"  # sdpa once per packed row
    for (n, a), (_, b) in zip(runs["padded"].policy.named_parameters(), runs["packed"].policy.named_parameters()):
        torch.testing.assert_close(a, b, atol=2e-6, rtol=1e-5, msg=n)


@pytest.mark.parametrize("causal", [True, False])
def test_sdpa_per_sequence_equals_the_reference(causal):
    from lmm_kernels.attention import varlen_attention_torch
    from lmm_kernels.hf_attention import varlen_attention_sdpa
    g = torch.Generator().manual_seed(3)
    lens_q, lens_k = [5, 0, 17, 3], [5, 0, 20, 3]  # an empty sequence; one with more keys than queries (decoding)
    cu_q = torch.tensor([0, *torch.tensor(lens_q).cumsum(0).tolist()], dtype=torch.int32)
    cu_k = torch.tensor([0, *torch.tensor(lens_k).cumsum(0).tolist()], dtype=torch.int32)
    q = torch.randn(sum(lens_q), 4, 16, generator=g)
    k, v = torch.randn(2, sum(lens_k), 2, 16, generator=g)  # grouped-query: 4 query heads over 2 kv heads
    torch.testing.assert_close(varlen_attention_sdpa(q, k, v, cu_q, cu_k, causal=causal),
                               varlen_attention_torch(q, k, v, cu_q, cu_k, causal=causal), atol=1e-5, rtol=1e-5)


def test_varlen_attention_takes_mixed_dtypes_under_autocast(rollout_and_policy):
    """Under bf16 autocast over fp32 weights the rotary embedding hands q and k over in fp32 and v in bf16: the
    varlen glue computes in the autocast dtype, as sdpa does."""
    rollout, model, pad = rollout_and_policy
    register()
    batch = rollout.batch(range(4), pad, packed=True)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model.set_attn_implementation("sdpa")
            expected = response_logprobs(model, batch)[0]
            model.set_attn_implementation("sdpa_varlen")
            got = response_logprobs(model, batch)[0]
    finally:
        model.set_attn_implementation("sdpa")
    torch.testing.assert_close(got, expected, atol=0.1, rtol=0.05)
