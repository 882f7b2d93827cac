"""Fused linear log-prob / entropy and fused policy-loss Triton kernels vs. their torch references (CPU interpreter).

TRITON_INTERPRET must be set before triton is imported (the @triton.jit decorator reads it when the kernel modules
are imported), hence the first lines. Tiny shapes only: the interpreter is slow. T, V are not multiples of the
interpreter tiles (16 tokens x 32 vocab x 16 hidden), so partial tiles, several vocab tiles and H steps are covered.
"""

import os

_PREVIOUS_INTERPRET = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are decorated (lmm_kernels.logprob_triton import)

import importlib  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# imported earlier without the interpreter: redecorate
for _name in ("lmm_kernels.logprob_triton", "lmm_kernels.policy_loss_triton"):
    if _name in sys.modules and not sys.modules[_name]._INTERPRET:
        importlib.reload(sys.modules[_name])

import lmm_kernels.logprob_triton as lt  # noqa: E402
from lmm_kernels.logprob import logprob_loss_from_hidden, logprob_loss_plain  # noqa: E402
from lmm_kernels.logprob import logprobs_from_hidden, logprobs_plain  # noqa: E402
from lmm_kernels.policy_loss import policy_loss_tokens as _ppo_tokens  # noqa: E402
from lmm_kernels.policy_loss_triton import kernel_configs as policy_kernel_configs  # noqa: E402
from lmm_kernels.policy_loss_triton import policy_loss_tokens_triton  # noqa: E402
from lmm_kernels.policy_loss import policy_loss_tokens as policy_loss_tokens_torch  # noqa: E402

# The kernels above are interpreted from now on; restore the variable so that it leaks neither into other test
# modules nor into subprocesses (the ahead-of-time compile, tests/test_kernels_compile.py, must run without it).
if _PREVIOUS_INTERPRET is None:
    del os.environ["TRITON_INTERPRET"]
else:
    os.environ["TRITON_INTERPRET"] = _PREVIOUS_INTERPRET



def _triton_language_interpreted() -> bool:
    """triton.language's own @jit helpers (tl.sum, tl.cdiv, ...) are decorated when triton is first imported: if that
    happened without TRITON_INTERPRET=1 in this process, interpreted kernels cannot call them."""
    import triton.language.standard as std
    from triton.runtime.interpreter import InterpretedFunction
    return isinstance(std.cdiv, InterpretedFunction)


if not _triton_language_interpreted():  # pragma: no cover - depends on import order in the pytest process
    pytest.skip("triton was imported before TRITON_INTERPRET=1 was set (set it in tests/conftest.py on CPU-only "
                "machines)", allow_module_level=True)
assert lt._INTERPRET, "lmm_kernels.logprob_triton must be (re)imported under TRITON_INTERPRET=1"


def _inputs(T, H, V, dtype, seed=0, scale=1.0, batch=None):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(T, H, generator=g) * scale
    w = torch.randn(V, H, generator=g) / H ** 0.5 * 3.0
    t = torch.randint(0, V, (T,), generator=g)
    grad = torch.randn(T, generator=g)
    if batch is not None:
        h, t, grad = h.reshape(*batch, H), t.reshape(batch), grad.reshape(batch)
    return h.to(dtype), w.to(dtype), t, grad


def _run(fn, h, w, t, grad, temperature, dtype=None, **kw):
    """(logp, entropy, grad_hidden, grad_weight) of fn, inputs optionally upcast to `dtype`."""
    h = h.detach().to(dtype or h.dtype).requires_grad_()
    w = w.detach().to(dtype or w.dtype).requires_grad_()
    logp, ent = fn(h, w, t, temperature=temperature, with_entropy=True, **kw)
    gh, gw = torch.autograd.grad(logp, (h, w), grad.to(logp.dtype))
    return logp, ent, gh, gw


def _truth(h, w, t, grad, temperature):
    """fp64 reference on the same (possibly bf16-rounded) input values."""
    return _run(logprobs_plain, h, w, t, grad, temperature, dtype=torch.float64)


