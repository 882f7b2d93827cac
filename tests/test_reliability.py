"""A run survives what happens to long runs: a kill in the middle of a checkpoint write, SIGTERM, NaN, a stall.

The kill and stop tests run train_fre.py as real subprocesses and require the resumed run to end bit-identical
(weights and metrics) to one that was never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from data import load_fixture
from rl.checkpoint import CheckpointError, complete_checkpoints, prune, resolve_resume, write_atomic
from rl.config import preset
from rl.guards import NonFinite, watchdog
from rl.run import make_trainer

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
RUN = ["--preset", "debug", "--max-steps", "4", "--save-every", "2", "--kl", "0.01"]
VOLATILE = ("time/", "tokens_per_s", "mem/")


def train(*args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "train_fre.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=ENV)


def metrics(run: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in m.items() if not k.startswith(VOLATILE)} for m in lines]


def assert_same_run(a: Path, b: Path):
    wa, wb = load_file(a / "final" / "model.safetensors"), load_file(b / "final" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert metrics(a) == metrics(b)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    proc = train(*RUN, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


# A child that trains and SIGKILLs itself at one point of the step-4 checkpoint write.
KILLER = """
import os, signal, sys
sys.path.insert(0, {root!r})


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def main(point):
    import torch
    import rl.checkpoint
    if point == "mid-write":  # the weights are written, the optimizer state is not
        real_save = torch.save
        def save(obj, path, *a, **k):
            if ".step_4.tmp" in str(path):
                die()
            return real_save(obj, path, *a, **k)
        torch.save = save
    elif point == "before-rename":  # every file on disk, not yet renamed into place
        real_fsync = rl.checkpoint._fsync_tree
        def fsync(path):
            real_fsync(path)
            if ".step_4.tmp" in str(path):
                die()
        rl.checkpoint._fsync_tree = fsync
    elif point == "after-rename":  # renamed, older checkpoints not yet pruned
        real_prune = rl.checkpoint.prune
        def prune(run_dir, keep_last):
            if (run_dir / "checkpoints" / "step_4").exists():
                die()
            real_prune(run_dir, keep_last)
        rl.checkpoint.prune = prune
    import train_fre
    train_fre.main(sys.argv[2:])


if __name__ == "__main__":  # reward workers are spawned and import this file again
    main(sys.argv[1])
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", ["mid-write", "before-rename", "after-rename"])
def test_kill_during_checkpoint_write_then_resume_is_bit_identical(tmp_path, uninterrupted, point):
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(root=str(ROOT)))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(script), point, *RUN, "--out", str(out)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env=ENV)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    newest = complete_checkpoints(out)[-1].name
    assert newest == ("step_4" if point == "after-rename" else "step_2")
    resumed = train("--resume", str(out))  # the run directory: its config and its newest whole checkpoint
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {out / 'checkpoints' / newest}" in resumed.stdout + resumed.stderr
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]  # leftovers removed
    assert_same_run(uninterrupted, out)


@pytest.mark.slow
def test_sigterm_checkpoints_exits_zero_and_resumes_exactly(tmp_path):
    run = [*RUN, "--max-steps", "12", "--save-every", "0"]  # steps long enough for the signal to land mid-run
    whole = tmp_path / "whole"
    assert train(*run, "--out", str(whole)).returncode == 0
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train_fre.py"), *run, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
    metrics_file = out / "metrics.jsonl"
    while proc.poll() is None and not (metrics_file.exists() and metrics_file.read_text().count("\n") >= 1):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    steps = len(metrics(out))
    assert 1 <= steps < 12, "the run ended before the signal arrived"
    assert f"continue with: python train_fre.py --resume {out}" in stdout + stderr
    assert "Traceback" not in stderr
    assert [p.name for p in complete_checkpoints(out)] == [f"step_{steps}"]
    resumed = train("--resume", str(out), "--save-every", "5")  # save_every may change: it computes nothing
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(whole, out)


