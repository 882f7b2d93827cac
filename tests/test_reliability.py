"""A run survives what happens to long runs: a kill in the middle of a checkpoint write, SIGTERM, NaN, a stall.

The kill and stop tests run train_fre.py as real subprocesses and require the resumed run to end bit-identical
(weights and metrics) to one that was never interrupted."""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from data import FIXTURE_DIR, load_fixture, load_message_jsonl
from rl.checkpoint import CheckpointError, complete_checkpoints, prune, resolve_resume, write_atomic
from rl.checkpoint import damage as checkpoint_damage
from rl.config import parse_config, preset
from rl.monitor import MetricsFile
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


# A child that trains with one fault planted (argv[1]), for the faults only a real process shows.
FAULTY = """
import os, sys, time
sys.path.insert(0, {root!r})
MARK = {mark!r}

if __name__ == "__mp_main__" and os.path.exists(MARK + ".workers"):  # a reward worker, while the fault is on
    os._exit(3)  # dies while starting, every time


def main(fault):
    import multiprocessing, signal
    import rl.run
    from rl.trainer import Trainer
    real_reward, real_make = Trainer.reward, rl.run.make_trainer

    def reward(self, rollout, samples):
        if self.step == 1 and not os.path.exists(MARK):
            open(MARK, "w").close()
            if fault == "stall":
                time.sleep(600)
            while fault == "hold" and not os.path.exists(MARK + ".go"):  # the test signals, then lets it go on
                time.sleep(0.02)
            if fault == "workers":  # from now on no reward worker can start
                open(MARK + ".workers", "w").close()
                for child in multiprocessing.active_children():
                    os.kill(child.pid, signal.SIGKILL)
        return real_reward(self, rollout, samples)

    def slow_start(*args, **kwargs):
        open(MARK, "w").close()
        time.sleep(600)

    Trainer.reward = reward
    if fault == "slow-start":
        rl.run.make_trainer = slow_start
    import train_fre
    train_fre.main(sys.argv[2:])


if __name__ == "__main__":
    main(sys.argv[1])
"""


def faulty(tmp_path, fault, *args) -> tuple[subprocess.Popen, Path]:
    """train_fre.py with `fault` planted, started; its output goes to the file returned."""
    script, err = tmp_path / "faulty.py", tmp_path / "stderr.txt"
    script.write_text(FAULTY.format(root=str(ROOT), mark=str(tmp_path / "mark")))
    with open(err, "w") as f:  # stdout too: the trainer's lines
        proc = subprocess.Popen([sys.executable, str(script), fault, *args], stdout=f, stderr=subprocess.STDOUT,
                                cwd=ROOT, env=ENV)
    return proc, err


