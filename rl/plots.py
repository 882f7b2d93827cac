"""PNG curves of a run, from its metrics.jsonl: written at the end of training, or for any run folder by

    python -m rl.plots runs/debug [runs/other ...]

Writes <run>/plots/<panel>.png for each panel that has data (reward and its components, evaluation accuracies,
response length, KL, entropy, clip fraction, grad norm, time per phase, losses) and <run>/plots/overview.png with
all of them. matplotlib is imported only here.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from pathlib import Path

__all__ = ["PANELS", "read_metrics", "plot_run"]

# panel file name -> (title, metric patterns); a pattern may use * (fnmatch). Metrics missing from a run are left out.
PANELS = {
    "reward": ("reward and its components", ["reward/*"]),
    "eval_accuracy": ("evaluation accuracy (%)", ["eval/*/accuracy"]),
    "eval_unread": ("evaluation: answers not read (unextractable) or ambiguous (fraction)",
                    ["eval/*/unextractable", "eval/*/ambiguous"]),
    "sampling": ("dynamic sampling: groups dropped, refill rounds", ["sampling/*"]),
    "response_length": ("response length (tokens)", ["response_len/mean", "response_len/max"]),
    "kl": ("KL to the reference", ["kl", "approx_kl"]),
    "entropy": ("entropy", ["entropy"]),
    "clip_frac": ("clip fraction", ["clip_frac"]),
    "grad_norm": ("grad norm", ["grad_norm", "critic_grad_norm"]),
    "time": ("time per phase (s)", ["time/generate", "time/reward", "time/logprob", "time/update", "time/eval"]),
    "loss": ("losses", ["loss/*"]),
}


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(2, "no metrics.jsonl in this folder (is it a run folder?)", str(run_dir))
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written when the run stopped
    return rows


# Running counts that share a prefix with a curve (rewards.base.COUNT_NAMES): not drawn.
COUNTS = {"reward/checked", "reward/timeout", "reward/error", "reward/partial_parse", "reward/worker_restarts",
          "reward/worker_start_failures"}


def _series(rows: list[dict], patterns: list[str]) -> dict[str, tuple[list, list]]:
    keys = []
    for pattern in patterns:
        for key in sorted({k for r in rows for k in r} - COUNTS):
            if fnmatch.fnmatchcase(key, pattern) and key not in keys:
                keys.append(key)
    out = {}
    for key in keys:
        pts = [(r["step"], r[key]) for r in rows
               if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool) and "step" in r
               and math.isfinite(r[key])]
        if pts:
            scale = 100.0 if key.startswith("eval/") and key.endswith("/accuracy") else 1.0
            out[key] = ([s for s, _ in pts], [v * scale for _, v in pts])
    return out


def _draw(ax, title: str, series: dict) -> None:
    for key, (steps, values) in series.items():
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, linewidth=1.2, label=key)
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write the PNGs of a run; returns their paths (overview.png last)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    out = Path(out_dir) if out_dir else Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    panels = {name: (title, _series(rows, patterns)) for name, (title, patterns) in PANELS.items()}
    panels = {name: v for name, v in panels.items() if v[1]}
    written = []
    for name, (title, series) in panels.items():
        fig, ax = plt.subplots(figsize=(6, 3.6))
        _draw(ax, title, series)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=100)
        plt.close(fig)
        written.append(out / f"{name}.png")
    if panels:
        cols = 3
        nrows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.2 * nrows), squeeze=False)
        for ax, (title, series) in zip(axes.flat, panels.values()):
            _draw(ax, title, series)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.suptitle(str(run_dir))
        fig.tight_layout()
        fig.savefig(out / "overview.png", dpi=90)
        plt.close(fig)
        written.append(out / "overview.png")
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders (each with a metrics.jsonl)")
    parser.add_argument("--out", default="", help="write the PNGs here instead of <run>/plots (one run only)")
    args = parser.parse_args(argv)
    if args.out and len(args.runs) > 1:
        raise SystemExit("error: --out takes one run folder")
    for run in args.runs:
        try:
            paths = plot_run(run, args.out or None)
        except FileNotFoundError as e:
            raise SystemExit(f"error: {e.filename}: {e.strerror}") from None
        print(f"{run}: {len(paths)} plots in {paths[-1].parent if paths else '-'}", file=sys.stderr)


if __name__ == "__main__":
    main()
