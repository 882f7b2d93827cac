"""--dtype bf16 on a CPU: bf16 autocast over the fp32 master weights, as on a GPU (issue 26, item 3). One step's
log-probs (the sampler's and the training forward's) and its gradient agree with fp32 within bf16's precision, and
the classroom preset learns under bf16 as it does in fp32. Skipped where the CPU lacks bf16 support."""

import json

import pytest
import torch

from rl import dist
from test_classroom import SEED, warm_cache  # noqa: F401  (its fixture: the same warm model, built once per run)

needs_bf16 = pytest.mark.skipif(not dist.cpu_bf16(), reason="this CPU reports no bf16 support (AVX-512 BF16 or AMX)")


@pytest.mark.parametrize("device, expected", [("cpu", None), ("cuda", torch.bfloat16)])
def test_auto_is_bf16_on_a_gpu_and_fp32_on_any_cpu(device, expected, monkeypatch):
    """'auto' stays fp32 on a CPU with bf16 too: measured slower on the CPU presets (bench/cpu_bf16.py)."""
    for has_bf16 in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: has_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert dist.cpu_bf16() is has_bf16
        assert dist.autocast_dtype("auto", torch.device(device)) is expected
        assert dist.autocast_dtype("bf16", torch.device(device)) is torch.bfloat16
        assert dist.autocast_dtype("fp32", torch.device(device)) is None


@pytest.fixture(scope="module")
def policy(sharp_policy):
    return sharp_policy


TOL = 0.05  # |log-prob| difference, bf16 vs fp32: bf16 keeps 8 significant bits (relative rounding 2^-9 per op);
# through two decoder layers into logits of |x| ~ 10, a few 1e-2 at most (measured here: 0.021 training forward,
# 0.018 sampler, 0.001 entropy)


@needs_bf16
def test_one_step_under_cpu_bf16_autocast_agrees_with_fp32(policy):
    """Generation (the engine's bf16 LM head), the training forward and one policy-gradient backward: bf16 autocast
    on the CPU against fp32, on the same rollout."""
    from data.sample import Sample, make_messages
    from rl.batch import encode_prompts
    from rl.policy import response_logprobs
    from rl.processor import pad_token_id
    from rl.rollout import generate

    model, processor = policy
    prompts = [Sample(messages=make_messages(q), answer="5", domain="math", meta={})
               for q in ("Solve 3x + 5 = 20 for x. Show your work briefly.", "2 + 2?")]
    rows = encode_prompts(processor, prompts)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rollout = generate(model, processor, rows, n=3, max_new_tokens=12)
    batch = rollout.batch(range(len(rollout)), pad_token_id(processor))
    mask = batch["action_mask"]
    assert mask.sum() > 20

    def step(autocast: bool):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logp, entropy = response_logprobs(model, batch, with_entropy=True, chunk_size=5)
            adv = torch.linspace(-1, 1, logp.shape[0])[:, None]
            (-(logp * adv)[mask].sum()).backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return logp.detach(), entropy, grad

    logp32, entropy32, grad32 = step(False)
    logp16, entropy16, grad16 = step(True)
    assert logp16.dtype == torch.float32  # the log-probs stay fp32 (the head's product and softmax in fp32)
    for name, got in (("training forward", logp16), ("sampler", batch["sampler_logp"]), ("entropy", entropy16)):
        diff = (got - (entropy32 if name == "entropy" else logp32))[mask].abs().max().item()
        assert 0 < diff < TOL, f"{name}: {diff:.3g}"  # > 0: bf16 really ran (not silently fp32)
    cosine = torch.nn.functional.cosine_similarity(grad16, grad32, dim=0).item()
    assert cosine > 0.999 and 0.98 < grad16.norm() / grad32.norm() < 1.02, cosine  # measured: 0.99994, 1.001


@pytest.mark.slow
@needs_bf16
def test_the_classroom_preset_learns_under_bf16(warm_cache, tmp_path, monkeypatch):
    """--preset classroom --dtype bf16 learns as in fp32, from the same warm model in the same cache folder
    (classroom-cache under the run's base temp, built once under its lock). The margins of tests/test_classroom.py's
    12-step runs, format's lowered to what the default loss reaches in fp32: +0.091 reward, +0.069 format (seed 1;
    under bf16: +0.104, +0.077)."""
    import train_fre

    monkeypatch.setattr("data.io.DEFAULT_CACHE", warm_cache)  # where --model classroom finds the warm model
    out = tmp_path / "run"
    train_fre.main(["--preset", "classroom", "--seed", str(SEED), "--out", str(out), "--max-steps", "12",
                    "--dtype", "bf16", "--eval-benchmarks", "", "--no-plots"])
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == 12

    def mean(rs, key):
        return sum(r[key] for r in rs) / len(rs)

    assert mean(steps[-4:], "reward/mean") > mean(steps[:4], "reward/mean") + 0.08
    assert mean(steps[-4:], "reward/format") > mean(steps[:4], "reward/format") + 0.05
    # the sampler's log-probs (its bf16 head) against the forward's (fp32 head): measured 0.07 at most
    assert max(r["logprob/sampler_max_diff"] for r in steps) < 0.3
