"""The trainer on image prompts: pixels flow through generation, log-probs and backward into the vision tower
(or not, when it is frozen); KL as a loss; the reference model exists only when kl > 0."""

import math
import shutil
from types import SimpleNamespace

import pytest
import torch

from data import load_fixture
from rl.batch import encode_prompts
from rl.config import preset
from rl.run import make_trainer


class LengthReward:
    """Any reward with spread across a group gives non-zero advantages."""

    def __call__(self, responses, golds, metas):
        assert len(responses) == len(golds) == len(metas) and all("domain" in m for m in metas)
        return SimpleNamespace(components={"total": [len(set(r)) / 10 for r in responses]}, counts={})

    def close(self):
        pass


class RecordingReward(LengthReward):
    """LengthReward that keeps the texts it scores, one list per call."""

    def __init__(self):
        self.seen = []

    def __call__(self, responses, golds, metas):
        self.seen.append(list(responses))
        return super().__call__(responses, golds, metas)


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
    trainer = make_trainer(cfg, samples, LengthReward())
    assert trainer.ref is not None
    visual, lm = _snapshot(trainer.policy.model.visual), _snapshot(trainer.policy.model.language_model)
    trainer.train()
    assert _changed(lm, trainer.policy.model.language_model)
    assert _changed(visual, trainer.policy.model.visual) is not freeze_vision
    assert not _changed(visual, trainer.ref.model.visual)  # the reference stays frozen


@pytest.mark.parametrize("estimator,optim", [("reinforce_baseline", "adamw_8bit"), ("gae", "adamw_8bit"),
                                             ("gae", "adamw_8bit_bf16")])
