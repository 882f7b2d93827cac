"""The PPO critic of the GAE runs (LMM-R1's Sokoban and football recipes): a value model with its own optimizer.

The trainer sees one object and calls its verbs: `offloaded` (around generation), `values` (log-prob phase),
`backward` (each micro-batch of the update), `clip_grad_norm` and `step` or `zero_grad` (each optimizer step). The
estimators without a critic get `NoCritic`, whose values are zeros and whose other verbs do nothing, so the step has
no critic branches.
"""

import contextlib
import copy
from pathlib import Path

import torch
from torch import nn

from rl import algos, dist, losses
from rl.checkpoint import CheckpointError, load_state
from rl.offload import placed
from rl.optim import clip_grad_norm, local_shards, make_optimizer, optimizer_step
from rl.policy import response_hidden, vision_in_graph


class ValueModel(nn.Module):
    """A copy of the policy's backbone with a scalar value head (OpenRLHF's critic, LMM-R1's GAE runs)."""

    def __init__(self, policy, keep_vision_in_graph: bool = False):
        super().__init__()
        self.backbone = copy.deepcopy(policy.model)
        hidden = policy.get_output_embeddings().weight.shape[1]
        # As the released critic: no bias, weight ~ N(0, 1 / (hidden + 1)) (the std, not the variance).
        self.value_head = nn.Linear(hidden, 1, bias=False, dtype=policy.dtype)
        nn.init.normal_(self.value_head.weight, std=1 / (hidden + 1))
        self.keep_vision_in_graph = keep_vision_in_graph and hasattr(policy.config, "vision_config")

    def forward(self, batch: dict) -> torch.Tensor:
        """Value [B, R] of the state before each response token."""
        hidden = response_hidden(self.backbone, batch)
        if self.keep_vision_in_graph and batch.get("pixel_values") is None:
            hidden = vision_in_graph(self.backbone, hidden)
        return self.value_head(hidden).squeeze(-1).float()


class Critic:
    """The value model (trainable, its vision tower too: --freeze-vision is the actor's, as the released
    --freeze_prefix), its optimizer, and the settings of its loss."""

    def __init__(self, policy, cfg, device: torch.device, mixed_precision: bool):
        sharded = dist.world() > 1
        self.model = ValueModel(policy, keep_vision_in_graph=sharded).to(device).requires_grad_(True)
        if cfg.resume:
            state = load_state(Path(cfg.resume) / "critic.pt")
            if "value_head.bias" in state:  # before the value head followed the released one (no bias)
                raise CheckpointError(f"{cfg.resume}: its critic has a value-head bias (an older version of this project "
                                      "wrote it); resume it with that version, or start anew")
            self.model.load_state_dict(state)
        if sharded:
            dist.shard(self.model, mixed_precision, offload=cfg.critic_offload)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.shards = local_shards(self.params)
        self.optimizer = make_optimizer(self.shards, cfg.critic_lr, tuple(cfg.adam_betas), cfg.weight_decay,
                                        cfg.optim)
        self.cfg, self.agg = cfg, losses.LossSpec.of(cfg).agg  # the value loss is aggregated as the policy loss

    def offloaded(self):
        """--critic-offload: the critic and its optimizer states wait on the CPU while the KV cache needs the room."""
        return placed(self.model, torch.device("cpu"), self.optimizer, enabled=self.cfg.critic_offload)

    def train(self, mode: bool = True):
        self.model.train(mode)

    def values(self, batch: dict) -> torch.Tensor:
        return self.model(batch)

    def backward(self, batch: dict, weight: float, autocast) -> dict:
        """The clipped value loss of one micro-batch, its gradient accumulated with `weight`."""
        with autocast():
            values = self.model(batch)
        loss = losses.value_loss(values, batch["old_values"], batch["returns"], batch["loss_mask"], self.cfg.value_clip,
                                 self.agg, self.cfg.max_new_tokens)
        (loss * weight).backward()
        return {"loss/value": loss.item()}

    def clip_grad_norm(self) -> dict:
        return {"critic_grad_norm": clip_grad_norm(self.params, self.cfg.grad_clip)}

    def step(self, lr: float):
        optimizer_step(self.optimizer, lr, self.params, self.shards)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict:
        """The value model's full weights (on the main process; every process must call it)."""
        return dist.full_state_dict(self.model)

    def optimizer_state(self) -> dict:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict):
        self.optimizer.load_state_dict(state)


class NoCritic:
    """The critic of the estimators that need none: its values are zeros, its other verbs do nothing."""

    def offloaded(self):
        return contextlib.nullcontext()

    def train(self, mode: bool = True):
        pass

    def values(self, batch: dict) -> torch.Tensor:
        return torch.zeros(batch["action_mask"].shape)  # no critic: no baseline

    def backward(self, batch: dict, weight: float, autocast) -> dict:
        return {}

    def clip_grad_norm(self) -> dict:
        return {}

    def step(self, lr: float):
        pass

    def zero_grad(self):
        pass

    def state_dict(self):
        return None

    def optimizer_state(self):
        return None

    def load_optimizer_state(self, state):
        pass


def make_critic(policy, cfg, device: torch.device, mixed_precision: bool) -> Critic | NoCritic:
    """The critic the estimator needs (gae), else NoCritic."""
    if not algos.ESTIMATORS[cfg.estimator].critic:
        return NoCritic()
    return Critic(policy, cfg, device, mixed_precision)
