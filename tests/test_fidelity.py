"""The released LMM-R1 rules, end to end: presets value for value, and a Sokoban win clipped to 10 for gae.

Rule-level tests live beside each rule (tests/test_algos.py, tests/test_rewards.py, tests/test_sokoban.py); this file
checks what joins them: the presets' values, the reward each paper preset uses, and the Direct-RL-Geo preset running
without --init.
"""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from envs.sokoban import Level
from rewards.sokoban import sokoban_reward
from rl import algos
from rl.config import PRESETS, Config, preset

ROOT = Path(__file__).resolve().parents[1]
PAPER = ("fre-text", "fre-multi", "mgt-geo", "mgt-percereason", "direct-rl-geo")


def test_config_defaults_are_fre_text():
    assert preset("fre-text") == dataclasses.replace(Config(), preset="fre-text")


def test_shared_values_of_every_paper_run():
    for name in PAPER + ("mgt-sokoban",):
        c = preset(name)
        batch = (128, 16, 128, 1, 4) if name == "mgt-sokoban" else (256, 16, 256, 1, 2)  # train_sokoban.sh's own
        assert (c.prompts_per_step, c.n_samples, c.train_batch_size, c.ppo_epochs, c.episodes) == batch
        assert (c.temperature, c.eps_clip, c.grad_clip, c.adam_betas, c.weight_decay) == (1.0, 0.2, 1.0,
                                                                                           (0.9, 0.95), 0.0)
        assert (c.warmup_ratio, c.min_lr_ratio, c.max_pixels) == (0.03, 0.1, 640 * 28 * 28)
        assert (c.kl_estimator, c.kl_in, c.gamma, c.lam, c.whiten) == ("k1", "reward", 1.0, 1.0, "auto")


def test_paper_presets_values():
    want = {  # name: (model, data, reward, estimator, kl, actor lr, critic lr, max new tokens, vision frozen)
        "fre-text": ("Qwen/Qwen2.5-VL-3B-Instruct", "deepscaler", "r1_math", "reinforce_baseline", 0.001, 4e-7, None,
                     4096, False),
        "fre-multi": ("Qwen/Qwen2.5-VL-3B-Instruct", "vermulti", "r1_math", "reinforce_baseline", 0.001, 1e-6, None,
                      4096, False),
        "mgt-geo": ("", "vermulti-geo", "r1_math", "gae", 0.001, 1e-6, 9e-6, 4096, False),
        "mgt-percereason": ("", "vermulti", "r1_math", "reinforce_baseline", 0.0, 4e-7, None, 8000, False),
        "direct-rl-geo": ("Qwen/Qwen2.5-VL-3B-Instruct", "vermulti-geo", "r1_math", "gae", 0.001, 1e-6, 9e-6, 4096,
                          False),
        "mgt-sokoban": ("", "sokoban:4096", "sokoban", "gae", 0.0, 1e-6, 5e-6, 8196, True),
    }
    for name, (model, data, reward, est, kl, lr, critic_lr, tokens, frozen) in want.items():
        c = preset(name)
        got = (c.model, c.data, c.reward, c.estimator, c.kl, c.actor_lr,
               c.critic_lr if est == "gae" else None, c.max_new_tokens, c.freeze_vision)
        assert got == (model, data, reward, est, kl, lr, critic_lr, tokens, frozen), name


def test_direct_rl_geo_is_mgt_geo_from_the_base_model():
    direct, geo = PRESETS["direct-rl-geo"], PRESETS["mgt-geo"]
    assert {k: v for k, v in direct.items() if k not in ("model", "out")} == \
        {k: v for k, v in geo.items() if k not in ("model", "out")}
    assert direct["model"] == "Qwen/Qwen2.5-VL-3B-Instruct" and geo["model"] == ""
    debug = preset("direct-rl-geo-debug")
    assert debug.model == "tiny" and (debug.estimator, debug.kl, debug.reward) == ("gae", 0.001, "r1_math")


def test_sokoban_win_worth_11_45_trains_as_10():
    # Level A solved in two pushes: env 10.8 (-0.1, then -0.1 + 1 + 10); format 0.5; 2 actions: 0.1;
    # 50 thinking words: 0.05. total = 10.8 + 0.5 + 0.1 + 0.05 = 11.45
    level = Level.from_text("######\n#    #\n#@$ .#\n#    #\n######")
    think = " ".join(["push"] * 50)
    out = sokoban_reward(f"<think>{think}</think><answer>right, right</answer>", level)
    assert abs(out["total"] - 11.45) < 1e-9
    # gae (the Sokoban preset), values 0, lambda = gamma = 1: the return is the clipped reward, 10 on every token.
    mask = torch.ones(1, 3)
    adv, ret = algos.compute_advantages("gae", torch.tensor([out["total"]]), mask, 1, values=torch.zeros(1, 3),
                                        whiten_advantages=False)
    assert torch.allclose(ret, torch.full((1, 3), 10.0)) and torch.allclose(adv, torch.full((1, 3), 10.0))


def test_released_behaviour_behind_each_bug_fix_is_one_flag_away():
    """--no-fail-closed-gold pays an unparseable gold 1 (counted either way); --empty-response prompt hands the
    reward the query in place of the empty response (tests/test_trainer.py), so a boxed answer in the prompt pays."""
    from rewards import get_reward

    responses = [r"<think>a</think><answer>\boxed{1}</answer>", r"\boxed{3}", r"\boxed{3}"]
    golds = ["", "$3", "3"]
    for fail_closed, accuracy in ((True, [0.0, 0.0, 1.0]), (False, [1.0, 1.0, 1.0])):
        with get_reward("r1_math", workers=1, fail_closed=fail_closed) as reward_fn:
            out = reward_fn(responses, golds)
        assert out.components["accuracy"] == accuracy and out.components["format"] == [0.5, 0.0, 0.0]
        assert (out.counts["data/gold_unparseable"], out.counts["reward/checked"]) == (2, 1)
    query = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhy is the answer "
             "\\boxed{3}?<|im_end|>\n<|im_start|>assistant\n")
    with get_reward("r1_math", workers=1) as reward_fn:
        assert reward_fn(["", query], ["3", "3"]).components["total"] == [0.0, 1.0]


@pytest.mark.slow
def test_direct_rl_geo_debug_runs_without_init(tmp_path):
    # train_mgt.py picks the preset named by --preset (its --domain only picks the default one); the model is set, so
    # no --init is asked for.
    proc = subprocess.run([sys.executable, str(ROOT / "train_mgt.py"), "--preset", "direct-rl-geo-debug",
                           "--out", str(tmp_path), "--max-steps", "1", "--save-every", "0", "--prompts-per-step", "2",
                           "--n-samples", "2", "--max-new-tokens", "8"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert (cfg["preset"], cfg["model"], cfg["estimator"], cfg["reward"]) == ("direct-rl-geo-debug", "tiny", "gae",
                                                                             "r1_math")
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1]
