"""Tests for rl/losses.py: every loss, aggregation and correction against hand-computed values (see comments),
values and gradients, padding that holds garbage, empty rows."""

import math

import pytest
import torch

from rl import losses as L
from test_algos import INF, MASK, MASK_E, NAN, T, close  # the same hand-computed inputs as the advantage tests


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


# ---------------------------------------------------------------- every aggregation, by hand


def test_the_aggregations_hand_values():
    x = T([[1, 2, 3], [10, NAN, NAN], [4, 6, INF], [NAN, NAN, NAN]])  # rows of 3, 1, 2 and 0 tokens
    close(L.aggregate(x, MASK_E, "seq-mean-token-mean"), 17 / 3)  # row means 2, 10, 5; the empty row left out
    close(L.aggregate(x, MASK_E, "grpo"), 17 / 4)  # TRL grpo: the empty row counts as 0
    close(L.aggregate(x, MASK_E, "token-mean"), 26 / 6)
    close(L.aggregate(x, MASK_E, "bnpo"), 26 / 6)  # one micro-batch: its token mean
    close(L.aggregate(x, MASK_E, "dr_grpo", max_len=5), 26 / (4 * 5))  # token sum / (rows x max length)
    close(L.aggregate(x, MASK_E, "dapo"), 26 / 6)
    close(L.aggregate(x, MASK_E, "dapo", count=13), 2.0)  # the rollout's 13 tokens (TRL num_items_in_batch)
    for agg in L.AGGREGATIONS:
        close(L.aggregate(x, torch.zeros_like(MASK_E), agg, max_len=5), 0.0)


# ---------------------------------------------------------------- surrogates, by hand (value and gradient)


def _one_token(logp_minus_old: float, adv: float, spec, old: float = 0.0):
    """The loss of a single token and its gradient with respect to the log-prob."""
    logp = T([[old + logp_minus_old]]).requires_grad_(True)
    loss, stats = L.policy_loss(logp, T([[old]]), T([[adv]]), T([[1]]), spec)
    loss.backward()
    return float(loss), float(logp.grad), stats


def test_clip_higher_and_the_two_sided_clip():
    plain, higher = L.LossSpec(), L.LossSpec(clip_high=0.28)
    # rho 1.25, A +1: above 1 + 0.2 (clipped: -1.2, no gradient), inside 1 + 0.28 (-1.25, gradient -A rho = -1.25)
    assert _one_token(math.log(1.25), 1.0, plain)[:2] == pytest.approx((-1.2, 0.0))
    assert _one_token(math.log(1.25), 1.0, higher)[:2] == pytest.approx((-1.25, -1.25))
    assert _one_token(math.log(1.25), 1.0, plain)[2]["clip_frac"] == 1.0
    # rho 2, A -1: the unclipped branch, 2.0 with gradient 2.0; capped at delta 1.5: 1.5 and no gradient
    assert _one_token(math.log(2.0), -1.0, plain)[:2] == pytest.approx((2.0, 2.0))
    assert _one_token(math.log(2.0), -1.0, L.LossSpec(clip_delta=1.5))[:2] == pytest.approx((1.5, 0.0))
    # the clipped (general) path and the fused kernel's torch twin agree where both apply
    assert _one_token(math.log(0.7), -2.0, L.LossSpec(clip_delta=3.0))[:2] == pytest.approx(
        _one_token(math.log(0.7), -2.0, plain)[:2])  # rho 0.7, A -2: clipped at 0.8 -> 1.6, no gradient


