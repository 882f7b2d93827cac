"""What a training run shows: one metrics line per step, the progress bar, benchmark evaluations, TensorBoard / W&B,
PNG curves.

The trainer calls `start` before its first step, `end_step` after each rollout step (with that step's metrics) and
`close` at the end:

* <out>/metrics.jsonl: one line of strict JSON per step, written by the main process (on resume the lines after the
  checkpoint are cut first); the step's metrics over every process (rl.dist.global_metrics), its time and peak
  memory, and the running counts of skipped data and guarded steps.

* `--eval-benchmarks a,b` evaluates the policy on eval.py's benchmarks (greedy, the same generation code) before
  the first step (a metrics line of step 0), every `--eval-every N` steps and at the last step, whose weights are the
  final checkpoint's; the end of the run logs each accuracy before and after. Each evaluation logs
  `eval/<benchmark>/accuracy` (a fraction), `eval/<benchmark>/unextractable`, `eval/<benchmark>/ambiguous`,
  `eval/<benchmark>/response_len` and `time/eval`, and writes its full report (results.json, results.md,
  responses.jsonl) to <out>/eval/step_<N>/.
* `--log-with tensorboard|wandb` also sends every metrics line there (optional packages, imported only then; W&B
  runs offline unless WANDB_API_KEY or WANDB_MODE says otherwise).
* `--plots` (on by default) writes <out>/plots/*.png at the end (rl/plots.py).
* <out>/samples.html: what the model wrote (rl/samples_page.py) - the first `SAMPLE_PROMPTS` prompts of the data set
  with `SAMPLE_RESPONSES` sampled responses each and every reward component, after the first step, the middle one
  and the last; each recording is a line of <out>/samples.jsonl. Its generation draws from its own seed and puts the
  random states back, so a run resumes exactly as if it had never been recorded.

Under torchrun every process has a Monitor: each evaluation runs on all of them with the full weights (each generates
its share of the items); the main process scores, logs, tracks and plots.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rl import dist
from rl.samples_page import write_samples_page

__all__ = ["MetricsFile", "Monitor", "open_tracker", "peak_memory_gb"]
SAMPLE_PROMPTS, SAMPLE_RESPONSES = 3, 2  # samples.html: the first prompts of the data set, responses to each


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
            kept = []
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                try:
                    if json.loads(line)["step"] <= step:
                        kept.append(line)
                except (ValueError, TypeError, KeyError):  # a line torn by a kill or a full disk: cut, with a word
                    if line.strip():
                        print(f"warning: {path}:{n}: not a whole metrics line (torn by an interrupted write); cut",
                              file=sys.stderr)
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
    def __init__(self, trainer, evaluator=None):
        """`evaluator` (evaluation.TrainingEvaluator, handed in by the entry script: rl/ does not import
        evaluation/) runs --eval-benchmarks."""
        cfg = trainer.cfg
        self.cfg, self.out, self.log = cfg, Path(trainer.out), trainer.log
        if cfg.eval_benchmarks and evaluator is None:
            raise ValueError("--eval-benchmarks needs an evaluator (evaluation.TrainingEvaluator)")
        self.evaluator = evaluator if cfg.eval_benchmarks else None
        self.names = self.evaluator.names if self.evaluator else []
        self.accuracy = {}  # step -> {benchmark: accuracy} of this process's evaluations
        main = dist.is_main()
        self.tracker = open_tracker(cfg.log_with, self.out, dataclasses.asdict(cfg)) if main else None
        self.metrics_file = MetricsFile(self.out, trainer.step, trainer.counts)
        self.bar = tqdm(total=trainer.total_steps, initial=trainer.step, desc="rl", unit="step", dynamic_ncols=True,
                        **({} if main else {"disable": True}))  # on the main process tqdm's default (TQDM_DISABLE=1)

    def start(self, trainer):
        """The "before" of the evaluations: a metrics line of step 0."""
        if self.names and trainer.step == 0:
            self.metrics_file.write({"step": 0, "update_step": 0, **self.evaluate(trainer)})

    def end_step(self, trainer, metrics: dict, t0: float):
        """The line of the step just done (trainer.step), over every process: evaluation results when one is due,
        sent to the tracker too; the progress bar moves."""
        metrics["time/step"] = time.perf_counter() - t0
        metrics["mem/peak_gb"] = peak_memory_gb(trainer.device)
        trainer.counts["guard/skipped_steps"] = trainer.guard.skipped
        metrics = {"step": trainer.step, "update_step": trainer.update_step,
                   **dist.global_metrics(metrics, trainer.counts)}
        metrics.update(self.evaluate(trainer) if self.due(trainer.step, trainer.total_steps) else {})
        if trainer.step in {1, max(1, trainer.total_steps // 2), trainer.total_steps}:
            self.record_samples(trainer)
        if self.tracker is not None:
            self.tracker.log(metrics, trainer.step)
        self.metrics_file.write(metrics)
        self.bar.update()
        self.bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", len=f"{metrics.get('response_len/mean', 0):.0f}")

    def due(self, step: int, total_steps: int) -> bool:
        every = self.cfg.eval_every
        return bool(self.names) and (step == total_steps or (every > 0 and step % every == 0))

    def evaluate(self, trainer) -> dict:
        t0 = time.perf_counter()
        with dist.gathered(trainer.policy_logprobs):  # the full weights on every process: no collective in a forward
            results = self.evaluator(trainer.policy, trainer.processor,
                                     out_dir=self.out / "eval" / f"step_{trainer.step}",
                                     model_name=f"{self.cfg.out} step {trainer.step}", autocast=trainer.autocast)
        if results is None:  # not the main process
            return {}
        metrics = {"time/eval": time.perf_counter() - t0}
        for name, b in results["benchmarks"].items():
            metrics.update({f"eval/{name}/accuracy": b["accuracy"], f"eval/{name}/unextractable": b["unextractable"],
                            f"eval/{name}/ambiguous": b.get("ambiguous", 0.0),
                            f"eval/{name}/response_len": b["response_len"]})
        self.accuracy[trainer.step] = {name: b["accuracy"] for name, b in results["benchmarks"].items()}
        self.log("eval at step {}: {}".format(trainer.step, ", ".join(
            f"{n} {100 * b['accuracy']:.1f} %" for n, b in results["benchmarks"].items())))
        return metrics

    def record_samples(self, trainer) -> None:
        """samples.html: responses of the policy as it is now to the first prompts of the data set, with every reward
        component (every process generates them: the weights are gathered; the main one scores and writes)."""
        from rl.batch import UnusablePrompt, encode_prompts

        shown, prompts = [], []
        for i, sample in enumerate(trainer.samples[:SAMPLE_PROMPTS]):
            try:
                prompts.append(encode_prompts(trainer.processor, [sample])[0])
                shown.append(i)
            except UnusablePrompt:
                continue
        if not prompts:
            return
        cuda = [trainer.device] if trainer.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # the training's random streams go on as if nothing was drawn here
            rollout = trainer.sample(prompts, n=SAMPLE_RESPONSES, seed=self.cfg.seed + 7_919 * trainer.step)
        if not dist.is_main():
            return
        try:
            scored = trainer.judge(rollout, [trainer.samples[i] for i in shown], SAMPLE_RESPONSES)
        except RuntimeError as e:  # the reward workers cannot be kept alive: the step itself will say so
            self.log(f"samples.html not updated at step {trainer.step}: {e}")
            return
        texts = rollout.texts(trainer.tokenizer, self.cfg.empty_response)
        responses = [{"text": t, "scores": {k: v[j] for k, v in scored.components.items()}}
                     for j, t in enumerate(texts)]
        line = {"step": trainer.step, "items": [
            {"index": i, "responses": responses[k * SAMPLE_RESPONSES:(k + 1) * SAMPLE_RESPONSES]}
            for k, i in enumerate(shown)]}
        path = self.out / "samples.jsonl"
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []
        lines = [x for x in lines if x["step"] < trainer.step] + [line]  # a resumed run records its steps anew
        path.write_text("".join(json.dumps(x, default=str) + "\n" for x in lines))
        write_samples_page(self.out / "samples.html", f"{self.cfg.out}: what the model wrote", [
            {"heading": f"after step {x['step']}", "items": [
                {"prompt": trainer.samples[item["index"]].question, "images": trainer.samples[item["index"]].images,
                 "gold": trainer.samples[item["index"]].answer, "responses": item["responses"]}
                for item in x["items"]]} for x in lines])

    def close(self) -> None:
        self.bar.close()
        self.metrics_file.close()
        if len(self.accuracy) > 1:
            (first, before), (last, after) = min(self.accuracy.items()), max(self.accuracy.items())
            self.log(f"accuracy at step {first} -> step {last}: " + ", ".join(
                f"{n} {100 * before[n]:.1f} % -> {100 * after[n]:.1f} %" for n in after if n in before))
        if self.evaluator is not None:
            self.evaluator.close()
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None
        if dist.is_main() and (self.out / "samples.html").is_file():
            self.log(f"what the model wrote: {self.out / 'samples.html'}")
        if self.cfg.plots and dist.is_main() and (self.out / "metrics.jsonl").is_file():
            from rl.plots import plot_run

            try:
                paths = plot_run(self.out)
                self.log(f"plots: {len(paths)} PNGs in {self.out / 'plots'}")
            except Exception as e:  # noqa: BLE001 - a failed plot must not hide the run's own outcome
                self.log(f"plots not written: {type(e).__name__}: {e}")
