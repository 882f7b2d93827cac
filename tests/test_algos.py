"""Tests for rl/algos.py. Expected numbers are hand-computed literals (see comments)."""

import math

import pytest
import torch

from rl import algos as A

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


# ---------------------------------------------------------------- reductions


def test_masked_sum_and_mean_ignore_padding_nan():
    x = T([[1, 2, 3], [4, NAN, INF], [5, 6, NAN]])
    close(A.masked_sum(x, MASK), 21.0)
    close(A.masked_sum(x, MASK, dim=1), [6.0, 4.0, 11.0])
    close(A.masked_mean(x, MASK), 21.0 / 6)  # 3.5
    close(A.masked_mean(x, MASK, dim=1), [2.0, 4.0, 5.5])
    # empty row / empty batch -> 0, not NaN
    x4 = torch.cat([x, T([[NAN, NAN, NAN]])])
    close(A.masked_mean(x4, MASK_E, dim=1), [2.0, 4.0, 5.5, 0.0])
    close(A.masked_mean(x, torch.zeros_like(MASK)), 0.0)
    # bool masks work too
    close(A.masked_mean(x, MASK.bool()), 3.5)


# ---------------------------------------------------------------- KL


def test_kl_estimates_hand_values():
    logp = T([-1.0, -2.0, -0.7])
    ref = T([-1.5, -1.0, -0.7])
    # log-ratio = [0.5, -1, 0]
    close(A.kl_estimate(logp, ref, "k1"), [0.5, -1.0, 0.0])
    close(A.kl_estimate(logp, ref, "k2"), [0.125, 0.5, 0.0])
    # k3 = exp(ref-logp) - (ref-logp) - 1: exp(-0.5)+0.5-1 = 0.1065307; e-1-1 = 0.7182818
    close(A.kl_estimate(logp, ref, "k3"), [0.1065307, 0.7182818, 0.0])
    with pytest.raises(ValueError):
        A.kl_estimate(logp, ref, "k4")



# ---------------------------------------------------------------- outcome advantages

R = T([1.0, 0.0, 0.5, 0.5])


def test_outcome_reinforce_baseline():
    close(A.outcome_advantage(R, 2, "reinforce_baseline"), [0.5, -0.5, 0.0, 0.0])
    # No clamp here: compute_advantages clips what this returns. [30, 0] -> mean 15 -> [15, -15]
    close(A.outcome_advantage(T([30.0, 0.0]), 2, "reinforce_baseline"), [15.0, -15.0])


def test_outcome_grpo_unbiased_std_eps_1e9():
    # group (1, 0): unbiased std = sqrt(0.5) = 0.70710678; 0.5 / (0.70710678 + 1e-9) = 0.70710678
    # group (0.5, 0.5): std 0 -> 0 / 1e-9 = 0
    close(A.outcome_advantage(R, 2, "grpo"), [0.70710678, -0.70710678, 0.0, 0.0], atol=1e-8)
    # group of 3 (1, 0, 0): mean 1/3, unbiased var 1/3, std 0.57735027
    # 2/3 / 0.57735027 = 1.15470054, -1/3 / 0.57735027 = -0.57735027
    close(A.outcome_advantage(T([1.0, 0.0, 0.0]), 3, "grpo"), [1.15470054, -0.57735027, -0.57735027], atol=1e-8)
    # The epsilon is 1e-9 (the released code's), not 1e-6: a group (1e-9, 0) has mean 5e-10 and std
    # 1e-9 / sqrt(2) = 7.0710678e-10, so 5e-10 / (7.0710678e-10 + 1e-9) = 0.5 / (1 / sqrt(2) + 1) = 0.29289322
    # (with 1e-6 it would be 5e-10 / 1.0007e-6 = 0.0004996).
    assert A.GRPO_EPS == 1e-9
    close(A.outcome_advantage(T([1e-9, 0.0]), 2, "grpo"), [0.29289322, -0.29289322], atol=1e-8)


def test_outcome_rloo():
    close(A.outcome_advantage(R, 2, "rloo"), [1.0, -1.0, 0.0, 0.0])
    # (1, 0, 0): 1 - 0/2 = 1; 0 - (1+0)/2 = -0.5
    close(A.outcome_advantage(T([1.0, 0.0, 0.0]), 3, "rloo"), [1.0, -0.5, -0.5])