def test_cispo_keeps_the_gradient_of_tokens_far_outside_the_band():
    cispo = L.LossSpec(surrogate=L.cispo_surrogate, agg="dapo", clip_high=5.0)
    # rho 2 (logp = log 2, old 0), A +1: -sg(min(2, 5)) * A * logp = -2 log 2; gradient -2 (PPO-clip: 0)
    loss, grad, stats = _one_token(math.log(2.0), 1.0, cispo)
    assert (loss, grad) == pytest.approx((-2 * math.log(2.0), -2.0)) and stats["clip_frac"] == 0.0
    # eps_max 1.5: the weight is capped, the gradient stays: -1.5 log 2, gradient -1.5
    loss, grad, stats = _one_token(math.log(2.0), 1.0, L.LossSpec(surrogate=L.cispo_surrogate, clip_high=1.5))
    assert (loss, grad) == pytest.approx((-1.5 * math.log(2.0), -1.5)) and stats["clip_frac"] == 1.0


def test_sapo_soft_gate():
    sapo = L.LossSpec(surrogate=L.sapo_surrogate, agg="grpo")
    # rho 1: -sigmoid(0) * 4 / tau * A; d/dlogp = -A * 4/tau * sigmoid'(0) * tau * rho = -A
    assert _one_token(0.0, 1.0, sapo)[:2] == pytest.approx((-2.0, -1.0))  # tau_pos 1.0
    assert _one_token(0.0, -1.0, sapo)[:2] == pytest.approx((2.0 / 1.05, 1.0))  # tau_neg 1.05
    # rho e (far out): the gate has almost closed: gradient -A * 4 sigmoid'(1.0 * (e - 1)) * e
    s = 1 / (1 + math.exp(-(math.e - 1)))
    assert _one_token(1.0, 1.0, sapo)[1] == pytest.approx(-4 * s * (1 - s) * math.e)


def test_gspo_takes_one_ratio_per_sequence():
    gspo = L.LossSpec(agg="grpo", level="sequence", clip_low=0.2, clip_high=0.25)
    # one row, token log-ratios 0.1 and 0.3: s = exp(0.2) = 1.2214028 for both tokens, A +1, inside 1 + 0.25
    logp = T([[0.1, 0.3, 50.0]]).requires_grad_(True)
    loss, stats = L.policy_loss(logp, T([[0.0, 0.0, 0.0]]), T([[1.0, 1.0, NAN]]), T([[1, 1, 0]]), gspo)
    loss.backward()
    close(loss, -math.exp(0.2))
    close(logp.grad, T([[-math.exp(0.2) / 2, -math.exp(0.2) / 2, 0.0]]))  # d(-s)/dlogp_t = -s / |o|
    # with eps_high 0.2 the sequence is clipped as a whole: -1.2, no gradient for any of its tokens
    logp.grad = None
    loss, stats = L.policy_loss(logp, T([[0.0, 0.0, 0.0]]), T([[1.0, 1.0, 0.0]]), T([[1, 1, 0]]),
                                L.LossSpec(level="sequence"))
    loss.backward()
    close(loss, -1.2)
    assert logp.grad.abs().sum() == 0 and stats["clip_frac"] == 1.0


def test_kl_in_the_loss_and_its_bias_correction():
    # log rho 0.5 (A 0: only the KL), logp - ref 0.2: k3 = exp(-0.2) + 0.2 - 1 = 0.0187308
    logp = T([[0.5]]).requires_grad_(True)
    k3 = math.exp(-0.2) + 0.2 - 1
    spec = L.LossSpec(beta=1.0, kl_kind="k3")
    loss, _ = L.policy_loss(logp, T([[0.0]]), T([[0.0]]), T([[1]]), spec, ref_logp=T([[0.3]]))
    loss.backward()
    close(loss, k3)
    close(logp.grad, T([[1 - math.exp(-0.2)]]))  # d k3 / d logp
    logp.grad = None
    corrected = L.LossSpec(beta=1.0, kl_kind="k3", kl_bias_correction=True)
    loss, _ = L.policy_loss(logp, T([[0.0]]), T([[0.0]]), T([[1]]), corrected, ref_logp=T([[0.3]]))
    loss.backward()
    close(loss, k3 * math.exp(0.5))  # times rho = 1.6487213: 0.0308823
    close(logp.grad, T([[math.exp(0.5) * (k3 + 1 - math.exp(-0.2))]]))  # product rule
    with pytest.raises(ValueError, match="ref_logp"):
        L.policy_loss(logp, T([[0.0]]), T([[0.0]]), T([[1]]), spec)


