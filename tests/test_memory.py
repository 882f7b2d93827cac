"""The memory planner (rl/memory.py, rl/memory_model.py, rl/memory_plan.py) against what the real model and optimizer
allocate on the CPU.

Peaks are measured as the CPU allocator's live bytes, replayed from the PyTorch profiler's memory events (every
allocation and free of the c10 allocator, in order): deterministic, unlike the process's resident set, and it sees
transient buffers that the tensors saved for backward (saved_tensors_hooks) would miss."""

import copy
import dataclasses

import pytest
import torch

from rl import losses
from rl import memory as M
from rl.batch import Rollout
from rl.config import preset
from rl.memory_model import KNOWN_CONFIGS, inspect_model, model_config
from rl.memory_plan import advise, turn_knobs
from rl.policy import response_logprobs


def test_parameters_of_the_paper_models_are_known_offline():
    three = inspect_model(model_config("Qwen/Qwen2.5-VL-3B-Instruct"))
    seven = inspect_model(model_config("Qwen/Qwen2.5-VL-7B-Instruct"))
    # the released checkpoints' safetensors hold 3,754,622,976 and 8,292,166,656 parameters
    assert sum(p.numel for p in three.params) == 3_754_622_976 and three.tied
    assert sum(p.numel for p in seven.params) == 8_292_166_656 and not seven.tied
    assert (three.hidden, three.layers, three.heads, three.kv_heads, three.intermediate, three.vocab) == \
        (2048, 36, 16, 2, 11008, 151936)
    assert (seven.hidden, seven.layers, seven.kv_heads, seven.vocab, seven.vision["depth"]) == (3584, 28, 4, 152064, 32)
    assert sum(p.numel for p in three.params if p.vision) == 668_684_288
    qwen3 = inspect_model(model_config("Qwen/Qwen3-VL-4B-Instruct"))  # 4.44B, as its model card states
    assert round(sum(p.numel for p in qwen3.params) / 1e9, 2) == 4.44 and qwen3.tied
    assert (qwen3.hidden, qwen3.layers, qwen3.kv_heads, qwen3.head_dim, qwen3.vision["depth"]) == (2560, 36, 8, 128, 24)


def test_plan_prints_the_table_and_exits(capsys, tmp_path):
    import train_fre
    import train_mgt
    train_fre.main(["--plan", "--gpu-mem-gb", "40", "--out", str(tmp_path / "never-written")])
    assert not (tmp_path / "never-written").exists()
    out = capsys.readouterr().out
    assert "Qwen/Qwen2.5-VL-3B-Instruct" in out and "3,754,622,976 parameters" in out
    for word in ("generation", "log-prob", "update", "master weights", "optimizer states", "reference",
                 "generation KV cache", "total", "first knob:"):
        assert word in out
    assert "does not fit" in out  # fp32 master weights, their gradients and the reference: over 40 GiB
    fits = M.plan_memory(preset("fre-text"), 80, 1)
    assert fits.fits and "fits: " in advise(fits)[0]
    train_mgt.main(["--domain", "geo", "--plan", "--nproc", "8"])  # no --init: planned on the 3B model
    out = capsys.readouterr().out
    assert "preset mgt-geo" in out and "critic" in out and "no --init given" in out


def test_knobs_turn_in_order():
    cfg = preset("fre-text", gradient_checkpointing=False, optim="adamw")
    info = inspect_model(model_config(cfg.model))
    steps, plan = turn_knobs(cfg, 40, 8, info)
    assert steps[0] == "--gradient-checkpointing" and plan.fits
    order = ["--gradient-checkpointing", "--micro-batch-size", "--optim adamw_8bit", "--ref-offload",
             "--gen-batch-size"]
    assert [s for s in steps if not s.startswith(tuple(order))] == []
    firsts = [next(i for i, o in enumerate(order) if s.startswith(o)) for s in steps]
    assert steps[0] == "--gradient-checkpointing" and firsts == sorted(firsts)  # one notch at a time, in order
    # The paper's FRE-Text run on one 40 GB GPU (the aim): the reference offloaded, a smaller generation batch and
    # bf16 weights over 8-bit states; the micro-batch grows back once it fits.
    lines = advise(M.plan_memory(preset("fre-text"), 40, 1, info))
    assert lines[-1].startswith("fits with: --ref-offload --gen-batch-size 4 --optim adamw_8bit_bf16 (peak 33.0 GiB")


