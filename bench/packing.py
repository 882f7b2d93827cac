"""Padded against packed micro-batches on a rollout-like batch: computed tokens per useful token, and the CPU time of
one update pass (forward + backward of every micro-batch) of each, in one run.

    python bench/packing.py [--samples 64] [--max-len 4096] [--micro-batch-size 4] [--budget 8192] [--hidden 64]

Lengths are long-tailed like RL responses (log-normal, clipped to [50, --max-len]); a quarter of the prompts carry an
image. Both layouts see the same samples in the same random order (as the trainer's PPO pass); padded groups
--micro-batch-size samples, packed fills --budget tokens by first-fit decreasing (at most --micro-batch-size x 4
samples). The model is a tiny random Qwen2.5-VL built in code (real classes, small hidden size); padded batches use
sdpa, packed ones --packed-attn.
"""

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from data.sample import Sample, make_messages  # noqa: E402
from lmm_kernels.hf_attention import register  # noqa: E402
from rl.batch import Rollout, encode_prompts, micro_batches  # noqa: E402
from rl.policy import load_policy, response_logprobs  # noqa: E402
from rl.processor import pad_token_id  # noqa: E402
from rl.tiny_model import build_tiny_checkpoint  # noqa: E402


def make_rollout(processor, samples: int, max_len: int, seed: int) -> Rollout:
    g = torch.Generator().manual_seed(seed)
    prompts = []
    for i in range(samples):
        images = [Image.new("RGB", (112, 84), (40 * (i % 6), 90, 160))] if i % 4 == 0 else []
        prompts.append(Sample(make_messages(f"Problem {i}: what is {i} + {i * 3}?", images), "0", "math"))
    rows = encode_prompts(processor, prompts)
    lengths = torch.exp(torch.randn(samples, generator=g) * 1.0 + 6.0).clamp(50, max_len).long()
    responses = [torch.randint(10, 400, (int(n),), generator=g) for n in lengths]
    return Rollout(rows, 1, responses, [True] * samples)


def update_pass(model, rollout, groups, pad, packed) -> tuple[float, int, int]:
    """(CPU seconds, computed tokens, micro-batches) of forward + backward over every group."""
    computed = 0
    t = time.process_time()
    for idx in groups:
        batch = rollout.batch(idx, pad, packed=packed)
        computed += batch["input_ids"].numel()
        logp, _ = response_logprobs(model, batch)
        logp.sum().backward()
    model.zero_grad(set_to_none=True)
    return time.process_time() - t, computed, len(groups)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=4096)
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--budget", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--packed-attn", default="sdpa_varlen",
                        help="attention of the packed pass: sdpa_varlen (sdpa per row: the torch path), triton_varlen "
                             "(GPU), torch_varlen (the reference) or sdpa (a [T, T] block mask: quadratic in the "
                             "packed length)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = load_policy(str(build_tiny_checkpoint(Path(tmp) / "m", hidden=args.hidden)))
    model.config.use_cache = False
    pad = pad_token_id(processor)
    rollout = make_rollout(processor, args.samples, args.max_len, args.seed)
    useful = sum(rollout.lengths())
    order = torch.randperm(len(rollout), generator=torch.Generator().manual_seed(args.seed)).tolist()
    padded_groups = [order[i:i + args.micro_batch_size] for i in range(0, len(order), args.micro_batch_size)]
    lengths = rollout.lengths()
    packed_groups = [[order[j] for j in g] for g in
                     micro_batches([lengths[i] for i in order], args.budget, args.micro_batch_size * 4)]
    print(f"{args.samples} samples, {useful} useful tokens (lengths {min(lengths)}..{max(lengths)}), "
          f"hidden {args.hidden}, {args.threads} thread(s)")
    results = {}
    register()
    for name, groups, packed in (("padded", padded_groups, False), ("packed", packed_groups, True)):
        model.set_attn_implementation(args.packed_attn if packed else "sdpa")
        cpu, computed, n = update_pass(model, rollout, groups, pad, packed)
        results[name] = (cpu, computed)
        print(f"{name:<7} {n:>4} micro-batches  {computed:>9} computed tokens  {computed / useful:6.3f} per useful"
              f"  {cpu:8.2f} CPU s")
    (pc, pt), (kc, kt) = results["padded"], results["packed"]
    print(f"packed / padded: computed tokens {kt / pt:.3f}x, CPU time {kc / pc:.3f}x; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