def test_outcome_reinforce_and_gae_unchanged():
    for est in ("reinforce", "gae"):
        close(A.outcome_advantage(R, 2, est), [1.0, 0.0, 0.5, 0.5])
        close(A.outcome_advantage(R, 1, est), [1.0, 0.0, 0.5, 0.5])


def test_outcome_errors():
    with pytest.raises(ValueError):
        A.outcome_advantage(T([1.0, 0.0, 1.0]), 2, "grpo")  # N=3 not divisible by 2
    with pytest.raises(ValueError):
        A.outcome_advantage(R, 2, "ppo")  # unknown
    with pytest.raises(ValueError):
        A.outcome_advantage(R, 1, "rloo")  # leave-one-out needs g >= 2
    with pytest.raises(ValueError):
        A.outcome_advantage(R, 1, "grpo")  # unbiased std of 1 sample undefined
    with pytest.raises(ValueError):
        A.outcome_advantage(R, 0, "reinforce")
    with pytest.raises(ValueError):
        A.outcome_advantage(R.view(2, 2), 2, "grpo")  # must be 1-D


def test_scale_rewards_group_batch_none():
    r = T([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])  # group means 0.25 and 0.5
    centred = [0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5]
    close(A.outcome_advantage(r, 4, "reinforce_baseline"), centred)  # its own scale: none
    close(A.outcome_advantage(r, 4, "grpo", scale="none"), centred)  # Dr. GRPO
    # group std (unbiased): sqrt((0.5625 + 3 x 0.0625) / 3) = 0.5 and sqrt(4 x 0.25 / 3) = 0.5773503
    close(A.outcome_advantage(r, 4, "grpo"), [1.5, -0.5, -0.5, -0.5, 0.8660254, 0.8660254, -0.8660254, -0.8660254])
    close(A.outcome_advantage(r, 4, "reinforce_baseline", scale="group"), A.outcome_advantage(r, 4, "grpo"))
    # batch std of all 8 rewards (mean 3/8): sqrt((3 x 0.390625 + 5 x 0.140625) / 7) = 0.5175492
    close(A.outcome_advantage(r, 4, "grpo", scale="batch"), [c / 0.5175492 for c in centred])
    # ... over every process: two fake ranks with half the groups each give the same
    whole = A.outcome_advantage(r, 4, "grpo", scale="batch")
    for mine, other in ((slice(0, 4), slice(4, 8)), (slice(4, 8), slice(0, 4))):
        def plus_other(stats, other=r[other]):
            return stats + torch.stack([other.sum(), other.pow(2).sum(), T(4.0)])
        close(A.outcome_advantage(r[mine], 4, "grpo", scale="batch", all_reduce=plus_other), whole[mine])
    with pytest.raises(ValueError, match="reward scale"):
        A.outcome_advantage(r, 4, "grpo", scale="global")


def test_overlong_penalty_dapo():
    lengths = torch.tensor([50, 80, 90, 100])
    close(A.overlong_penalty(lengths, 100, 20), [0.0, 0.0, -0.5, -1.0])  # TRL's example: 90 of 100, cache 20
    close(A.overlong_penalty(lengths, 100, 20, factor=0.5), [0.0, 0.0, -0.25, -0.5])
    close(A.overlong_penalty(lengths, 100, 0), [0.0, 0.0, 0.0, 0.0])


# ---------------------------------------------------------------- token rewards / returns / gae


def test_token_rewards_outcome_on_last_valid_token_empty_row_skipped():
    out = A.token_rewards(T([1.0, 2.0, 3.0, 4.0]), MASK_E)
    close(out, [[0, 0, 1], [2, 0, 0], [0, 3, 0], [0, 0, 0]])


def test_token_rewards_kl_penalty_only_on_valid_tokens():
    kl = T([[0.1, 0.2, 0.3], [0.4, INF, NAN], [0.5, 0.6, 9.0], [9.0, 9.0, 9.0]])
    out = A.token_rewards(T([1.0, 2.0, 3.0, 4.0]), MASK_E, kl=kl, beta=0.1)
    close(out, [[-0.01, -0.02, 0.97], [1.96, 0, 0], [-0.05, 2.94, 0], [0, 0, 0]])
    # beta = 0 ignores kl entirely
    close(A.token_rewards(T([1.0, 2.0, 3.0, 4.0]), MASK_E, kl=kl, beta=0.0),
          [[0, 0, 1], [2, 0, 0], [0, 3, 0], [0, 0, 0]])
    with pytest.raises(ValueError):
        A.token_rewards(T([1.0, 2.0]), MASK_E)


