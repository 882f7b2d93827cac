"""Every knob of a run in one dataclass, the paper's runs as named presets, and the command line built from both.

Defaults are the values of LMM-R1's FRE-Text run (REINFORCE++-baseline on DeepScaleR). `--preset NAME` starts from a
preset; any flag given on the command line overrides it.
"""

import argparse
import dataclasses
import json
from dataclasses import dataclass, field


def knob(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Config:
    # run
    preset: str = knob("fre-text", "named preset the other defaults come from (see --list-presets)")
    model: str = knob("Qwen/Qwen2.5-VL-3B-Instruct", "hub id or local checkpoint dir; 'tiny' builds a tiny random "
                      "Qwen2.5-VL offline")
    data: str = knob("deepscaler", "'deepscaler', 'fixture', a hub id, or a .jsonl file (plain or LMM-R1 message)")
    out: str = knob("runs/fre-text", "output dir: metrics.jsonl, checkpoints/step_N, final/")
    resume: str = knob("", "continue a run from one of its checkpoints (<out>/checkpoints/step_N)")
    seed: int = knob(42, "random seed (data order, sampling, init of the value head)")
    max_samples: int = knob(0, "use only the first N samples of the data (0 = all)")
    on_bad_row: str = knob("raise", "a malformed data row: 'raise' (error naming file and line) or 'skip' (counted)",
                           choices=["raise", "skip"])
    device: str = knob("auto", "'auto' (cuda if available), 'cuda', 'cpu'")
    dtype: str = knob("auto", "compute dtype (bf16 autocast over fp32 master weights): 'auto' = bf16 on GPU, fp32 on "
                      "CPU", choices=["auto", "bf16", "fp32"])
    attn: str = knob("sdpa", "attention implementation passed to transformers (sdpa, eager, flash_attention_2)")
    kernels: str = knob("triton", "compute kernels: 'triton' (fused log-prob/entropy, fused PPO+KL loss, packed varlen "
                        "attention) or their 'torch' references; torch is used where Triton cannot run (logged)",
                        choices=["triton", "torch"])
    kernel_check_every: int = knob(0, "every N optimizer steps recompute one micro-batch with the torch references, "
                                   "log kernel/max_abs_diff and stop above --kernel-check-tol (0 = off)")
    kernel_check_tol: float = knob(0.0, "max |log-prob difference| of the shadow check "
                                   "(0 = 1e-3 in fp32, 5e-2 in bf16)")
    gradient_checkpointing: bool = knob(True, "recompute activations in backward (memory for time)")
    freeze_vision: bool = knob(False, "freeze the vision tower (the paper does so only for Sokoban)")
    # rollout
    prompts_per_step: int = knob(256, "prompts per rollout step (rollout batch size)")
    n_samples: int = knob(16, "samples per prompt (the group of GRPO/RLOO/REINFORCE++-baseline)")
    temperature: float = knob(1.0, "sampling temperature (log-probs are computed at the same temperature)")
    top_p: float = knob(1.0, "nucleus sampling; 1.0 = sample from the full distribution")
    max_new_tokens: int = knob(4096, "max generated tokens per response")
    max_prompt_len: int = knob(1024, "prompts longer than this (tokens, incl. image tokens) are skipped and counted")
    max_pixels: int = knob(640 * 28 * 28, "images are resized to at most this many pixels")
    min_pixels: int = knob(4 * 28 * 28, "images are resized to at least this many pixels")
    gen_batch_size: int = knob(8, "prompts per generate() call")
    # algorithm
    estimator: str = knob("reinforce_baseline", "advantage estimator",
                          choices=["reinforce_baseline", "grpo", "rloo", "gae", "reinforce"])
    kl: float = knob(0.001, "KL coefficient beta; 0 disables the reference model")
    kl_estimator: str = knob("k1", "KL estimator", choices=["k1", "k2", "k3"])
    kl_in: str = knob("reward", "where the KL goes: 'reward' (per-token penalty, LMM-R1) or 'loss' (GRPO-style)",
                      choices=["reward", "loss"])
    eps_clip: float = knob(0.2, "PPO ratio clip epsilon")
    value_clip: float = knob(0.2, "critic value clip (gae)")
    gamma: float = knob(1.0, "discount")
    lam: float = knob(1.0, "GAE lambda")
    loss_agg: str = knob("seq-mean-token-mean", "loss aggregation",
                         choices=["seq-mean-token-mean", "token-mean"])
    whiten: str = knob("auto", "normalise advantages over all valid tokens of the rollout batch; 'auto' = on for "
                       "reinforce_baseline/reinforce/gae, off for grpo/rloo", choices=["auto", "on", "off"])
    # optimisation
    actor_lr: float = knob(4e-7, "policy learning rate")
    critic_lr: float = knob(9e-6, "critic learning rate (gae)")
    adam_betas: tuple = knob((0.9, 0.95), "Adam betas", nargs=2, type=float)
    weight_decay: float = knob(0.0, "AdamW weight decay")
    warmup_ratio: float = knob(0.03, "linear warmup, fraction of all optimizer steps")
    min_lr_ratio: float = knob(0.1, "cosine decay ends at this fraction of the lr")
    grad_clip: float = knob(1.0, "max global grad norm")
    optim: str = knob("adamw_8bit", "optimizer: bitsandbytes 8-bit AdamW or torch AdamW",
                      choices=["adamw_8bit", "adamw"])
    train_batch_size: int = knob(256, "samples per optimizer step")
    micro_batch_size: int = knob(4, "samples per forward/backward (gradient accumulation up to train_batch_size)")
    ppo_epochs: int = knob(1, "passes over each rollout batch")
    episodes: int = knob(2, "passes over the data set")
    max_steps: int = knob(0, "stop after this many rollout steps (0 = episodes decide)")
    logprob_chunk: int = knob(128, "tokens per chunk of the log-prob computation (bounds the logits in memory)")
    # reward
    reward: str = knob("r1_math", "reward function by name (format + accuracy)")
    reward_workers: int = knob(2, "worker processes that verify answers")
    reward_timeout: float = knob(5.0, "seconds per answer check before it counts as wrong")
    # output
    save_every: int = knob(50, "checkpoint every N rollout steps (0 = only final)")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


# The paper's runs and offline debug variants. Values not named here are the defaults (FRE-Text).
_DEBUG = dict(model="tiny", data="fixture", device="cpu", dtype="fp32", kernels="torch", prompts_per_step=4,
              n_samples=4, max_new_tokens=24, max_prompt_len=512, gen_batch_size=4, train_batch_size=8,
              micro_batch_size=8,
              episodes=1, max_steps=4, actor_lr=1e-4, critic_lr=1e-4, save_every=2, reward_workers=1,
              max_pixels=112 * 112, gradient_checkpointing=False)
# Stage 2 (MGT) continues from the FRE-Text checkpoint (--init); the reference model is that checkpoint.
_MGT = {
    "geo": dict(data="vermulti-geo", reward="r1_auto", estimator="gae", actor_lr=1e-6, critic_lr=9e-6),
    "percereason": dict(data="vermulti", reward="r1_auto", max_new_tokens=8192),
    "sokoban": dict(data="sokoban:4096", reward="sokoban", estimator="gae", kl=0.0, freeze_vision=True,
                    actor_lr=1e-6, critic_lr=5e-6),
    "football": dict(data="football:4096", reward="football", estimator="gae", kl=0.0, freeze_vision=True,
                     actor_lr=1e-6, critic_lr=5e-6, max_new_tokens=2048),
}
_MGT_DEBUG_DATA = {"geo": "geo-fixture", "percereason": "fixture:message", "sokoban": "sokoban:16",
                   "football": "football:16"}
PRESETS: dict[str, dict] = {
    "fre-text": {},
    "fre-multi": dict(data="vermulti", reward="r1_auto", out="runs/fre-multi", actor_lr=1e-6),
    "debug": dict(_DEBUG, out="runs/debug"),
    **{f"mgt-{d}": {**v, "model": "", "out": f"runs/mgt-{d}"} for d, v in _MGT.items()},
    **{f"{d}-debug": {**v, **_DEBUG, "model": "", "data": _MGT_DEBUG_DATA[d], "out": f"runs/{d}-debug",
                      "max_prompt_len": 2048}
       for d, v in _MGT.items()},
}


def preset(name: str, **overrides) -> Config:
    if name not in PRESETS:
        raise SystemExit(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return dataclasses.replace(Config(), **{"preset": name, **PRESETS[name], **overrides})


def build_parser(base: Config, description: str, aliases: dict | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    aliases = aliases or {}
    for f in dataclasses.fields(Config):
        meta = dict(f.metadata)
        kw = {"default": getattr(base, f.name), "help": meta.pop("help")}
        if f.type is bool or f.type == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = meta.pop("type", type(getattr(base, f.name)))
        kw.update(meta)
        parser.add_argument("--" + f.name.replace("_", "-"), *aliases.get(f.name, ()), **kw)
    return parser


def parse_config(argv=None, default_preset: str = "fre-text", description: str = "", aliases=None) -> Config:
    """Flags -> Config: the preset first, then every flag given explicitly on top.

    `aliases` adds other flag names for a field, e.g. {"model": ["--init"]}."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default=default_preset)
    known, _ = pre.parse_known_args(argv)
    base = preset(known.preset)
    args = build_parser(base, description, aliases).parse_args(argv)
    if args.list_presets:
        for name, values in PRESETS.items():
            print(f"{name}: {json.dumps(values)}")
        raise SystemExit(0)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)}
    values["adam_betas"] = tuple(values["adam_betas"])
    return Config(**values)
