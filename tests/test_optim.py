"""Tests for rl/optim.py. Schedule values are hand-computed literals."""

import sys

import pytest
import torch

from rl import optim as O


# ---------------------------------------------------------------- schedule
# total=21, warmup_ratio=0.1 -> W = ceil(2.1) = 3 warmup steps; cosine over the remaining 18. Update k uses the
# released LambdaLR's value at k: the first update at lr 0.


def test_lr_warmup_values():
    assert O.lr_at(0, 21, 1.0, 0.1, 0.1) == 0.0
    assert O.lr_at(1, 21, 1.0, 0.1, 0.1) == pytest.approx(1 / 3)
    assert O.lr_at(2, 21, 1.0, 0.1, 0.1) == pytest.approx(2 / 3)
    assert O.lr_at(3, 21, 1.0, 0.1, 0.1) == pytest.approx(1.0)  # end of warmup: base_lr


def test_lr_cosine_values():
    # step 4: progress 1/18 -> 0.1 + 0.45*(1 + cos(10 deg)) = 0.1 + 0.45*1.9848078 = 0.9931635
    assert O.lr_at(4, 21, 1.0, 0.1, 0.1) == pytest.approx(0.9931635, abs=1e-7)
    # step 9: progress 6/18 = 1/3 -> 0.1 + 0.45*(1 + 0.5) = 0.775
    assert O.lr_at(9, 21, 1.0, 0.1, 0.1) == pytest.approx(0.775)
    # step 12: progress 9/18 (middle) -> 0.1 + 0.45 = 0.55
    assert O.lr_at(12, 21, 1.0, 0.1, 0.1) == pytest.approx(0.55)
    # the last update, step 20: progress 17/18 -> 0.1 + 0.45*(1 + cos(170 deg)) = 0.1068365; past the end: min
    assert O.lr_at(20, 21, 1.0, 0.1, 0.1) == pytest.approx(0.1068365, abs=1e-7)
    assert O.lr_at(21, 21, 1.0, 0.1, 0.1) == pytest.approx(0.1)
    assert O.lr_at(30, 21, 1.0, 0.1, 0.1) == pytest.approx(0.1)
    # scales with base_lr
    assert O.lr_at(12, 21, 2e-6, 0.1, 0.1) == pytest.approx(1.1e-6)


def test_lr_defaults_and_float_guard():
    # defaults: warmup 0.03 of 100 -> 3 steps, min ratio 0.1
    assert O.lr_at(1, 100, 3e-6) == pytest.approx(1e-6)
    assert O.lr_at(3, 100, 3e-6) == pytest.approx(3e-6)
    assert O.lr_at(100, 100, 3e-6) == pytest.approx(3e-7)
    # 0.07 * 100 == 7.000000000000001 in floats: still 7 warmup steps, not 8
    assert O.lr_at(1, 100, 1.0, 0.07) == pytest.approx(1 / 7)
    assert O.lr_at(7, 100, 1.0, 0.07) == pytest.approx(1.0)
    # no warmup: step 0 is the top of the cosine, step 1 at progress 1/10 -> 0.1 + 0.45*(1 + cos(18 deg))
    assert O.lr_at(0, 10, 1.0, 0.0) == 1.0
    assert O.lr_at(1, 10, 1.0, 0.0) == pytest.approx(0.1 + 0.45 * 1.9510565, abs=1e-7)
    with pytest.raises(ValueError):
        O.lr_at(0, 0, 1.0)
    with pytest.raises(ValueError):
        O.lr_at(-1, 10, 1.0)


# ---------------------------------------------------------------- optimizers


def _one_step(kind, n):
    w = torch.nn.Parameter(torch.zeros(n))
    opt = O.make_optimizer([w], lr=0.01, kind=kind)
    c = torch.where(torch.arange(n) % 2 == 0, 1.0, -2.0)  # grad of (w*c).sum()
    (w * c).sum().backward()
    opt.step()
    return w.detach(), c, opt