def test_discounted_returns_hand_values():
    r = T([[1, 2, 3], [4, 9, 9], [5, 6, 9]])  # 9 on padding must be ignored
    close(A.discounted_returns(r, MASK, gamma=1.0), [[6, 5, 3], [4, 0, 0], [11, 6, 0]])
    # gamma = 0.5: row0 G2=3, G1=2+1.5=3.5, G0=1+1.75=2.75; row2 G1=6, G0=5+3=8
    close(A.discounted_returns(r, MASK, gamma=0.5), [[2.75, 3.5, 3], [4, 0, 0], [8, 6, 0]])


GAE_R = T([[0, 0, 1], [2, 0, 0], [0, 3, 0]])
GAE_V = T([[0.5, 0.25, 0.75], [1.0, 7.0, 7.0], [0.2, 0.4, 7.0]])  # 7 on padding must not leak


def test_gae_lambda_gamma_one_is_return_minus_value():
    adv, ret = A.gae(GAE_R, GAE_V, MASK, gamma=1.0, lam=1.0)
    # G = [[1,1,1],[2,0,0],[3,3,0]]; A = G - V on valid
    close(adv, [[0.5, 0.75, 0.25], [1.0, 0, 0], [2.8, 2.6, 0]])
    close(ret, [[1, 1, 1], [2, 0, 0], [3, 3, 0]])


def test_gae_identity_random():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(5, 7, generator=g, dtype=torch.float64)
    v = torch.randn(5, 7, generator=g, dtype=torch.float64)
    lens = torch.tensor([7, 1, 4, 0, 3])
    mask = (torch.arange(7)[None] < lens[:, None]).double()
    adv, ret = A.gae(r, v, mask, 1.0, 1.0)
    G = A.discounted_returns(r, mask, 1.0)
    close(adv, (G - v) * mask)
    close(ret, G)


def test_gae_gamma_lambda_half_hand_values():
    adv, ret = A.gae(GAE_R, GAE_V, MASK, gamma=0.5, lam=0.5)
    # row0: d2 = 1 - 0.75 = 0.25 -> A2 = 0.25
    #       d1 = 0.5*0.75 - 0.25 = 0.125 -> A1 = 0.125 + 0.25*0.25 = 0.1875
    #       d0 = 0.5*0.25 - 0.5 = -0.375 -> A0 = -0.375 + 0.25*0.1875 = -0.328125
    # row1: A0 = 2 - 1 = 1
    # row2: d1 = 3 - 0.4 = 2.6 (V beyond last valid = 0, not 7); d0 = 0.5*0.4 - 0.2 = 0 -> A0 = 0.65
    close(adv, [[-0.328125, 0.1875, 0.25], [1.0, 0, 0], [0.65, 2.6, 0]])
    close(ret, [[0.171875, 0.4375, 1.0], [2.0, 0, 0], [0.85, 3.0, 0]])


# ---------------------------------------------------------------- whiten

W_X = T([[1, 2, 3], [4, 99, NAN], [5, 6, -99]])
# valid 1..6: mean 3.5, population var 17.5/6 = 2.9166667, std 1.7078251
W_WANT = [[-1.4638501, -0.8783101, -0.2927700], [0.2927700, 0, 0], [0.8783101, 1.4638501, 0]]


def test_whiten_global_mean0_std1_zero_padding():
    out = A.whiten(W_X, MASK)
    close(out, W_WANT)
    valid = out[MASK.bool()]
    close(valid.mean(), 0.0)
    close(valid.std(unbiased=False), 1.0)
    assert (out[~MASK.bool()] == 0).all()
    # all padding -> zeros
    close(A.whiten(W_X, torch.zeros_like(MASK)), torch.zeros(3, 3))


def test_whiten_all_reduce_two_fake_ranks():
    # rank 0 holds rows 0-1, the other rank holds row 2: [sum=11, sum_sq=61, count=2]
    other = T([11.0, 61.0, 2.0])
    out = A.whiten(W_X[:2], MASK[:2], all_reduce=lambda t: t + other)
    close(out, W_WANT[:2])

    def inplace(t):  # torch.distributed.all_reduce style: in place, returns None
        t.add_(other)

    close(A.whiten(W_X[:2], MASK[:2], all_reduce=inplace), W_WANT[:2])



