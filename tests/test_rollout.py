"""Our rollout engine (rl/engines/ours.py, behind rl/rollout.py's generate): greedy output equals transformers'
generate token for token, the log-prob it records for each draw equals the training forward's, draws follow the
tempered (and nucleus-truncated) softmax, and rows that stop leave the batch without changing the others."""

import pytest
import torch
from PIL import Image
from transformers import GenerationConfig
from transformers.generation.logits_process import TopPLogitsWarper

import rl.engines.ours as ours_engine
from data.sample import Sample, make_messages
from rl.batch import collate, encode_prompts
from rl.engines.ours import draw, sample
from rl.policy import load_policy, response_logprobs
from rl.processor import pad_token_id, stop_token_ids
from rl.engines import ENGINES
from rl.rollout import cut_at_stop, generate, vision_token_ids
from rewards_for_tests import Spread


def _image(w, h, color):
    img = Image.new("RGB", (w, h), "white")
    for x in range(w // 4, 3 * w // 4):
        img.putpixel((x, h // 2), color)
    return img


def _samples(kind: str):
    text = [Sample(messages=make_messages("Solve 3x + 5 = 20 for x. Show your work briefly."), answer="5",
                   domain="math", meta={}),
            Sample(messages=make_messages("2 + 2?"), answer="4", domain="math", meta={})]
    image = [Sample(messages=make_messages("What is 3 + 4?", images=[_image(84, 56, (255, 0, 0))]), answer="7",
                    domain="math", meta={}),
             Sample(messages=make_messages("How many lines?", images=[_image(56, 112, (0, 0, 255))]), answer="1",
                    domain="math", meta={})]
    return {"text": text, "image": image, "mixed": [image[0], text[0], image[1]]}[kind]


@pytest.fixture(scope="module")
def policy(sharp_policy):
    return sharp_policy


def _hf_greedy(model, processor, rows, max_new_tokens, stop_ids=None):
    batch = collate(rows, pad_token_id(processor))
    config = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=pad_token_id(processor),
                              eos_token_id=stop_ids or stop_token_ids(processor))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values",
                                    "image_grid_thw") if k in batch}
    out = model.generate(**inputs, generation_config=config)[:, batch["prompt_len"]:]
    return [cut_at_stop(ids, stop_ids or stop_token_ids(processor), vision_token_ids(processor))[0].tolist()
            for ids in out]


@pytest.mark.parametrize("kind", ["text", "image", "mixed"])
def test_greedy_equals_hf_generate(policy, kind):
    model, processor = policy
    rows = encode_prompts(processor, _samples(kind))
    expected = _hf_greedy(model, processor, rows, 16)
    ours = generate(model, processor, rows, n=2, temperature=0.0, max_new_tokens=16)
    assert [r.tolist() for r in ours.responses] == [e for e in expected for _ in range(2)]
    assert len(set(map(tuple, expected))) == len(expected)  # the prompts do get different answers


def test_text_model_greedy_equals_hf_generate(tmp_path):
    from rl.tiny_model import build_tiny_checkpoint
    model, tokenizer = load_policy(str(build_tiny_checkpoint(tmp_path / "qwen2", text_only=True)))
    rows = encode_prompts(tokenizer, _samples("text"))
    ours = generate(model, tokenizer, rows, n=1, temperature=0.0, max_new_tokens=12)
    assert [r.tolist() for r in ours.responses] == _hf_greedy(model, tokenizer, rows, 12)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_logprobs_equal_training_forward(policy, temperature):
    model, processor = policy
    rows = encode_prompts(processor, _samples("mixed"))
    torch.manual_seed(0)
    rollout = generate(model, processor, rows, n=3, temperature=temperature, max_new_tokens=12, batch_size=2)
    batch = rollout.batch(range(len(rollout)), pad_token_id(processor))
    logp, entropy = response_logprobs(model, batch, temperature, with_entropy=True, chunk_size=5)
    mask = batch["action_mask"]
    assert mask.sum() > 20
    torch.testing.assert_close(batch["sampler_logp"][mask], logp[mask], atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(batch["entropy"][mask], entropy[mask], atol=2e-5, rtol=1e-5)


def _chi2_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's chi-square test; bins with an expected count under 5 are pooled."""
    expected = probs.double() * counts.sum()
    small = expected < 5
    obs = torch.cat([counts[~small].double(), counts[small].double().sum()[None]])
    exp = torch.cat([expected[~small], expected[small].sum()[None]])
    obs, exp = obs[exp > 0], exp[exp > 0]
    stat = ((obs - exp) ** 2 / exp).sum()
    return torch.special.gammaincc(torch.tensor((len(obs) - 1) / 2.0, dtype=torch.float64), stat / 2).item()


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_draws_follow_tempered_softmax(temperature):
    """Direct check of `sample` on a vocabulary that is not a multiple of the block size, with zero-mass entries."""
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(700, generator=gen) * 2
    logits[::7] = float("-inf")
    probs = torch.softmax(logits / temperature, -1)
    torch.manual_seed(0)
    token, logp, entropy = sample(logits.repeat(20_000, 1), temperature)
    counts = torch.bincount(token, minlength=700)
    assert counts[::7].sum() == 0
    assert _chi2_pvalue(counts, probs) > 1e-3
    torch.testing.assert_close(logp, probs.log()[token])
    torch.testing.assert_close(entropy[0], -(probs[probs > 0] * probs[probs > 0].log()).sum())


def test_first_token_of_engine_follows_tempered_softmax(policy):
    """Through the whole engine (prefill once, n rows): the first tokens of many samples of one prompt."""
    model, processor = policy
    rows = encode_prompts(processor, _samples("image")[:1])
    batch = collate(rows, pad_token_id(processor))
    with torch.no_grad():
        logits = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values",
                                                "image_grid_thw")}).logits[0, -1]
    probs = torch.softmax(logits / 0.8, -1)
    torch.manual_seed(0)
    rollout = generate(model, processor, rows, n=20_000, temperature=0.8, max_new_tokens=1)
    # a sampled image placeholder is cut from the response (empty here): one bin for all of them
    first = torch.stack([r[0] if len(r) else torch.tensor(-1) for r in rollout.responses])
    vision = torch.isin(torch.arange(len(probs)), torch.tensor(vision_token_ids(processor)))
    counts = torch.bincount(first[first >= 0], minlength=len(probs))
    assert counts[vision].sum() == 0
    counts = torch.cat([counts[~vision], (first < 0).sum()[None]])
    assert _chi2_pvalue(counts, torch.cat([probs[~vision], probs[vision].sum()[None]])) > 1e-3


