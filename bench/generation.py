"""Tokens per second of our rollout engine against transformers' `generate`, on the same prompts, in one run.

    python bench/generation.py                                   # n = 4, 16 x 128, 512 new tokens, 2 image prompts
    python bench/generation.py --n 16 --new-tokens 128 --prompts 8 --threads 2

Model: a Qwen2.5-VL with the real vocabulary (151,936) and a tiny body (hidden 256, 4 layers, 4 heads / 2 kv heads,
a 2-block vision tower), random weights, built here offline with the tiny debug tokenizer and processor; prompts
are the bundled image prompts (`fixture:message`), `--text` drops their images. At this size the LM head and the
sampling over the vocabulary are most of a decode step, as they are for the 3B model's small batches.

Both engines run rl.rollout.generate (engine "ours" or "hf") with the same rows, n, temperature 1, top_p 1 and
max_new_tokens; a random model almost never samples a stop token, so both produce about n x prompts x new tokens.
Tokens per second are given per CPU second (process time, all threads: stable when other jobs share the cores) and
per wall second; ratios are ours / hf.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


def build_bench_checkpoint(path, vocab_size: int = 151_936, hidden: int = 256, layers: int = 4, seed: int = 0):
    """A random Qwen2.5-VL of the given vocabulary and body size with the tiny debug tokenizer and processor
    (the model may sample ids the small tokenizer lacks: they decode to nothing). Returns the path."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from rl.processor import load_processor
    from rl.tiny_model import build_tiny_checkpoint

    path = Path(path)
    build_tiny_checkpoint(path, seed=seed)
    tok = load_processor(str(path)).tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", "<|image_pad|>",
                                                      "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    heads = 4
    head_dim = hidden // heads
    section = [head_dim // 8, 3 * head_dim // 16, head_dim // 2 - head_dim // 8 - 3 * head_dim // 16]
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=2,
                         max_position_embeddings=8192, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": section},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=hidden,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(path)
    return path


def bench_prompts(processor, count: int, text_only: bool = False):
    """`count` prompt rows from the bundled image prompts (repeated if needed); images dropped with text_only."""
    from data import load_fixture
    from data.sample import Sample, make_messages

    samples = load_fixture("message")
    samples = [samples[i % len(samples)] for i in range(count)]
    if text_only:
        samples = [Sample(messages=make_messages(s.question), answer=s.answer, domain=s.domain, meta=s.meta)
                   for s in samples]
    from rl.batch import encode_prompts
    return samples, encode_prompts(processor, samples)


def measure(fn):
    """(result, cpu seconds, wall seconds) of fn()."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", default="4,16", help="samples per prompt (comma separated)")
    parser.add_argument("--new-tokens", default="128,512", help="max new tokens (comma separated)")
    parser.add_argument("--prompts", type=int, default=2, help="image prompts per case")
    parser.add_argument("--text", action="store_true", help="text-only prompts (images dropped)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--engines", default="ours,hf")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per generate batch")
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from rl.policy import load_policy
    from rl.rollout import generate

    with tempfile.TemporaryDirectory() as tmp:
        path = build_bench_checkpoint(Path(tmp) / "model", args.vocab, args.hidden, args.layers)
        model, processor = load_policy(str(path))
    _, rows = bench_prompts(processor, args.prompts, args.text)
    engines = args.engines.split(",")
    print(f"model: vocab {args.vocab}, hidden {args.hidden}, {args.layers} layers; {args.prompts} "
          f"{'text' if args.text else 'image'} prompts of {[r['prompt_ids'].numel() for r in rows]} tokens; "
          f"{args.threads} thread(s); tokens/s per CPU second (per wall second)")
    header = f"{'n':>3} {'new':>4} {'rows':>4} " + " ".join(f"{e + ' tok/s':>20}" for e in engines)
    if engines == ["ours", "hf"]:
        header += f" {'ratio cpu':>9} {'ratio wall':>10}"
    print(header)
    for n in map(int, args.n.split(",")):
        for new in map(int, args.new_tokens.split(",")):
            speeds = []
            for engine in engines:
                torch.manual_seed(0)
                rollout, cpu, wall = measure(lambda: generate(model, processor, rows, n, 1.0, 1.0, new,
                                                              args.batch_size, engine=engine))
                tokens = rollout.mask.sum().item()
                speeds.append((tokens / cpu, tokens / wall))
            line = f"{n:>3} {new:>4} {n * len(rows):>4} " + " ".join(f"{c:>10.1f} ({w:>7.1f})" for c, w in speeds)
            if engines == ["ours", "hf"]:
                line += f" {speeds[0][0] / speeds[1][0]:>8.2f}x {speeds[0][1] / speeds[1][1]:>9.2f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
