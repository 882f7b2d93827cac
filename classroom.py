"""The paper's two findings in miniature, on a laptop CPU, in one command.

    python classroom.py                          # 3 seeds, about 20-30 minutes on 2 cores
    python classroom.py --seeds 1 --steps 10     # a quick look

For each seed: the warm classroom model (rl/classroom_model.py) is the base; four runs of the same budget start
from it, as in the paper:

    FRE-Text   base -> RL on the text form of the classroom problems                 (--preset classroom)
    FRE-Multi  base -> RL on the image form of the same problems                     (--preset classroom-multi)
    MGT        FRE-Text -> RL on drawn geometry (perimeters from labelled sides)     (--preset mgt-classroom)
    Direct-RL  base -> RL on the same geometry                                       (--preset mgt-classroom)

Every checkpoint (and the base) is evaluated with eval.py on held-out text, image and geometry problems (greedy).
The table gives the mean and spread over seeds; the verdict says whether each of the paper's two effects appears
at this scale and by how much:

1. Text-only RL lifts multimodal reasoning: FRE-Text's accuracy on the image form above the base's (the paper:
   FRE-Text and FRE-Multi both improve multimodal reasoning, FRE-Multi at some cost to text reasoning).
2. Two stages beat direct multimodal RL: MGT's geometry accuracy above Direct-RL's.

An effect "appears" when its mean gain is positive in every seed and above twice its standard error (the larger of
the spread over seeds and the sampling noise of the evaluation set), "leans that way" when only the mean is
positive, and "does not appear" otherwise. Nothing is tuned to make an effect appear: the runs use the presets as
they are. Writes <out>/results.json, <out>/results.md (the table and verdict) and <out>/curves.png; a finished run
or evaluation found in <out> is reused, so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
from pathlib import Path

from rl.config import Parser

ARMS = {  # name -> (preset, start: "base" or another arm's name)
    "FRE-Text": ("classroom", "base"),
    "FRE-Multi": ("classroom-multi", "base"),
    "MGT": ("mgt-classroom", "FRE-Text"),
    "Direct-RL": ("mgt-classroom", "base"),
}
SETS = {"classroom-text": "text", "classroom-image": "image", "classroom-geo": "geometry"}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3, help="repeat with seeds 0 .. K-1 (each its own warm model)")
    p.add_argument("--steps", type=int, default=0, help="RL steps of every run (0 = the presets' --max-steps)")
    p.add_argument("--warmup-steps", type=int, default=0,
                   help="supervised warm-up steps of the base models (0 = the recipe's, rl/classroom_model.py)")
    p.add_argument("--eval-items", type=int, default=200, help="held-out problems per evaluation set")
    p.add_argument("--out", default="runs/classroom-study", help="output folder")
    p.add_argument("--jobs", type=int, default=1,
                   help="seeds run at once, each in a process of its own on one thread (2 on a 2-core machine)")
    p.add_argument("--probe", action="store_true",
                   help="only build the warm models and print, per seed, the perception probe (the share of held-out "
                        "drawn problems transcribed exactly) and their accuracy on the held-out text and image forms")
    p.add_argument("--only-seed", type=int, default=None, help=argparse.SUPPRESS)  # one seed's work (--jobs)
    p.add_argument("--quiet", action="store_true", help="no progress bars (the warm-up, the runs, the evaluations)")
    return p


def train_arm(arm: str, seed: int, init: str, out: Path, steps: int) -> Path:
    """The final checkpoint of one run (trained now unless a finished one is in `out`)."""
    from rl.config import invalid, preset
    from rl.run import run

    final = out / "final"
    if (final / "config.json").is_file():
        return final
    overrides = dict(seed=seed, model=init, out=str(out), overwrite=True, eval_benchmarks="", plots=False)
    if steps:
        overrides["max_steps"] = steps
    cfg = preset(ARMS[arm][0], **overrides)
    problem = invalid(cfg)
    if problem:
        raise SystemExit(f"error: {problem}")
    print(f"== seed {seed}: {arm} from {init}", file=sys.stderr)
    return run(cfg)


def evaluate_checkpoint(model_path: str, out: Path, items: int, scorer, progress: bool) -> dict:
    """{set name: accuracy} on the held-out classroom sets (cached in out/results.json)."""
    if (out / "results.json").is_file():
        results = json.loads((out / "results.json").read_text())
    else:
        from evaluation import EvalSettings, evaluate
        from rl.policy import load_policy
        from rl.processor import set_image_pixels
        from rl.config import preset

        cfg = preset("classroom")
        model, processor = load_policy(model_path)
        set_image_pixels(processor, cfg.min_pixels, cfg.max_pixels)
        settings = EvalSettings(max_new_tokens=cfg.max_new_tokens, batch_size=32, env_samples=items)
        results = evaluate(model, processor, list(SETS), settings, scorer, out_dir=out, model_name=model_path,
                           progress=progress, log=lambda m: None)
    return {name: b["accuracy"] for name, b in results["benchmarks"].items()}


def curves(run_dir: Path) -> dict[str, list]:
    from rl.plots import read_metrics

    rows = [r for r in read_metrics(run_dir) if "reward/mean" in r]
    return {key: [r[key] for r in rows] for key in ("reward/mean", "reward/format", "reward/accuracy")}


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def effect(a: list[float], b: list[float], n: int) -> str:
    """Whether model A beats model B, from their accuracies per seed on the same n held-out items: 'appears' when the
    mean gain is positive in every seed and above twice its standard error, 'leans that way' when only the mean is
    positive, 'does not appear' otherwise. The standard error takes the larger of the spread over seeds and the
    sampling noise of n items (a few seeds cannot measure their own spread)."""
    gains = [x - y for x, y in zip(a, b)]
    mean, sd = mean_sd(gains)
    noise = statistics.fmean(x * (1 - x) / n + y * (1 - y) / n for x, y in zip(a, b))  # variance of one gain
    se = math.sqrt(max(sd ** 2, noise) / len(gains))
    if mean > 2 * se and all(g > 0 for g in gains):
        return "appears"
    return "leans that way (within the noise)" if mean > 0 else "does not appear"


def verdict(acc: dict, n: int) -> list[str]:
    """acc[model][set] = per-seed accuracies on n items per set -> the two findings, plainly."""
    def gain(a, b, s):
        xs = [x - y for x, y in zip(acc[a][s], acc[b][s])]
        m, sd = mean_sd(xs)
        return f"{100 * m:+.1f} points (sd {100 * sd:.1f}, {sum(x > 0 for x in xs)} of {len(xs)} seeds positive)"

    one = effect(acc["FRE-Text"]["classroom-image"], acc["base"]["classroom-image"], n)
    two = effect(acc["MGT"]["classroom-geo"], acc["Direct-RL"]["classroom-geo"], n)
    return [
        f"1. Text-only RL lifts multimodal reasoning: {one}. FRE-Text on the image form vs the base: "
        f"{gain('FRE-Text', 'base', 'classroom-image')}; FRE-Multi on the image form vs the base: "
        f"{gain('FRE-Multi', 'base', 'classroom-image')}; FRE-Multi on the text form vs the base: "
        f"{gain('FRE-Multi', 'base', 'classroom-text')}.",
        f"2. Two stages beat direct multimodal RL: {two}. MGT vs Direct-RL on geometry: "
        f"{gain('MGT', 'Direct-RL', 'classroom-geo')}.",
    ]


def table(acc: dict, seeds: int, steps_note: str) -> str:
    lines = [f"| model | {' | '.join(f'{v} % (mean ± sd)' for v in SETS.values())} |",
             "|---|" + "---|" * len(SETS)]
    for model in ["base", *ARMS]:
        cells = []
        for s in SETS:
            m, sd = mean_sd(acc[model][s])
            cells.append(f"{100 * m:.1f} ± {100 * sd:.1f}")
        lines.append(f"| {model} | {' | '.join(cells)} |")
    lines.append("")
    lines.append(f"{seeds} seed(s); {steps_note}; held-out problems, greedy decoding, scored as eval.py does (the "
                 f"answer of the <answer> block, else of the whole response).")
    return "\n".join(lines)


def plot(all_curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("reward/mean", "reward/format", "reward/accuracy")
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6))
    for ax, key in zip(axes, keys):
        for arm, per_seed in all_curves.items():
            series = [c[key] for c in per_seed if c[key]]
            n = min(map(len, series))
            mean = [statistics.fmean(s[i] for s in series) for i in range(n)]
            lo = [min(s[i] for s in series) for i in range(n)]
            hi = [max(s[i] for s in series) for i in range(n)]
            steps = range(1, n + 1)
            ax.plot(steps, mean, label=arm)
            ax.fill_between(steps, lo, hi, alpha=0.2)
        ax.set_title(f"{key} (mean, min-max over seeds)")
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_seed(seed: int, args, scorer) -> dict:
    """Every run and evaluation of one seed (each reused when found in --out) -> {"accuracy": {model: {set: acc}},
    "curves": {arm: curves}, "probe": the base model's perception probe}."""
    from rl.classroom_model import classroom_model

    folder = Path(args.out) / f"seed{seed}"
    checkpoints = {"base": classroom_model(seed, steps=args.warmup_steps or None,
                                           log=lambda m: print(m, file=sys.stderr))}
    for arm, (_, start) in ARMS.items():
        checkpoints[arm] = train_arm(arm, seed, str(checkpoints[start]), folder / arm, args.steps)
    acc = {model: evaluate_checkpoint(str(path), folder / "eval" / model, args.eval_items, scorer, not args.quiet)
           for model, path in checkpoints.items()}
    print(f"== seed {seed}: " + "; ".join(f"{m} " + "/".join(f"{100 * acc[m][s]:.0f}" for s in SETS) for m in acc)
          + " (text/image/geometry %)", file=sys.stderr)
    return {"accuracy": acc, "curves": {arm: curves(folder / arm) for arm in ARMS},
            "probe": probe(checkpoints["base"])}


def probe(path) -> float:
    """The perception probe of a warm model, kept in its warmup.json."""
    return json.loads((Path(path) / "warmup.json").read_text())["probe"]


def run_seeds(argv: list[str], seeds: int, jobs: int) -> None:
    """--jobs > 1: each seed's work in a subprocess of its own (at most `jobs` at once); what they leave in --out is
    then read back as if this process had done it."""
    import subprocess

    pending, running = list(range(seeds)), []
    while pending or running:
        while pending and len(running) < jobs:
            seed = pending.pop(0)
            running.append((seed, subprocess.Popen([sys.executable, __file__, *argv, "--only-seed", str(seed)])))
        seed, proc = running[0]
        if proc.wait():
            for _, other in running[1:]:
                other.terminate()
            raise SystemExit(f"error: seed {seed} failed (exit code {proc.returncode}); run again to continue")
        running.pop(0)


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.quiet:  # every bar: the warm-up, the runs and the evaluations (tqdm reads it, here and in subprocesses)
        os.environ["TQDM_DISABLE"] = "1"
    if min(args.seeds, args.eval_items, args.jobs) < 1 or args.steps < 0 or args.warmup_steps < 0:
        raise SystemExit("error: --seeds, --eval-items and --jobs must be at least 1, --steps and --warmup-steps at "
                         "least 0")
    from evaluation import Scorer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.probe:
        return probe_seeds(args)
    if args.jobs > 1 and args.only_seed is None:
        run_seeds(argv, args.seeds, args.jobs)
    with Scorer(workers=2) as scorer:  # one pool of answer checkers for every evaluation
        if args.only_seed is not None:
            return run_seed(args.only_seed, args, scorer)
        per_seed = [run_seed(seed, args, scorer) for seed in range(args.seeds)]
    acc = {m: {s: [r["accuracy"][m][s] for r in per_seed] for s in SETS} for m in ["base", *ARMS]}
    all_curves = {arm: [r["curves"][arm] for r in per_seed] for arm in ARMS}
    probes = [r["probe"] for r in per_seed]

    from rl.config import preset
    steps = args.steps or preset("classroom").max_steps
    lines = verdict(acc, args.eval_items)
    report = (table(acc, args.seeds, f"{steps} RL steps per run") + "\n\n" + "\n".join(lines) + "\n\n"
              + "Perception probe of the warm models (held-out drawn problems transcribed exactly): "
              + ", ".join(f"{100 * p:.1f} %" for p in probes) + ".\n")
    plot(all_curves, out / "curves.png")
    (out / "results.md").write_text(report)
    results = {"seeds": args.seeds, "steps": steps, "eval_items": args.eval_items, "accuracy": acc, "verdict": lines,
               "probe": probes, "settings": dataclasses.asdict(preset("classroom"))}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(report)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'} and {out / 'curves.png'}", file=sys.stderr)
    return results


def probe_seeds(args) -> dict:
    """--probe: the warm models' perception probe and held-out accuracy, per seed."""
    from evaluation import Scorer
    from rl.classroom_model import classroom_model

    rows = {}
    with Scorer(workers=2) as scorer:
        for seed in range(args.seeds):
            base = classroom_model(seed, steps=args.warmup_steps or None, log=lambda m: print(m, file=sys.stderr))
            acc = evaluate_checkpoint(str(base), Path(args.out) / f"seed{seed}" / "eval" / "base", args.eval_items,
                                      scorer, not args.quiet)
            rows[seed] = {"probe": probe(base), **acc}
            print(f"seed {seed}: reads {100 * rows[seed]['probe']:.1f} % of held-out drawn problems exactly; "
                  f"text {100 * acc['classroom-text']:.1f} %, image {100 * acc['classroom-image']:.1f} %, "
                  f"geometry {100 * acc['classroom-geo']:.1f} %")
    return rows


if __name__ == "__main__":
    main()