# ---------------------------------------------------------------- compute_advantages

CA_MASK = T([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 0]])  # lengths 3, 1, 2, 2


def test_compute_advantages_grpo_not_whitened_by_default():
    adv, ret = A.compute_advantages("grpo", R, CA_MASK, 2)
    a = 0.70710678
    close(adv, [[a, a, a], [-a, 0, 0], [0, 0, 0], [0, 0, 0]], atol=1e-8)
    close(ret, adv)
    # explicit whitening on
    adv, _ = A.compute_advantages("grpo", R, CA_MASK, 2, whiten_advantages=True)
    valid = adv[CA_MASK.bool()]
    close(valid.mean(), 0.0)
    close(valid.std(unbiased=False), 1.0)


def test_compute_advantages_rloo_whitened_by_default():
    # The released code whitens RLOO like reinforce_baseline.
    adv, ret = A.compute_advantages("rloo", R, CA_MASK, 2)
    # rloo outcome [1, -1, 0, 0]; G over the 8 valid tokens: 1, 1, 1 | -1 | 0, 0 | 0, 0
    close(ret, [[1, 1, 1], [-1, 0, 0], [0, 0, 0], [0, 0, 0]])
    # mean 2/8 = 0.25, E[x^2] 4/8 = 0.5, population var 0.5 - 0.0625 = 0.4375, std 0.66143783
    # 0.75/std = 1.1338934, -1.25/std = -1.8898224, -0.25/std = -0.3779645
    p, n, z = 1.1338934, -1.8898224, -0.3779645
    close(adv, [[p, p, p], [n, 0, 0], [z, z, 0], [z, z, 0]])
    adv_off, _ = A.compute_advantages("rloo", R, CA_MASK, 2, whiten_advantages=False)
    close(adv_off, ret)


def test_compute_advantages_reinforce_baseline_whitened_by_default():
    adv, ret = A.compute_advantages("reinforce_baseline", R, CA_MASK, 2)
    # G: 0.5 x3, -0.5 x1, 0 x4 -> mean 0.125, pop var 0.109375, std 0.3307189
    # 0.375/std = 1.1338934, -0.625/std = -1.8898224, -0.125/std = -0.3779645
    p, n, z = 1.1338934, -1.8898224, -0.3779645
    close(adv, [[p, p, p], [n, 0, 0], [z, z, 0], [z, z, 0]])
    close(ret, [[0.5, 0.5, 0.5], [-0.5, 0, 0], [0, 0, 0], [0, 0, 0]])  # pre-whitening G_t
    adv_nw, _ = A.compute_advantages("reinforce_baseline", R, CA_MASK, 2, whiten_advantages=False)
    close(adv_nw, ret)


def test_compute_advantages_reinforce_kl_in_reward():
    kl = T([[0.5, 0.5, 0.5], [0.5, INF, NAN], [0.5, 0.5, INF], [0.5, 0.5, 9.0]])
    adv, ret = A.compute_advantages(
        "reinforce", R, CA_MASK, 2, kl=kl, beta=0.1, whiten_advantages=False
    )
    # token rewards: row0 [-.05, -.05, .95] -> G [.85, .9, .95]; row1 [-.05]; rows2/3 [-.05, .45] -> [.4, .45]
    want = [[0.85, 0.9, 0.95], [-0.05, 0, 0], [0.4, 0.45, 0], [0.4, 0.45, 0]]
    close(adv, want)
    close(ret, want)


def test_compute_advantages_gae():
    values = T([[0.5, 0.5, 0.5], [0.25, 9, 9], [0.5, 0.25, 9], [0.0, 0.0, 9]])
    adv, ret = A.compute_advantages(
        "gae", R, CA_MASK, 2, values=values, whiten_advantages=False
    )
    close(adv, [[0.5, 0.5, 0.5], [-0.25, 0, 0], [0.0, 0.25, 0], [0.5, 0.5, 0]])
    close(ret, [[1, 1, 1], [0, 0, 0], [0.5, 0.5, 0], [0.5, 0.5, 0]])
    # default whitens gae advantages (returns untouched)
    adv_w, ret_w = A.compute_advantages("gae", R, CA_MASK, 2, values=values)
    close(ret_w, ret)
    valid = adv_w[CA_MASK.bool()]
    close(valid.mean(), 0.0)
    close(valid.std(unbiased=False), 1.0)


