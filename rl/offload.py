"""--ref-offload / --critic-offload in one process: a model, with its optimizer's states, sits on the CPU and visits
the GPU only for the phases that use it. (With torchrun, FSDP2's CPU offload keeps the shards on the CPU instead,
`rl.dist.shard`, and these do nothing.) On a CPU run there is nothing to offload: they do nothing either."""
import contextlib

import torch

from rl import dist


def move(module: torch.nn.Module, device: torch.device, optimizer=None) -> None:
    """`module` and the tensor states of `optimizer` to `device`, in place: the parameters stay the same objects, so
    the optimizer still knows them. Scalar states (Adam's step counter) stay where they are."""
    module.to(device)
    for state in (optimizer.state.values() if optimizer is not None else ()):
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() > 0:
                state[key] = value.to(device)


@contextlib.contextmanager
def placed(module, device: torch.device, optimizer=None, enabled: bool = True):
    """Inside the block `module` (and its optimizer's states) sit on `device`; after it, back where they were."""
    home = next(module.parameters()).device if module is not None else device
    if not enabled or home.type == device.type or dist.world() > 1:
        yield
        return
    move(module, device, optimizer)
    try:
        yield
    finally:
        move(module, home, optimizer)
