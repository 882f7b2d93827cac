"""The search that chose the classroom recipe, on the validation split and with seeds the study never uses.

    python bench/classroom_recipe.py                      # every candidate below, seeds 100 and 101, 2 at a time
    python bench/classroom_recipe.py --candidates "guess 0.6" --seeds 100

For each candidate (the warm-up constants of rl/classroom_model.py it changes) and seed: build the warm model, then
run `--preset classroom` (FRE-Text) from it, evaluated on the validation sets (classroom-text-val,
classroom-image-val) before its first step and after its last. Prints, per candidate, the mean over seeds of: the
perception probe on validation images, the base model's text and image accuracy, the run's text gain, and the wall
time of the build. The rule that chose the recipe: the largest mean text gain among candidates whose probe is at
least 95 % and whose base image accuracy is within 10 points of its text accuracy. classroom.py (seeds 0-4, the
test split) then reports what the frozen recipe does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CANDIDATES = {  # name -> the constants of rl/classroom_model.py it sets (the others as they are there)
    "guess 0.5": dict(GUESS=0.5),
    "guess 0.55": dict(GUESS=0.55),
    "guess 0.6": dict(GUESS=0.6),
    "guess 0.6 1000 steps": dict(GUESS=0.6, STEPS=1000, READ_FIRST=200),
    "guess 0.6 read 0.3": dict(GUESS=0.6, MIX={"text": 0.3, "image": 0.3, "read": 0.3, "geo": 0.1}),
}
SETS = ("classroom-text-val", "classroom-image-val")


def folder(out: Path, name: str, seed: int) -> Path:
    return out / name.replace(" ", "_") / f"seed{seed}"


def worker(name: str, seed: int, out: Path) -> dict:
    """Build one candidate's warm model, run the classroom preset from it, write and return its figures."""
    import torch

    import rl.classroom_model as cm
    from evaluation import TrainingEvaluator
    from rl.config import preset
    from rl.policy import load_policy
    from rl.run import run

    for key, value in CANDIDATES[name].items():
        setattr(cm, key, value)
    model = out / "model"
    t0 = time.perf_counter()
    if cm.damage(model):
        model.mkdir(parents=True, exist_ok=True)
        cm.build(model, seed, cm.STEPS)
    build_s = time.perf_counter() - t0
    torch.set_num_threads(1)
    policy, processor = load_policy(str(model))
    probe = cm.perception_probe(policy, processor, split="val")
    cfg = preset("classroom", model=str(model), seed=seed, out=str(out / "run"), overwrite=True, plots=False,
                 eval_benchmarks=",".join(SETS))
    run(cfg, TrainingEvaluator)
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if f"eval/{SETS[0]}/accuracy" in r]
    first, last = evals[0], evals[-1]
    result = {"probe": probe, "build_s": build_s,
              **{f"base {s}": first[f"eval/{s}/accuracy"] for s in SETS},
              **{f"gain {s}": last[f"eval/{s}/accuracy"] - first[f"eval/{s}/accuracy"] for s in SETS}}
    (out / "result.json").write_text(json.dumps(result))
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated names of CANDIDATES")
    p.add_argument("--seeds", default="100,101", help="warm-model and RL seeds (the study uses 0-4: never these)")
    p.add_argument("--jobs", type=int, default=2, help="candidate runs at once, one thread each")
    p.add_argument("--out", default="runs/classroom-recipe")
    p.add_argument("--worker", nargs=2, metavar=("NAME", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.worker:
        name, seed = args.worker
        worker(name, int(seed), folder(out, name, int(seed)))
        return
    names = [n.strip() for n in args.candidates.split(",")]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise SystemExit(f"error: unknown candidate(s) {unknown}; expected some of {list(CANDIDATES)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    todo = [(n, s) for n in names for s in seeds
            if not (folder(out, n, s) / "result.json").is_file()]
    running = []
    while todo or running:
        while todo and len(running) < args.jobs:
            n, s = todo.pop(0)
            running.append(subprocess.Popen([sys.executable, __file__, "--out", str(out), "--worker", n, str(s)],
                                            cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                           "TQDM_DISABLE": "1"}))
        if running[0].wait():
            raise SystemExit(f"error: a candidate run failed (exit code {running[0].returncode})")
        running.pop(0)
    print("| candidate | probe (val) % | base text % | base image % | text gain (points) | image gain | build s |")
    print("|---|---|---|---|---|---|---|")
    for n in names:
        rs = [json.loads((folder(out, n, s) / "result.json").read_text()) for s in seeds]

        def mean(key, scale=100):
            return scale * statistics.fmean(r[key] for r in rs)

        gains = " / ".join(f"{100 * r['gain classroom-text-val']:+.1f}" for r in rs)
        print(f"| {n} | {mean('probe'):.1f} | {mean('base classroom-text-val'):.1f} | "
              f"{mean('base classroom-image-val'):.1f} | {mean('gain classroom-text-val'):+.1f} ({gains}) | "
              f"{mean('gain classroom-image-val'):+.1f} | {mean('build_s', 1):.0f} |")
    print(f"seeds {seeds}; validation sets, 200 items each; --preset classroom as it is (rl/presets.py)")


if __name__ == "__main__":
    main()