@pytest.mark.parametrize("name", list(L.LOSSES))
def test_every_loss_is_finite_with_garbage_on_padding_and_empty_rows(name):
    entry = L.LOSSES[name]
    spec = L.LossSpec(surrogate=entry.surrogate, agg=entry.agg, level=entry.level, beta=0.1, max_len=3,
                      kl_bias_correction=name == "dapo", clip_high=5.0 if name == "cispo" else 0.2)
    # garbage only where MASK_E is 0 (rows of 3, 1, 2 and 0 tokens)
    logp = T([[-0.5, -1.0, -3.0], [-2.0, INF, NAN], [-0.1, -0.3, 1000.0], [NAN, 80.0, -INF]]).requires_grad_(True)
    old = T([[-0.4, -1.5, -0.2], [-1.0, NAN, 0.0], [-0.2, -0.2, -80.0], [0.0, -80.0, 0.0]])
    adv = T([[1.0, 1.0, 1.0], [-1.0, INF, INF], [0.5, 0.5, NAN], [NAN, NAN, NAN]])
    loss, stats = L.policy_loss(logp, old, adv, MASK_E, spec, ref_logp=old)
    loss.backward()
    assert math.isfinite(float(loss)) and torch.isfinite(logp.grad).all() and all(map(math.isfinite, stats.values()))
    assert (logp.grad[~MASK_E.bool()] == 0).all()
    loss, _ = L.policy_loss(logp, old, adv, torch.zeros_like(MASK_E), spec, ref_logp=old)
    assert float(loss) == 0.0


# ---------------------------------------------------------------- the rollout correction, by hand


def test_the_rollout_correction_weights():
    # old - sampler log-ratios: 4, 0.5, 1.5 (their product 3); cap 3
    old = T([[math.log(4), math.log(0.5), math.log(1.5)]])
    sampler, mask = T([[0.0, 0.0, 0.0]]), T([[1, 1, 1]])

    def weight(mode, floor=0.0, in_ratio=False):
        spec = L.LossSpec(correction=mode, correction_cap=3.0, correction_floor=floor)
        w, stats = L.correction_weight(old, sampler, mask, spec, in_ratio)
        return w, stats

    close(weight("token-truncate")[0], T([[3.0, 0.5, 1.5]]))  # TIS: min(r, 3)
    close(weight("token-mask")[0], T([[0.0, 0.5, 1.5]]))  # MIS: r inside the band, else 0
    close(weight("sequence-truncate")[0], T([[3.0, 3.0, 3.0]]))  # the product 3 = the cap: kept
    close(weight("sequence-mask")[0], T([[3.0, 3.0, 3.0]]))
    close(weight("token-truncate", floor=0.6)[0], T([[3.0, 0.6, 1.5]]))
    close(weight("token-mask", floor=0.6)[0], T([[0.0, 0.0, 1.5]]))
    # in the ratio (--old-logprobs sampler): the weight rescales the ratio r to its truncation, or masks it
    close(weight("token-truncate", in_ratio=True)[0], T([[0.75, 1.0, 1.0]]))
    close(weight("token-mask", in_ratio=True)[0], T([[0.0, 1.0, 1.0]]))
    w, stats = weight("token-truncate")
    assert stats["correction/capped_frac"] == pytest.approx(1 / 3)
    assert stats["correction/ratio_max"] == pytest.approx(4.0) and stats["correction/ratio_mean"] == pytest.approx(2.0)
    assert L.correction_weight(old, sampler, mask, L.LossSpec()) == (None, {})  # "none"