def test_nucleus_sampling():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(300, generator=gen) * 1.5
    top_p = 0.7
    # transformers' TopPLogitsWarper gives the nucleus
    kept = torch.isfinite(TopPLogitsWarper(top_p)(None, logits[None].clone())[0])
    assert 5 < kept.sum() < 150
    probs = torch.softmax(logits, -1)
    target = torch.where(kept, probs, 0.0)
    torch.manual_seed(0)
    token, logp, _ = sample(logits.repeat(30_000, 1), 1.0, top_p)
    counts = torch.bincount(token, minlength=300)
    assert counts[~kept].sum() == 0
    assert _chi2_pvalue(counts[kept], target[kept] / target.sum()) > 1e-3
    torch.testing.assert_close(logp, probs.log()[token])  # the log-prob of the full softmax, as training scores it


def test_draw_is_exact_on_small_cases():
    weights = torch.tensor([[0.0, 1.0, 0.0, 3.0, 0.0], [2.0, 0.0, 0.0, 0.0, 2.0]])
    torch.manual_seed(0)
    picks = torch.stack([draw(weights.repeat(2000, 1), block=2) for _ in range(2)]).view(-1, 2000, 2)
    row0, row1 = picks[..., 0].flatten(), picks[..., 1].flatten()
    assert set(row0.tolist()) == {1, 3} and set(row1.tolist()) == {0, 4}
    assert abs((row0 == 3).float().mean().item() - 0.75) < 0.03
    assert abs((row1 == 0).float().mean().item() - 0.5) < 0.03


def test_finished_rows_leave_the_batch(policy, monkeypatch):
    """A stop token that some rows emit early: their rows leave the decode batch, and every response still equals
    transformers' greedy output with the same stop token."""
    model, processor = policy
    rows = encode_prompts(processor, _samples("mixed"))
    free = _hf_greedy(model, processor, rows, 16)
    stop = free[0][3]  # row 0 stops after 4 tokens
    expected = _hf_greedy(model, processor, rows, 16, stop_ids=[stop])
    assert len(expected[0]) == 4 and max(map(len, expected)) > 8
    sizes = []
    step = ours_engine.decode_one_token

    def counting(model, tokens, *args, **kwargs):
        sizes.append(tokens.shape[0])
        return step(model, tokens, *args, **kwargs)

    monkeypatch.setattr(ours_engine, "decode_one_token", counting)
    ours = generate(model, processor, rows, n=2, temperature=0.0, max_new_tokens=16, stop_ids=[stop])
    assert [r.tolist() for r in ours.responses] == [e for e in expected for _ in range(2)]
    assert ours.finished[:2] == [True, True]
    assert sizes[0] == 6 and sizes[-1] < 6 and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("attn", ["torch_varlen", pytest.param("triton_varlen", marks=pytest.mark.slow)])
