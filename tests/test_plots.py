"""Seeing a run: a debug training run evaluates on benchmarks (--eval-benchmarks / --eval-every) into metrics.jsonl
and leaves its PNG curves; `python -m rl.plots` draws any run; --log-with fails in one line without its package."""

import json
import sys

import pytest
from PIL import Image

from rl.config import parse_config
from rl.monitor import open_tracker
from rl.plots import main as plots_main
from rl.plots import plot_run


def test_debug_run_evaluates_and_leaves_plots(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import train_fre

    out = tmp_path / "run"
    train_fre.main(["--preset", "debug", "--out", str(out), "--eval-benchmarks", "mmstar,sokoban", "--eval-every", "3",
                    "--eval-limit", "1", "--eval-max-new-tokens", "4"])
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evaluated = [m["step"] for m in lines if "eval/mmstar/accuracy" in m]
    said = capsys.readouterr().out
    assert "accuracy at step 0 -> step 4: mmstar" in said  # the before/after line
    assert "CPU: 1 thread (" in said  # the thread count a CPU run chose, and why
    assert evaluated == [0, 3, 4]  # before the first step, every 3 steps, and the last (the final checkpoint's weights)
    last = lines[-1]
    assert 0 <= last["eval/sokoban/accuracy"] <= 1 and last["eval/mmstar/response_len"] <= 4 and last["time/eval"] > 0
    report = json.loads((out / "eval" / "step_4" / "results.json").read_text())
    assert set(report["benchmarks"]) == {"mmstar", "sokoban"} and (out / "eval" / "step_4" / "responses.jsonl").exists()
    pngs = {p.name for p in (out / "plots").glob("*.png")}
    assert {"reward.png", "eval_accuracy.png", "response_length.png", "kl.png", "entropy.png", "clip_frac.png",
            "grad_norm.png", "time.png", "overview.png"} <= pngs
    with Image.open(out / "plots" / "overview.png") as im:
        assert im.size[0] > 500 and im.size[1] > 300


def test_plots_of_any_run_folder(tmp_path, capsys):
    rows = [{"step": s, "reward/mean": s / 10, "reward/format": 0.5, "reward/checked": 8 * s, "kl": 0.01 * s,
             "response_len/mean": 100 + s, "time/generate": 1.0, **({"eval/math500/accuracy": 0.4} if s == 2 else {})}
            for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "rew')
    plots_main([str(tmp_path)])
    names = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert names == ["eval_accuracy.png", "kl.png", "overview.png", "response_length.png", "reward.png", "time.png"]
    assert plot_run(tmp_path, tmp_path / "elsewhere")[-1] == tmp_path / "elsewhere" / "overview.png"
    with pytest.raises(SystemExit) as e:
        plots_main([str(tmp_path / "nope")])
    assert "no metrics.jsonl" in e.value.code and "\n" not in e.value.code


def test_monitoring_flags_in_both_training_scripts(monkeypatch):
    cfg = parse_config(["--preset", "debug", "--eval-benchmarks", "math500,mathvista", "--eval-every", "50",
                        "--log-with", "tensorboard", "--no-plots"])
    assert (cfg.eval_benchmarks, cfg.eval_every, cfg.log_with, cfg.plots) == ("math500,mathvista", 50, "tensorboard",
                                                                              False)
    import train_mgt

    seen = {}
    monkeypatch.setattr("rl.run.run", lambda c, **kw: seen.setdefault("cfg", c))
    train_mgt.main(["--domain", "sokoban", "--init", "tiny", "--eval-benchmarks", "sokoban", "--eval-every", "10"])
    assert (seen["cfg"].eval_benchmarks, seen["cfg"].eval_every) == ("sokoban", 10)


@pytest.mark.parametrize("kind, module", [("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb")])
def test_missing_tracker_package_is_one_line(tmp_path, monkeypatch, kind, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(SystemExit) as e:
        open_tracker(kind, tmp_path, {})
    assert f"pip install {kind}" in e.value.code and "\n" not in e.value.code
    assert open_tracker("none", tmp_path, {}) is None
