"""Colocated generation: the policy being trained samples its own rollouts, in the same process, with the same weights.

Sampling is plain sampling from softmax(logits / temperature), optionally nucleus-truncated by top_p, and nothing
else: the checkpoint's own generation_config (Qwen2.5-VL-3B-Instruct ships top_k=1, repetition_penalty=1.05) is
replaced, because PPO's importance ratio assumes the samples came from exactly the distribution it scores.

`generate` is the front every caller uses (trainer, evaluation, benches): it batches the prompt rows, seeds each
batch, cuts each response at its first stop token and builds the Rollout. The engine behind `generate(...,
engine=)` is looked up in rl.engines.ENGINES (name -> module, imported only when chosen):

* "ours" (rl/engines/ours.py, default): each prompt prefilled once for its n samples, finished rows leave the
  batch, the log-prob and entropy of each draw kept.
* "hf" (rl/engines/hf.py): transformers' `model.generate`.

An engine is one module in rl/engines/ plus its entry in rl.engines.ENGINES. It provides one function, called per batch
of b prompts (under torch.no_grad(), model in eval mode, right after the front's torch.manual_seed when seeded: draw
from torch's global RNG and the samples repeat with the seed):

    generate_batch(model, processor, batch, n, temperature, top_p, max_new_tokens, stop_ids, forbidden_ids,
                   compile) -> (tokens, logp, entropy), all on the CPU

* batch: rl.batch.collate's dict of CPU tensors (left-padded input_ids [b, P], attention_mask, prompt_len = P;
  for images also mm_token_type_ids, pixel_values, image_grid_thw). Rows i*n .. i*n+n-1 of each output answer
  prompt i.
* sampling as above (temperature 0 = greedy); a row may stop at any of stop_ids or forbidden_ids (vision tokens);
  `compile` asks for a compiled decode step and may be ignored.
* tokens: long [b*n, R], R <= max_new_tokens, each row's new tokens. The front cuts a row at its first stop token
  (finished) or before its first forbidden token (unfinished); whatever follows is ignored.
* logp, entropy: float [b*n, max_new_tokens], the log-prob of each drawn token and the entropy of its distribution,
  both of the full tempered softmax (what the training forward computes); or None, None when the engine has none
  (the Rollout's sampler_logp then stays zero: --old-logprobs sampler needs an engine that gives them).
"""

import torch

from rl.batch import Rollout, collate
from rl.engines import ENGINES, engine_module
from rl.processor import pad_token_id, stop_token_ids, tokenizer_of


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
             max_new_tokens: int = 1024, batch_size: int = 8, engine: str = "ours", compile: bool = False,
             stop_ids: list[int] | None = None, seed: int | None = None, truncated_end: str = "keep") -> Rollout:
    """n samples for each prompt row: responses [i*n:(i+1)*n] answer prompt i (each ending with the stop token
    when it finished). With an engine that returns them ("ours"), the Rollout also holds each token's sampler
    log-prob and entropy.

    With `seed`, the random numbers of the batch that starts at prompt k are drawn after torch.manual_seed(seed + k):
    the samples depend on the prompts and the seed, not on which process generates them.

    truncated_end "eos" (--truncated-end, the released Actor.process_sequences): an unfinished response has its last
    sampled token overwritten with the end token; "keep" leaves it."""
    if truncated_end not in ("keep", "eos"):
        raise ValueError(f"truncated_end {truncated_end!r}: 'keep' or 'eos'")
    generate_batch = engine_module(engine).generate_batch
    was_training = model.training
    model.eval()
    stop_ids = list(stop_ids) if stop_ids is not None else stop_token_ids(processor)
    forbidden = vision_token_ids(processor)
    pad, eos = pad_token_id(processor), tokenizer_of(processor).eos_token_id
    responses, finished, logps, entropies = [], [], [], []
    for start in range(0, len(prompt_rows), batch_size):
        if seed is not None:
            torch.manual_seed(seed + start)
        batch = collate(prompt_rows[start:start + batch_size], pad)
        sequences, logp, entropy = generate_batch(model, processor, batch, n, temperature, top_p, max_new_tokens,
                                                  stop_ids, forbidden, compile)
        if logp is not None:
            logps += list(logp)
            entropies += list(entropy)
        for ids in sequences:
            ids, done = cut_at_stop(ids, stop_ids, forbidden)
            if truncated_end == "eos" and not done and ids.numel():
                ids[-1] = eos
            responses.append(ids)
            finished.append(done)
    model.train(was_training)
    rollout = Rollout(prompt_rows, n, responses, finished)
    if logps:
        R = rollout.mask.shape[1]
        everything = range(len(rollout))
        rollout.store(everything, "sampler_logp", torch.stack(logps)[:, :R])
        rollout.store(everything, "entropy", torch.stack(entropies)[:, :R])
    return rollout
