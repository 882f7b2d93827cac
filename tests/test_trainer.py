"""The trainer on image prompts: pixels flow through generation, log-probs and backward into the vision tower
(or not, when it is frozen); KL as a loss; the reference model exists only when kl > 0."""

from types import SimpleNamespace

import pytest
import torch

from data.loaders import load_fixture
from rl.config import preset
from rl.trainer import Trainer


class LengthReward:
    """Any reward with spread across a group gives non-zero advantages."""

    def __call__(self, responses, golds, metas):
        return SimpleNamespace(components={"total": [len(set(r)) / 10 for r in responses]}, counts={})

    def close(self):
        pass


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(before, module):
    return any(not torch.equal(before[n], p) for n, p in module.named_parameters())


@pytest.mark.parametrize("freeze_vision", [False, True])
def test_image_prompts_train_the_vision_tower_unless_frozen(tmp_path, freeze_vision):
    samples = load_fixture("message")
    assert all(s.images for s in samples)
    cfg = preset("debug", out=str(tmp_path), max_steps=2, prompts_per_step=2, n_samples=3, max_new_tokens=6,
                 train_batch_size=6, micro_batch_size=4, gradient_checkpointing=True, freeze_vision=freeze_vision,
                 kl=0.01, kl_in="loss", kl_estimator="k3", save_every=0, optim="adamw")
    trainer = Trainer(cfg, samples, LengthReward())
    assert trainer.ref is not None
    visual, lm = _snapshot(trainer.policy.model.visual), _snapshot(trainer.policy.model.language_model)
    trainer.train()
    assert _changed(lm, trainer.policy.model.language_model)
    assert _changed(visual, trainer.policy.model.visual) is not freeze_vision
    assert not _changed(visual, trainer.ref.model.visual)  # the reference stays frozen


def test_no_reference_model_without_kl(tmp_path):
    cfg = preset("debug", out=str(tmp_path), kl=0.0)
    assert Trainer(cfg, load_fixture("math"), LengthReward()).ref is None


def test_too_few_samples_is_a_clear_error(tmp_path):
    cfg = preset("debug", out=str(tmp_path), prompts_per_step=1000)
    with pytest.raises(ValueError, match="fewer than --prompts-per-step"):
        Trainer(cfg, load_fixture("math"), LengthReward())
