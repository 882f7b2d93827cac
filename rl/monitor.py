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
import os
import time
from pathlib import Path

from rl import dist

__all__ = ["Monitor", "open_tracker"]


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
    def __init__(self, cfg, out: Path, log=print):
        self.cfg, self.out, self.log = cfg, Path(out), log
        self.names = []
        if cfg.eval_benchmarks:
            from data.benchmarks import resolve_benchmark_names

            try:
                self.names = resolve_benchmark_names(cfg.eval_benchmarks)
            except ValueError as e:
                raise SystemExit(f"error: --eval-benchmarks: {e}") from None
        self.scorer = None
        self.accuracy = {}  # step -> {benchmark: accuracy} of this process's evaluations
        self.tracker = open_tracker(cfg.log_with, self.out, dataclasses.asdict(cfg)) if dist.is_main() else None

    def due(self, step: int, total_steps: int) -> bool:
        every = self.cfg.eval_every
        return bool(self.names) and (step == total_steps or (every > 0 and step % every == 0))

    def evaluate(self, trainer) -> dict:
        from evaluation import EvalSettings, Scorer, evaluate

        cfg, t0 = self.cfg, time.perf_counter()
        if self.scorer is None and dist.is_main():
            self.scorer = Scorer(workers=max(1, cfg.reward_workers), timeout=cfg.reward_timeout)
        settings = EvalSettings(max_new_tokens=cfg.eval_max_new_tokens or cfg.max_new_tokens,
                                batch_size=cfg.gen_batch_size, limit=cfg.eval_limit or None)
        with dist.gathered(trainer.scorer):  # the full weights on every process: no collective inside a forward
            results = evaluate(trainer.policy, trainer.processor, self.names, settings, self.scorer,
                               out_dir=self.out / "eval" / f"step_{trainer.step}", model_name=f"{cfg.out} step "
                               f"{trainer.step}", progress=False, autocast=trainer.autocast, log=lambda m: None)
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
        if self.scorer is not None:
            self.scorer.close()
            self.scorer = None
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
