"""Qwen2-VL and Qwen3-VL beside Qwen2.5-VL, through the same code: a tiny random model of each family built offline
(`--model tiny-qwen2-vl`, `tiny-qwen3-vl`), its processor (image-only where torchvision is missing), generation by our
engine with log-probs equal to the training forward's, packed micro-batches equal to padded ones (each family's
M-RoPE positions and vision tower, through the varlen attention routing too), a debug run whose final checkpoint
stock classes load and eval.py scores, and LoRA on the vision tower's blocks placed where the planner counts them."""

import json

import pytest
import torch

from data import load_fixture
from data.sample import Sample, make_messages
from rl.batch import encode_prompts
from rl.config import TINY_MODELS, preset
from rl.policy import load_policy, response_logprobs
from rl.rollout import generate
from rl.tiny_model import build_tiny_checkpoint

FAMILIES = {family: name for name, family in TINY_MODELS.items() if family != "qwen2_5_vl"}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_checkpoint(request, tmp_path_factory):
    path = build_tiny_checkpoint(tmp_path_factory.mktemp(request.param) / "model", family=request.param)
    return request.param, str(path)


def test_generation_logprobs_and_packing(family_checkpoint):
    from lmm_kernels.hf_attention import pack_vision_attention, register

    family, path = family_checkpoint
    model, processor = load_policy(path)
    assert json.loads((model.config.to_json_string()))["model_type"] == family
    image = load_fixture("message")[0].images[0]
    samples = [Sample(make_messages("Two pictures: which is larger?", [image, image]), "1"),
               Sample(make_messages("Solve 3x + 5 = 20."), "5"), Sample(make_messages("One picture?", [image]), "2")]
    prompts = encode_prompts(processor, samples)
    assert [len(p.get("image_grid_thw", ())) for p in prompts] == [2, 0, 1]
    with torch.no_grad():
        rollout = generate(model, processor, prompts, 2, 1.0, 1.0, 5, 3, seed=0)
        pad = processor.tokenizer.pad_token_id
        padded = response_logprobs(model, rollout.batch(range(len(rollout)), pad))[0]
        mask = rollout.mask[:, :padded.shape[1]]
        torch.testing.assert_close(padded[mask], rollout.sampler_logp[:, :padded.shape[1]][mask], atol=1e-5, rtol=0)
        register()
        for impl in ("sdpa", "torch_varlen"):  # torch_varlen: the Triton kernels' routing, with the torch kernel
            model.set_attn_implementation(impl)
            pack_vision_attention(model)
            packed = response_logprobs(model, rollout.batch(range(len(rollout)), pad, packed=True))[0]
            torch.testing.assert_close(packed, padded, atol=2e-5, rtol=0, msg=impl)
    model.set_attn_implementation("sdpa")


def test_lora_on_the_vision_blocks_is_where_the_planner_counts_it(family_checkpoint):
    from rl.lora import add_adapters
    from rl.memory import plan_memory
    from rl.memory_model import lora_params

    family, path = family_checkpoint
    cfg = preset("debug", model=path, lora_rank=4, lora_vision=True)
    model, _ = load_policy(path)
    add_adapters(model, cfg)
    trained = {n.replace(".default.", "."): tuple(p.shape) for n, p in model.named_parameters() if p.requires_grad}
    assert any(".visual.blocks." in f".{n}" for n in trained) and not any("merger" in n for n in trained)
    assert {p.name: p.shape for p in lora_params(plan_memory(cfg, 80, 1).info, cfg)} == trained


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_debug_run_then_eval(family, tmp_path, capsys):
    """`train_fre.py --preset debug --model tiny-<family>` on image prompts, packed, then eval.py on its final/."""
    import eval as eval_cli
    import train_fre
    from transformers import AutoModelForImageTextToText

    out = tmp_path / "run"
    train_fre.main(["--preset", "debug", "--model", FAMILIES[family], "--data", "fixture:message", "--out", str(out),
                    "--max-steps", "2", "--episodes", "2", "--max-tokens-per-micro", "1024", "--no-plots"])
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == 2 and all(m["grad_norm"] > 0 for m in steps)
    assert type(AutoModelForImageTextToText.from_pretrained(out / "final")).__name__.lower().startswith(
        family.replace("_", ""))
    eval_cli.main(["--model", str(out / "final"), "--benchmarks", "mathvista,blink", "--limit", "2",
                   "--max-new-tokens", "8", "--workers", "0", "--quiet"])
    results = json.loads((out / "final" / "eval" / "results.json").read_text())
    assert set(results["benchmarks"]) == {"mathvista", "blink"}
    assert "| BLINK val |" in capsys.readouterr().out