SHAPES = [(1, 16, 50), (5, 32, 130), (37, 16, 130), (37, 32, 50)]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("T,H,V", SHAPES)
def test_fp32_matches_fp64_reference(T, H, V, temperature):
    h, w, t, grad = _inputs(T, H, V, torch.float32, seed=T + V)
    logp, ent, gh, gw = _run(lt.triton_logprobs_from_hidden, h, w, t, grad, temperature, chunk_size=16)
    r_logp, r_ent, r_gh, r_gw = _truth(h, w, t, grad, temperature)
    assert logp.dtype == ent.dtype == torch.float32 and gh.dtype == gw.dtype == torch.float32
    assert logp.shape == ent.shape == t.shape
    torch.testing.assert_close(logp.double(), r_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent.double(), r_ent, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gh.double(), r_gh, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gw.double(), r_gw, atol=1e-5, rtol=1e-5)
    assert (logp <= 0).all() and (ent >= -1e-6).all()
    assert not ent.requires_grad


def test_gradient_of_a_sum_has_a_broadcast_upstream_gradient():
    """`logp.sum().backward()` hands the backward a stride-0 gradient; the kernel reads it as contiguous memory, so
    it must be made contiguous first (else the gradients read past a one-element buffer)."""
    h, w, t, _ = _inputs(37, 16, 130, torch.float32, seed=11)
    grads = []
    for fn in (lt.triton_logprobs_from_hidden, logprobs_plain):
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        logp, _ = fn(hh, ww, t, temperature=1.0, with_entropy=False, **({"chunk_size": 16} if fn is not
                                                                           logprobs_plain else {}))
        logp.sum().backward()
        grads.append((hh.grad, ww.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("T,H,V", [(5, 32, 130), (37, 16, 50)])
def test_bf16_matches_reference(T, H, V, temperature):
    h, w, t, grad = _inputs(T, H, V, torch.bfloat16, seed=3 * T + V)
    logp, ent, gh, gw = _run(lt.triton_logprobs_from_hidden, h, w, t, grad, temperature, chunk_size=16)
    assert logp.dtype == ent.dtype == torch.float32 and gh.dtype == gw.dtype == torch.bfloat16
    # fp32 accumulation over exact bf16 products: values as tight as fp32 against fp64 on the same inputs ...
    r_logp, r_ent, r_gh, r_gw = _truth(h, w, t, grad, temperature)
    torch.testing.assert_close(logp.double(), r_logp, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(ent.double(), r_ent, atol=2e-5, rtol=1e-5)
    # ... gradients go through bf16 dlogits and are returned in bf16.
    for got, ref in ((gh, r_gh), (gw, r_gw)):
        torch.testing.assert_close(got.double(), ref, atol=2e-2 * ref.abs().max().item(), rtol=2e-2)
    # The torch reference in bf16 rounds the logits to bf16: agreement within bf16 precision.
    b_logp, b_ent, b_gh, b_gw = _run(logprobs_from_hidden, h, w, t, grad, temperature)
    torch.testing.assert_close(logp, b_logp, atol=0.1, rtol=0.02)
    torch.testing.assert_close(ent, b_ent, atol=0.1, rtol=0.02)
    for got, ref in ((gh, b_gh), (gw, b_gw)):
        torch.testing.assert_close(got.float(), ref.float(), atol=5e-2 * ref.abs().max().item(), rtol=5e-2)
    assert (logp <= 0).all()


def test_vocab_splits_and_batch_shape(monkeypatch):
    """Forced split of the vocab over programs (merged in torch), leading batch dims, chunk not dividing T."""
    h, w, t, grad = _inputs(12, 32, 130, torch.float32, seed=7, batch=(3, 4))
    r_logp, r_ent, r_gh, r_gw = _truth(h, w, t, grad, 0.7)
    for splits in (1, 2, 3, 5):
        monkeypatch.setattr(lt, "_FORCE_SPLITS", splits)
        logp, ent, gh, gw = _run(lt.triton_logprobs_from_hidden, h, w, t, grad, 0.7, chunk_size=5)
        assert logp.shape == ent.shape == (3, 4) and gh.shape == h.shape
        torch.testing.assert_close(logp.double(), r_logp, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ent.double(), r_ent, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(gh.double(), r_gh, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(gw.double(), r_gw, atol=1e-5, rtol=1e-5)


def test_peaked_and_large_logits_stay_finite_and_nonpositive():
    """Logits ~ +-300 (exp overflows without the running max); near one-hot rows: logp -> 0-, entropy -> 0+."""
    h, w, t, grad = _inputs(21, 32, 130, torch.float32, seed=11, scale=60.0)
    big = (h @ w.T).abs().max().item()
    assert big > 100
    t = (h @ w.T).argmax(-1)  # the target is the (overwhelmingly likely) argmax on most rows
    logp, ent, gh, gw = _run(lt.triton_logprobs_from_hidden, h, w, t, grad, 1.0)
    r_logp, r_ent, r_gh, r_gw = _truth(h, w, t, grad, 1.0)
    assert torch.isfinite(logp).all() and torch.isfinite(ent).all() and torch.isfinite(gh).all()
    assert (logp <= 0).all() and (ent >= 0).all()
    torch.testing.assert_close(logp.double(), r_logp, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ent.double(), r_ent, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gw.double(), r_gw, atol=1e-3, rtol=1e-4)


def test_no_grad_entropy_flag_and_frozen_weight():
    h, w, t, grad = _inputs(9, 16, 50, torch.float32, seed=5)
    with torch.no_grad():
        logp, ent = lt.triton_logprobs_from_hidden(h, w, t, temperature=0.7)
    assert ent is None and not logp.requires_grad
    r_logp, _ = logprobs_from_hidden(h.double(), w.double(), t, temperature=0.7)
    torch.testing.assert_close(logp.double(), r_logp, atol=1e-5, rtol=1e-5)
    hg = h.clone().requires_grad_()
    logp, _ = lt.triton_logprobs_from_hidden(hg, w, t)  # LM head frozen: only grad_hidden
    (gh,) = torch.autograd.grad(logp, hg, grad)
    h64 = h.double().requires_grad_()
    (r_gh,) = torch.autograd.grad(logprobs_from_hidden(h64, w.double(), t)[0], h64, grad.double())
    torch.testing.assert_close(gh.double(), r_gh, atol=1e-5, rtol=1e-5)
    empty, ent = lt.triton_logprobs_from_hidden(h[:0], w, t[:0], with_entropy=True)
    assert empty.shape == ent.shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_torch_chunked_path_matches_plain_definition(dtype):
    """lmm_kernels.logprob.logprobs_from_hidden (the --kernels torch path: same orchestration, torch chunk ops) against the
    full-logits definition, values and gradients."""
    h, w, t, grad = _inputs(37, 32, 130, dtype, seed=13)
    got = _run(logprobs_from_hidden, h, w, t, grad, 0.7, chunk_size=8)
    ref = _run(logprobs_plain, h, w, t, grad, 0.7)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    for a, b in zip(got, ref):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a.float(), b.float(), **tol)


# ------------------------------------------------------------------------------------------------------------------
# The gradient in the forward: a loss of per-token terms (logprob_loss_from_hidden and its Triton twin)
# ------------------------------------------------------------------------------------------------------------------

IN_FORWARD = {"torch": logprob_loss_from_hidden, "triton": lt.triton_logprob_loss_from_hidden}


def _ppo_token_loss(h, w, t, temperature, seed):
    """A PPO-clip + k3 KL per-token loss with per-token aggregation weights (what a trainer would hand over):
    token_loss(logp_rows, rows) -> terms, constants sliced by rows; old and reference log-probs near the current
    ones, so that ratios fall on both sides of the clip range."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        now = logprobs_plain(h.float().reshape(-1, h.shape[-1]), w.float(), t.reshape(-1), temperature)[0]
    T = now.numel()
    old = now + torch.randn(T, generator=g) * 0.3
    ref = now + torch.randn(T, generator=g) * 0.5
    adv, weight = torch.randn(T, generator=g), torch.rand(T, generator=g)
    valid = torch.rand(T, generator=g) > 0.2

    def token_loss(logp, rows):
        per = _ppo_tokens(logp, old[rows].to(logp.dtype), adv[rows], valid[rows], ref_logp=ref[rows].to(logp.dtype),
                          clip_eps=0.2, beta=0.04, kl_kind="k3", clip_eps_high=0.28)
        return per * weight[rows].to(per.dtype)
    return token_loss


def _run_loss(fn, h, w, t, token_loss, temperature, scale, dtype=None, **kw):
    """(loss, logp, entropy, grad_hidden, grad_weight) of `fn`, backward from scale * loss."""
    h = h.detach().to(dtype or h.dtype).requires_grad_()
    w = w.detach().to(dtype or w.dtype).requires_grad_()
    loss, logp, ent = fn(h, w, t, token_loss, temperature=temperature, with_entropy=True, **kw)
    (loss * scale).backward()
    return loss, logp, ent, h.grad, w.grad


@pytest.mark.parametrize("impl", ["torch", "triton"])
@pytest.mark.parametrize("T,H,V,temperature", [(5, 32, 130, 1.0), (37, 16, 50, 0.7)])
def test_in_forward_gradients_match_plain_autograd_fp32(impl, T, H, V, temperature):
    """Loss, log-probs, entropy and both gradients against the full-logits autograd path (fp32 and fp64 truth), with
    an upstream gradient that is not 1 (a micro-batch weight) and chunks that do not divide T."""
    h, w, t, _ = _inputs(T, H, V, torch.float32, seed=T + 2 * V)
    token_loss = _ppo_token_loss(h, w, t, temperature, seed=T)
    got = _run_loss(IN_FORWARD[impl], h, w, t, token_loss, temperature, 0.37, chunk_size=20)  # torch: 2 row blocks
    truth = [x.double() for x in _run_loss(logprob_loss_plain, h, w, t, token_loss, temperature, 0.37,
                                           dtype=torch.float64)]  # (the PPO terms are fp32 by definition)
    plain = _run_loss(logprob_loss_plain, h, w, t, token_loss, temperature, 0.37)
    assert got[0].shape == () and got[1].shape == got[2].shape == t.shape
    assert not got[1].requires_grad and not got[2].requires_grad
    assert [x.dtype for x in got] == [torch.float32] * 5
    for a, b, c in zip(got, truth, plain):
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_in_forward_gradients_bf16(impl):
    T, H, V = 37, 32, 130
    h, w, t, _ = _inputs(T, H, V, torch.bfloat16, seed=19)
    token_loss = _ppo_token_loss(h, w, t, 0.7, seed=2)
    loss, logp, ent, gh, gw = _run_loss(IN_FORWARD[impl], h, w, t, token_loss, 0.7, 1.0, chunk_size=16)
    assert gh.dtype == gw.dtype == torch.bfloat16 and logp.dtype == torch.float32
    truth = [x.double() for x in _run_loss(logprob_loss_plain, h, w, t, token_loss, 0.7, 1.0, dtype=torch.float64)]
    plain = _run_loss(logprob_loss_plain, h, w, t, token_loss, 0.7, 1.0)  # bf16 logits, autograd
    # Triton: fp32 logits from exact bf16 products (values as tight as fp32); torch: bf16 logits, like plain.
    tol = dict(atol=2e-5, rtol=1e-5) if impl == "triton" else dict(atol=0.1, rtol=0.02)
    for got, ref in ((loss, truth[0]), (logp, truth[1]), (ent, truth[2])):
        torch.testing.assert_close(got.double(), ref, **tol)
    for got, ref, ref16 in ((gh, truth[3], plain[3]), (gw, truth[4], plain[4])):
        torch.testing.assert_close(got.double(), ref, atol=3e-2 * ref.abs().max().item(), rtol=3e-2)
        torch.testing.assert_close(got.float(), ref16.float(), atol=5e-2 * ref.abs().max().item(), rtol=5e-2)


def test_in_forward_vocab_splits_batch_shape_and_linear_loss(monkeypatch):
    """Forced vocab splits (each split stores its own logit columns), leading batch dims, and the linear loss
    sum_t c_t logp_t, whose gradients are the recompute path's for the upstream gradient c."""
    h, w, t, c = _inputs(12, 32, 130, torch.float32, seed=23, batch=(3, 4))
    token_loss = lambda logp, rows: c.reshape(-1)[rows] * logp  # noqa: E731
    r_logp, r_ent, r_gh, r_gw = _truth(h, w, t, c, 0.7)
    for splits in (2, 5):
        monkeypatch.setattr(lt, "_FORCE_SPLITS", splits)
        loss, logp, ent, gh, gw = _run_loss(lt.triton_logprob_loss_from_hidden, h, w, t, token_loss, 0.7, 1.0,
                                            chunk_size=5)
        assert logp.shape == ent.shape == (3, 4) and gh.shape == h.shape
        torch.testing.assert_close(loss.double(), (c.double() * r_logp).sum(), atol=1e-5, rtol=1e-5)
        for a, b in ((logp, r_logp), (ent, r_ent), (gh, r_gh), (gw, r_gw)):
            torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_in_forward_frozen_head_no_grad_empty_and_one_backward(impl):
    fn = IN_FORWARD[impl]
    h, w, t, c = _inputs(9, 16, 50, torch.float32, seed=29)
    token_loss = lambda logp, rows: c[rows] * logp  # noqa: E731
    r_loss, r_logp, _ = logprob_loss_plain(h.double(), w.double(), t, token_loss)
    with torch.no_grad():  # values only: no logits stored, no gradient work
        loss, logp, ent = fn(h.clone().requires_grad_(), w, t, token_loss, chunk_size=4)
    assert ent is None and not loss.requires_grad
    torch.testing.assert_close(loss.double(), r_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logp.double(), r_logp, atol=1e-5, rtol=1e-5)
    hg = h.detach().clone().requires_grad_()
    loss, _, _ = fn(hg, w, t, token_loss, chunk_size=4)  # LM head frozen (LoRA): grad_hidden only
    loss.backward(retain_graph=True)
    h64 = h.detach().double().requires_grad_()
    (r_gh,) = torch.autograd.grad(logprobs_plain(h64, w.double(), t)[0], h64, c.double())
    torch.testing.assert_close(hg.grad.double(), r_gh, atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="twice"):
        loss.backward()
    hg = h.detach().clone().requires_grad_()
    empty, logp, ent = fn(hg[:0], w, t[:0], token_loss, with_entropy=True)
    assert empty.shape == () and float(empty.detach()) == 0.0 and logp.shape == ent.shape == (0,)
    empty.backward()
    assert hg.grad is not None and (hg.grad == 0).all()


# ------------------------------------------------------------------------------------------------------------------
# Policy loss
# ------------------------------------------------------------------------------------------------------------------


def _policy_inputs(N=3, T=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(N, T, generator=g) * 3
    old = logp + torch.randn(N, T, generator=g) * 0.3  # ratios spread across and outside [0.8, 1.2]
    ref = logp + torch.randn(N, T, generator=g) * 0.5
    adv = torch.randn(N, T, generator=g)
    mask = (torch.rand(N, T, generator=g) > 0.25).float()
    mask[2, 20:] = 0
    old[mask == 0] = float("nan")  # garbage on padding must not leak
    ref[mask == 0] = 1e4
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("kl_kind,beta", [("k1", 0.1), ("k2", 0.05), ("k3", 0.04), ("k3", 0.0), (None, 0.3)])
def test_policy_loss_kernel_matches_torch(kl_kind, beta):
    logp, old, ref, adv, mask = _policy_inputs(seed={"k1": 1, "k2": 2, "k3": 3, None: 4}[kl_kind])
    grad_out = torch.randn(logp.shape)
    outs = []
    for fn in (policy_loss_tokens_torch, policy_loss_tokens_triton):
        lp = logp.clone().requires_grad_()
        loss = fn(lp, old, adv, mask, ref_logp=ref, clip_eps=0.2, beta=beta, kl_kind=kl_kind, clip_eps_high=0.28)
        (g,) = torch.autograd.grad(loss, lp, grad_out)
        outs.append((loss, g))
    (loss_t, g_t), (loss_k, g_k) = outs
    assert loss_k.shape == logp.shape and loss_k.dtype == torch.float32
    torch.testing.assert_close(loss_k, loss_t, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g_k, g_t, atol=1e-6, rtol=1e-5)
    pad = mask == 0
    assert torch.isfinite(loss_k).all() and torch.isfinite(g_k).all()
    assert (loss_k[pad] == 0).all() and (g_k[pad] == 0).all()
    assert (loss_t[pad] == 0).all() and (g_t[pad] == 0).all()
    rho = torch.exp(logp - old)
    clipped = ((rho < 0.8) & (adv < 0)) | ((rho > 1.28) & (adv > 0))
    assert (clipped & ~pad).any() and (~clipped & ~pad).any()  # both branches exercised


def test_policy_loss_agrees_with_rl_losses_and_broadcasts_adv():
    from rl.losses import LossSpec, aggregate, kl_loss, policy_loss
    logp, old, ref, adv, mask = _policy_inputs(seed=3)
    per_seq_adv = adv[:, :1]  # [N, 1] broadcast (outcome advantages)
    full = policy_loss_tokens_triton(logp, old, per_seq_adv, mask, ref_logp=ref, beta=0.0)
    loss_ref, _ = policy_loss(logp, old, per_seq_adv.expand_as(logp), mask, LossSpec())
    torch.testing.assert_close(aggregate(full, mask), loss_ref, atol=1e-6, rtol=1e-5)
    for kind in ("k1", "k2", "k3"):  # zero advantage isolates beta * KL
        kl_only = policy_loss_tokens_triton(logp, old, torch.zeros_like(adv), mask, ref_logp=ref, beta=0.5, kl_kind=kind)
        torch.testing.assert_close(aggregate(kl_only, mask), 0.5 * kl_loss(logp, ref, mask, kind=kind),
                                   atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError):
        policy_loss_tokens_triton(logp, old, adv, mask, beta=0.1, kl_kind="k3")  # beta without ref_logp
    with pytest.raises(ValueError):
        policy_loss_tokens_torch(logp, old, adv, mask, ref_logp=ref, beta=0.1, kl_kind="k4")


# ------------------------------------------------------------------------------------------------------------------
# Launch configurations: well-formed (tests/test_kernels_compile.py compiles them for sm_80 and sm_90)
# ------------------------------------------------------------------------------------------------------------------


def test_kernel_configs_are_well_formed():
    import inspect
    entries = lt.kernel_configs() + policy_kernel_configs()
    assert len({e["name"] for e in entries}) == len(entries)
    for e in entries:
        fn = getattr(e["fn"], "fn", e["fn"])  # JITFunction / InterpretedFunction -> python function
        assert list(e["signature"]) == list(inspect.signature(fn).parameters), e["name"]
        assert all(e["signature"][k] == "constexpr" for k in e["constexprs"])
        for k in ("BLOCK_T", "BLOCK_V", "BLOCK_H"):
            assert e["constexprs"].get(k, 16) >= 16  # tl.dot needs >= 16 on every dim
    # every launch the code can make is listed
    for dt in (torch.float32, torch.float16, torch.bfloat16):
        cfg = {k: lt._GPU_CONFIGS[dt][k] for k in ("BLOCK_T", "BLOCK_V", "BLOCK_H")}
        assert any(e["kernel"] == "fwd" and cfg.items() <= e["constexprs"].items() for e in entries)