def test_offload_and_bf16_weights_in_the_plan():
    """--ref-offload: the reference only in the log-prob phase (one GPU), nowhere with FSDP2's CPU offload;
    --critic-offload: no critic during generation; --optim adamw_8bit_bf16: bf16 weights and gradients."""
    info = inspect_model(model_config("Qwen/Qwen2.5-VL-3B-Instruct"))
    cfg = preset("mgt-geo")
    rows = lambda c, n=1: {k: p.rows for k, p in M.plan_memory(c, 80, n, info).phases.items()}
    base = rows(cfg)
    ref = rows(dataclasses.replace(cfg, ref_offload=True))
    assert base["generation"]["reference"] == base["update"]["reference"] == ref["log-prob"]["reference"] > 0
    assert ref["generation"]["reference"] == ref["update"]["reference"] == 0
    assert rows(dataclasses.replace(cfg, ref_offload=True), 8)["log-prob"]["reference"] == 0
    critic = rows(dataclasses.replace(cfg, critic_offload=True))
    assert critic["generation"]["critic"] == 0 and critic["update"]["critic"] == base["update"]["critic"] > 0
    bf16 = rows(dataclasses.replace(cfg, optim="adamw_8bit_bf16"))
    n = sum(p.numel for p in info.params)
    assert (base["update"]["master weights"], bf16["update"]["master weights"]) == (4 * n, 2 * n)
    assert bf16["update"]["gradients"] * 2 == base["update"]["gradients"]


def test_tiny_config_is_the_debug_model(tiny_checkpoint):
    planned = inspect_model(model_config("tiny"))
    built = inspect_model(model_config(tiny_checkpoint))
    assert [(p.name, p.shape) for p in planned.params if "embed" not in p.name and "lm_head" not in p.name] == \
        [(p.name, p.shape) for p in built.params if "embed" not in p.name and "lm_head" not in p.name]


def test_shards_are_fsdp2_chunks():
    for shape in [(151936, 2048), (11008,), (7, 3), (1,), (2048, 1)]:
        for n in (1, 2, 3, 8):
            assert M.shard_numel(shape, n) == torch.chunk(torch.empty(shape, device="meta"), n)[0].numel()


def _state_bytes(optimizer) -> int:
    seen = {}
    for state in optimizer.state.values():
        for key, t in state.items():
            if torch.is_tensor(t) and key != "step":  # torchao's 8-bit states: codes, scale and map tensors
                for part in [getattr(t, a) for a in t.tensor_attrs] if hasattr(t, "tensor_attrs") else [t]:
                    seen[part.untyped_storage().data_ptr()] = part.untyped_storage().nbytes()
    return sum(seen.values())


@pytest.mark.parametrize("optim", ["adamw_8bit", "adamw", "adamw_8bit_bf16"])
def test_weights_gradients_and_optimizer_states_are_exact(tiny_checkpoint, optim):
    """The planner's bytes for master weights, gradients, optimizer states, reference and critic equal what the
    tiny model and the real optimizer (bitsandbytes AdamW8bit, torch AdamW, torchao AdamW8bit over bf16 weights)
    allocate after one step."""
    from rl.optim import make_optimizer
    from rl.critic import ValueModel
    from rl.policy import load_policy

    cfg = preset("debug", model=tiny_checkpoint, optim=optim, estimator="gae", kl=0.001)
    plan = M.plan_memory(cfg, 80, 1)
    policy, _ = load_policy(tiny_checkpoint, torch.bfloat16 if optim == "adamw_8bit_bf16" else torch.float32)
    critic = ValueModel(policy)
    measured = {}
    for name, model in (("policy", policy), ("critic", critic)):
        params = list(model.parameters())
        opt = make_optimizer(params, 1e-3, kind=optim)
        sum((p.float() ** 2).sum() for p in params).backward()  # every parameter gets a gradient
        opt.step()
        measured[name] = (sum(p.nbytes for p in params), sum(p.grad.nbytes for p in params), _state_bytes(opt))
    gen, update = plan.phases["generation"].rows, plan.phases["update"].rows
    assert update["master weights"] == measured["policy"][0]
    assert update["gradients"] == measured["policy"][1]
    assert update["optimizer states"] == measured["policy"][2]
    assert gen["reference"] == measured["policy"][0]  # fp32 on the CPU (bf16 under autocast)
    assert gen["critic"] == measured["critic"][0] + measured["critic"][2]
    assert update["critic"] == sum(measured["critic"])
    if optim == "adamw_8bit":  # most of the tiny model's tensors are below bitsandbytes' 4096-element threshold
        big = [p.numel() for p in policy.parameters() if p.numel() >= M.MIN_8BIT_SIZE]
        assert big and measured["policy"][2] < 8 * sum(p.numel() for p in policy.parameters())


