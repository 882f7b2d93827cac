"""LoRA RL (rl/lora.py): only the adapters train, the KL reference is the base model itself (adapters off, no second
copy), checkpoints hold the adapter and resume exactly, and final/ holds a merged model that stock classes load with
the adapter model's log-probs."""

import json

import pytest
import torch
from safetensors.torch import load_file

from data import load_fixture
from rl import lora
from rl.config import preset
from rl.policy import load_policy, response_logprobs
from rl.run import make_trainer
from tests.test_trainer import LengthReward


def _config(out, **kw):
    values = dict(out=str(out), lora_rank=4, lora_alpha=8.0, actor_lr=1e-2, kl=0.01, max_steps=4, save_every=2,
                  optim="adamw")
    return preset("debug", **{**values, **kw})


def _logprobs(model, batch):
    with torch.no_grad():
        return response_logprobs(model.eval(), batch)[0]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """4 steps of the debug preset with LoRA (rank 4), a checkpoint at step 2."""
    out = tmp_path_factory.mktemp("lora") / "a"
    make_trainer(_config(out), load_fixture("math"), LengthReward()).train()
    return out


@pytest.mark.slow
def test_the_reference_is_the_base_model_and_only_the_adapters_train(tmp_path):
    trainer = make_trainer(_config(tmp_path, max_steps=1), load_fixture("message"), LengthReward())
    assert trainer.ref is None and isinstance(trainer.ref_logprobs, lora.Reference)  # no second model
    trained = [n for n, p in trainer.policy.named_parameters() if p.requires_grad]
    assert trained and all(".lora_A." in n or ".lora_B." in n for n in trained)
    assert not any("visual" in n for n in trained)  # the vision tower stays frozen without --lora-vision
    base, _ = load_policy(trainer.base_model)
    rollout, _ = trainer.make_experience(trainer.prompts_for_step(0))
    batch = rollout.batch(range(len(rollout)), trainer.pad_id)
    want = _logprobs(base, batch)
    torch.testing.assert_close(rollout.ref_logp, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(rollout.old_logp, want, atol=1e-6, rtol=0)  # B = 0: the policy starts as the base
    frozen = {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if not p.requires_grad}
    trainer.train_on(rollout)
    assert all(torch.equal(p, frozen[n]) for n, p in trainer.policy.named_parameters() if not p.requires_grad)
    assert (_logprobs(trainer.policy, batch) - want).abs().max() > 1e-4  # the adapters moved the policy
    with torch.no_grad():
        ref = trainer.ref_logprobs(batch)[0]
    torch.testing.assert_close(ref, want, atol=1e-6, rtol=0)  # ... and the reference is still the base


def test_lora_vision_adapts_the_towers_blocks_not_its_merger(tmp_path):
    trainer = make_trainer(_config(tmp_path, lora_vision=True), load_fixture("message"), LengthReward())
    trained = [n for n, p in trainer.policy.named_parameters() if p.requires_grad]
    assert any("visual.blocks" in n and ".attn.qkv.lora_A." in n for n in trained)
    assert any("language_model" in n for n in trained) and not any("merger" in n for n in trained)


@pytest.mark.slow
def test_resumed_equals_uninterrupted(lora_run, tmp_path):
    """The checkpoint holds the adapter and the adapters' optimizer state: 2 steps + resume + 2 = 4 in one go."""
    ckpt = lora_run / "checkpoints" / "step_2"
    assert (ckpt / "adapter_config.json").is_file() and not (ckpt / "model.safetensors").exists()
    resumed = make_trainer(_config(tmp_path / "b", resume=str(ckpt)), load_fixture("math"), LengthReward())
    assert resumed.step == 2
    resumed.train()
    for name in ("adapter/adapter_model.safetensors", "model.safetensors"):
        a, b = load_file(lora_run / "final" / name), load_file(tmp_path / "b" / "final" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    drop = ("time/", "tokens_per_s", "mem/")
    lines = [[{k: v for k, v in json.loads(ln).items() if not k.startswith(drop)}
              for ln in open(d / "metrics.jsonl")] for d in (lora_run, tmp_path / "b")]
    assert lines[0][2:] == lines[1]


@pytest.mark.slow
def test_final_holds_a_merged_model_stock_classes_load(lora_run):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from rl.batch import encode_prompts
    from rl.rollout import generate

    final = lora_run / "final"
    assert not any("lora_" in k or "base_layer" in k for k in load_file(final / "model.safetensors"))
    merged = AutoModelForImageTextToText.from_pretrained(final)  # stock, no peft
    base, processor = load_policy(str(lora_run / "base_model"))
    with torch.no_grad():
        rollout = generate(merged, processor, encode_prompts(processor, load_fixture("math")[:2]), 2, 1.0, 1.0, 6, 2,
                           seed=0)
    batch = rollout.batch(range(len(rollout)), processor.tokenizer.pad_token_id)
    before = _logprobs(base, batch)
    adapted = PeftModel.from_pretrained(base, final / lora.ADAPTER_DIR)  # peft's own loader reads our adapter
    want = _logprobs(adapted.get_base_model(), batch)  # the model with the adapter layers inside
    assert (want - before).abs().max() > 1e-4  # it trained
    torch.testing.assert_close(_logprobs(merged, batch), want, atol=1e-5, rtol=0)
    evaluated, _ = load_policy(str(final / lora.ADAPTER_DIR))  # eval.py's path for an adapter folder
    torch.testing.assert_close(_logprobs(evaluated, batch), want, atol=1e-5, rtol=0)


def test_merged_state_dict_is_w_plus_scaled_ba():
    w, a, b = torch.randn(3, 5), torch.randn(2, 5), torch.randn(3, 2)
    state = {"m.q.base_layer.weight": w, "m.q.base_layer.bias": torch.ones(3), "m.q.lora_A.default.weight": a,
             "m.q.lora_B.default.weight": b, "m.norm.weight": torch.zeros(5)}
    merged = lora.merged_state_dict(state, 0.5)
    assert set(merged) == {"m.q.weight", "m.q.bias", "m.norm.weight"}
    torch.testing.assert_close(merged["m.q.weight"], w + 0.5 * b @ a)
    assert torch.equal(state["m.q.base_layer.weight"], w)  # pure


@pytest.mark.parametrize("flags,message", [
    (dict(load_in_4bit=True), "--load-in-4bit: needs --lora-rank"),
    (dict(lora_vision=True), "--lora-vision: needs --lora-rank"),
    (dict(lora_rank=4, estimator="gae"), "critic would be a second full model"),
    (dict(lora_rank=4, lora_vision=True, freeze_vision=True), "contradict"),
    (dict(lora_rank=4, lora_alpha=0.0), "--lora-alpha 0.0: must be a positive number"),
    (dict(lora_rank=4, lora_dropout=1.0), "--lora-dropout 1.0: must lie in [0, 1)"),
])
def test_lora_flags_that_mean_nothing_are_one_line_errors(flags, message):
    from rl.config import invalid

    assert message in (invalid(preset("debug", **flags)) or "")


def test_4bit_base_is_refused_on_a_cpu(tmp_path):
    with pytest.raises(SystemExit, match="--load-in-4bit: bitsandbytes' 4-bit base needs a CUDA GPU"):
        make_trainer(_config(tmp_path, load_in_4bit=True), load_fixture("math"), LengthReward())


def test_unknown_target_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="--lora-targets nonexistent_proj"):
        make_trainer(_config(tmp_path, lora_targets="nonexistent_proj"), load_fixture("math"), LengthReward())


@pytest.mark.slow
def test_lora_trains_with_packing_checkpointing_and_8bit_adam(tmp_path):
    """One step with the frugal parts on: packed micro-batches, gradient checkpointing, 8-bit Adam."""
    from rewards_for_tests import Spread

    cfg = _config(tmp_path, max_tokens_per_micro=512, gradient_checkpointing=True, optim="adamw_8bit", max_steps=1,
                  prompts_per_step=2, n_samples=2, max_new_tokens=3, train_batch_size=4, micro_batch_size=2,
                  save_every=0, warmup_ratio=0.0)
    trainer = make_trainer(cfg, load_fixture("message"), Spread())
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if p.requires_grad}
    trainer.train()
    metrics = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["grad_norm"] > 0
    assert any(not torch.equal(before[n], p) for n, p in trainer.policy.named_parameters() if n in before)