def test_resumed_equals_uninterrupted(tmp_path, estimator, optim):
    """4 steps in one go == 2 steps, stop, resume from the step-2 checkpoint, 2 more (weights and metrics). With
    bf16 weights the torchao 8-bit states and the stochastic rounding's random stream resume too."""
    import json

    from safetensors.torch import load_file

    def config(out, **kw):
        return preset("debug", out=str(out), estimator=estimator, max_steps=4, save_every=2, kl=0.01, optim=optim,
                      **kw)

    whole = make_trainer(config(tmp_path / "a"), load_fixture("math"), LengthReward())
    whole.train()
    resumed = make_trainer(config(tmp_path / "b", resume=str(tmp_path / "a" / "checkpoints" / "step_2")),
                      load_fixture("math"), LengthReward())
    assert resumed.step == 2
    resumed.train()
    a, b, base = (load_file(tmp_path / d) for d in ("a/final/model.safetensors", "b/final/model.safetensors",
                                                     "a/base_model/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {v.dtype for v in a.values()} == {torch.bfloat16 if optim == "adamw_8bit_bf16" else torch.float32}
    assert any(not torch.equal(a[k].float(), base[k].float()) for k in a)  # it trained
    drop = ("time/", "tokens_per_s", "mem/")
    lines = [[{k: v for k, v in json.loads(ln).items() if not k.startswith(drop)}
              for ln in open(tmp_path / d / "metrics.jsonl")] for d in ("a", "b")]
    assert lines[0][2:] == lines[1] and [m["step"] for m in lines[1]] == [3, 4]


def test_no_reference_model_without_kl(tmp_path):
    cfg = preset("debug", out=str(tmp_path), kl=0.0)
    assert make_trainer(cfg, load_fixture("math"), LengthReward()).ref is None


def test_too_few_samples_is_a_clear_error(tmp_path):
    cfg = preset("debug", out=str(tmp_path), prompts_per_step=1000)
    with pytest.raises(ValueError, match="fewer than --prompts-per-step"):
        make_trainer(cfg, load_fixture("math"), LengthReward())


@pytest.mark.parametrize("mode", ["zero", "prompt"])
def test_empty_response_is_scored_as_released_only_when_asked(tmp_path, monkeypatch, mode):
    """--empty-response prompt: the reward reads the whole query (prompt + response, special tokens kept) in place of
    an empty response, as the released verifiers' `get_response_from_query(q) or q` do; 'zero' passes it empty."""
    import rl.trainer as trainer_module
    from rl.batch import Rollout

    real = trainer_module.generate

    def first_response_empty(*args, **kwargs):
        r = real(*args, **kwargs)
        return Rollout(r.prompts, r.n, [r.responses[0][:0]] + r.responses[1:], [True] + r.finished[1:])

    monkeypatch.setattr(trainer_module, "generate", first_response_empty)
    cfg = preset("debug", out=str(tmp_path), empty_response=mode)
    samples = load_fixture("math")
    trainer = make_trainer(cfg, samples, RecordingReward())
    trainer.make_experience(samples[:cfg.prompts_per_step])
    texts = trainer.reward_fn.seen[0]
    prompt_ids = encode_prompts(trainer.processor, samples[:1])[0]["prompt_ids"]
    query = trainer.tokenizer.decode(prompt_ids)
    assert query.endswith("<|im_start|>assistant\n") and "<|im_start|>user" in query
    assert texts[0] == ("" if mode == "zero" else query)


def test_offloaded_models_visit_the_device_only_for_their_phases(tmp_path, monkeypatch):
    """--ref-offload: the reference is placed on the device around the log-prob phase (its forward runs inside);
    --critic-offload: the critic and its optimizer states are placed on the CPU around generation. (A CPU run has
    nothing to move: `placed` is recorded here, and tested on its own below.)"""
    import contextlib

    import rl.trainer as trainer_module

    events = []

    import rl.critic as critic_module

    @contextlib.contextmanager
    def recording(module, device, optimizer=None, enabled=True):
        name = "ref" if module is trainer.ref else "critic" if module is trainer.critic.model else "?"
        events.append(("enter", name, device.type, optimizer is trainer.critic.optimizer, enabled))
        yield
        events.append(("exit", name))

    real_generate = trainer_module.generate
    monkeypatch.setattr(trainer_module, "placed", recording)
    monkeypatch.setattr(critic_module, "placed", recording)
    monkeypatch.setattr(trainer_module, "generate", lambda *a, **k: events.append("generate") or real_generate(*a, **k))
    cfg = preset("debug", out=str(tmp_path), estimator="gae", kl=0.001, ref_offload=True, critic_offload=True)
    samples = load_fixture("math")
    trainer = make_trainer(cfg, samples, LengthReward())
    ref_forward = trainer.ref_logprobs.forward
    monkeypatch.setattr(trainer.ref_logprobs, "forward", lambda *a, **k: events.append("ref") or ref_forward(*a, **k))
    trainer.make_experience(samples[:cfg.prompts_per_step])
    assert events[:3] == [("enter", "critic", "cpu", True, True), "generate", ("exit", "critic")]
    assert events[3] == ("enter", "ref", trainer.device.type, False, True) and events[-1] == ("exit", "ref")
    assert set(events[4:-1]) == {"ref"}


def test_placed_moves_and_always_moves_back(monkeypatch):
    import rl.offload as offload

    moves = []
    monkeypatch.setattr(offload, "move", lambda module, device, optimizer=None: moves.append(torch.device(device).type))
    module = torch.nn.Linear(2, 2)
    with offload.placed(module, torch.device("cuda")):
        assert moves == ["cuda"]
    assert moves == ["cuda", "cpu"]
    with pytest.raises(RuntimeError), offload.placed(module, torch.device("cuda")):
        raise RuntimeError("a failing phase")
    assert moves == ["cuda", "cpu"] * 2
    with offload.placed(module, torch.device("cuda"), enabled=False), offload.placed(module, torch.device("cpu")):
        pass
    assert moves == ["cuda", "cpu"] * 2  # disabled, or already there: nothing moves


def test_move_keeps_parameters_and_carries_optimizer_states():
    from rl.offload import move

    module = torch.nn.Linear(64, 64)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    module(torch.ones(1, 64)).sum().backward()
    opt.step()
    params = list(module.parameters())
    move(module, torch.device("cpu"), opt)
    assert [id(p) for p in module.parameters()] == [id(p) for p in params] and set(opt.state) == set(params)
    assert all(s["step"].dim() == 0 and s["exp_avg"].device.type == "cpu" for s in opt.state.values())


def test_critic_as_released_value_head_and_its_own_vision_tower(tmp_path):
    """The released critic: a bias-free value head with weights ~ N(0, 1/(H+1)); --freeze-vision (Sokoban's
    --freeze_prefix visual) freezes the actor's vision tower only."""
    cfg = preset("debug", out=str(tmp_path), estimator="gae", freeze_vision=True)
    trainer = make_trainer(cfg, load_fixture("message"), LengthReward())
    head = trainer.critic.model.value_head
    hidden = trainer.policy.get_output_embeddings().weight.shape[1]
    assert head.bias is None and head.weight.shape == (1, hidden)
    assert 0.5 / (hidden + 1) < head.weight.std().item() < 1.5 / (hidden + 1)
    assert not any(p.requires_grad for p in trainer.policy.model.visual.parameters())
    assert all(p.requires_grad for p in trainer.critic.model.parameters())
    assert any(p is q for p in trainer.critic.params for q in trainer.critic.model.backbone.visual.parameters())


def test_schedule_length_is_the_released_count(tmp_path):
    """The released schedule spans ceil(episodes * (prompts * n_samples // train_batch * epochs)) updates: with 63
    prompts, 4 samples, train batch 8, 2 episodes: ceil(2 * (252 // 8)) = 62, though 3 rollout steps of 16 prompts
    per episode run 2 x 3 x 8 = 48 (the last partial rollout is dropped). --max-steps: the run's own updates (the
    debug preset: 4 steps of 2)."""
    samples = load_fixture("math")[:63]
    cfg = preset("debug", out=str(tmp_path), max_steps=0, episodes=2, prompts_per_step=16, n_samples=4,
                 train_batch_size=8)
    trainer = make_trainer(cfg, samples, LengthReward())
    assert (trainer.total_steps * trainer.updates_per_step, trainer.total_updates) == (2 * 3 * 8, 62)
    assert make_trainer(preset("debug", out=str(tmp_path / "b")), samples, LengthReward()).total_updates == 8


@pytest.mark.parametrize("mode", ["keep", "eos"])
def test_truncated_response_end_as_released_only_when_asked(tmp_path, mode):
    """--truncated-end eos (the released Actor.process_sequences): a response cut at --max-new-tokens has its last
    sampled token overwritten with the end token, which the reward text then drops and the update scores."""
    cfg = preset("debug", out=str(tmp_path), truncated_end=mode)
    samples = load_fixture("math")
    trainer = make_trainer(cfg, samples, RecordingReward())
    rollout, _ = trainer.make_experience(samples[:cfg.prompts_per_step])
    eos, cut = trainer.tokenizer.eos_token_id, [i for i, done in enumerate(rollout.finished) if not done]
    assert cut  # the random model rambles
    ends = [int(rollout.responses[i][-1]) == eos for i in cut]
    assert all(ends) if mode == "eos" else not any(ends)
    for i in cut:
        text = trainer.tokenizer.decode(rollout.responses[i], skip_special_tokens=True)
        assert trainer.reward_fn.seen[0][i] == text
        if mode == "eos":  # the last token's log-prob is the end token's, recomputed by the training forward
            last = rollout.responses[i].numel() - 1
            assert rollout.old_logp[i, last] != rollout.sampler_logp[i, last]


@pytest.mark.parametrize("packed", [0, 256])
def test_a_micro_batch_of_empty_responses_still_trains(tmp_path, monkeypatch, packed):
    """A micro-batch whose responses are all empty (the model ended at once) has no response token: its loss is 0,
    and its backward still runs (it once found no graph and stopped the run)."""
    import rl.trainer as trainer_module
    from rl.batch import Rollout

    real = trainer_module.generate

    def first_response_empty(*args, **kwargs):
        r = real(*args, **kwargs)
        return Rollout(r.prompts, r.n, [r.responses[0][:0]] + r.responses[1:], [True] + r.finished[1:])

    monkeypatch.setattr(trainer_module, "generate", first_response_empty)
    cfg = preset("debug", out=str(tmp_path), micro_batch_size=1, max_tokens_per_micro=packed)
    samples = load_fixture("math")
    trainer = make_trainer(cfg, samples, LengthReward())
    rollout, _ = trainer.make_experience(samples[:cfg.prompts_per_step])
    assert rollout.mask[0].sum() == 0
    stats = trainer.train_on(rollout)
    assert math.isfinite(stats["loss/policy"]) and trainer.update_step == trainer.updates_per_step


class _Canary:
    """Unpickling it creates a file: the mark of a checkpoint that ran code on load."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture(scope="module")
def gae_checkpoint(tmp_path_factory):
    """checkpoints/step_2 of a run with a critic: every file that resume reads."""
    out = tmp_path_factory.mktemp("gae") / "run"
    make_trainer(preset("debug", out=str(out), estimator="gae", max_steps=2, save_every=2), load_fixture("math"),
                 LengthReward()).train()
    return out / "checkpoints" / "step_2"


def _resume_from(ckpt, tmp_path):
    return make_trainer(preset("debug", out=str(tmp_path / "b"), estimator="gae", resume=str(ckpt)),
                        load_fixture("math"), LengthReward())


@pytest.mark.parametrize("file,key", [("trainer_state.pt", "optimizer"), ("critic.pt", "value_head.weight")])
def test_a_crafted_checkpoint_file_is_refused_and_runs_nothing(gae_checkpoint, tmp_path, file, key):
    from rl.checkpoint import CheckpointError

    ckpt = tmp_path / "step_2"
    shutil.copytree(gae_checkpoint, ckpt)
    torch.save({key: _Canary(tmp_path / "canary")}, ckpt / file)
    with pytest.raises(CheckpointError, match=f"{file}: refused, it holds more than tensors and plain data"):
        _resume_from(ckpt, tmp_path)
    assert not (tmp_path / "canary").exists()


def test_critic_from_an_older_version_is_refused_with_the_reason(gae_checkpoint, tmp_path):
    """A checkpoint whose critic still has the old value-head bias does not resume silently into another critic."""
    from rl.checkpoint import CheckpointError

    ckpt = tmp_path / "step_2"
    shutil.copytree(gae_checkpoint, ckpt)
    state = torch.load(ckpt / "critic.pt")
    torch.save({**state, "value_head.bias": torch.zeros(1)}, ckpt / "critic.pt")
    with pytest.raises(CheckpointError, match="value-head bias"):
        _resume_from(ckpt, tmp_path)
