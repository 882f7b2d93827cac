"""Checkpoints that survive a crash, a kill or a full disk, and the run directory they live in.

    <out>/config.json  metrics.jsonl  checkpoints/step_N/  final/

A checkpoint is written into a hidden temporary directory beside its target and renamed into place only when every
file is on disk (`write_atomic`), with `trainer_state.json` written last: a directory named `step_N` is whole, and
the temporary leftovers of a killed write are never read (and are removed when a run starts). `--resume` accepts the
run directory or one checkpoint of it; each is verified first (`damage`: files, sizes, checksums, nothing unpickled),
and a damaged newest checkpoint is passed over for the newest whole one. Files load as tensors and plain data only.
"""

import json
import os
import pickle
import random
import re
import shutil
import sys
import zipfile
from collections import Counter
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError

from rl import dist, lora
from rl.guards import watchdog

COMPLETE = "trainer_state.json"  # the last file of a checkpoint: present in every whole one
_STEP = re.compile(r"^step_(\d+)$")
_TEMP = re.compile(r"^\.[\w.]+\.(tmp|old)-\d+$")  # .step_N.tmp-PID, .final.old-PID: a write in progress
_STAGED = re.compile(r"^\.step_\d+\.rank\d+\.pt$")  # a rank's trainer state, staged before the write


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