def wait_for(proc, check):
    """Until `check()` holds; the child must still run (it waits 600 s in its fault)."""
    while not check():
        assert proc.poll() is None, "the child ended before its fault"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_finishes_the_step_checkpoints_exits_zero_and_resumes_exactly(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc, err = faulty(tmp_path, "hold", *RUN, "--save-every", "0", "--out", str(out))
    wait_for(proc, (tmp_path / "mark").exists)  # in step 2
    proc.send_signal(signal.SIGTERM)
    wait_for(proc, lambda: "SIGTERM received: finishing this step" in err.read_text())
    (tmp_path / "mark.go").touch()
    assert proc.wait(timeout=120) == 0
    text = err.read_text()
    assert f"stopped by SIGTERM after step 2: checkpoint {out}/checkpoints/step_2; continue with: python faulty.py " \
           f"--resume {out}" in text and "Traceback" not in text
    assert [p.name for p in complete_checkpoints(out)] == ["step_2"] and len(metrics(out)) == 2
    resumed = train("--resume", str(out), "--save-every", "2")  # save_every may change: it computes nothing
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(uninterrupted, out)


@pytest.mark.slow
def test_sigterm_during_start_up_exits_143_with_one_line(tmp_path):
    proc, err = faulty(tmp_path, "slow-start", "--preset", "debug", "--out", str(tmp_path / "run"))
    wait_for(proc, (tmp_path / "mark").exists)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    text = err.read_text()
    assert "SIGTERM received while starting (nothing new to save): exiting" in text and "Traceback" not in text


@pytest.mark.slow
def test_a_stop_during_a_stall_saves_the_steps_start_and_resumes_exactly(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc, err = faulty(tmp_path, "stall", *RUN, "--stall-timeout", "1", "--out", str(out))
    wait_for(proc, lambda: "watchdog: phase 'reward'" in err.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    text = err.read_text()
    assert f"SIGTERM received while phase 'reward' was stalled: abandoned; checkpoint {out}/checkpoints/step_1; " \
           f"continue with: python faulty.py --resume {out}" in text and "Traceback" not in text
    resumed = train("--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(uninterrupted, out)


@pytest.mark.slow
def test_reward_workers_that_cannot_start_stop_the_run_with_a_checkpoint(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc, err = faulty(tmp_path, "workers", *RUN, "--out", str(out))
    assert proc.wait(timeout=300) == 1
    last = err.read_text().strip().splitlines()[-1]
    assert re.fullmatch(rf"error: step 2: the reward cannot be computed \(reward worker failed to start 3 times in a "
                        rf"row .*\); checkpoint {out}/checkpoints/step_1; continue with: python faulty.py --resume "
                        rf"{out}", last), last
    assert "Traceback" not in err.read_text()
    resumed = train("--resume", str(out))  # the workers start again
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(uninterrupted, out)


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


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished in-process run of 4 steps: checkpoints/step_2, step_4 and final/."""
    out = tmp_path_factory.mktemp("finished") / "run"
    cfg = preset("debug", out=str(out), max_steps=4, save_every=2, keep_last=0)
    make_trainer(cfg, load_fixture("math"), Rewards()).train()
    return out


@pytest.fixture
def run_copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def _cut(file: Path, size: int):
    with open(file, "r+b") as f:
        f.truncate(size)


def _flip(file: Path, at: int):
    data = bytearray(file.read_bytes())
    data[at] ^= 0xFF
    file.write_bytes(data)


DAMAGE = {  # what a kill, a full disk or a bad copy leaves in the newest checkpoint -> what the warning names
    "weights cut short": (lambda c: _cut(c / "model.safetensors", 5000), "model.safetensors: cut short"),
    "weights cut in the data": (lambda c: _cut(c / "model.safetensors", (c / "model.safetensors").stat().st_size - 9),
                                "model.safetensors: .* bytes, its header says"),
    "weights header overwritten": (lambda c: _flip(c / "model.safetensors", 12), "model.safetensors: not a safetensors"),
    "state missing": (lambda c: (c / "trainer_state.pt").unlink(), "missing trainer_state.pt"),
    "state cut short": (lambda c: _cut(c / "trainer_state.pt", 1000), "trainer_state.pt: not readable"),
    "state bit flip": (lambda c: _flip(c / "trainer_state.pt", 2000), "trainer_state.pt: fails its checksum"),
    "tokenizer cut": (lambda c: _cut(c / "tokenizer.json", 100), "tokenizer.json: not readable JSON"),
    "state marker forged": (lambda c: (c / "trainer_state.json").write_text('{"step": "4", "counts": []}'),
                            "trainer_state.json: not a trainer state"),
    "shards outside": (lambda c: (c / "model.safetensors.index.json").write_text(
        '{"weight_map": {"w": "../../step_2/model.safetensors"}}'), "model.safetensors.index.json: its weight map"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_resume_passes_over_a_damaged_newest_checkpoint(run_copy, kind):
    damage, named = DAMAGE[kind]
    newest = run_copy / "checkpoints" / "step_4"
    assert checkpoint_damage(newest) is None
    damage(newest)
    said = []
    assert resolve_resume(str(run_copy), log=said.append) == (run_copy, run_copy / "checkpoints" / "step_2")
    assert re.search(f"step_4 is damaged .{named}", said[0]) and "resuming from" in said[1] and "step_2" in said[1]
    with pytest.raises(CheckpointError, match=f"the checkpoint is damaged .{named}"):
        resolve_resume(str(newest))  # named on its own: refused, with the way to the older one
    damage(run_copy / "checkpoints" / "step_2")
    with pytest.raises(CheckpointError, match="every checkpoint is damaged .the newest, step_4: .*--overwrite"):
        resolve_resume(str(run_copy))


def test_resume_targets_leftovers_and_keep_last(run_copy):
    run, ckpts = run_copy, run_copy / "checkpoints"
    assert resolve_resume(str(ckpts / "step_2")) == (run, ckpts / "step_2")
    (ckpts / "step_6").mkdir()  # an interrupted write of an older version: no trainer_state.json
    assert resolve_resume(str(run)) == (run, ckpts / "step_4")
    with pytest.raises(CheckpointError, match="incomplete"):
        resolve_resume(str(ckpts / "step_6"))
    with pytest.raises(CheckpointError, match="finished model.*--model .*final.*--init"):
        resolve_resume(str(run / "final"))
    leftovers = [ckpts / ".step_6.tmp-999999", run / ".final.tmp-999999", run / ".final.old-999999"]
    for d in leftovers:
        shutil.copytree(ckpts / "step_4", d)  # whole-looking, even with trainer_state.json
    (ckpts / ".step_6.rank0.pt").write_bytes(b"staged")
    for d in leftovers:
        with pytest.raises(CheckpointError, match="temporary folder of an interrupted write"):
            resolve_resume(str(d))
    prune(run, keep_last=1)
    assert [p.name for p in complete_checkpoints(run)] == ["step_4"]
    assert not [p for p in [*run.iterdir(), *ckpts.iterdir()] if p.name.startswith(".")]
    empty = run.parent / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((run / "config.json").read_text())
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        resolve_resume(str(empty))


def test_a_torn_last_metrics_line_is_cut_with_a_warning(run_copy, capsys):
    path = run_copy / "metrics.jsonl"
    whole = path.read_text().splitlines()
    path.write_text("\n".join(whole) + '\n{"step": 5, "reward/me')
    MetricsFile(run_copy, step=2, counts=Counter()).close()
    assert path.read_text().splitlines() == whole[:2]
    assert "metrics.jsonl:5: not a whole metrics line" in capsys.readouterr().err


def test_final_keeps_what_it_did_not_write(run_copy):
    """Training to the end again (from an older checkpoint) rewrites final/ and keeps the eval/ that eval.py wrote."""
    (run_copy / "final" / "eval").mkdir()
    (run_copy / "final" / "eval" / "results.json").write_text("{}")
    before = (run_copy / "final" / "model.safetensors").stat().st_ino
    cfg = parse_config(["--resume", str(run_copy / "checkpoints" / "step_2")])
    make_trainer(cfg, load_fixture("math"), Rewards()).train()
    assert (run_copy / "final" / "eval" / "results.json").is_file()
    assert (run_copy / "final" / "model.safetensors").stat().st_ino != before  # written anew


def test_resuming_a_finished_run_changes_nothing(run_copy):
    (run_copy / "final" / "eval").mkdir()
    (run_copy / "final" / "eval" / "results.json").write_text("{}")
    stamp = (run_copy / "final" / "model.safetensors").stat().st_mtime_ns
    cfg = parse_config(["--resume", str(run_copy)])
    said = []
    assert make_trainer(cfg, load_fixture("math"), Rewards(), log=said.append).train() == run_copy / "final"
    assert "the run is finished (step 4 of 4)" in said[-1]
    assert (run_copy / "final" / "eval" / "results.json").is_file()
    assert (run_copy / "final" / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_full_disk_during_a_checkpoint_stops_with_the_resume_command(run_copy):
    """A real write error (the file-size limit: EFBIG, as torch and safetensors meet ENOSPC) while writing step_6."""
    cfg = parse_config(["--resume", str(run_copy)])
    trainer = make_trainer(cfg, load_fixture("math"), Rewards())
    trainer.step = 6
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN), resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, previous[1][1]))
    try:
        with pytest.raises(CheckpointError) as e:
            trainer.save_checkpoint()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, previous[1])
        signal.signal(signal.SIGXFSZ, previous[0])
    message = str(e.value)
    assert "\n" not in message and re.search(r"could not write .*step_6: .*MiB free there; the run stops here", message)
    assert f"The newest checkpoint, {run_copy / 'checkpoints' / 'step_4'}, is whole: continue with: python " in message
    assert f"--resume {run_copy} once there is room" in message
    assert sorted(p.name for p in (run_copy / "checkpoints").iterdir()) == ["step_2", "step_4"]
    assert checkpoint_damage(run_copy / "checkpoints" / "step_4") is None


def test_an_image_unreadable_when_drawn_is_skipped_counted_and_logged(tmp_path):
    shutil.copytree(FIXTURE_DIR / "images", tmp_path / "images")
    shutil.copy(FIXTURE_DIR / "message_fixture.jsonl", tmp_path / "rows.jsonl")
    samples = load_message_jsonl(tmp_path / "rows.jsonl")
    _cut(tmp_path / "images" / "tri_0.png", 100)  # damaged after the data load checked it
    cfg = preset("debug", out=str(tmp_path / "run"), episodes=2, max_steps=2, prompts_per_step=4, n_samples=2,
                 max_new_tokens=4, train_batch_size=4, micro_batch_size=4, save_every=0)
    said = []
    make_trainer(cfg, samples, Rewards(), log=said.append).train()
    lines = metrics(tmp_path / "run")
    assert [m["data/unreadable_image"] for m in lines] == [2, 4]  # two rows use the image; drawn each step
    warnings = [x for x in said if x.startswith("warning: skipped")]
    assert len(warnings) == 2 and all("rows.jsonl:" in w and "tri_0.png cannot be read" in w for w in warnings)


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