def test_the_correction_multiplies_the_surrogate_not_the_kl():
    spec = L.LossSpec(beta=1.0, kl_kind="k1", correction="token-truncate", correction_cap=3.0)
    # one token, rho 1 (logp = old), A +1, logp - ref 0.25, old - sampler log 4: weight 3
    loss, _ = L.policy_loss(T([[-1.0]]), T([[-1.0]]), T([[1.0]]), T([[1]]), spec, ref_logp=T([[-1.25]]),
                            sampler_logp=T([[-1.0 - math.log(4)]]))
    close(loss, 3 * -1.0 + 0.25)


# ---------------------------------------------------------------- a Config resolved into a LossSpec


def test_loss_spec_of_a_config():
    from rl.config import preset

    lmm = L.LossSpec.of(preset("fre-text"))
    assert (lmm.agg, lmm.level, lmm.correction, lmm.beta, lmm.plain()) == ("seq-mean-token-mean", "token", "none",
                                                                             0.0, None)
    assert L.LossSpec.of(preset("debug", loss="dapo")).agg == "dapo"  # --loss-agg auto follows --loss
    assert L.LossSpec.of(preset("debug", loss="dapo", loss_agg="token-mean")).agg == "token-mean"
    assert L.LossSpec.of(preset("debug", loss="cispo")).clip_high == L.CISPO_EPS_MAX
    assert L.LossSpec.of(preset("debug", clip_high=0.28)).clip_high == 0.28
    assert L.LossSpec.of(preset("debug", kl_in="loss", kl=0.01)).beta == 0.01
    sampler = L.LossSpec.of(preset("debug", old_logprobs="sampler"))
    assert sampler.correction == "token-truncate" and "rollout correction" in sampler.plain()
    assert L.LossSpec.of(preset("debug", old_logprobs="sampler", rollout_correction="none")).plain() is None
    gspo = L.LossSpec.of(preset("gspo"))
    assert (gspo.level, gspo.agg, gspo.clip_low, gspo.clip_high) == ("sequence", "grpo", 3e-4, 4e-4)
    assert "per sequence" in gspo.plain()


@pytest.mark.parametrize("name", list(L.LOSSES))
@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (3, 1)])
def test_all_but_one_padded_row_is_that_row_alone(name, shape):
    """Rows that are all padding change nothing but the row count (grpo, dr_grpo count every row; the others do not
    see them): the loss and the gradient of the one real row are those of the row alone, rescaled by that count."""
    n, t = shape
    entry = L.LOSSES[name]
    spec = L.LossSpec(surrogate=entry.surrogate, agg=entry.agg, level=entry.level, beta=0.05, max_len=t,
                      clip_high=5.0 if name == "cispo" else 0.28)
    g = torch.Generator().manual_seed(n * 10 + t)
    logp = -torch.rand(n, t, generator=g, dtype=torch.float64) - 0.1
    old = logp + torch.randn(n, t, generator=g, dtype=torch.float64) * 0.5
    ref = logp + torch.randn(n, t, generator=g, dtype=torch.float64) * 0.2
    adv = torch.randn(n, 1, generator=g, dtype=torch.float64).expand(n, t)
    mask = torch.zeros(n, t, dtype=torch.bool)
    mask[n // 2] = True
    padded = logp.clone().requires_grad_(True)
    loss, _ = L.policy_loss(padded, old, adv, mask, spec, ref_logp=ref)
    loss.backward()
    row = slice(n // 2, n // 2 + 1)
    alone = logp[row].clone().requires_grad_(True)
    loss1, _ = L.policy_loss(alone, old[row], adv[row], mask[row], spec, ref_logp=ref[row])
    loss1.backward()
    rows = n if spec.agg in ("grpo", "dr_grpo") else 1
    close(loss * rows, loss1)
    close(padded.grad[row] * rows, alone.grad)
    assert (padded.grad[~mask] == 0).all()
