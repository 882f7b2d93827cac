"""Every knob of a run in one dataclass, the paper's runs as named presets, and the command line built from both.

Defaults are the values of LMM-R1's FRE-Text run (REINFORCE++-baseline on DeepScaleR). `--preset NAME` starts from a
preset; any flag given on the command line overrides it. The commands (--list-presets, --plan, --check-data) are flags
of the same command line but no knobs: parse_command_line returns them beside the Config.
"""

import argparse
import dataclasses
import importlib.util
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rl.lora import LANGUAGE_TARGETS
from rl.presets import PRESETS, PURPOSES  # noqa: F401 - PRESETS is part of this module's interface


def knob(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Config:
    # -- run: what is trained, from what, on what ----------------------------------------------------------------------
    preset: str = knob("fre-text", "named preset the other defaults come from (see --list-presets)")
    model: str = knob("Qwen/Qwen2.5-VL-3B-Instruct", "hub id or local checkpoint dir (Qwen2.5-VL, Qwen2-VL, Qwen3-VL or "
                      "a Qwen2 text model); 'tiny' builds a tiny random Qwen2.5-VL offline ('tiny-qwen2-vl', "
                      "'tiny-qwen3-vl' the other families), 'classroom' the warm tiny model of the classroom presets "
                      "(cached)")
    data: str = knob("deepscaler", "'deepscaler', 'fixture', a hub id, or a .jsonl file (plain or LMM-R1 message)")
    max_samples: int = knob(0, "use only the first N samples of the data (0 = all)")
    seed: int = knob(42, "random seed (data order, sampling, init of the value head)")
    device: str = knob("auto", "'auto' (cuda if available), 'cuda', 'cpu'")
    cpu_threads: int = knob(0, "torch threads on a CPU; 0 = auto: OMP_NUM_THREADS if set, else 1 for models under "
                            "100M parameters (more stall beside any other work), else this process's share of the "
                            "cores")
    dtype: str = knob("auto", "compute dtype (bf16 autocast over fp32 master weights): 'auto' = bf16 on GPU, fp32 on "
                      "CPU (bf16 works there too, but slowed the small CPU presets: bench/cpu_bf16.py)",
                      choices=["auto", "bf16", "fp32"])
    attn: str = knob("sdpa", "attention implementation passed to transformers (sdpa, eager, flash_attention_2)")
    kernels: str = knob("triton", "compute kernels: 'triton' (fused log-prob/entropy, fused PPO+KL loss, packed varlen "
                        "attention) or their 'torch' references; torch is used where Triton cannot run (logged)",
                        choices=["triton", "torch"])
    # -- rollout: what is sampled (rl/rollout.py) ----------------------------------------------------------------------
    engine: str = knob("ours", "generation engine: 'ours' (each prompt prefilled once for its n samples, finished rows "
                       "leave the batch, the log-prob of each draw kept) or 'hf' (transformers' generate)")
    prompts_per_step: int = knob(256, "prompts per rollout step (rollout batch size)")
    n_samples: int = knob(16, "samples per prompt (the group of GRPO/RLOO/REINFORCE++-baseline)")
    temperature: float = knob(1.0, "sampling temperature (log-probs are computed at the same temperature)")
    top_p: float = knob(1.0, "nucleus sampling; 1.0 = sample from the full distribution")
    max_new_tokens: int = knob(4096, "max generated tokens per response")
    max_prompt_len: int = knob(1024, "prompts longer than this (tokens, incl. image tokens) are skipped and counted")
    max_pixels: int = knob(640 * 28 * 28, "images are resized to at most this many pixels")
    min_pixels: int = knob(4 * 28 * 28, "images are resized to at least this many pixels")
    compile_decode: bool = knob(False, "torch.compile the decode step of --engine ours (CUDA only; ignored on the "
                                "CPU)")
    # -- algorithm: advantages and KL (rl/algos.py), the policy loss (rl/losses.py; docs/objectives.md) -------------
    estimator: str = knob("reinforce_baseline", "advantage estimator")
    scale_rewards: str = knob("auto", "divide the baselined rewards by the std of their 'group' (GRPO), of the whole "
                              "'batch', or 'none' (Dr. GRPO); auto = the estimator's (group for grpo, else none)",
                              choices=["auto", "group", "batch", "none"])
    kl: float = knob(0.001, "KL coefficient beta; 0 disables the reference model")
    kl_estimator: str = knob("k1", "KL estimator")
    kl_in: str = knob("reward", "where the KL goes: 'reward' (per-token penalty, LMM-R1) or 'loss' (GRPO-style)",
                      choices=["reward", "loss"])
    kl_bias_correction: bool = knob(False, "--kl-in loss: multiply the KL by the importance ratio (DeepSeek-V3.2; "
                                    "TRL's use_bias_correction_kl)")
    loss: str = knob("ppo", "policy loss: 'ppo' PPO-clip aggregated as LMM-R1's released code; grpo, bnpo, dr_grpo, "
                     "dapo, gspo, cispo, sapo as TRL's loss_type (docs/objectives.md)")
    loss_agg: str = knob("auto", "loss aggregation; auto = the loss's own (ppo: seq-mean-token-mean)")
    ratio_level: str = knob("auto", "importance ratio per 'token' or per 'sequence' (GSPO: the geometric mean of its "
                            "token ratios); auto = the loss's", choices=["auto", "token", "sequence"])
    eps_clip: float = knob(0.2, "PPO ratio clip epsilon (the lower one with --clip-high)")
    clip_high: float = knob(0.0, "upper clip epsilon (DAPO clip-higher: 0.28); cispo: the cap of its weight, "
                            "eps_max; 0 = --eps-clip (cispo: 5.0)")
    clip_delta: float = knob(0.0, "two-sided clip: the unclipped ratio capped at this value, > 1 (INTELLECT-2; "
                             "TRL's delta); 0 = off")
    sapo_temperatures: tuple = knob((1.0, 1.05), "sapo: gate temperatures for positive and other advantages",
                                    nargs=2, type=float)
    mask_truncated: bool = knob(False, "leave responses cut at --max-new-tokens out of the loss (DAPO overlong "
                                "filtering; counted in loss/truncated_masked)")
    overlong_buffer: int = knob(0, "DAPO soft overlong punishment: the reward falls linearly to -(--overlong-penalty) "
                                "over the last N tokens before --max-new-tokens; 0 = off")
    overlong_penalty: float = knob(1.0, "the punishment at --max-new-tokens (DAPO: 1.0)")
    dynamic_sampling: int = knob(0, "DAPO dynamic sampling: drop the groups whose rewards are all equal and generate "
                                 "up to this many more rounds of prompts to refill the batch; 0 = off")
    value_clip: float = knob(0.2, "critic value clip (gae)")
    gamma: float = knob(1.0, "discount")
    lam: float = knob(1.0, "GAE lambda")
    whiten: str = knob("auto", "normalise advantages over all valid tokens of the rollout batch; 'auto' = on for "
                       "reinforce_baseline/rloo/reinforce/gae, off for grpo", choices=["auto", "on", "off"])
    old_logprobs: str = knob("recompute", "PPO old log-probs: 'recompute' (a forward pass after generation, the "
                             "paper) or 'sampler' (those the sampler drew with: one forward pass fewer; needs "
                             "--engine ours)", choices=["recompute", "sampler"])
    rollout_correction: str = knob("auto", "correct the sampler/trainer mismatch of the log-probs: token- or "
                                   "sequence-level, truncate the importance weight at --correction-cap or mask what "
                                   "lies beyond it (TIS / MIS); auto = token-truncate with --old-logprobs sampler, "
                                   "else none; needs --engine ours")
    correction_cap: float = knob(3.0, "upper bound of the rollout correction's weight (TRL's default)")
    correction_floor: float = knob(0.0, "lower bound of the rollout correction's weight; 0 = none")
    # -- optimisation: the updates and how many (rl/optim.py) ----------------------------------------------------------
    actor_lr: float = knob(4e-7, "policy learning rate")
    critic_lr: float = knob(9e-6, "critic learning rate (gae)")
    optim: str = knob("adamw_8bit", "optimizer: 'adamw_8bit' bitsandbytes 8-bit AdamW over fp32 master weights; "
                      "'paged_adamw_8bit' the same with its states paged to the CPU under GPU memory pressure; "
                      "'adamw' torch AdamW (fp32 states); 'adamw_8bit_bf16' torchao's 8-bit AdamW over bf16 weights "
                      "and gradients with stochastic rounding (no fp32 master copy: half the weight and gradient "
                      "memory, and updates far below bf16's resolution, lr 4e-7, still land in expectation)")
    adam_betas: tuple = knob((0.9, 0.95), "Adam betas", nargs=2, type=float)
    weight_decay: float = knob(0.0, "AdamW weight decay")
    warmup_ratio: float = knob(0.03, "linear warmup, fraction of all optimizer steps")
    min_lr_ratio: float = knob(0.1, "cosine decay ends at this fraction of the lr")
    grad_clip: float = knob(1.0, "max global grad norm")
    train_batch_size: int = knob(256, "samples per optimizer step")
    ppo_epochs: int = knob(1, "passes over each rollout batch")
    episodes: int = knob(2, "passes over the data set")
    max_steps: int = knob(0, "stop after this many rollout steps (0 = episodes decide)")
    freeze_vision: bool = knob(False, "freeze the policy's vision tower (the paper does so only for Sokoban; the "
                               "critic's tower still trains, as in the released code)")
    # -- LoRA / QLoRA (rl/lora.py): adapters train, the base stays frozen; the KL reference is the base itself -------
    lora_rank: int = knob(0, "LoRA rank r; 0 = full fine-tuning. LoRA usually wants a larger --actor-lr than full "
                          "fine-tuning (about 10x)")
    lora_alpha: float = knob(32.0, "LoRA alpha: the adapters' update is scaled by alpha / r")
    lora_dropout: float = knob(0.0, "dropout on the adapters' input (0: the PPO ratio starts at exactly 1)")
    lora_targets: str = knob(",".join(LANGUAGE_TARGETS), "module names that get adapters (comma-separated), in the "
                             "language model; 'all-linear' = every linear layer but the LM head")
    lora_vision: bool = knob(False, "also adapt the vision tower's blocks (else the tower stays frozen)")
    load_in_4bit: bool = knob(False, "QLoRA: the frozen base in bitsandbytes NF4 with bf16 compute (CUDA only; needs "
                              "--lora-rank)")
    # -- reward (rewards/) ---------------------------------------------------------------------------------------------
    reward: str = knob("r1_math", "reward function by name (format + accuracy)")
    reward_workers: int = knob(2, "worker processes that verify answers")
    reward_timeout: float = knob(5.0, "seconds per answer check before it counts as wrong")
    # -- released behaviour -------------------------------------------------------------------------------------------
    # Where we chose otherwise than the released LMM-R1 code (README: "Choices that differ from the released LMM-R1
    # code"), the default is our choice and the other value of each of these flags restores the released behaviour.
    fail_closed_gold: bool = knob(True, "a gold answer math-verify cannot parse scores 0 (counted in "
                                  "data/gold_unparseable); --no-fail-closed-gold pays it 1, as the released code does")
    empty_response: str = knob("zero", "an empty response: 'zero' scores it 0; 'prompt' scores the prompt text in its "
                               "place (format and accuracy), as the released code does", choices=["zero", "prompt"])
    whole_answer: bool = knob(True, "score an answer whole or not at all: a prediction that parses to only a piece "
                              "of what the model wrote (2\\frac{1}{2} read as 1/2) scores 0 and is counted in "
                              "reward/partial_parse; --no-whole-answer pays it, as the released code does")
    truncated_end: str = knob("keep", "a response cut at --max-new-tokens: 'keep' its last sampled token; 'eos' "
                              "overwrites that token with the end token, as the released code does (the update then "
                              "trains on a token the policy did not sample; needs --old-logprobs recompute)",
                              choices=["keep", "eos"])
    on_ambiguous_gold: str = knob("skip", "a gold answer the verifier reads wrongly (a repeating decimal, a time like "
                                  "12:30, a number with words, a single letter in a math row; --check-data lists "
                                  "them): 'skip' drops the row before training, 'keep' trains on it; counted either "
                                  "way (data/gold_ambiguous)", choices=["skip", "keep"])
    # -- output: the run directory -------------------------------------------------------------------------------------
    out: str = knob("runs/fre-text", "output dir: metrics.jsonl, checkpoints/step_N, final/")
    resume: str = knob("", "continue a run: its directory (the newest complete checkpoint, the run's own config; flags "
                       "given now override where exact resume allows) or one <out>/checkpoints/step_N")
    overwrite: bool = knob(False, "start anew in an --out that holds an earlier run (its files are deleted)")
    save_every: int = knob(50, "checkpoint every N rollout steps (0 = only final)")
    keep_last: int = knob(3, "keep the newest K checkpoints (0 = all)")
    # -- reliability: bad inputs, bad steps, stalls, kernels that drift ------------------------------------------------
    on_bad_row: str = knob("raise", "a malformed data row: 'raise' (error naming file and line) or 'skip' (counted)",
                           choices=["raise", "skip"])
    max_row_bytes: int = knob(2**20, "a data row larger than this many bytes is rejected (or skipped with "
                              "--on-bad-row skip) without being read into memory (a row is a question, an answer and "
                              "image paths: kilobytes); so is a row nested deeper than 64 levels of JSON")
    max_image_pixels: int = knob(0, "an image with more pixels (width x height, read from its header) is rejected at "
                                 "load like a bad row and never decoded, nor when a step draws it; every image is "
                                 "decoded once at load (a truncated or non-image file is a bad row); 0 = 64 x "
                                 "--max-pixels, at least 4096 x 4096")
    image_root: str = knob("", "a folder where images may lie besides the data file's own folder (an image "
                           "elsewhere, symlinks resolved, is a bad row); relative image paths are also looked up here")
    allow_urls: bool = knob(False, "fetch http(s):// and data: image references once at load (30 s each, into "
                            "<cache>/url_images/; never with HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1) and check "
                            "them like files; without it they are bad rows")
    max_bad_steps: int = knob(3, "a step with a non-finite loss, gradient or reward is skipped (counted in "
                              "guard/skipped_steps); this many in a row stop the run")
    stall_timeout: float = knob(3600.0, "a phase running longer than this many seconds logs every thread's stack "
                                "(0 = off)")
    kernel_check_every: int = knob(0, "every N optimizer steps recompute one micro-batch with the torch references, "
                                   "log kernel/max_abs_diff and stop above --kernel-check-tol (0 = off)")
    kernel_check_tol: float = knob(0.0, "max |log-prob difference| of the shadow check "
                                   "(0 = 1e-3 in fp32, 5e-2 in bf16)")
    # -- evaluation and monitoring (rl/monitor.py) ---------------------------------------------------------------------
    eval_benchmarks: str = knob("", "eval.py benchmarks to evaluate the policy on during training, comma-separated "
                                "(e.g. math500,mathvista; empty = none); the last step, whose weights are the final "
                                "checkpoint's, is always evaluated")
    eval_every: int = knob(0, "also evaluate every N rollout steps (0 = only the last step)")
    eval_limit: int = knob(0, "items per benchmark in training evaluations (0 = all)")
    eval_max_new_tokens: int = knob(0, "max new tokens in training evaluations (0 = --max-new-tokens)")
    log_with: str = knob("none", "also send the metrics to TensorBoard or Weights & Biases (optional packages: "
                         "pip install tensorboard / wandb)", choices=["none", "tensorboard", "wandb"])
    plots: bool = knob(True, "write PNG curves of the run to <out>/plots/ at the end (python -m rl.plots <out> "
                       "draws them for any run)")
    # -- memory: how much of a step the GPU holds at once (the knobs --plan turns) -------------------------------------
    gradient_checkpointing: bool = knob(True, "recompute activations in backward (memory for time)")
    micro_batch_size: int = knob(4, "samples per forward/backward (gradient accumulation up to train_batch_size); "
                                 "with --max-tokens-per-micro, the most samples in one packed micro-batch")
    max_tokens_per_micro: int = knob(0, "pack the samples of each micro-batch end to end, up to this many tokens "
                                     "(prompt + response; first-fit decreasing); 0 = padded micro-batches")
    logprob_chunk: int = knob(128, "tokens per chunk of the log-prob computation (bounds the logits in memory)")
    gen_batch_size: int = knob(8, "prompts per generate() call")
    ref_offload: bool = knob(False, "keep the reference model on the CPU and bring it to the GPU only for its "
                             "log-prob forward (its bf16 weights leave the GPU for generation and the update; "
                             "with torchrun, FSDP2's CPU offload)")
    critic_offload: bool = knob(False, "move the critic (gae) and its optimizer states to the CPU during generation, "
                                "where the KV cache needs the room (with torchrun, FSDP2's CPU offload: they stay "
                                "on the CPU, and its optimizer steps there)")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def preset(name: str, **overrides) -> Config:
    if name not in PRESETS:
        raise SystemExit(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return dataclasses.replace(Config(), **{"preset": name, **PRESETS[name], **overrides})


# Commands: flags that make the script do something other than train, then exit. They are not part of the recipe (a
# run's config.json never holds them); parse_command_line returns them beside the Config.
COMMANDS = dict(
    list_presets=dict(action="store_true", help="print the presets and exit"),
    plan=dict(action=argparse.BooleanOptionalAction, default=False,
              help="print the memory each GPU needs per phase (generation, log-prob, update) for this run, whether it "
                   "fits in --gpu-mem-gb and which knob to turn first, and exit; loads nothing"),
    gpu_mem_gb=dict(type=float, default=80.0, help="--plan: memory of one GPU in GiB (what nvidia-smi shows in MiB / "
                                                  "1024)"),
    nproc=dict(type=int, default=1, help="--plan: GPUs the run is spread over (torchrun + FSDP2 world size, all "
                                         "nodes); training itself takes the world size from torchrun"),
    check_data=dict(action=argparse.BooleanOptionalAction, default=False,
                    help="check the data set (gold answers parse, images open, nothing empty), print the report and "
                         "exit, before any model is loaded"),
    check_data_max_bad=dict(type=float, default=0.01,
                            help="--check-data exits non-zero when more than this fraction of rows is bad"),
)


def owned_choices() -> dict:
    """The allowed values of the fields whose names belong to another module, from that module (imported here, when
    a parser is built, not when rl.config is: two of them import torch)."""
    from rl.algos import ESTIMATORS, KL_KINDS
    from rl.engines import ENGINES
    from rl.losses import AGGREGATIONS, CORRECTIONS, LOSSES
    from rl.optim import OPTIMIZERS
    return {"engine": list(ENGINES), "estimator": list(ESTIMATORS), "kl_estimator": list(KL_KINDS),
            "loss": list(LOSSES), "loss_agg": ["auto", *AGGREGATIONS], "optim": list(OPTIMIZERS),
            "rollout_correction": ["auto", *CORRECTIONS]}


class Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help: the description as written (its example commands one per line), each flag with its default."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line with the way to --help, not the whole usage first."""

    def error(self, message):
        self.exit(2, f"error: {message} (python {self.prog} --help lists every flag)\n")


def build_parser(base: Config, description: str, aliases: dict | None = None,
                 suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """One flag per Config field, its default from `base` (or absent when `suppress_defaults`: then the parsed
    namespace holds exactly the flags that were given), and the commands in their own group."""
    parser = Parser(description=description, formatter_class=Help,
                    argument_default=argparse.SUPPRESS if suppress_defaults else None)
    commands = parser.add_argument_group("commands", "do this instead of training, then exit")
    for name, kw in COMMANDS.items():
        commands.add_argument("--" + name.replace("_", "-"), **kw)
    aliases, choices = aliases or {}, owned_choices()
    for f in dataclasses.fields(Config):
        meta = dict(f.metadata)
        kw = {"help": meta.pop("help")}
        if not suppress_defaults:
            kw["default"] = getattr(base, f.name)
        if f.type is bool or f.type == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = meta.pop("type", type(getattr(base, f.name)))
        if f.name in choices:
            kw["choices"] = choices[f.name]
        kw.update(meta)
        parser.add_argument("--" + f.name.replace("_", "-"), *aliases.get(f.name, ()), **kw)
    # flags renamed since, still accepted (not listed): --rollout (--engine), --policy-loss (--loss)
    parser.add_argument("--rollout", dest="engine", choices=choices["engine"], default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    parser.add_argument("--policy-loss", dest="loss", choices=choices["loss"], default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    return parser


# Flags that may differ from the run's own config when it is resumed: they do not change what is computed.
RESUME_MAY_CHANGE = {"resume", "out", "overwrite", "save_every", "keep_last", "reward_workers", "reward_timeout",
                     "kernel_check_every", "kernel_check_tol", "stall_timeout", "max_bad_steps", "log_with", "plots",
                     "ref_offload", "critic_offload"}
PAIRS = ("adam_betas", "sapo_temperatures")  # two numbers each: argparse gives a list, the Config holds a tuple
RENAMED = {"rollout": "engine", "policy_loss": "loss"}  # a key of an older run's config.json -> the field's name now


def _restore_run(values: dict, given: dict) -> dict:
    """--resume: the run's saved config, then the flags given now, refusing changes that break exact resume. Keys of
    an older config.json that are no fields any more (the commands it once held) are ignored."""
    from rl.checkpoint import CheckpointError, resolve_resume, run_config
    try:
        run_dir, ckpt = resolve_resume(values["resume"])
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    names = {f.name for f in dataclasses.fields(Config)}
    saved = {RENAMED.get(k, k): v for k, v in run_config(run_dir).items()}
    saved = {k: v for k, v in saved.items() if k in names}
    for k in PAIRS:
        saved[k] = tuple(saved.get(k, values[k]))
    if "out" in given and Path(given["out"]).resolve() != run_dir.resolve():
        raise SystemExit(f"error: --out {given['out']}: a resumed run writes into its own directory {run_dir}; "
                         f"drop --out")
    for k, v in given.items():
        if k not in RESUME_MAY_CHANGE and k in saved and saved[k] != v:
            raise SystemExit(f"error: --{k.replace('_', '-')} {v}: the run was started with {saved[k]}, and resuming "
                             f"with another value would not continue it exactly; start a new run with --out to change "
                             f"it")
    return {**values, **saved, **given, "resume": str(ckpt), "out": str(run_dir)}


def list_presets():
    """--list-presets: one line per preset, its script and what it is for (the values: docs/recipe.md); then exit."""
    for name in PRESETS:
        script, purpose = PURPOSES[name]
        print(f"{name:<20} {script:<13} {purpose}")
    raise SystemExit(0)


def parse_command_line(argv=None, default_preset: str = "fre-text", description: str = "",
                       aliases=None) -> tuple[Config, argparse.Namespace]:
    """Flags -> (Config, the commands): the preset first, then every flag given explicitly on top (with --resume: the
    run's own config, then the flags given). Values are checked here, before anything is loaded. --list-presets
    prints them and exits here.

    `aliases` adds other flag names for a field, e.g. {"model": ["--init"]}."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default=default_preset)
    known, _ = pre.parse_known_args(argv)
    base = preset(known.preset)
    if list(sys.argv[1:] if argv is None else argv) == ["--list-presets"]:  # no parser (its choices import torch)
        list_presets()
    args = build_parser(base, description, aliases).parse_args(argv)
    if args.list_presets:
        list_presets()
    names = [f.name for f in dataclasses.fields(Config)]
    given = vars(build_parser(base, description, aliases, suppress_defaults=True).parse_args(argv))
    given = {k: v for k, v in given.items() if k in names}
    values = {name: getattr(args, name) for name in names}
    for k in PAIRS:
        values[k] = tuple(values[k])
        if k in given:
            given[k] = tuple(given[k])
    if values["resume"]:
        values = _restore_run(values, given)
    cfg = Config(**values)
    command = argparse.Namespace(**{name: getattr(args, name) for name in COMMANDS if name != "list_presets"})
    problem = invalid(cfg) or invalid_command(command)
    if problem:
        raise SystemExit(f"error: {problem}")
    return cfg, command


def parse_config(argv=None, default_preset: str = "fre-text", description: str = "", aliases=None) -> Config:
    """parse_command_line's Config alone (the commands are parsed, checked and dropped)."""
    return parse_command_line(argv, default_preset, description, aliases)[0]


# --model names of the tiny random checkpoints (rl/tiny_model.py), by model family: rl/run.py builds them offline
TINY_MODELS = {"tiny": "qwen2_5_vl", "tiny-qwen2-vl": "qwen2_vl", "tiny-qwen3-vl": "qwen3_vl"}


def model_problem(name: str) -> str | None:
    """What is wrong with the local path --model / --init names, found before anything is imported (None: 'tiny',
    'classroom', "" (train_mgt.py asks for --init), a checkpoint directory, or a hub id 'org/name' to ask for)."""
    if name in ("", "classroom", *TINY_MODELS):
        return None
    path = Path(name).expanduser()
    if path.is_dir():
        return None if (path / "config.json").is_file() else "the directory has no config.json (not a checkpoint)"
    if path.exists() or name.startswith((".", "/", "~")) or len(path.parts) != 2:
        return "no such checkpoint directory"
    return None


def invalid_command(command: argparse.Namespace) -> str | None:
    """What is wrong with the values of the commands' flags, as one line (as `invalid`)."""
    if command.nproc < 1:
        return f"--nproc {command.nproc}: must be at least 1"
    if not (math.isfinite(command.gpu_mem_gb) and command.gpu_mem_gb > 0):
        return f"--gpu-mem-gb {command.gpu_mem_gb}: must be a positive number"
    if not (math.isfinite(command.check_data_max_bad) and 0 <= command.check_data_max_bad <= 1):
        return f"--check-data-max-bad {command.check_data_max_bad}: must lie in [0, 1]"
    return None


ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3")


def objective_problem(cfg: Config) -> str | None:
    """A combination of the objective's flags that has no meaning, as one line (values are checked by `invalid`)."""
    from rl.losses import LOSSES, clip_surrogate
    surrogate = LOSSES[cfg.loss].surrogate
    if cfg.estimator == "gae" and cfg.loss in ("cispo", "gspo", "sapo"):
        return (f"--loss {cfg.loss} --estimator gae: {cfg.loss} is defined for one outcome advantage per response "
                f"shared by its tokens (a group baseline), not for a critic's per-token advantages")
    if cfg.clip_delta and surrogate is not clip_surrogate:
        return f"--clip-delta {cfg.clip_delta}: --loss {cfg.loss} has no clipped ratio to cap"
    if cfg.clip_delta and cfg.clip_delta <= 1.0 + (cfg.clip_high or cfg.eps_clip):
        return f"--clip-delta {cfg.clip_delta}: must exceed 1 + the upper clip epsilon, or be 0 (off)"
    if not (math.isfinite(cfg.correction_cap) and cfg.correction_cap > max(cfg.correction_floor, 0.0)):
        return f"--correction-cap {cfg.correction_cap}: must be a number above --correction-floor"
    if not all(math.isfinite(t) and t > 0 for t in cfg.sapo_temperatures):
        return f"--sapo-temperatures {' '.join(map(str, cfg.sapo_temperatures))}: both must be positive"
    if cfg.kl_bias_correction and not (cfg.kl > 0 and cfg.kl_in == "loss"):
        return "--kl-bias-correction: corrects a KL term in the loss; it needs --kl-in loss and --kl > 0"
    if cfg.scale_rewards in ("group", "batch") and cfg.estimator == "gae":
        return f"--scale-rewards {cfg.scale_rewards} --estimator gae: the critic's advantages have no reward group"
    if cfg.scale_rewards == "group" and cfg.n_samples < 2:
        return f"--scale-rewards group: the std of a group of --n-samples {cfg.n_samples} is undefined"
    if cfg.rollout_correction not in ("auto", "none") and cfg.engine != "ours":
        return (f"--rollout-correction {cfg.rollout_correction}: needs the sampler's log-probs, and --engine "
                f"{cfg.engine} keeps none")
    if cfg.dynamic_sampling and cfg.n_samples < 2:
        return f"--dynamic-sampling {cfg.dynamic_sampling}: a group of one sample is never informative"
    if cfg.overlong_buffer >= cfg.max_new_tokens:
        return f"--overlong-buffer {cfg.overlong_buffer}: must be below --max-new-tokens {cfg.max_new_tokens}"
    return None


def lora_problem(cfg: Config) -> str | None:
    """LoRA / QLoRA flags that have no meaning together, as one line (the GPU that --load-in-4bit needs is checked
    where the device is known: rl/trainer.py)."""
    if cfg.lora_rank < 0:
        return f"--lora-rank {cfg.lora_rank}: must be at least 0 (0 = full fine-tuning)"
    if not cfg.lora_rank:
        given = [name for name in ("lora_vision", "load_in_4bit") if getattr(cfg, name)]
        return f"--{given[0].replace('_', '-')}: needs --lora-rank r > 0" if given else None
    if not (math.isfinite(cfg.lora_alpha) and cfg.lora_alpha > 0):
        return f"--lora-alpha {cfg.lora_alpha}: must be a positive number"
    if not (0 <= cfg.lora_dropout < 1):
        return f"--lora-dropout {cfg.lora_dropout}: must lie in [0, 1)"
    if not any(t.strip() for t in cfg.lora_targets.split(",")):
        return "--lora-targets: name at least one module (or 'all-linear')"
    if cfg.estimator == "gae":
        return ("--lora-rank --estimator gae: the critic would be a second full model beside the adapters; LoRA runs "
                "take an outcome estimator (reinforce_baseline, grpo, rloo, ...)")
    if cfg.lora_vision and cfg.freeze_vision:
        return "--lora-vision --freeze-vision: adapting the vision tower and freezing it contradict each other"
    return None


def invalid(cfg: Config) -> str | None:
    """What is wrong with the values of a config, as one line naming the flag, the value and what is allowed."""
    def flag(name):
        return f"--{name.replace('_', '-')} {getattr(cfg, name)}"

    at_least = {"prompts_per_step": 1, "n_samples": 1, "max_new_tokens": 1, "max_prompt_len": 1, "gen_batch_size": 1,
                "train_batch_size": 1, "micro_batch_size": 1, "ppo_epochs": 1, "logprob_chunk": 1, "min_pixels": 1,
                "reward_workers": 1, "max_row_bytes": 1, "episodes": 0, "max_tokens_per_micro": 0, "max_steps": 0,
                "max_samples": 0, "save_every": 0, "keep_last": 0, "kernel_check_every": 0, "max_bad_steps": 1,
                "max_image_pixels": 0, "overlong_buffer": 0, "dynamic_sampling": 0, "cpu_threads": 0}
    for name, low in at_least.items():
        if getattr(cfg, name) < low:
            return f"{flag(name)}: must be at least {low}"
    positive = ("temperature", "actor_lr", "critic_lr", "eps_clip", "value_clip", "grad_clip", "reward_timeout")
    for name in positive:
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v > 0):
            return f"{flag(name)}: must be a positive number"
    unit = {"top_p": (0.0, 1.0, False), "gamma": (0.0, 1.0, True), "lam": (0.0, 1.0, True),
            "warmup_ratio": (0.0, 1.0, True), "min_lr_ratio": (0.0, 1.0, True)}
    for name, (lo, hi, lo_ok) in unit.items():
        v = getattr(cfg, name)
        if not (math.isfinite(v) and (lo <= v if lo_ok else lo < v) and v <= hi):
            return f"{flag(name)}: must lie in {'[' if lo_ok else '('}{lo:g}, {hi:g}]"
    for name in ("kl", "weight_decay", "kernel_check_tol", "stall_timeout", "clip_high", "clip_delta",
                 "overlong_penalty", "correction_floor"):
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v >= 0):
            return f"{flag(name)}: must be a number >= 0"
    problem = objective_problem(cfg) or lora_problem(cfg)
    if problem:
        return problem
    if not all(0 <= b < 1 for b in cfg.adam_betas):
        return f"--adam-betas {' '.join(map(str, cfg.adam_betas))}: both must lie in [0, 1)"
    if cfg.estimator in ("grpo", "rloo") and cfg.n_samples < 2:
        return f"--n-samples {cfg.n_samples}: {cfg.estimator} compares samples of one prompt, it needs at least 2"
    if cfg.max_pixels < cfg.min_pixels:
        return f"--max-pixels {cfg.max_pixels}: must be at least --min-pixels {cfg.min_pixels}"
    if cfg.episodes == 0 and cfg.max_steps == 0:
        return "--episodes 0 --max-steps 0: nothing to train; give one of them"
    problem = model_problem(cfg.model)
    if problem:
        return f"--model/--init {cfg.model}: {problem}"
    if cfg.image_root and not Path(cfg.image_root).expanduser().is_dir():
        return f"{flag('image_root')}: not a directory"
    if cfg.attn not in ATTENTION:
        return f"{flag('attn')}: expected one of {', '.join(ATTENTION)}"
    if cfg.attn.startswith("flash_attention") and importlib.util.find_spec("flash_attn") is None:
        return f"{flag('attn')}: flash-attn is not installed (pip install flash-attn --no-build-isolation)"
    device = cfg.device.split(":")[0]
    if device not in ("auto", "cpu", "cuda") or (cfg.device.count(":") and not cfg.device.split(":", 1)[1].isdigit()):
        return f"{flag('device')}: expected auto, cpu, cuda or cuda:N"
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            return f"{flag('device')}: no CUDA device is available here (use --device cpu)"
    if cfg.old_logprobs == "sampler" and cfg.engine != "ours":
        return f"--old-logprobs sampler: needs --engine ours ({flag('engine')} keeps no log-probs of its draws)"
    if cfg.old_logprobs == "sampler" and cfg.truncated_end == "eos":
        return "--old-logprobs sampler: the sampler drew no end token where --truncated-end eos writes one"
    from rewards import REWARDS
    if cfg.reward not in REWARDS:
        return f"{flag('reward')}: expected one of {', '.join(REWARDS)}"
    from data import data_name_problem
    problem = data_name_problem(cfg.data)
    if problem:
        return f"--data {cfg.data}: {problem}"
    return None