def _peak_bytes(fn) -> int:
    """Peak live bytes of the CPU allocator while fn runs, above where it started."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in prof.profiler.kineto_results.events():
        if event.name() == "[memory]":
            live += event.nbytes()
            peak = max(peak, live)
    return peak


def _model(vocab: int, hidden: int, inter: int):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    values = copy.deepcopy(KNOWN_CONFIGS["tiny"])
    values.pop("model_type")
    values["text_config"].update(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter)
    values["text_config"]["rope_parameters"]["mrope_section"] = [4, 6, 6] if hidden == 128 else [2, 3, 3]
    values["vision_config"].update(depth=1, out_hidden_size=hidden)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**values)).train()
    model.config._attn_implementation = "sdpa"
    return model


def _batch(rows: int, prompt: int, response: int, vocab: int) -> dict:
    """Prompts and responses of unequal lengths (left and right padding: the attention mask is needed)."""
    g = torch.Generator().manual_seed(1)
    prompts = [{"prompt_ids": torch.randint(0, vocab - 8, (prompt - 3 * i,), generator=g)} for i in range(rows)]
    responses = [torch.randint(0, vocab - 8, (response - 5 * i,), generator=g) for i in range(rows)]
    rollout = Rollout(prompts, 1, responses, [True] * rows)
    rollout.advantages = torch.randn(rollout.mask.shape, generator=g)
    return rollout.batch(range(rows), pad_id=0)


@pytest.mark.parametrize("vocab,hidden,inter,rows,prompt,response,bf16,checkpointing", [
    (151936, 64, 128, 2, 24, 80, False, True),  # tiny hidden, the real vocabulary: the LM head's chunks dominate
    (1024, 128, 704, 2, 24, 200, False, True),  # a wide MLP: the layers dominate
    (1024, 128, 704, 2, 24, 200, True, False),  # bf16 autocast over fp32 weights (its bf16 weight copies counted)
])
def test_activation_estimate_within_25_percent_of_the_measured_peak(vocab, hidden, inter, rows, prompt, response,
                                                                    bf16, checkpointing):
    """One update micro-batch (forward through the chunked log-prob path, PPO loss, backward; gradients already
    allocated, as from the second micro-batch on) on the CPU, against the planner's estimate for the same shape."""
    model = _model(vocab, hidden, inter)
    if checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    batch = _batch(rows, prompt, response, vocab)
    cfg = dataclasses.replace(preset("debug"), micro_batch_size=rows, max_prompt_len=prompt, max_new_tokens=response,
                              logprob_chunk=64, gradient_checkpointing=checkpointing, kl=0.0,
                              dtype="bf16" if bf16 else "fp32")
    update = M.plan_memory(cfg, 80, 1, inspect_model(model.config)).phases["update"].rows
    estimate = update["weights (bf16 copy)"] + update["activations"] + update["log-prob path"]

    def one_update():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logp, _ = response_logprobs(model, batch, 1.0, False, cfg.logprob_chunk)
        loss, _ = losses.policy_loss(logp, batch["old_logp"], batch["advantages"], batch["action_mask"],
                                     losses.LossSpec())
        loss.backward()

    measured = _peak_bytes(one_update)
    assert measured > 0
    assert abs(estimate - measured) <= 0.25 * measured, (estimate, measured)