def test_engine_with_varlen_attention(policy, attn):
    """The packed varlen attention (a 2-D padding mask, or none) gives the engine's sdpa output."""
    import lmm_kernels
    if attn == "triton_varlen" and not lmm_kernels.triton_runs_on(torch.device("cpu"))[0]:
        pytest.skip("needs TRITON_INTERPRET=1 (tests/conftest.py sets it)")
    from lmm_kernels.hf_attention import register
    model, processor = policy
    rows = encode_prompts(processor, _samples("mixed")[:2])
    expected = generate(model, processor, rows, n=2, temperature=0.0, max_new_tokens=5)
    register()
    model.set_attn_implementation(attn)
    try:
        torch.manual_seed(0)
        ours = generate(model, processor, rows, n=2, temperature=0.0, max_new_tokens=5)
        sampled = generate(model, processor, rows[:1], n=2, max_new_tokens=4)  # one prompt: no padding at all
    finally:
        model.set_attn_implementation("sdpa")
    assert [r.tolist() for r in ours.responses] == [r.tolist() for r in expected.responses]
    batch = sampled.batch(range(2), pad_token_id(processor))
    logp, _ = response_logprobs(model, batch)
    mask = batch["action_mask"]
    torch.testing.assert_close(batch["sampler_logp"][mask], logp[mask], atol=2e-5, rtol=1e-5)


def test_hf_engine_is_selectable(policy):
    model, processor = policy
    rows = encode_prompts(processor, _samples("text"))
    torch.manual_seed(0)
    rollout = generate(model, processor, rows, n=2, max_new_tokens=4, engine="hf")
    assert len(rollout) == 4 and rollout.mask.sum() > 0 and not rollout.sampler_logp.any()
    greedy = [generate(model, processor, rows, n=1, temperature=0.0, max_new_tokens=8, engine=e) for e in ENGINES]
    assert [r.tolist() for r in greedy[0].responses] == [r.tolist() for r in greedy[1].responses]
    with pytest.raises(ValueError, match="unknown rollout engine"):
        generate(model, processor, rows, n=1, engine="vllm")


def test_decode_step_traces_as_one_graph(policy, monkeypatch):
    """`compile=True` (CUDA only) wraps decode_one_token in torch.compile: here dynamo traces it on the CPU with the
    eager backend and fullgraph=True (no graph break), across a shrinking batch and a growing cache."""
    model, processor = policy
    rows = encode_prompts(processor, _samples("mixed"))
    expected = generate(model, processor, rows, n=2, temperature=0.0, max_new_tokens=6)
    torch._dynamo.reset()
    compiled = torch.compile(ours_engine.decode_one_token, dynamic=True, fullgraph=True, backend="eager")
    monkeypatch.setattr(ours_engine, "_decode_step", lambda compile, device: compiled)
    ours = generate(model, processor, rows, n=2, temperature=0.0, max_new_tokens=6)
    torch._dynamo.reset()
    assert [r.tolist() for r in ours.responses] == [r.tolist() for r in expected.responses]


def test_old_logprobs_from_the_sampler_save_a_forward(tmp_path, tiny_checkpoint):
    """--old-logprobs sampler: no policy forward before the update, the same step otherwise; both modes report how
    far the sampler's log-probs are from the training forward's."""
    from data import load_fixture
    from rl.config import invalid, preset
    from rl.run import make_trainer

    steps = {}
    for mode in ("recompute", "sampler"):
        cfg = preset("debug", model=tiny_checkpoint, out=str(tmp_path / mode), max_steps=1, kl=0.01, save_every=0,
                     old_logprobs=mode, plots=False)
        trainer = make_trainer(cfg, load_fixture("math"), Spread(), log=lambda *a: None)
        backbone, forwards = trainer.policy.model, []  # full-sequence passes of the policy (prefill included)
        inner = backbone.forward
        backbone.forward = lambda *a, **k: (forwards.append(torch.is_grad_enabled()), inner(*a, **k))[1]
        rollout, metrics = trainer.make_experience(trainer.prompts_for_step(0))
        metrics.update(trainer.train_on(rollout))
        steps[mode] = (metrics, forwards.count(False), rollout)
    (rec, rec_fwd, rec_rollout), (smp, smp_fwd, smp_rollout) = steps["recompute"], steps["sampler"]
    assert rec_fwd - smp_fwd == len(rec_rollout) // 8  # one micro-batch of 8 (debug preset): one pass fewer
    assert rec["logprob/sampler_max_diff"] < 1e-4 and smp["logprob/sampler_max_diff"] < 1e-4
    assert [r.tolist() for r in smp_rollout.responses] == [r.tolist() for r in rec_rollout.responses]
    for key in ("loss/policy", "kl", "entropy", "approx_kl"):
        assert smp[key] == pytest.approx(rec[key], abs=1e-4), key
    assert invalid(preset("debug", engine="hf", old_logprobs="sampler")).startswith("--old-logprobs sampler: needs")


def test_trainer_runs_with_the_hf_engine(tmp_path, tiny_checkpoint):
    from data import load_fixture
    from rl.config import preset
    from rl.run import make_trainer

    cfg = preset("debug", model=tiny_checkpoint, out=str(tmp_path), max_steps=1, save_every=0, engine="hf",
                 max_new_tokens=6, plots=False)
    trainer = make_trainer(cfg, load_fixture("math"), Spread(), log=lambda *a: None)
    rollout, metrics = trainer.make_experience(trainer.prompts_for_step(0))
    assert "logprob/sampler_max_diff" not in metrics and rollout.mask.sum() > 0