@pytest.mark.slow
def test_triton_kernels_give_the_lora_models_logprobs_and_adapter_gradients(tmp_path):
    """A packed micro-batch of image prompts through the LoRA policy: the Triton kernels (varlen attention in the
    language model and the vision tower, fused log-prob; interpreted on the CPU) against the torch references, values
    and the adapters' gradients."""
    import lmm_kernels

    if not lmm_kernels.triton_runs_on(torch.device("cpu"))[0]:
        pytest.skip("needs TRITON_INTERPRET=1 (tests/conftest.py sets it)")
    cfg = _config(tmp_path, kernels="triton", max_tokens_per_micro=512, prompts_per_step=1, n_samples=2,
                  max_new_tokens=3)
    trainer = make_trainer(cfg, load_fixture("message"), LengthReward())
    assert trainer.kernels.name == "triton"
    torch.manual_seed(0)
    for p in trainer.policy.parameters():  # B = 0 at the start: give the adapters a value and a gradient
        if p.requires_grad:
            p.data.normal_(std=0.05)
    rollout = trainer.sample(trainer.encode(trainer.prompts_for_step(0))[0])
    batch = rollout.batch(range(len(rollout)), trainer.pad_id, packed=True)  # 2 responses with their images

    def run(reference: bool):
        trainer.policy.zero_grad()
        context = lmm_kernels.reference_attention(trainer.policy, trainer.kernels) if reference else \
            torch.autocast("cpu", enabled=False)
        with context:
            fn = lmm_kernels.select("torch", torch.device("cpu")).logprobs if reference else trainer.kernels.logprobs
            logp, _ = trainer.policy_logprobs(batch, fn)
        (logp * batch["action_mask"]).sum().backward()
        return logp.detach(), {n: p.grad.clone() for n, p in trainer.policy.named_parameters() if p.requires_grad}

    (logp, grads), (ref, ref_grads) = run(False), run(True)
    torch.testing.assert_close(logp, ref, atol=1e-4, rtol=0)
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], atol=1e-4, rtol=1e-3, msg=name)


def test_the_adapter_names_its_local_base_by_absolute_path(tmp_path, monkeypatch):
    """eval.py --model <run>/final/adapter works from any folder: a run given a relative --out still writes an
    adapter that names its local base absolutely."""
    monkeypatch.chdir(tmp_path)
    trainer = make_trainer(_config("rel", max_steps=1), load_fixture("math"), LengthReward())
    assert trainer.adapters.peft_config["default"].base_model_name_or_path == str(tmp_path / "rel" / "base_model")
