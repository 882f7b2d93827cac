"""Whether `--dtype auto` should pick bf16 on a CPU that has it (issue 26, item 3): the classroom preset in fp32 and
under bf16 autocast, same seeds, same run; step time and what the run learned, bf16 against fp32.

    python bench/cpu_bf16.py                          # seeds 1 2 3, 30 steps, 200 held-out items per evaluation
    python bench/cpu_bf16.py --seeds 0 1 --steps 50
    python bench/cpu_bf16.py --head                   # only the engine's LM head, fp32 against bf16 (seconds)

Each case is `train_fre.py --preset classroom --seed S --dtype D --max-steps N --eval-benchmarks classroom-text
--eval-limit L --no-plots --cpu-threads 1` in a fresh process (the warm model of each seed is built first, once, if
it is not cached). Per case: the mean step time (steps 2.., the first warms up) and its generate and update
phases, the mean reward of the last 5 steps, held-out accuracy at the last step. A bf16 run draws other samples
than its fp32 twin from the first differing logit on, so bf16 - fp32 of one seed holds the seeds' noise as well:
it is set beside the spread of fp32 between seeds ("noise"). `--head`: one decode step's LM head (8 rows, the real
vocabulary of 151,936) through rl.engines.ours.head_logits, fp32 and under bf16 autocast, at two widths: where bf16
pays on a CPU.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_case(out: Path, seed: int, dtype: str, steps: int, eval_limit: int) -> dict:
    """One classroom run; its figures."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "train_fre.py"), "--preset", "classroom", "--seed", str(seed),
                           "--dtype", dtype, "--out", str(out), "--max-steps", str(steps), "--eval-benchmarks",
                           "classroom-text", "--eval-limit", str(eval_limit), "--no-plots", "--cpu-threads", "1",
                           "--overwrite"], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"the {dtype} run of seed {seed} failed:\n{proc.stderr[-2000:]}")
    return {"wall": time.perf_counter() - start, **summary(out / "metrics.jsonl")}


def summary(metrics: Path) -> dict:
    """Mean step, generate and update seconds (steps 2..), last-5-step reward, final held-out accuracy."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    steps = [r for r in rows if r["step"] > 0]
    timed = steps[1:] or steps

    def mean(rs, key):
        return sum(r[key] for r in rs) / len(rs)

    acc = [r["eval/classroom-text/accuracy"] for r in rows if "eval/classroom-text/accuracy" in r]
    return {"step_s": mean(timed, "time/step"), "generate_s": mean(timed, "time/generate"),
            "update_s": mean(timed, "time/update"), "reward": mean(steps[-5:], "reward/mean"),
            "acc0": acc[0], "acc": acc[-1], "sampler_diff": max(r["logprob/sampler_max_diff"] for r in steps)}


def head_times(widths=(256, 2048), rows: int = 8, vocab: int = 151_936, reps: int = 10):
    """Milliseconds of the engine's LM head per decode step, fp32 and under bf16 autocast, at each width."""
    import torch

    from rl.engines.ours import head_logits

    def ms(fn):
        fn()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - start) / reps * 1e3

    for width in widths:
        weight = (torch.randn(vocab, width) * 0.02).requires_grad_()  # a parameter: autocast caches its bf16 copy
        hidden, out, tmp = torch.randn(rows, width), torch.empty(rows, vocab), torch.empty(rows, vocab)
        with torch.no_grad():
            fp32 = ms(lambda: head_logits(hidden, weight, out, tmp))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf16 = ms(lambda: head_logits(hidden, weight, out, tmp))
        print(f"LM head, {rows} rows, V = {vocab:,}, H = {width}: fp32 {fp32:.1f} ms, bf16 {bf16:.1f} ms "
              f"(x{fp32 / bf16:.2f} faster)", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="warm models (cached ones save ~2 min each)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--eval-limit", type=int, default=200, help="held-out items per evaluation")
    p.add_argument("--head", action="store_true", help="only the LM head's time, fp32 against bf16")
    args = p.parse_args()
    import torch

    from rl.dist import cpu_bf16

    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bf16 support: {cpu_bf16()}; one thread", flush=True)
    if args.head:
        return head_times()
    print(f"the classroom preset, {args.steps} steps", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for dtype in ("fp32", "bf16"):
                r = results[seed, dtype] = run_case(Path(tmp) / f"{seed}{dtype}", seed, dtype, args.steps,
                                                    args.eval_limit)
                print(f"seed {seed} {dtype}: step {r['step_s']:.2f} s (generate {r['generate_s']:.2f}, update "
                      f"{r['update_s']:.2f}), reward (last 5) {r['reward']:.3f}, held-out accuracy {r['acc0']:.2f} "
                      f"-> {r['acc']:.2f}, sampler-forward max |dlogp| {r['sampler_diff']:.3g}, wall {r['wall']:.0f} s",
                      flush=True)
    print("\nbf16 against fp32, per seed:")
    for seed in args.seeds:
        a, b = results[seed, "fp32"], results[seed, "bf16"]
        print(f"seed {seed}: step time x{b['step_s'] / a['step_s']:.2f} (generate "
              f"x{b['generate_s'] / a['generate_s']:.2f}, update x{b['update_s'] / a['update_s']:.2f}), "
              f"reward {b['reward'] - a['reward']:+.3f}, "
              f"held-out accuracy {b['acc'] - a['acc']:+.2f}")
    if len(args.seeds) > 1:
        fp32 = [results[s, "fp32"] for s in args.seeds]

        def spread(key):
            return max(r[key] for r in fp32) - min(r[key] for r in fp32)

        print(f"noise (fp32, largest - smallest over seeds): reward {spread('reward'):.3f}, held-out accuracy "
              f"{spread('acc'):.2f}")


if __name__ == "__main__":
    main()
