"""The "hf" engine: transformers' `model.generate` (it prefills every prompt n times and keeps finished rows in the
batch). It keeps no sampler log-probs."""

from transformers import GenerationConfig

from rl.processor import pad_token_id, stop_token_ids


def sampling_config(processor, n: int, temperature: float, top_p: float, max_new_tokens: int) -> GenerationConfig:
    """Plain sampling: the checkpoint's own generation_config (top_k, repetition_penalty, ...) replaced."""
    return GenerationConfig(do_sample=True, num_return_sequences=n, temperature=temperature, top_p=top_p, top_k=0,
                            min_p=None, repetition_penalty=1.0, max_new_tokens=max_new_tokens,
                            eos_token_id=stop_token_ids(processor), pad_token_id=pad_token_id(processor))


def generate_batch(model, processor, batch: dict, n: int, temperature: float, top_p: float, max_new_tokens: int,
                   stop_ids: list[int], forbidden_ids: list[int], compile: bool = False):
    """transformers' generate on one collated batch -> (the new tokens [b*n, R] (CPU), None, None).
    `forbidden_ids` are left to the caller's cut; `compile` does not apply."""
    config = sampling_config(processor, n, temperature, top_p, max_new_tokens)
    if temperature <= 0:  # greedy, as in our engine
        config = GenerationConfig(do_sample=False, num_return_sequences=n, max_new_tokens=max_new_tokens,
                                  pad_token_id=config.pad_token_id)
    config.eos_token_id = stop_ids
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    for key in ("mm_token_type_ids", "pixel_values", "image_grid_thw"):
        if key in batch:
            inputs[key] = batch[key]
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    return model.generate(**inputs, generation_config=config)[:, batch["prompt_len"]:].cpu(), None, None
