"""torchrun + FSDP2 in a few functions; with one process every function here is a no-op or the identity.

    torchrun --nproc_per_node 8 train_fre.py ...                     # one node
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 train_fre.py ...

Each rank generates, scores and trains on its share of the prompts; FSDP2 (`fully_shard`) shards parameters,
gradients and optimizer states; whitening, the loss normalisation and the metrics are global; rank 0 logs and writes.
"""

import contextlib
import os

import torch
import torch.distributed as dist


def setup(device: str) -> torch.device:
    """Join the torchrun group when there is one (NCCL on CUDA, gloo on the CPU); the device of this rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        cuda = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and dist.is_initialized():
        device = f"cuda:{local}"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    return torch.device(device)


SMALL_MODEL = 100_000_000  # parameters: below this a CPU run takes one thread by default


def cpu_threads(requested: int, params: int) -> tuple[int, str]:
    """--cpu-threads: how many threads torch uses on the CPU, and why. 0 (auto): OMP_NUM_THREADS when it is set;
    one thread for a model under SMALL_MODEL parameters (its small matrix products gain little from more - the
    classroom run: 71 s at one thread, 60 s at two on a quiet 2-core machine - while several threads stall badly
    whenever anything else shares the cores: bench/cpu_threads.py); else this process's share of the cores."""
    if requested > 0:
        return requested, "--cpu-threads"
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env), "OMP_NUM_THREADS"
    if params < SMALL_MODEL:
        return 1, f"a model of {params / 1e6:.1f}M parameters; --cpu-threads N to choose"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return share, f"this process's share of {cores} cores; --cpu-threads N to choose"


def use_cpu_threads(requested: int, model) -> str:
    """Set torch's CPU threads for `model` (cpu_threads); the line that says how many and why."""
    n, why = cpu_threads(requested, sum(p.numel() for p in model.parameters()))
    torch.set_num_threads(n)
    return f"CPU: {n} thread{'s' if n > 1 else ''} ({why})"


def cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 matmuls are emulated."""
    cpu = torch.cpu
    return any(getattr(cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def autocast_dtype(name: str, device: torch.device):
    """--dtype: bf16 autocast over the fp32 master weights, or none (fp32). 'auto': bf16 on a GPU, fp32 on a CPU
    even where it has bf16 (cpu_bf16): there the classroom preset learns as well under bf16 but steps 1.5-2.9x
    slower, autocast's casts outweighing its tiny matmuls (bench/cpu_bf16.py); --dtype bf16 asks for it."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp32": None}[name]


def teardown():
    """Leave the group cleanly (a process that exits with gloo's threads still running aborts)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier():
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum over ranks (a new tensor on x's device; gloo and NCCL both take float64 and int64)."""
    if not dist.is_initialized():
        return x.clone()
    out = x.clone()
    dist.all_reduce(out)
    return out


def sum_all(x: float) -> float:
    """A number summed over the processes (float64)."""
    return all_reduce_sum(torch.tensor([float(x)], dtype=torch.float64)).item()


def all_gather_objects(obj) -> list:
    if not dist.is_initialized():
        return [obj]
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's object on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool) -> bool:
    """Whether `flag` holds on any process (a stop signal, a non-finite loss): all then act alike."""
    return all_reduce_sum(torch.tensor([float(flag)])).item() > 0


def same_count(groups: list) -> list[tuple[object, bool]]:
    """(group, real) pairs, as many on every process: FSDP's collectives need the same number of forward and
    backward passes everywhere, so a process with fewer micro-batches repeats its first one with weight 0."""
    pairs = [(g, True) for g in groups]
    most = max(all_gather_objects(len(pairs)))
    return pairs + [(groups[0], False)] * (most - len(pairs))


def token_mean(total: torch.Tensor, count: torch.Tensor) -> float:
    """sum(total) / sum(count) over every process: the mean of a per-token value over all valid tokens (each
    process's own mean would weigh its tokens by how few it has)."""
    both = all_reduce_sum(torch.stack([total, count]).double())
    return (both[0] / both[1].clamp(min=1)).item()


def global_metrics(metrics: dict, counts: dict) -> dict:
    """A step's metrics over every process: per-sample means (every process has as many samples) and token means
    (already global: token_mean) averaged, maxima (".../max") the largest; the running counts summed."""
    if world() == 1:
        return {**metrics, **counts}
    parts = all_gather_objects((metrics, dict(counts)))
    keys = dict.fromkeys(k for m, _ in parts for k in m)
    out = {k: (max if k.endswith("/max") else lambda v: sum(v) / len(v))([m[k] for m, _ in parts if k in m])
           for k in keys}
    for _, part in parts:
        for k, v in part.items():
            out[k] = out.get(k, 0) + v if k in out and k not in keys else v
    return out


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule
    return isinstance(model, FSDPModule)


def shard(model, mixed_precision: bool, offload: bool = False):
    """FSDP2 over all ranks: each decoder layer and vision block its own unit, then the rest. With
    `mixed_precision` (CUDA) the all-gathered weights and the compute are bf16 over fp32 master weights and fp32
    gradient reduction. With `offload` (CUDA; --ref-offload, --critic-offload) the shards, their gradients and
    the optimizer step stay on the CPU, copied to the GPU one unit at a time."""
    if world() == 1:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard
    device = next(model.parameters()).device
    mesh = init_device_mesh(device.type, (world(),))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if mixed_precision \
        else MixedPrecisionPolicy()
    # FSDP2 offloads to the CPU from an accelerator only: a CPU run has nothing to offload.
    kw = dict(mesh=mesh, mp_policy=policy,
              offload_policy=CPUOffloadPolicy() if offload and device.type != "cpu" else OffloadPolicy())
    for module in model.modules():
        if type(module).__name__.endswith(("DecoderLayer", "VisionBlock")):
            fully_shard(module, **kw)
    fully_shard(model, **kw)
    # FSDP takes the first module to run forward as its root; generation calls the inner model directly, so fix
    # the root now (torch has no public call for this).
    model._get_fsdp_state()._lazy_init()
    return model


@contextlib.contextmanager
def gathered(model):
    """Full weights on every rank inside the block, kept between forward calls: ranks then generate with no
    collective, so each may decode a different number of steps."""
    from torch.distributed.fsdp import FSDPModule
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for m in units:
        m.unshard()
        m.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for m in units:
            m.reshard()
            m.set_reshard_after_forward(True, recurse=False)


def full_state_dict(module) -> dict:
    """The whole state dict on rank 0 (CPU), {} elsewhere; every rank must call it."""
    if not is_sharded(module):
        return module.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state_dict(module, state: dict):
    """Rank 0's full state dict into a sharded module (the other ranks pass {})."""
    if not is_sharded(module):
        module.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


def full_optimizer_state(module, optimizer) -> dict:
    if not is_sharded(module):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
    return get_optimizer_state_dict(module, optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_optimizer_state(module, optimizer, state: dict):
    if not is_sharded(module):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    set_optimizer_state_dict(module, optimizer, state,
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