def test_write_atomic_leaves_the_previous_checkpoint_on_failure(tmp_path):
    target = tmp_path / "checkpoints" / "step_2"
    write_atomic(target, lambda d: (d / "a.txt").write_text("old"))

    def disk_full(d):
        (d / "a.txt").write_text("new, half")
        raise OSError(28, "No space left on device")

    with pytest.raises(CheckpointError, match="could not write .*step_2: No space left on device"):
        write_atomic(target, disk_full)
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["step_2"]
    write_atomic(target, lambda d: (d / "b.txt").write_text("replaced"))  # replacing a whole one works
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]


def test_resume_targets_and_keep_last(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(dict(preset="debug", estimator="gae")))
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        resolve_resume(str(run))
    for step in (2, 4, 6):
        write_atomic(run / "checkpoints" / f"step_{step}", lambda d: (d / "trainer_state.json").write_text("{}"))
    (run / "checkpoints" / "step_8").mkdir()  # an interrupted write of an older version: no trainer_state.json
    assert resolve_resume(str(run)) == (run, run / "checkpoints" / "step_6")
    assert resolve_resume(str(run / "checkpoints" / "step_4")) == (run, run / "checkpoints" / "step_4")
    with pytest.raises(CheckpointError, match="incomplete"):
        resolve_resume(str(run / "checkpoints" / "step_8"))
    (run / "final").mkdir()
    (run / "final" / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    with pytest.raises(CheckpointError, match="finished model.*--model .*final.*--init"):
        resolve_resume(str(run / "final"))
    prune(run, keep_last=2)
    assert [p.name for p in complete_checkpoints(run)] == ["step_4", "step_6"]


class Rewards:
    """Rewards with spread, or NaN for the steps listed in `nan_steps` (counted by calls)."""

    def __init__(self, nan_steps=()):
        self.calls, self.nan_steps = 0, set(nan_steps)

    def __call__(self, responses, golds, metas):
        self.calls += 1
        bad = self.calls in self.nan_steps
        return SimpleNamespace(components={"total": [float("nan") if bad else len(set(r)) / 10 for r in responses]},
                               counts={})

    def close(self):
        pass


def _weights(trainer):
    return {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}


def test_nonfinite_reward_skips_the_step_and_is_counted(tmp_path):
    cfg = preset("debug", out=str(tmp_path), max_steps=2, save_every=0)
    trainer = make_trainer(cfg, load_fixture("math"), Rewards(nan_steps={1}))
    before = _weights(trainer)
    trainer.make_experience(trainer.prompts_for_step(0))  # NaN rewards: no update, counted
    assert trainer.counts["guard/nonfinite_rewards"] == 16 and trainer.guard.skipped == 1
    assert all(torch.equal(before[n], p) for n, p in trainer.policy.named_parameters())
    trainer.train()
    lines = metrics(tmp_path)
    assert lines[-1]["guard/skipped_steps"] == 1 and lines[-1]["guard/nonfinite_rewards"] == 16


def test_nonfinite_loss_never_reaches_the_weights_and_k_in_a_row_stop(tmp_path):
    cfg = preset("debug", out=str(tmp_path), max_steps=4, save_every=0, max_bad_steps=3)  # 2 updates per step
    trainer = make_trainer(cfg, load_fixture("math"), Rewards())
    loss = trainer.policy_loss
    trainer.policy_loss = lambda *a: loss(*a) * float("nan")
    before = _weights(trainer)
    with pytest.raises(NonFinite, match="3 steps in a row .* loss at step 2, update 3, phase 'update'"):
        trainer.train()
    assert all(torch.equal(before[n], p) for n, p in trainer.policy.named_parameters())
    assert trainer.guard.skipped == 3
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert first["guard/skipped_steps"] == 2 and "loss/policy" not in first and "grad_norm" not in first


def test_watchdog_logs_the_phase_and_every_stack(capfd):
    seen = []
    with watchdog("reward", 0.05, seen.append):
        for _ in range(600):  # the check waits for the watchdog, not for a clock
            if seen:
                break
            time.sleep(0.05)
    assert seen and "phase 'reward'" in seen[0]
    assert "Thread" in capfd.readouterr().err
    quiet = []
    with watchdog("update", 60, quiet.append):
        pass
    assert not quiet