def write_atomic(path: Path, write: Callable[[Path], None], keep_others: bool = False) -> Path:
    """`write(tmp)` fills a temporary directory, which then replaces `path` in one rename (`keep_others`: what `path`
    held that `write` did not write, e.g. the eval/ of final/, moves into the new one). On a write error (a full
    disk, no permission: OSError, or the RuntimeError / SafetensorError that torch and safetensors raise for one) the
    temporary directory is removed, `path` is left as it was, and CheckpointError says why in one line."""
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
            for other in (old.iterdir() if keep_others else ()):
                if not (tmp / other.name).exists():
                    os.replace(other, tmp / other.name)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except (OSError, RuntimeError, SafetensorError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[0][:200]
        try:
            free = f"; {shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there"
        except OSError:
            free = ""
        raise CheckpointError(f"could not write {path}: {why}{free}") from None
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


def _leftover(name: str) -> bool:
    """A temporary folder or staged state file of a write that did not finish (its pid is not this process's)."""
    return bool(_TEMP.match(name) or _STAGED.match(name)) and name.rsplit("-", 1)[-1] != str(os.getpid())


def prune(run_dir: Path, keep_last: int):
    """Keep the newest `keep_last` whole checkpoints (0 = all) and remove the leftovers of interrupted writes (in the
    run directory and under checkpoints/)."""
    run_dir = Path(run_dir)
    for root in (run_dir, run_dir / "checkpoints"):
        for p in (root.iterdir() if root.is_dir() else ()):
            if _leftover(p.name):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    if keep_last > 0:
        for p in complete_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(p, ignore_errors=True)


def run_config(path: Path) -> dict | None:
    """The saved run config of a run directory (None for anything else, e.g. a model's own config.json)."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) and "preset" in cfg and "estimator" in cfg else None


def _safetensors_damage(file: Path) -> str | None:
    """What is wrong with a safetensors file, from its header and size (a truncated or overwritten file)."""
    size = file.stat().st_size
    try:
        with open(file, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n > size - 8:
                return f"{file.name}: cut short ({size} bytes, its header needs {n + 8})"
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return f"{file.name}: not a safetensors file (its header does not parse)"
    if 8 + n + end != size:
        return f"{file.name}: {size} bytes, its header says {8 + n + end} (cut short or overwritten)"
    return None


def damage(ckpt: Path, needs_critic: bool = False) -> str | None:
    """What is wrong with a checkpoint whose write completed, or None when it is whole: a file missing, a JSON file
    that does not parse, a safetensors file whose size disagrees with its header, a state file whose archive fails
    its checksums. Nothing is unpickled."""
    ckpt = Path(ckpt)
    try:
        info = json.loads((ckpt / COMPLETE).read_text())
        world = info.get("world_size", 1)
        whole = all(type(info.get(k)) is int and info[k] >= 0 for k in ("step", "update_step")) and \
            type(world) is int and world >= 1 and isinstance(info.get("counts"), dict) and \
            all(type(v) is int for v in info["counts"].values())
    except (OSError, ValueError, TypeError, AttributeError):
        return f"{COMPLETE}: missing or unreadable"
    if not whole:
        return f"{COMPLETE}: not a trainer state (step, update_step, counts, world_size)"
    for file in sorted(ckpt.glob("*.json")):
        try:
            json.loads(file.read_text())
        except (OSError, ValueError):
            return f"{file.name}: not readable JSON"
    index = ckpt / "model.safetensors.index.json"
    adapter = (ckpt / "adapter_config.json").is_file()  # a LoRA run's checkpoint: the adapter, not the model
    weights = [ckpt / ("adapter_model.safetensors" if adapter else "model.safetensors")]
    if index.is_file():
        weight_map = json.loads(index.read_text())
        weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
        shards = {str(f) for f in weight_map.values()} if isinstance(weight_map, dict) else set()
        if not shards or any(Path(f).name != f or f.startswith(".") for f in shards):
            return f"{index.name}: its weight map names no shard, or a file outside the checkpoint"
        weights = sorted(ckpt / f for f in shards)
    states = ["trainer_state.pt"] if world == 1 else [f"trainer_state_rank{r}.pt" for r in range(world)]
    needed = [*([] if adapter else ["config.json"]), *(w.name for w in weights), *states,
              *(["critic.pt"] if needs_critic else [])]
    missing = [name for name in needed if not (ckpt / name).is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    for file in weights:
        problem = _safetensors_damage(file)
        if problem:
            return problem
    for name in [*states, *(["critic.pt"] if (ckpt / "critic.pt").is_file() else [])]:
        try:
            with zipfile.ZipFile(ckpt / name) as z:
                bad = z.testzip()
        except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
            return f"{name}: not readable ({e})"
        if bad is not None:
            return f"{name}: fails its checksum ({bad})"
    return None


def resolve_resume(target: str, log=None) -> tuple[Path, Path]:
    """(run directory, checkpoint directory) for `--resume TARGET`: a run directory (its newest whole checkpoint: a
    damaged newer one is passed over, and `log` says which and why) or one `checkpoints/step_N` of it (which must be
    whole). Anything else is a CheckpointError that says what to do instead."""
    path = Path(target)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if not path.exists():
        raise CheckpointError(f"--resume {target}: no such directory")
    if _TEMP.match(path.name):
        raise CheckpointError(f"--resume {target}: this is the temporary folder of an interrupted write, never whole; "
                              f"resume from the run directory to use its newest whole checkpoint")
    if (path / COMPLETE).is_file() and path.parent.name == "checkpoints":
        problem = damage(path, _needs_critic(path.parent.parent))
        if problem:
            raise CheckpointError(f"--resume {target}: the checkpoint is damaged ({problem}); resume from the run "
                                  f"directory {path.parent.parent} to use its newest whole checkpoint")
        return path.parent.parent, path
    if run_config(path) is not None:
        found, passed = complete_checkpoints(path), []
        for ckpt in reversed(found):
            problem = damage(ckpt, _needs_critic(path))
            if problem is None:
                for bad, why in passed:
                    log(f"warning: {bad} is damaged ({why}); passed over")
                if passed:
                    log(f"resuming from {ckpt}, the newest whole checkpoint")
                return path, ckpt
            passed.append((ckpt, problem))
        if passed:
            raise CheckpointError(f"--resume {target}: every checkpoint is damaged (the newest, {passed[0][0].name}: "
                                  f"{passed[0][1]}); start the run again with --overwrite")
        raise CheckpointError(f"--resume {target}: the run has no complete checkpoint yet; start it again with "
                              f"--overwrite")
    if (path / "config.json").is_file():
        raise CheckpointError(f"--resume {target}: this is a finished model, not a checkpoint of a run; to train on "
                              f"from it start a new run with --model {target} (stage 1) or --init {target} (stage 2)")
    if _STEP.match(path.name):
        raise CheckpointError(f"--resume {target}: this checkpoint is incomplete (its write was interrupted); "
                              f"resume from the run directory {path.parent.parent} to use its newest whole checkpoint")
    raise CheckpointError(f"--resume {target}: not a run directory (no config.json) nor a checkpoint of one")


def _needs_critic(run_dir: Path) -> bool:
    return (run_config(run_dir) or {}).get("estimator") == "gae"


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
        state = None if policy_state is None else {k.removeprefix("model."): v for k, v in policy_state.items()}
        if trainer.adapters is not None:  # LoRA: the adapter; final/ also the merged model, which stock classes load
            if not resumable:  # a QLoRA base is dequantized to bf16 first
                merged = lora.merged_state_dict(state or lora.dequantized_state_dict(trainer.policy),
                                                lora.scaling(trainer.adapters.peft_config["default"]))
                with lora.unquantized(trainer.policy):
                    trainer.policy.save_pretrained(tmp, state_dict=merged)
                trainer.processor.save_pretrained(tmp)
            adapter = tmp if resumable else tmp / lora.ADAPTER_DIR
            lora.save_adapter(trainer.adapters, adapter, state)
            trainer.processor.save_pretrained(adapter)
        else:
            trainer.policy.save_pretrained(tmp, state_dict=state)
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
                write_atomic(path, write, keep_others=not resumable)  # final/ keeps what eval.py wrote there
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


def load_state(file: Path):
    """A torch file of a checkpoint, as tensors and plain data only: a crafted file is refused (CheckpointError
    naming it and the class it holds) and cannot run code on load."""
    try:
        with torch.serialization.safe_globals(_state_classes()):
            return torch.load(file, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        raise CheckpointError(f"{file}: refused, it holds more than tensors and plain data"
                              + (f" ({found.group(1)})" if found else "")) from None


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
    state = load_state(path / name)
    trainer.step, trainer.update_step = info["step"], info["update_step"]
    trainer.counts = Counter(info["counts"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.critic.load_optimizer_state(state["critic_optimizer"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    trainer.log(f"resumed from {path} at step {trainer.step}")
