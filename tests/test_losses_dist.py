"""Every aggregation over two processes (gloo, CPU) equals one process: each process weighs its micro-batches with
rl.losses.micro_batch_weights (as the trainer does), the gradients are averaged (as FSDP does), and the result is
the gradient of the whole train batch's loss in one process - dapo's token mean over the whole rollout included."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rl import losses as L

N, T_, MAX_LEN = 16, 6, 10
MICRO = 3  # samples per micro-batch: uneven splits, and a last micro-batch of one


def data():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(0, T_ + 1, (N,), generator=g)
    lengths[5] = 0  # an empty row
    mask = torch.arange(T_)[None] < lengths[:, None]
    per_token = torch.randn(N, T_, generator=g, dtype=torch.float64)
    return per_token, mask


def gradient(agg: str, train_batches: int, rank: int, world: int) -> torch.Tensor:
    """This process's share of the gradient of the loss with respect to every per-token value (all train batches
    of one epoch), as the trainer accumulates it; averaged over the processes."""
    per_token, mask = data()
    x = per_token.clone().requires_grad_(True)
    size = N // train_batches // world
    total = (lambda v: _sum(v)) if world > 1 else float
    mine = [i for b in range(train_batches) for i in range(b * size * world + rank * size,
                                                           b * size * world + (rank + 1) * size)]
    per_batch = total(L.aggregate_count(mask[mine], agg)) / train_batches
    for b in range(train_batches):
        idx = mine[b * size:(b + 1) * size]
        micro = [idx[i:i + MICRO] for i in range(0, len(idx), MICRO)]
        counts = [L.aggregate_count(mask[m], agg) for m in micro]
        for m, w in zip(micro, L.micro_batch_weights(counts, agg, world, total, per_batch)):
            (L.aggregate(x[m], mask[m], agg, MAX_LEN) * w).backward()
    grad = x.grad
    if world > 1:
        dist.all_reduce(grad)
        grad /= world  # FSDP's average
    return grad


def _sum(v: float) -> float:
    t = torch.tensor([v], dtype=torch.float64)
    dist.all_reduce(t)
    return t.item()


def reference(agg: str, train_batches: int) -> torch.Tensor:
    """One process, no micro-batches: the definition of each train batch's loss, summed over the train batches."""
    per_token, mask = data()
    x = per_token.clone().requires_grad_(True)
    size = N // train_batches
    for b in range(train_batches):
        rows = slice(b * size, (b + 1) * size)
        if agg == "bnpo":  # the mean of the micro-batches' token means, over every process's micro-batches
            halves = [range(b * size + r * size // 2, b * size + (r + 1) * size // 2) for r in range(2)]
            parts = [list(h)[i:i + MICRO] for h in halves for i in range(0, len(h), MICRO)]
            loss = sum(L.aggregate(x[p], mask[p], "token-mean") for p in parts) / len(parts)
        elif agg == "dapo":  # the token sum over the rollout's tokens per train batch
            loss = L.aggregate(x[rows], mask[rows], "dapo", count=float(mask.sum()) / train_batches)
        else:
            loss = L.aggregate(x[rows], mask[rows], agg, MAX_LEN)
        loss.backward()
    return x.grad


CASES = [(agg, batches) for agg in L.AGGREGATIONS for batches in (1, 2)]  # one train batch per epoch, or two


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        grads = {case: gradient(*case, rank=rank, world=world) for case in CASES}
        if rank == 0:  # plain lists: a tensor would travel as a shared-memory handle that dies with this process
            out.put({case: g.tolist() for case, g in grads.items()})
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_equal_one_for_every_aggregation():
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = 29000 + os.getpid() % 900
    procs = [ctx.Process(target=_worker, args=(r, 2, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    got = out.get(timeout=300)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for agg, batches in CASES:
        want = reference(agg, batches)
        torch.testing.assert_close(torch.tensor(got[agg, batches], dtype=want.dtype), want,
                                   msg=f"{agg}, {batches} train batches: 2 processes")
        if agg != "bnpo":  # bnpo's whole is the mean over micro-batches, which depend on how the batch is split
            torch.testing.assert_close(gradient(agg, batches, 0, 1), want, msg=f"{agg}, {batches}: 1 process")