@pytest.mark.parametrize("n", [10, 8192])  # < 4096: fp32 state; >= 4096: 8-bit state
def test_adamw_8bit_step_moves_against_gradient(n):
    bnb = pytest.importorskip("bitsandbytes")
    w, c, opt = _one_step("adamw_8bit", n)
    assert isinstance(opt, bnb.optim.AdamW8bit)
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)
    # first Adam step is ~ -lr * sign(grad)
    assert torch.allclose(w, -0.01 * c.sign(), atol=1e-4)
    if n >= 4096:
        assert next(iter(opt.state.values()))["state1"].dtype == torch.uint8


def test_paged_adamw_8bit_is_the_same_update():
    """The paged variant keeps its states in (CUDA) unified memory; the update is AdamW8bit's, bit for bit."""
    bnb = pytest.importorskip("bitsandbytes")
    w, _, opt = _one_step("paged_adamw_8bit", 8192)
    assert isinstance(opt, bnb.optim.PagedAdamW8bit)
    assert torch.equal(w, _one_step("adamw_8bit", 8192)[0])


def test_bf16_weights_with_8bit_states_land_updates_far_below_bf16_resolution():
    """lr 4e-7 on a bf16 weight of 1.0 (resolution 2^-8 just below 1): round-to-nearest loses every update, torchao's
    stochastic rounding lands them in expectation. Adam with a constant gradient steps by lr each time, so after
    N steps the mean weight is 1 - N lr."""
    ao = pytest.importorskip("torchao.optim")
    torch.manual_seed(0)
    n, steps, lr = 65536, 50, 4e-7
    ours, nearest = (torch.nn.Parameter(torch.ones(n, dtype=torch.bfloat16)) for _ in range(2))
    opt = O.make_optimizer([ours], lr=lr, kind="adamw_8bit_bf16")
    plain = torch.optim.AdamW([nearest], lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    assert isinstance(opt, ao.AdamW8bit) and opt.bf16_stochastic_round
    for _ in range(steps):
        for p, o in ((ours, opt), (nearest, plain)):
            p.grad = torch.ones_like(p)
            o.step()
    assert torch.equal(nearest, torch.ones_like(nearest))  # every update lost
    moved = 1.0 - ours.double().mean().item()
    assert moved == pytest.approx(steps * lr, rel=0.2)  # 2e-5; the sampling error is about 5 %
    assert ours.dtype == torch.bfloat16
    state = opt.state[ours]["exp_avg"]
    assert state.codes.dtype == torch.uint8 and state.codes.numel() == n and state.scale.numel() == n // 256
    O.set_lr(opt, 1e-3)  # torchao keeps the lr a tensor
    assert torch.is_tensor(opt.param_groups[0]["lr"]) and opt.param_groups[0]["lr"].item() == pytest.approx(1e-3)


def test_adamw_torch_step():
    w, c, opt = _one_step("adamw", 10)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["weight_decay"] == 0.0
    assert torch.allclose(w, -0.01 * c.sign(), atol=1e-6)


def test_make_optimizer_errors(monkeypatch):
    with pytest.raises(ValueError):
        O.make_optimizer([torch.nn.Parameter(torch.zeros(2))], 1e-3, kind="sgd")
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    with pytest.raises(ImportError, match="--optim adamw"):
        O.make_optimizer([torch.nn.Parameter(torch.zeros(2))], 1e-3, kind="adamw_8bit")


def test_set_lr_and_clip_grad_norm():
    a = torch.nn.Parameter(torch.zeros(1))
    b = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [a]}, {"params": [b], "lr": 5.0}], lr=1.0)
    O.set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]

    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    norm = O.clip_grad_norm([p], 1.0)
    assert isinstance(norm, float) and norm == pytest.approx(5.0)
    assert torch.allclose(p.grad, torch.tensor([0.6, 0.8]), atol=1e-6)
