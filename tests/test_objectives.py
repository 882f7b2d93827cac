"""The 2025-26 objectives inside the step: DAPO's dynamic sampling (groups dropped and refilled, the batch cut to
its size, every round counted), overlong punishment and filtering, and each named loss training the tiny model."""

from types import SimpleNamespace

import pytest
import torch

from data import load_fixture
from rl.config import preset
from rl.run import make_trainer


class Scripted:
    """A reward that is the same for every sample of a prompt whose answer is in `flat`, and spread otherwise."""

    def __init__(self, flat=()):
        self.flat, self.calls = set(flat), []

    def __call__(self, responses, golds, metas):
        self.calls.append(list(golds))
        return SimpleNamespace(components={"total": [0.5 if g in self.flat else i % 2 for i, g in enumerate(golds)]},
                               counts={})

    def close(self):
        pass


def _trainer(tmp_path, reward, **kw):
    cfg = preset("debug", out=str(tmp_path), max_new_tokens=4, save_every=0, **kw)
    return make_trainer(cfg, load_fixture("math"), reward)


def test_dynamic_sampling_drops_flat_groups_refills_and_cuts_to_the_batch(tmp_path):
    trainer = _trainer(tmp_path, Scripted(), dynamic_sampling=3)
    step = trainer.prompts_for_step(0)
    trainer.reward_fn.flat = {s.answer for s in step[:3]}  # three of the step's four groups carry no gradient
    rollout, metrics = trainer.make_experience(step)
    calls = trainer.reward_fn.calls
    assert len(calls) == 2  # the step's prompts, then one refill round of four more
    assert metrics["sampling/refill_rounds"] == 1 and metrics["sampling/groups"] == 4
    refill = [s.answer for s in trainer.refill_prompts(1)]
    assert calls[1] == [a for a in refill for _ in range(4)]
    flat_in_refill = sum(a in trainer.reward_fn.flat for a in refill)
    assert metrics["sampling/dropped_groups"] == 3 + flat_in_refill
    # kept: the step's informative group, then the refill's first three, in order; the rest is cut
    kept = [step[3]] + [s for s in trainer.refill_prompts(1) if s.answer not in trainer.reward_fn.flat][:3]
    prompts, _ = trainer.encode(kept)
    assert len(rollout) == 16 and all(torch.equal(a["prompt_ids"], b["prompt_ids"])
                                      for a, b in zip(rollout.prompts, prompts, strict=True))
    assert (rollout.advantages.abs().sum(1).view(4, 4).sum(1) > 0).all()  # every group kept has an advantage


def test_dynamic_sampling_gives_up_after_its_rounds_and_the_step_does_not_train(tmp_path):
    trainer = _trainer(tmp_path, Scripted(flat={s.answer for s in load_fixture("math")}), dynamic_sampling=2,
                       max_steps=1)
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    rollout, metrics = trainer.make_experience(trainer.prompts_for_step(0))
    assert rollout is None and metrics["sampling/refill_rounds"] == 2 and metrics["sampling/dropped_groups"] == 12
    assert len(trainer.reward_fn.calls) == 3
    trainer.train()
    assert all(torch.equal(before[n], p) for n, p in trainer.policy.named_parameters())


def test_refill_prompts_are_seeded_by_step_and_round(tmp_path):
    trainer = _trainer(tmp_path, Scripted(), dynamic_sampling=1)
    first = [s.answer for s in trainer.refill_prompts(1)]
    assert first == [s.answer for s in trainer.refill_prompts(1)] != [s.answer for s in trainer.refill_prompts(2)]
    trainer.step = 1
    assert first != [s.answer for s in trainer.refill_prompts(1)]


def test_overlong_punishment_and_truncated_responses_left_out_of_the_loss(tmp_path):
    trainer = _trainer(tmp_path, Scripted(), overlong_buffer=2, mask_truncated=True)
    rollout, metrics = trainer.make_experience(trainer.prompts_for_step(0))
    lengths = rollout.mask.sum(1).float()
    penalty = (-(lengths - 2).clamp(min=0) / 2).clamp(min=-1)  # max 4 tokens, the last 2 the buffer
    assert metrics["reward/overlong"] == pytest.approx(penalty.mean().item())
    assert rollout.trainable.tolist() == rollout.finished
    assert metrics["loss/truncated_masked"] == pytest.approx(1 - sum(rollout.finished) / len(rollout))
    if not all(rollout.finished):  # the tiny random model rarely ends within 4 tokens
        rollout.trainable[:] = False
        before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
        stats = trainer.train_on(rollout)  # nothing left in the loss: no update moves a weight
        assert stats["loss/policy"] == 0.0
        assert all(torch.equal(before[n], p) for n, p in trainer.policy.named_parameters())


@pytest.mark.parametrize("loss, fused", [("dapo", True), ("gspo", False)])
def test_the_fused_loss_kernel_runs_where_it_computes_the_loss_else_the_reason_is_logged(tmp_path, monkeypatch,
                                                                                        loss, fused):
    import dataclasses

    import lmm_kernels
    from lmm_kernels.policy_loss import policy_loss_tokens

    calls, lines = [], []

    def kernel(*args):  # stands in for the Triton kernel (same signature): records that it ran
        calls.append(1)
        return policy_loss_tokens(*args)

    real = lmm_kernels.select
    monkeypatch.setattr(lmm_kernels, "select", lambda *a, **k: dataclasses.replace(real(*a, **k),
                                                                                   policy_losses={"clip": kernel}))
    cfg = preset("debug", out=str(tmp_path), max_new_tokens=4, save_every=0, max_steps=1, loss=loss)
    trainer = make_trainer(cfg, load_fixture("math"), Scripted(), log=lines.append)
    trainer.train()
    assert bool(calls) is fused
    reasons = [line for line in lines if line.startswith("policy loss: the torch definition")]
    assert len(reasons) == (0 if fused else 1)
    if not fused:
        assert "its ratio is taken per sequence" in reasons[0]