@pytest.mark.parametrize("bf16", [False, True])
def test_generation_kv_cache_bytes_are_exact(tiny_checkpoint, monkeypatch, bf16):
    """The rollout engine's preallocated cache (keys fp32 under autocast: the rotary embedding is computed in the
    fp32 residual's dtype) holds exactly the planner's bytes."""
    from rl.engines import ours as engine
    from rl.policy import load_policy
    from rl.rollout import generate

    model, processor = load_policy(tiny_checkpoint)
    allocated, init = [], engine._Layer.lazy_initialization

    def counted(layer, keys, values):  # the cache's bytes when it is made (finished rows leave it later)
        init(layer, keys, values)
        allocated.append(layer.keys.nbytes + layer.values.nbytes)

    monkeypatch.setattr(engine._Layer, "lazy_initialization", counted)
    rows = [{"prompt_ids": torch.arange(5, 5 + n)} for n in (9, 6, 7)]
    cfg = preset("debug", model=tiny_checkpoint, gen_batch_size=3, n_samples=2, max_prompt_len=9,
                 max_new_tokens=5, dtype="bf16" if bf16 else "fp32")
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        generate(model, processor, rows, cfg.n_samples, max_new_tokens=cfg.max_new_tokens,
                 batch_size=cfg.gen_batch_size, stop_ids=[])
    assert sum(allocated) == M.plan_memory(cfg, 80, 1).phases["generation"].rows["generation KV cache"]


@pytest.mark.parametrize("targets,vision", [("q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", False),
                                            ("all-linear", True)])
def test_lora_adapters_and_their_bytes_are_exact(tiny_checkpoint, targets, vision):
    """The planner places the adapters where peft does (same names and shapes), and its bytes for them are what the
    model and the real 8-bit optimizer allocate; the base is frozen (no gradients or states) and is the reference."""
    from rl.lora import add_adapters
    from rl.memory_model import lora_params
    from rl.optim import make_optimizer
    from rl.policy import load_policy

    cfg = preset("debug", model=tiny_checkpoint, lora_rank=4, lora_targets=targets, lora_vision=vision, kl=0.001)
    plan = M.plan_memory(cfg, 80, 1)
    policy, _ = load_policy(tiny_checkpoint)
    add_adapters(policy, cfg)
    trained = {n.replace(".default.", "."): p for n, p in policy.named_parameters() if p.requires_grad}
    assert {p.name: p.shape for p in lora_params(plan.info, cfg)} == {n: tuple(p.shape) for n, p in trained.items()}
    opt = make_optimizer(list(trained.values()), 1e-3, kind=cfg.optim)
    sum((p ** 2).sum() for p in trained.values()).backward()
    opt.step()
    update = plan.phases["update"].rows
    assert update["master weights"] == sum(p.nbytes for p in policy.parameters())  # fp32 on the CPU
    assert update["gradients"] == sum(p.grad.nbytes for p in trained.values())
    assert update["optimizer states"] == _state_bytes(opt)
    assert plan.phases["generation"].rows["reference"] == 0


def test_lora_and_qlora_plan_the_3b_model_on_small_gpus():
    """FRE-Text with LoRA (rank 64) fits a 24 GB GPU; with QLoRA (NF4 base) its weights take about a third."""
    full = M.plan_memory(preset("fre-text", device="cuda"), 80, 1)
    lora = M.plan_memory(preset("fre-text", device="cuda", lora_rank=64), 24, 1)
    qlora = M.plan_memory(preset("fre-text", device="cuda", lora_rank=64, load_in_4bit=True), 16, 1)
    weights = [p.phases["update"].rows["master weights"] / M.GiB for p in (full, lora, qlora)]
    assert weights[0] > 13.9 and 6.5 < weights[1] < 7.5 and 2 < weights[2] < 3.5  # fp32; bf16; NF4 + bf16 rest
    assert lora.phases["update"].rows["gradients"] < 0.5 * M.GiB
    assert lora.phases["generation"].rows["reference"] == 0 < full.phases["generation"].rows["reference"]
