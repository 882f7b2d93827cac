"""bench/vs_trl.py: its `trl-gpu` side changes where TRL's fused LM head projects, not what it computes; `--heads`
times both heads; its table sets every side against each TRL run. The tests that need TRL are skipped where it is not
installed (bench/requirements-trl.txt)."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import vs_trl  # noqa: E402  (a bench script: bench/ on sys.path, as when it runs)


def _tiny_causal_lm():
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return Qwen2ForCausalLM(config).float()


def test_gpu_head_projects_the_completion_only_with_the_same_log_probs_and_gradient(monkeypatch):
    trl_utils = pytest.importorskip("trl.trainer.utils", reason="TRL is not installed (bench/requirements-trl.txt)")
    monkeypatch.setattr(trl_utils, "_use_triton", trl_utils._use_triton)  # restored after the test
    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", trl_utils._ChunkedLogProbFunction)
    rows = []
    vs_trl.count_head_rows(trl_utils, rows)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 96, (3, 12), generator=g)
    attention = torch.ones_like(ids)
    attention[0, :3] = 0  # left-padded prompt
    attention[1, -4:] = 0  # a completion that ended early
    completion = 5  # as GRPOTrainer._get_per_token_logps_and_entropies labels them
    labels = ids.masked_fill(attention == 0, -100)
    labels[:, :-completion] = -100

    def score():
        model = _tiny_causal_lm()
        trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy"))
        out = model(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True)
        (out.log_probs * torch.linspace(-1, 1, out.log_probs.numel()).view_as(out.log_probs)).sum().backward()
        return out.log_probs.detach(), out.entropy.detach(), model.lm_head.weight.grad, rows.pop()

    logp_cpu, entropy_cpu, grad_cpu, rows_cpu = score()
    vs_trl.gpu_head(trl_utils)
    logp_gpu, entropy_gpu, grad_gpu, rows_gpu = score()
    assert rows_cpu == 3 * 11  # every position but the last, prompt and padding too
    assert rows_gpu == int((labels[:, 1:] != -100).sum()) == 5 + 5 + 1  # the labelled completion tokens only
    torch.testing.assert_close(logp_gpu, logp_cpu)
    torch.testing.assert_close(entropy_gpu, entropy_cpu)
    torch.testing.assert_close(grad_gpu, grad_cpu)


def _side(name, cpu, peak):
    phases = dict.fromkeys(vs_trl.PHASES, cpu)
    return {"side": name, "cpu": phases, "wall": phases, "peak": {"step": peak * vs_trl.GiB},
            "start": {"step": 0}}


def test_table_sets_every_side_against_each_trl_run():
    results = [_side("trl 1.16.0, CPU head", 10.0, 4), _side("trl 1.16.0, GPU head", 5.0, 2),
               _side("ours (recompute)", 3.0, 1), _side("ours (sampler)", 2.0, 1)]
    lines = vs_trl.table(results).splitlines()
    ratios = {line[:46].strip(): line[46:].split() for line in lines if " / " in line[:46]}
    assert list(ratios) == [
        "trl 1.16.0, GPU head / trl 1.16.0, CPU head", "ours (recompute) / trl 1.16.0, CPU head",
        "ours (sampler) / trl 1.16.0, CPU head", "ours (recompute) / trl 1.16.0, GPU head",
        "ours (sampler) / trl 1.16.0, GPU head"]
    assert ratios["ours (recompute) / trl 1.16.0, GPU head"][-1] == "0.50x"  # peak
    assert ratios["ours (sampler) / trl 1.16.0, GPU head"][0] == "0.40x"  # CPU time of the first phase
    assert ratios["trl 1.16.0, GPU head / trl 1.16.0, CPU head"][0] == "0.50x"


def test_heads_times_the_gemm_ours_and_trls(tiny_checkpoint):
    pytest.importorskip("trl.kernels", reason="TRL is not installed (bench/requirements-trl.txt)")
    r = vs_trl.worker_heads(SimpleNamespace(model=tiny_checkpoint, micro_batch=2, new_tokens=4))
    assert r["rows"] == 8 and r["chunk"] > 0
    assert list(r["times"]) == ["one logits GEMM", "ours, loss gradient in the forward",
                                "ours, forward + backward (recomputed)", "TRL, forward + backward (with entropy)",
                                "TRL, forward without gradient"]
    assert all(t >= 0 for t in r["times"].values())
