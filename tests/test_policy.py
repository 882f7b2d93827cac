"""The policy's log-probs must be the log-probs of the distribution the sampler drew from.

This pins down everything between generation and training: chat template, left/right padding, position ids (1-D
and Qwen2.5-VL's 3-D M-RoPE with images), temperature, and the chunked log-prob computation."""

import pytest
import torch
from PIL import Image

from data.sample import Sample, make_messages
from lmm_kernels.logprob import logprobs_from_hidden
from rl.batch import collate, encode_prompts, position_ids
from rl.engines.hf import sampling_config
from rl.policy import load_policy, response_logprobs
from rl.processor import pad_token_id, stop_token_ids
from rl.rollout import cut_at_stop, generate


def _samples():
    img = Image.new("RGB", (84, 56), "white")
    for x in range(20, 60):
        img.putpixel((x, 30), (255, 0, 0))
    return [
        Sample(messages=make_messages("What is 3 + 4?", images=[img]), answer="7", domain="math", meta={}),
        Sample(messages=make_messages("Solve 3x + 5 = 20 for x. Show your work briefly."), answer="5",
               domain="math", meta={}),
    ]


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    return load_policy(tiny_checkpoint)


def test_loads_real_classes(policy):
    model, processor = policy
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert isinstance(processor, __import__("transformers").Qwen2_5_VLProcessor)
    text = processor.apply_chat_template(_samples()[0].messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nA conversation between User and Assistant.")
    assert "<|vision_start|><|image_pad|><|vision_end|>What is 3 + 4?<|im_end|>\n<|im_start|>assistant\n" in text


def test_image_pixel_budget(policy):
    from rl.processor import set_image_pixels
    _, processor = policy
    big = Sample(messages=make_messages("?", images=[Image.new("RGB", (640, 480))]), answer="", domain="x", meta={})
    set_image_pixels(processor, 28 * 28, 224 * 224)
    (t, h, w), = encode_prompts(processor, [big])[0]["image_grid_thw"].tolist()
    assert 14 * 14 * h * w <= 224 * 224 and h * w > 100 and h / w == pytest.approx(480 / 640, rel=0.2)
    set_image_pixels(processor, 28 * 28, 112 * 112)
    (t, h, w), = encode_prompts(processor, [big])[0]["image_grid_thw"].tolist()
    assert 14 * 14 * h * w <= 112 * 112


def test_image_prompt_has_3d_positions(policy):
    model, processor = policy
    rows = encode_prompts(processor, _samples())
    assert rows[0]["mm_token_type_ids"].sum() > 0 and rows[0]["image_grid_thw"].tolist() == [[1, 4, 6]]
    pos = position_ids(model.model, collate(rows, pad_token_id(processor)))
    assert pos.shape[0] == 3
    assert not torch.equal(pos[1], pos[2])  # height and width positions differ on image tokens


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_sampler(policy, temperature):
    """Sample with scores, then recompute every response token's log-prob with the training forward."""
    model, processor = policy
    rows = encode_prompts(processor, _samples())
    batch = collate(rows, pad_token_id(processor))
    config = sampling_config(processor, 2, temperature, 1.0, 10)
    torch.manual_seed(0)
    out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         mm_token_type_ids=batch["mm_token_type_ids"], pixel_values=batch["pixel_values"],
                         image_grid_thw=batch["image_grid_thw"], generation_config=config,
                         output_logits=True, return_dict_in_generate=True)
    P = batch["prompt_len"]
    logits = torch.stack(out.logits, 1)  # [B*n, R, V], raw (before temperature)
    sampled = out.sequences[:, P:]
    expected = torch.log_softmax(logits.float() / temperature, -1).gather(-1, sampled[..., None]).squeeze(-1)

    gen_rows = []
    for j, ids in enumerate(sampled):
        ids, _ = cut_at_stop(ids, stop_token_ids(processor))
        gen_rows.append({**rows[j // 2], "response_ids": ids})
    train_batch = collate(gen_rows, pad_token_id(processor))
    logp, entropy = response_logprobs(model, train_batch, temperature, with_entropy=True, chunk_size=3)
    mask = train_batch["action_mask"]
    R = mask.shape[1]
    torch.testing.assert_close(logp[mask], expected[:, :R][mask], atol=2e-5, rtol=1e-5)
    assert (logp[mask] <= 0).all() and (entropy[mask] > 0).all()


def test_padding_does_not_change_logprobs(policy):
    """A row scored alone equals the same row scored in a batch with longer rows (left and right padding)."""
    model, processor = policy
    rows = encode_prompts(processor, _samples())
    torch.manual_seed(1)
    rollout = generate(model, processor, rows, n=2, max_new_tokens=6)
    together, _ = response_logprobs(model, rollout.batch(range(len(rollout)), pad_token_id(processor)))
    for i in range(len(rollout)):
        alone, _ = response_logprobs(model, rollout.batch([i], pad_token_id(processor)))
        n = rollout.responses[i].numel()
        torch.testing.assert_close(together[i, :n], alone[0, :n], atol=1e-5, rtol=1e-5)


def test_chunked_logprobs_match_full_softmax_with_grad():
    torch.manual_seed(0)
    hidden = torch.randn(2, 7, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (2, 7))
    logp, ent = logprobs_from_hidden(hidden, weight, targets, temperature=0.8, with_entropy=True, chunk_size=4)
    ref = torch.log_softmax(hidden @ weight.T / 0.8, -1)
    ref_logp = ref.gather(-1, targets[..., None]).squeeze(-1)
    torch.testing.assert_close(logp, ref_logp)
    torch.testing.assert_close(ent, -(ref.exp() * ref).sum(-1))
    g = torch.randn(2, 7, dtype=torch.float64)
    gh, gw = torch.autograd.grad((logp * g).sum(), (hidden, weight))
    rh, rw = torch.autograd.grad((ref_logp * g).sum(), (hidden, weight))
    torch.testing.assert_close(gh, rh)
    torch.testing.assert_close(gw, rw)


def test_text_only_qwen2_checkpoint(tmp_path):
    """A Qwen2/Qwen2.5 text checkpoint goes through the same functions (tokenizer as processor, 1-D positions)."""
    from rl.tiny_model import build_tiny_checkpoint
    model, tokenizer = load_policy(str(build_tiny_checkpoint(tmp_path / "qwen2", text_only=True)))
    assert type(model).__name__ == "Qwen2ForCausalLM"
    rows = encode_prompts(tokenizer, [_samples()[1]])
    assert tokenizer.decode(rows[0]["prompt_ids"]).endswith("<|im_end|>\n<|im_start|>assistant\n")
    torch.manual_seed(0)
    rollout = generate(model, tokenizer, rows, n=3, max_new_tokens=5)
    batch = rollout.batch(range(3), pad_token_id(tokenizer))
    logp, _ = response_logprobs(model, batch)
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 position_ids=position_ids(model.model, batch)).logits
    P = batch["prompt_len"]
    expected = torch.log_softmax(full[:, P - 1:-1].float(), -1).gather(-1, batch["input_ids"][:, P:, None])[..., 0]
    mask = batch["action_mask"]
    torch.testing.assert_close(logp[mask], expected[mask], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="no vision tower"):
        encode_prompts(tokenizer, [_samples()[0]])


def test_cut_at_stop_and_image_placeholders():
    ids = torch.tensor([5, 6, 2, 7])
    assert cut_at_stop(ids, [2])[0].tolist() == [5, 6, 2] and cut_at_stop(ids, [2])[1]
    assert cut_at_stop(ids, [3])[0].tolist() == [5, 6, 2, 7] and not cut_at_stop(ids, [3])[1]
    # a sampled image placeholder ends the response before it, as unfinished
    cut, finished = cut_at_stop(torch.tensor([5, 9, 2]), [2], forbidden_ids=[9])
    assert cut.tolist() == [5] and not finished
