"""What a training run shows besides metrics.jsonl: benchmark evaluations, TensorBoard / W&B, PNG curves.

The trainer calls `after_step` once per rollout step (its return value joins that step's metrics line) and `close`
at the end:

* `--eval-benchmarks a,b` evaluates the policy on eval.py's benchmarks (greedy, the same generation code) before
  the first step (a metrics line of step 0), every `--eval-every N` steps and at the last step, whose weights are the
  final checkpoint's; the end of the run logs each accuracy before and after. Each evaluation logs
  `eval/<benchmark>/accuracy` (a fraction), `eval/<benchmark>/unextractable`, `eval/<benchmark>/response_len` and
  `time/eval`, and writes its full report (results.json, results.md, responses.jsonl) to <out>/eval/step_<N>/.
* `--log-with tensorboard|wandb` also sends every metrics line there (optional packages, imported only then; W&B
  runs offline unless WANDB_API_KEY or WANDB_MODE says otherwise).
* `--plots` (on by default) writes <out>/plots/*.png at the end (rl/plots.py).

Under torchrun every process has a Monitor: each evaluation runs on all of them with the full weights (each generates
its share of the items); the main process scores, logs, tracks and plots.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import time
from pathlib import Path

import torch

from rl import dist

__all__ = ["MetricsFile", "Monitor", "open_tracker", "peak_memory_gb"]


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def json_line(metrics: dict) -> tuple[str, int]:
    """One line of strict JSON (no NaN / Infinity tokens): a non-finite number is written as null. Returns the line
    and how many values were not finite."""
    bad = {k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
    return json.dumps({k: None if k in bad else v for k, v in metrics.items()}, allow_nan=False), len(bad)


class MetricsFile:
    """<out>/metrics.jsonl, one line per step, written by the main process. On resume the lines of steps after the
    checkpoint are cut first (atomically). Non-finite values are written as null and counted in `counts`."""

    def __init__(self, out: Path, step: int, counts: dict):
        self.counts = counts
        if not dist.is_main():
            self.file = open(os.devnull, "w")
            return
        path = Path(out) / "metrics.jsonl"
        if path.exists():
            kept = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
            tmp = path.with_name(f".metrics.jsonl.tmp-{os.getpid()}")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, path)
        self.file = open(path, "a")

    def write(self, metrics: dict):
        line, nonfinite = json_line(metrics)
        if nonfinite:
            self.counts["metrics/nonfinite"] += nonfinite
            line, _ = json_line({**metrics, "metrics/nonfinite": self.counts["metrics/nonfinite"]})
        self.file.write(line + "\n")
        self.file.flush()

    def close(self):
        self.file.close()


class _TensorBoard:
    def __init__(self, out: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise SystemExit("error: --log-with tensorboard needs the tensorboard package: pip install tensorboard") \
                from None
        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))

    def log(self, metrics: dict, step: int) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, out: Path, config: dict):
        try:
            import wandb
        except ImportError:
            raise SystemExit("error: --log-with wandb needs the wandb package: pip install wandb") from None
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "lmm-r1"), name=out.name, dir=str(out),
                              config=config, mode=mode)

    def log(self, metrics: dict, step: int) -> None:
        self.run.log({k: v for k, v in metrics.items() if k != "step"}, step=step)

    def close(self) -> None:
        self.run.finish()


def open_tracker(kind: str, out: Path, config: dict):
    """A TensorBoard or W&B sink (log(metrics, step), close()), None for 'none' / ''."""
    if kind in ("", "none", None):
        return None
    if kind == "tensorboard":
        return _TensorBoard(out)
    if kind == "wandb":
        return _WandB(out, config)
    raise SystemExit(f"error: --log-with {kind!r}: expected none, tensorboard or wandb")


class Monitor:
    def __init__(self, cfg, out: Path, evaluator=None, log=print):
        """`evaluator` (evaluation.TrainingEvaluator, handed in by the entry script: rl/ does not import
        evaluation/) runs --eval-benchmarks."""
        self.cfg, self.out, self.log = cfg, Path(out), log
        if cfg.eval_benchmarks and evaluator is None:
            raise ValueError("--eval-benchmarks needs an evaluator (evaluation.TrainingEvaluator)")
        self.evaluator = evaluator if cfg.eval_benchmarks else None
        self.names = self.evaluator.names if self.evaluator else []
        self.accuracy = {}  # step -> {benchmark: accuracy} of this process's evaluations
        self.tracker = open_tracker(cfg.log_with, self.out, dataclasses.asdict(cfg)) if dist.is_main() else None

    def due(self, step: int, total_steps: int) -> bool:
        every = self.cfg.eval_every
        return bool(self.names) and (step == total_steps or (every > 0 and step % every == 0))

    def evaluate(self, trainer) -> dict:
        t0 = time.perf_counter()
        with dist.gathered(trainer.logprobs_module):  # the full weights on every process: no collective in a forward
            results = self.evaluator(trainer.policy, trainer.processor, out_dir=self.out / "eval" / f"step_{trainer.step}",
                                     model_name=f"{self.cfg.out} step {trainer.step}", autocast=trainer.autocast)
        if results is None:  # not the main process
            return {}
        metrics = {"time/eval": time.perf_counter() - t0}
        for name, b in results["benchmarks"].items():
            metrics.update({f"eval/{name}/accuracy": b["accuracy"], f"eval/{name}/unextractable": b["unextractable"],
                            f"eval/{name}/response_len": b["response_len"]})
        self.accuracy[trainer.step] = {name: b["accuracy"] for name, b in results["benchmarks"].items()}
        self.log("eval at step {}: {}".format(trainer.step, ", ".join(
            f"{n} {100 * b['accuracy']:.1f} %" for n, b in results["benchmarks"].items())))
        return metrics

    def after_step(self, trainer, metrics: dict) -> dict:
        """Metrics to add to this step's line (evaluation results when one is due); sends the line to the
        tracker."""
        extra = self.evaluate(trainer) if self.due(trainer.step, trainer.total_steps) else {}
        if self.tracker is not None:
            self.tracker.log({**metrics, **extra}, trainer.step)
        return extra

    def close(self) -> None:
        if len(self.accuracy) > 1:
            (first, before), (last, after) = min(self.accuracy.items()), max(self.accuracy.items())
            self.log(f"accuracy at step {first} -> step {last}: " + ", ".join(
                f"{n} {100 * before[n]:.1f} % -> {100 * after[n]:.1f} %" for n in after if n in before))
        if self.evaluator is not None:
            self.evaluator.close()
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None
        if self.cfg.plots and dist.is_main() and (self.out / "metrics.jsonl").is_file():
            from rl.plots import plot_run

            try:
                paths = plot_run(self.out)
                self.log(f"plots: {len(paths)} PNGs in {self.out / 'plots'}")
            except Exception as e:  # noqa: BLE001 - a failed plot must not hide the run's own outcome
                self.log(f"plots not written: {type(e).__name__}: {e}")