def test_reward_clip_after_the_baseline_before_kl_shaping_every_estimator():
    mask = T([[1, 1], [1, 0]])
    # gae: a solved Sokoban level worth 11.45 trains as 10 (values 0, lambda = gamma = 1: returns = reward).
    adv, ret = A.compute_advantages("gae", T([11.45, -12.0]), mask, 1, values=torch.zeros(2, 2),
                                    whiten_advantages=False)
    close(ret, [[10.0, 10.0], [-10.0, 0.0]])
    close(adv, [[10.0, 10.0], [-10.0, 0.0]])
    # As released (process_experiences, then compute_reward): the group baseline first, then the clip.
    # reinforce_baseline: [30, 0] -> [15, -15] -> [10, -10] (clipping first would give [5, -5]).
    _, ret = A.compute_advantages("reinforce_baseline", T([30.0, 0.0]), mask, 2, whiten_advantages=False)
    close(ret, [[10.0, 10.0], [-10.0, 0.0]])
    # rloo: [36, 0] -> [36 - 0, 0 - 36] -> [10, -10]; [6, 0] -> [6, -6] stays; grpo: [0.70710678, -0.70710678]
    _, ret = A.compute_advantages("rloo", T([36.0, 0.0]), mask, 2, whiten_advantages=False)
    close(ret, [[10.0, 10.0], [-10.0, 0.0]])
    _, ret = A.compute_advantages("rloo", T([6.0, 0.0]), mask, 2, whiten_advantages=False)
    close(ret, [[6.0, 6.0], [-6.0, 0.0]])
    _, ret = A.compute_advantages("grpo", T([30.0, 0.0]), mask, 2)
    close(ret, [[0.70710678, 0.70710678], [-0.70710678, 0.0]], atol=1e-8)
    # reinforce: [-30, 3] -> [-10, 3]
    _, ret = A.compute_advantages("reinforce", T([-30.0, 3.0]), mask, 1, whiten_advantages=False)
    close(ret, [[-10.0, -10.0], [3.0, 0.0]])
    # reward_clip=None turns the clip off.
    _, ret = A.compute_advantages("reinforce", T([-30.0, 3.0]), mask, 1, whiten_advantages=False, reward_clip=None)
    close(ret, [[-30.0, -30.0], [3.0, 0.0]])


def test_compute_advantages_errors():
    with pytest.raises(ValueError):
        A.compute_advantages("gae", R, CA_MASK, 2)  # needs values
    with pytest.raises(ValueError):
        A.compute_advantages("reinforce", R, CA_MASK, 2, beta=0.1)  # beta > 0 needs kl
    with pytest.raises(ValueError):
        A.compute_advantages("dpo", R, CA_MASK, 2)
    with pytest.raises(ValueError):
        A.compute_advantages("grpo", R[:3], CA_MASK[:3], 2)  # N=3 not divisible


def test_a_new_estimator_is_one_registry_entry(monkeypatch):
    """The step asks the registry only: an entry (here a best-of-group baseline) is all a new estimator needs."""
    monkeypatch.setitem(A.ESTIMATORS, "best_baseline",
                        A.Estimator(lambda r: r - r.max(dim=1, keepdim=True).values, whiten=False))
    mask = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1]], dtype=torch.bool)
    adv, ret = A.compute_advantages("best_baseline", torch.tensor([1.0, 3.0, 0.0, 2.0]), mask, 2)
    assert adv.tolist() == [[-2.0, -2.0], [0.0, 0.0], [-2.0, -2.0], [0.0, 0.0]] and torch.equal(adv, ret)
    assert [name for name, e in A.ESTIMATORS.items() if e.critic] == ["gae"]
    assert [name for name, e in A.ESTIMATORS.items() if not e.whiten] == ["grpo", "best_baseline"]


def test_the_command_line_offers_what_the_registries_hold():
    from rl.config import parse_config

    from rl.losses import AGGREGATIONS, LOSSES

    assert parse_config(["--preset", "debug", "--policy-loss", "cispo"]).loss == "cispo"  # the flag's old name
    for name in LOSSES:
        assert parse_config(["--preset", "debug", "--loss", name]).loss == name
    for name in AGGREGATIONS:
        assert parse_config(["--preset", "debug", "--loss-agg", name]).loss_agg == name
    for name in A.ESTIMATORS:
        assert parse_config(["--preset", "debug", "--estimator", name]).estimator == name
