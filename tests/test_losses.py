"""Tests for rl/losses.py: every loss, aggregation and correction against hand-computed values (see comments),
values and gradients, padding that holds garbage, empty rows."""

import math

import pytest
import torch

from rl import losses as L

NAN = float("nan")
INF = float("inf")


def T(x):
    return torch.tensor(x, dtype=torch.float64)


def close(got, want, atol=1e-6):
    got = torch.as_tensor(got, dtype=torch.float64)
    want = torch.as_tensor(want, dtype=torch.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert torch.allclose(got, want, atol=atol, rtol=0), f"\n got={got}\nwant={want}"


# Rows of length 3, 1, 2 within T=3.
MASK = T([[1, 1, 1], [1, 0, 0], [1, 1, 0]])
# Plus an empty row.
MASK_E = T([[1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0]])


def test_kl_loss_masked_with_inf_on_padding():
    # row0 log-ratios [0.5, -1], row1 [0.5]; padding would give exp(1000) = inf if unmasked.
    logp = T([[-1.0, -2.0], [-1.0, 0.0]]).requires_grad_(True)
    ref = T([[-1.5, -1.0], [-1.5, 1000.0]])
    mask = T([[1, 1], [1, 0]])
    # k3 tokens: 0.1065307, 0.7182818 | 0.1065307
    loss = L.kl_loss(logp, ref, mask, "k3", "token-mean")
    close(loss, 0.9313432 / 3)  # 0.3104477
    loss.backward()
    assert torch.isfinite(logp.grad).all()
    assert logp.grad[1, 1] == 0
    # seq-mean: row0 (0.1065307+0.7182818)/2 = 0.4124062, row1 0.1065307 -> 0.2594685
    close(L.kl_loss(logp, ref, mask, "k3", "seq-mean-token-mean"), 0.2594685)
    close(L.kl_loss(logp, ref, mask, "k1", "token-mean"), 0.0)  # (0.5 - 1 + 0.5)/3
    close(L.kl_loss(logp, ref, mask, "k1", "seq-mean-token-mean"), 0.125)  # (-0.25 + 0.5)/2
    close(L.kl_loss(logp, ref, mask, "k2", "token-mean"), 0.75 / 3)  # (0.125+0.5+0.125)/3



# ---------------------------------------------------------------- aggregation / losses


def test_aggregate_two_modes_differ_and_empty_rows():
    x = T([[1, 2, 3], [10, NAN, NAN], [4, 6, INF]])
    close(L.aggregate(x, MASK, "token-mean"), 26 / 6)  # 4.3333333
    close(L.aggregate(x, MASK, "seq-mean-token-mean"), 17 / 3)  # (2 + 10 + 5)/3 = 5.6666667
    x4 = torch.cat([x, T([[NAN, NAN, NAN]])])
    close(L.aggregate(x4, MASK_E, "token-mean"), 26 / 6)
    close(L.aggregate(x4, MASK_E, "seq-mean-token-mean"), 17 / 3)  # empty row excluded
    for agg in L.AGGREGATIONS:
        close(L.aggregate(x, torch.zeros_like(MASK), agg), 0.0)
    with pytest.raises(ValueError):
        L.aggregate(x, MASK, "seq-sum")


def _policy_inputs():
    # (rho, A) per valid token; padding gets absurd logp / NaN adv.
    rho = [[1.1, 1.5, 0.5], [1.5, 1.0, 1.0], [0.5, 0.9, 1.0]]
    adv = T([[2.0, 1.0, 1.0], [-1.0, NAN, NAN], [-1.0, -2.0, INF]])
    logp = T([[math.log(r) for r in row] for row in rho])
    logp[1, 1] = logp[1, 2] = logp[2, 2] = 80.0
    return logp, torch.zeros(3, 3, dtype=torch.float64), adv


def test_policy_loss_clipped_surrogate_hand_values():
    logp, old, adv = _policy_inputs()
    logp.requires_grad_(True)
    # per-token -min(rho*A, clip(rho,0.8,1.2)*A):
    #  rho=1.1,A=+2 inside  -> -2.2 | rho=1.5,A=+1 clipped -> -1.2 | rho=0.5,A=+1 -> -0.5 (unclipped min)
    #  rho=1.5,A=-1 -> +1.5 (unclipped min)
    #  rho=0.5,A=-1 clipped -> +0.8 | rho=0.9,A=-2 inside -> +1.8
    loss, stats = L.policy_loss(logp, old, adv, MASK, L.LossSpec(agg="token-mean"))
    close(loss, 0.2 / 6)  # (-2.2-1.2-0.5+1.5+0.8+1.8)/6 = 0.0333333
    assert set(stats) >= {"clip_frac", "approx_kl"}
    close(stats["clip_frac"], 2 / 6)
    # k3 (rho-1)-log(rho): 1.1->0.0046898, 1.5->0.0945349 (x2), 0.5->0.1931472 (x2), 0.9->0.0053605
    close(stats["approx_kl"], 0.5854145 / 6)  # 0.0975691
    loss.backward()
    assert torch.isfinite(logp.grad).all()
    assert (logp.grad[~MASK.bool()] == 0).all()
    # clipped tokens get no gradient; inside-clip token: d/dlogp(-rho*A)/6 = -1.1*2/6
    assert logp.grad[0, 1] == 0 and logp.grad[2, 0] == 0
    close(logp.grad[0, 0], -1.1 * 2.0 / 6)

    loss2, _ = L.policy_loss(logp, old, adv, MASK, L.LossSpec())
    # rows: -3.9/3 = -1.3, 1.5, 2.6/2 = 1.3 -> 1.5/3 = 0.5
    close(loss2, 0.5)


def test_policy_loss_no_clip_when_ratio_one():
    mask = T([[1, 1]])
    loss, stats = L.policy_loss(T([[-1.0, -2.0]]), T([[-1.0, -2.0]]), T([[1.0, -3.0]]), mask, L.LossSpec())
    close(loss, 1.0)  # mean(-1, +3)
    assert stats["clip_frac"] == 0.0 and abs(stats["approx_kl"]) < 1e-12


def test_value_loss_clipped_and_unclipped_branches():
    mask = T([[1]])
    # inside clip: V=0.1, old=0, R=1 -> V_clip=0.1, 0.5*0.81 = 0.405
    close(L.value_loss(T([[0.1]]), T([[0.0]]), T([[1.0]]), mask), 0.405)
    # clipped branch larger: V=1, old=0, R=1 -> V_clip=0.2: 0.5*max(0.64, 0) = 0.32
    close(L.value_loss(T([[1.0]]), T([[0.0]]), T([[1.0]]), mask), 0.32)
    # unclipped branch larger: V=1, old=0, R=-1 -> 0.5*max(1.44, 4) = 2.0
    close(L.value_loss(T([[1.0]]), T([[0.0]]), T([[-1.0]]), mask), 2.0)
    # negative side clip: V=-0.5, old=0, R=-1 -> V_clip=-0.2: 0.5*max(0.64, 0.25) = 0.32
    close(L.value_loss(T([[-0.5]]), T([[0.0]]), T([[-1.0]]), mask), 0.32)

    # batch with lengths 2, 1 and garbage on padding
    v = T([[0.1, 1.0], [1.0, NAN]]).requires_grad_(True)
    old = T([[0.0, 0.0], [0.0, 5.0]])
    ret = T([[1.0, 1.0], [-1.0, INF]])
    m = T([[1, 1], [1, 0]])
    close(L.value_loss(v, old, ret, m, 0.2, "token-mean"), 2.725 / 3)  # 0.9083333
    loss = L.value_loss(v, old, ret, m, 0.2, "seq-mean-token-mean")
    close(loss, 1.18125)  # ((0.405+0.32)/2 + 2.0)/2
    loss.backward()
    assert torch.isfinite(v.grad).all() and v.grad[1, 1] == 0
