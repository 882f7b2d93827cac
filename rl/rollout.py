"""Colocated generation: the policy being trained samples its own rollouts, in the same process, with the same weights.

Sampling is plain multinomial sampling from softmax(logits / temperature), optionally nucleus-truncated by top_p, and
nothing else: the checkpoint's own generation_config (Qwen2.5-VL-3B-Instruct ships top_k=1, repetition_penalty=1.05)
is replaced, because PPO's importance ratio assumes the samples came from exactly the distribution it scores.
"""

import torch
from transformers import GenerationConfig

from rl.batch import Rollout, collate
from rl.policy import pad_token_id, stop_token_ids, tokenizer_of


def sampling_config(processor, n: int, temperature: float, top_p: float, max_new_tokens: int) -> GenerationConfig:
    return GenerationConfig(do_sample=True, num_return_sequences=n, temperature=temperature, top_p=top_p, top_k=0,
                            min_p=None, repetition_penalty=1.0, max_new_tokens=max_new_tokens,
                            eos_token_id=stop_token_ids(processor), pad_token_id=pad_token_id(processor))


def cut_at_stop(ids: torch.Tensor, stop_ids: list[int], forbidden_ids: list[int] = ()) -> tuple[torch.Tensor, bool]:
    """Keep tokens up to and including the first stop token; (ids, finished).

    A response is also cut just before a forbidden token (an image placeholder the model may sample, which the
    training forward would take for an image slot) and then counts as unfinished, like one that hit the length
    limit. Cutting keeps the sampling distribution untouched, so the kept tokens' log-probs stay exact."""
    bad = torch.isin(ids, torch.tensor(list(forbidden_ids), dtype=ids.dtype, device=ids.device)).nonzero()
    if len(bad):
        ids = ids[: bad[0, 0]]
    hits = torch.isin(ids, torch.tensor(stop_ids, dtype=ids.dtype, device=ids.device)).nonzero()
    if len(hits):
        return ids[: hits[0, 0] + 1], True
    return ids, False


def vision_token_ids(processor) -> list[int]:
    tok = tokenizer_of(processor)
    ids = [tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                   "<|vision_end|>")]
    return [i for i in ids if i is not None and i != tok.unk_token_id]


@torch.no_grad()
def generate(model, processor, prompt_rows: list[dict], n: int, temperature: float = 1.0, top_p: float = 1.0,
             max_new_tokens: int = 1024, batch_size: int = 8) -> Rollout:
    """n samples for each prompt row: responses [i*n:(i+1)*n] answer prompt i (each ending with the stop token
    when it finished)."""
    was_training = model.training
    model.eval()
    config = sampling_config(processor, n, temperature, top_p, max_new_tokens)
    pad = pad_token_id(processor)
    forbidden = vision_token_ids(processor)
    device = model.device
    responses, finished = [], []
    for start in range(0, len(prompt_rows), batch_size):
        chunk = prompt_rows[start:start + batch_size]
        batch = collate(chunk, pad)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        for key in ("mm_token_type_ids", "pixel_values", "image_grid_thw"):
            if key in batch:
                inputs[key] = batch[key]
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        sequences = model.generate(**inputs, generation_config=config)
        for ids in sequences[:, batch["prompt_len"]:].cpu():
            ids, done = cut_at_stop(ids, config.eos_token_id, forbidden)
            responses.append(ids)
            finished.append(done)
    model.train(was_training)
    return Rollout(prompt_rows, n, responses, finished)
