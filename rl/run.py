"""One run, from the command line to the final checkpoint: check every input first (flags, --out, the model, the
data), then data + reward + trainer. Every user error ends as one line, not a traceback."""

import contextlib
import os
import sys
from pathlib import Path

from rl import dist
from rl.checkpoint import CheckpointError, run_config
from rl.config import TINY_MODELS, Config
from rl.guards import NonFinite, StepFailed, stop_at_once
from rl.trainer import Trainer


def prepare_out(cfg: Config):
    """--out must be a new or empty directory, the run being resumed, or an earlier run given --overwrite."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: --out {out}: is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not cfg.resume:
        if run_config(out) is None:
            raise SystemExit(f"error: --out {out}: the directory is not empty and holds no run; choose another --out")
        started = any((out / name).exists() for name in ("metrics.jsonl", "checkpoints", "final"))
        if started and not cfg.overwrite:
            raise SystemExit(f"error: --out {out}: holds an earlier run; continue it with --resume {out}, or start "
                             f"anew with --overwrite (deletes it)")
        import shutil
        print(f"--overwrite: deleting the earlier run in {out}: {', '.join(sorted(p.name for p in out.iterdir()))}",
              file=sys.stderr)
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise SystemExit(f"error: --out {out}: cannot write there ({e.strerror or e})") from None


@contextlib.contextmanager
def removed_if_left_empty(out: Path):
    """A run that fails leaves no empty --out behind (one that was not there before it)."""
    new = not out.exists()
    try:
        yield
    except BaseException:
        if new and dist.is_main() and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def check_model(name: str):
    """--model / --init names a loadable checkpoint: 'tiny', 'classroom', a local directory with a config.json (its
    path was checked with the flags: rl.config.model_problem), or a hub id that can be reached (a one-line error
    otherwise, naming the local alternative)."""
    if name in ("classroom", *TINY_MODELS) or Path(name).expanduser().is_dir():
        return
    from transformers import AutoConfig
    try:
        AutoConfig.from_pretrained(name)
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, gated: one line, not a traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SystemExit(f"error: --model/--init {name}: cannot be loaded from the hub ({first[:160]}); offline, "
                         f"pass a local checkpoint directory: --model path/to/dir") from None


def resolve_model(cfg: Config, samples: list) -> str:
    """The checkpoint --model / --init names: 'tiny' is a tiny random Qwen2.5-VL ('tiny-qwen2-vl', 'tiny-qwen3-vl':
    the other families) built offline into <out>/base_model (by the main process, read by all), 'classroom' the warm tiny model of the classroom presets
    (cached, built once), anything else as given."""
    if cfg.model in TINY_MODELS:
        if dist.is_main():
            from rl.tiny_model import build_tiny_checkpoint
            build_tiny_checkpoint(Path(cfg.out) / "base_model", corpus=[s.question for s in samples[:256]],
                                  seed=cfg.seed, family=TINY_MODELS[cfg.model])
        dist.barrier()
        return str(Path(cfg.out) / "base_model")
    if cfg.model == "classroom":
        from rl.classroom_model import classroom_model
        if dist.is_main():
            classroom_model(cfg.seed)
        dist.barrier()
        return str(classroom_model(cfg.seed))
    return cfg.model


def make_trainer(cfg: Config, samples: list, reward_fn, evaluator=None, log=print) -> Trainer:
    """The trainer of a run, its --model resolved (see resolve_model)."""
    dist.setup(cfg.device)
    for name, value in (("prompts-per-step", cfg.prompts_per_step), ("train-batch-size", cfg.train_batch_size)):
        if value % dist.world():
            raise SystemExit(f"error: --{name} {value}: must be a multiple of the number of processes "
                             f"({dist.world()})")
    if dist.is_main():
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        (Path(cfg.out) / "config.json").write_text(cfg.to_json())
    return Trainer(cfg, samples, reward_fn, resolve_model(cfg, samples), evaluator, log)


def load_samples(cfg: Config, on_error: str | None = None) -> list:
    """The rows of --data under the data flags: --max-row-bytes, --max-image-pixels (which also holds for every image
    a step draws later), --image-root, --allow-urls, --on-bad-row. Every user error is one line."""
    from data import DataError, load_dataset_by_name
    from data.images import data_limits, default_max_image_pixels, set_max_image_pixels
    try:
        set_max_image_pixels(cfg.max_image_pixels or default_max_image_pixels(cfg.max_pixels))
        with data_limits(max_row_bytes=cfg.max_row_bytes, image_root=cfg.image_root or None,
                         allow_urls=cfg.allow_urls):
            samples = load_dataset_by_name(cfg.data, on_error=on_error or cfg.on_bad_row,
                                           max_samples=cfg.max_samples or None, seed=cfg.seed)
    except (FileNotFoundError, DataError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    except Exception as e:  # noqa: BLE001 - a hub that cannot be reached: one line and the local alternative
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SystemExit(f"error: --data {cfg.data}: cannot be loaded ({type(e).__name__}: {first[:160]}); offline, "
                         f"pass a local file: --data path/to/file.jsonl") from None
    return samples


def check_data(cfg: Config, max_bad: float):
    """--check-data: read every row of --data as training would, print the report, and exit non-zero when more than
    `max_bad` of the rows have problems (--check-data-max-bad). Nothing but the data is loaded."""
    from data.check import check_samples, format_report, skipped_rows
    with skipped_rows() as skipped:
        samples = load_samples(cfg, on_error="skip")
    report = check_samples(samples, needs_gold=cfg.reward not in ("sokoban", "football"), skipped=skipped)
    print(format_report(report))
    if not report["rows"]:
        raise SystemExit(f"error: --data {cfg.data}: the data set is empty")
    bad = report["bad_rows"] / report["rows"]
    if bad > max_bad:
        raise SystemExit(f"error: {bad:.2%} of the rows have problems, above --check-data-max-bad {max_bad:g}")


def run(cfg: Config, make_evaluator=None) -> Path | None:
    """Check the inputs, then data + reward + trainer for one run. Every user error is one line, not a traceback.
    `make_evaluator(cfg)` (evaluation.TrainingEvaluator, from the entry script) runs --eval-benchmarks."""
    from rewards import get_reward

    with removed_if_left_empty(Path(cfg.out)):
        dist.setup(cfg.device)
        if dist.is_main():
            prepare_out(cfg)
        dist.barrier()
        check_model(cfg.model)
        samples = load_samples(cfg)
        ambiguous = 0
        if cfg.reward not in ("sokoban", "football", "format"):  # golds the verifier would misread: --on-ambiguous-gold
            from data.gold import ambiguous_gold_filter
            samples, report = ambiguous_gold_filter(samples, cfg.on_ambiguous_gold)
            ambiguous = report["ambiguous"]
        if not samples:
            raise SystemExit(f"error: --data {cfg.data}: no usable rows (empty, or every row was skipped)")
        if dist.is_main():
            print(f"{len(samples)} prompts from {cfg.data}; model {cfg.model}; preset {cfg.preset}", file=sys.stderr)
        if len(samples) < cfg.prompts_per_step:
            raise SystemExit(f"error: --prompts-per-step {cfg.prompts_per_step}: the data has only {len(samples)} "
                             f"prompts")
        reward_fn = get_reward(cfg.reward, workers=cfg.reward_workers, timeout=cfg.reward_timeout,
                               whole_answer=cfg.whole_answer, fail_closed=cfg.fail_closed_gold)
        try:
            evaluator = make_evaluator(cfg) if cfg.eval_benchmarks and make_evaluator else None
            trainer = make_trainer(cfg, samples, reward_fn, evaluator)
            trainer.counts["data/gold_ambiguous"] = ambiguous  # set, not added: the same number on a resume
            final = trainer.train()
            dist.teardown()
        except (CheckpointError, NonFinite, StepFailed) as e:
            raise SystemExit(f"error: {e}") from None
        finally:
            reward_fn.close()
        stop_at_once("after the run ended (every checkpoint is written)")
        if final is not None and dist.is_main():
            print(f"final checkpoint: {final}", file=sys.stderr)
        return final
