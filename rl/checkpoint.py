"""Checkpoints that survive a crash, a kill or a full disk, and the run directory they live in.

    <out>/config.json  metrics.jsonl  checkpoints/step_N/  final/

A checkpoint is written into a hidden temporary directory beside its target and renamed into place only when every
file is on disk (`write_atomic`), with `trainer_state.json` written last: a directory named `step_N` is whole, and
the temporary leftovers of a killed write are never read. `--resume` accepts the run directory (its newest whole
checkpoint is used) or one checkpoint of it.
"""

import json
import os
import pickle
import random
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Callable

import torch

from rl import dist
from rl.guards import watchdog

COMPLETE = "trainer_state.json"  # the last file of a checkpoint: present in every whole one
_STEP = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message is one line for the user."""


def _fsync_tree(path: Path):
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` fills a temporary directory, which then replaces `path` in one rename. On any error (a full
    disk, no permission) the temporary directory is removed, `path` is left as it was, and CheckpointError says why."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write(tmp)
        _fsync_tree(tmp)
        if path.exists():  # a directory cannot be renamed over a non-empty one: move the old one aside first
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)
        raise CheckpointError(f"could not write {path}: {e.strerror or e}"
                              + (f" ({e.filename})" if getattr(e, "filename", None) else "")) from None
    return path


def step_of(path: Path) -> int:
    m = _STEP.match(Path(path).name)
    return int(m.group(1)) if m else -1


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """The whole checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP.match(p.name) and (p / COMPLETE).is_file()]
    return sorted(found, key=step_of)


def prune(run_dir: Path, keep_last: int):
    """Keep the newest `keep_last` whole checkpoints (0 = all) and drop the leftovers of interrupted writes."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.name.startswith(".step_") and not _alive(p.name):  # .tmp-PID, .old-PID, staged .rankR.pt
            shutil.rmtree(p, ignore_errors=True)
    if keep_last > 0:
        for p in complete_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(p, ignore_errors=True)


def _alive(name: str) -> bool:
    """Whether the process that owns a temporary directory (its pid is the name's suffix) is this one."""
    return name.rsplit("-", 1)[-1] == str(os.getpid())


def run_config(path: Path) -> dict | None:
    """The saved run config of a run directory (None for anything else, e.g. a model's own config.json)."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) and "preset" in cfg and "estimator" in cfg else None


def resolve_resume(target: str) -> tuple[Path, Path]:
    """(run directory, checkpoint directory) for `--resume TARGET`: a run directory (its newest whole checkpoint)
    or one `checkpoints/step_N` of it. Anything else is a CheckpointError that says what to do instead."""
    path = Path(target)
    if not path.exists():
        raise CheckpointError(f"--resume {target}: no such directory")
    if (path / COMPLETE).is_file() and path.parent.name == "checkpoints":
        return path.parent.parent, path
    if run_config(path) is not None:
        found = complete_checkpoints(path)
        if not found:
            raise CheckpointError(f"--resume {target}: the run has no complete checkpoint yet; start it again with "
                                  f"--overwrite")
        return path, found[-1]
    if (path / "config.json").is_file():
        raise CheckpointError(f"--resume {target}: this is a finished model, not a checkpoint of a run; to train on "
                              f"from it start a new run with --model {target} (stage 1) or --init {target} (stage 2)")
    if _STEP.match(path.name):
        raise CheckpointError(f"--resume {target}: this checkpoint is incomplete (its write was interrupted); "
                              f"resume from the run directory {path.parent.parent} to use its newest whole checkpoint")
    raise CheckpointError(f"--resume {target}: not a run directory (no config.json) nor a checkpoint of one")


# -- a trainer's checkpoint ------------------------------------------------------------------------------------------
def save(trainer, path: Path, resumable: bool = True) -> Path:
    """A Hugging Face checkpoint (model + processor) that from_pretrained loads; beside it the critic and, to resume
    exactly, the optimizer and random number generator states. Written whole or not at all. With several processes
    every rank takes part: rank 0 writes the weights gathered from all, each rank its own optimizer shard and random
    state."""
    world, rank = dist.world(), dist.rank()
    policy_state = dist.full_state_dict(trainer.policy_logprobs) if world > 1 else None
    critic_state = trainer.critic.state_dict()  # every process takes part in the gather
    staged = [path.parent / f".{path.name}.rank{r}.pt" for r in range(world)]
    if resumable and world > 1:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(own_state(trainer), staged[rank])
        dist.barrier()

    def write(tmp: Path):
        if policy_state is None:
            trainer.policy.save_pretrained(tmp)
        else:
            trainer.policy.save_pretrained(tmp, state_dict={k.removeprefix("model."): v for k, v in
                                                            policy_state.items()})
        trainer.processor.save_pretrained(tmp)
        if critic_state is not None:
            torch.save(critic_state, tmp / "critic.pt")
        if resumable and world == 1:
            torch.save(own_state(trainer), tmp / "trainer_state.pt")
        elif resumable:
            for r, file in enumerate(staged):
                os.replace(file, tmp / f"trainer_state_rank{r}.pt")
        (tmp / COMPLETE).write_text(json.dumps(  # last: its presence marks a whole checkpoint
            {"step": trainer.step, "update_step": trainer.update_step, "base_model": trainer.base_model,
             "counts": dict(trainer.counts), "world_size": world}, indent=2))

    error = None
    if dist.is_main():
        try:
            with watchdog("checkpoint", trainer.cfg.stall_timeout, trainer.log):
                write_atomic(path, write)
        except CheckpointError as e:
            error = str(e)
    error = dist.broadcast_object(error)
    if error:
        raise CheckpointError(error)
    return path


def _state_classes() -> list:
    """The classes a trainer state holds besides tensors and plain data: torchao's 8-bit optimizer states
    (--optim adamw_8bit_bf16), where torchao is installed."""
    try:
        from torchao.optim.subclass_8bit import OptimState8bit
    except ImportError:
        return []
    return [OptimState8bit]


def own_state(trainer) -> dict:
    """What this process needs to continue exactly: its optimizer states and random number generators."""
    return {"optimizer": trainer.optimizer.state_dict(), "critic_optimizer": trainer.critic.optimizer_state(),
            "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}


def load(trainer, path: Path):
    """Continue `trainer` from the checkpoint `path`: its step counters, counts, optimizer and random states (the
    weights were loaded with the model)."""
    info = json.loads((path / COMPLETE).read_text())
    world = dist.world()
    if info.get("world_size", 1) != world:
        raise CheckpointError(f"{path} was written by {info.get('world_size', 1)} processes; resume it with as many "
                              f"(torchrun --nproc_per_node {info.get('world_size', 1)})")
    name = "trainer_state.pt" if world == 1 else f"trainer_state_rank{dist.rank()}.pt"
    try:  # tensors and plain data only: a crafted file cannot run code on load
        with torch.serialization.safe_globals(_state_classes()):
            state = torch.load(path / name, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        raise CheckpointError(f"{path / name}: refused, it holds more than tensors and plain data"
                              + (f" ({found.group(1)})" if found else "")) from None
    trainer.step, trainer.update_step = info["step"], info["update_step"]
    trainer.counts = Counter(info["counts"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.critic.load_optimizer_state(state["critic_optimizer"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    trainer.log(f"resumed from {path} at step {trainer.step}")
