"""--plan: the memory table of a run (rl/memory.py's bytes per GPU and phase), whether it fits in --gpu-mem-gb, and
the knobs that make it fit, turned one notch at a time in the order of their cost; then how many GPUs it needs.

    python train_fre.py --plan --gpu-mem-gb 40 [--nproc 8]     # any preset, any flags; prints the table, exits
"""

from __future__ import annotations

import dataclasses
import textwrap

from rl.memory import GiB, PHASES, ROWS, Plan, plan_memory, setup_of
from rl.memory_model import STAGE1_MODEL, ModelInfo, lora_params


# -- the knobs -------------------------------------------------------------------------------------------------------
def _knobs(cfg):
    """(flag, config) for one notch of each memory knob that can still turn, in the order to try them (the cheapest
    in time and fidelity first): activation checkpointing, micro-batch size / token budget, 8-bit optimizer,
    reference offload, critic offload, generation batch size, bf16 weights; more GPUs is the caller's."""
    replace = dataclasses.replace
    if not cfg.gradient_checkpointing:
        yield "--gradient-checkpointing", replace(cfg, gradient_checkpointing=True)
    one = cfg.max_prompt_len + cfg.max_new_tokens
    tokens = min(max(cfg.max_tokens_per_micro, one), cfg.micro_batch_size * one)  # a packed budget in effect
    if cfg.max_tokens_per_micro and tokens > one:
        budget = max(one, tokens // 2)
        yield f"--max-tokens-per-micro {budget}", replace(cfg, max_tokens_per_micro=budget)
    elif not cfg.max_tokens_per_micro and cfg.micro_batch_size > 1:
        mb = cfg.micro_batch_size // 2
        yield f"--micro-batch-size {mb}", replace(cfg, micro_batch_size=mb)
    if cfg.optim == "adamw":
        yield "--optim adamw_8bit", replace(cfg, optim="adamw_8bit")
    if cfg.kl > 0 and not cfg.ref_offload and not cfg.lora_rank:  # a LoRA run's reference is its own base
        yield "--ref-offload", replace(cfg, ref_offload=True)
    if cfg.estimator == "gae" and not cfg.critic_offload:
        yield "--critic-offload", replace(cfg, critic_offload=True)
    if cfg.gen_batch_size > 1:
        yield f"--gen-batch-size {cfg.gen_batch_size // 2}", replace(cfg, gen_batch_size=cfg.gen_batch_size // 2)
    if cfg.lora_rank and not cfg.load_in_4bit and setup_of(cfg).autocast:
        yield "--load-in-4bit", replace(cfg, load_in_4bit=True)
    elif not cfg.lora_rank and cfg.optim != "adamw_8bit_bf16":
        yield "--optim adamw_8bit_bf16", replace(cfg, optim="adamw_8bit_bf16")


def turn_knobs(cfg, gpu_mem_gb: float, nproc: int, info: ModelInfo) -> tuple[list, Plan]:
    """Greedy, on `nproc` GPUs: the first knob (in order) that lowers the bytes over budget, one notch at a time,
    until the run fits or no knob helps; then the batch sizes grow back while the run still fits. Returns (the
    flags turned, in order, and the last plan)."""
    steps, plan = [], plan_memory(cfg, gpu_mem_gb, nproc, info)
    while not plan.fits:
        trials = ((flag, plan_memory(c, gpu_mem_gb, nproc, info)) for flag, c in _knobs(plan.cfg))
        flag, trial = next(((f, t) for f, t in trials if t.overflow < plan.overflow), (None, None))
        if trial is None:
            break
        steps.append(flag)
        plan = trial
    for key in ("gen_batch_size", "micro_batch_size"):
        while plan.fits and getattr(plan.cfg, key) < getattr(cfg, key):
            trial = plan_memory(dataclasses.replace(plan.cfg, **{key: 2 * getattr(plan.cfg, key)}), gpu_mem_gb,
                                nproc, info)
            if not trial.fits:
                break
            plan = trial
    return steps, plan


def _flags(cfg, new) -> list:
    """The flags that turn `cfg` into `new`."""
    names = ("gradient_checkpointing", "max_tokens_per_micro", "micro_batch_size", "ref_offload", "critic_offload",
             "gen_batch_size", "optim", "load_in_4bit")
    return [f"--{k.replace('_', '-')}" + ("" if getattr(new, k) is True else f" {getattr(new, k)}")
            for k in names if getattr(new, k) != getattr(cfg, k)]


def gpus_phrase(n: int) -> str:
    nodes = f"{-(-n // 8)} nodes of 8: torchrun --nnodes {-(-n // 8)} --nproc_per_node 8"
    return "1 GPU" if n == 1 else f"{n} GPUs ({f'torchrun --nproc_per_node {n}' if n <= 8 else nodes})"


def advise(plan: Plan, max_gpus: int = 64) -> list[str]:
    """The verdict and the knobs, as lines."""
    cfg, gb, info = plan.cfg, plan.gpu_bytes / GiB, plan.info
    phase, peak = plan.peak
    if plan.fits:
        return [f"fits: the peak is {phase} ({plan.phases[phase].moment}) at {peak / GiB:.1f} GiB of {gb:g} GiB "
                f"per GPU on {gpus_phrase(plan.nproc)}"]
    over = [f"{k} {p.total / GiB:.1f} GiB" for k, p in plan.phases.items() if p.total > plan.gpu_bytes]
    lines = [f"does not fit: {', '.join(over)} of {gb:g} GiB per GPU on {gpus_phrase(plan.nproc)}"]
    steps, here = turn_knobs(cfg, gb, plan.nproc, info)
    lines.append(f"first knob: {steps[0]}" if steps else "first knob: more GPUs (torchrun + FSDP2; plan with --nproc)")
    turned, at = " ".join(_flags(cfg, here.cfg)), f"{here.peak[1] / GiB:.1f} GiB, {here.peak[0]}"
    if here.fits:
        return lines + [f"fits with: {turned} (peak {at})"]
    lines.append(f"on {gpus_phrase(plan.nproc)} the trainer's knobs do not make it fit"
                 + (f" (with {turned} the peak is {at})" if steps else ""))
    n, more, best = plan.nproc, [], here
    while not best.fits and n < max_gpus:
        n *= 2
        more, best = turn_knobs(cfg, gb, n, info)
    if best.fits:
        lines.append(f"fits on {gpus_phrase(n)}" + (f" with {' '.join(_flags(cfg, best.cfg))}" if more else "")
                     + f" (peak {best.peak[1] / GiB:.1f} GiB, {best.peak[0]})")
    else:
        lines.append(f"does not fit on {max_gpus} GPUs either")
    return lines


# -- the printout ----------------------------------------------------------------------------------------------------
def format_plan(plan: Plan) -> str:
    cfg, info, shape, st = plan.cfg, plan.info, plan.shape, plan.setup
    adapters = lora_params(info, cfg)
    trained = sum(p.numel for p in adapters or info.params if not (cfg.freeze_vision and p.vision))
    dtype = ("bf16 weights and gradients, 8-bit states, stochastic rounding" if cfg.optim == "adamw_8bit_bf16" else
             "bf16 autocast over fp32 master weights" if st.autocast else "fp32")
    if adapters:
        base = "an NF4" if cfg.load_in_4bit else "a bf16" if st.autocast else "an fp32"
        dtype = f"LoRA r={cfg.lora_rank} (fp32 adapters) over {base} base, frozen"
    micro = (f"packed micro-batches of up to {shape.tokens} tokens (at most {cfg.micro_batch_size} rows)"
             if not shape.padded else f"micro-batches of {shape.rows} x ({cfg.max_prompt_len} + "
             f"{cfg.max_new_tokens}) tokens, padded")
    parts = [("reference = the base, adapters off" if adapters and cfg.kl > 0 else
              f"reference (kl {cfg.kl:g}){', offloaded' if cfg.ref_offload else ''}" if cfg.kl > 0 else
              "no reference (kl 0)"),
             f"critic (gae){', offloaded' if cfg.critic_offload else ''}" if cfg.estimator == "gae" else "no critic"]
    lines = [
        f"memory plan: {cfg.model or STAGE1_MODEL}, preset {cfg.preset}, {gpus_phrase(plan.nproc)} of "
        f"{plan.gpu_bytes / GiB:g} GiB",
        f"  {sum(p.numel for p in info.params):,} parameters ({trained:,} trained); {dtype}; {cfg.optim}; "
        f"{', '.join(parts)}",
        f"  generation: {cfg.gen_batch_size} prompts x {cfg.n_samples} samples per call, KV cache of "
        f"{cfg.max_prompt_len} + {cfg.max_new_tokens} positions",
        f"  {micro}; activation checkpointing {'on' if cfg.gradient_checkpointing else 'off'}; log-prob "
        f"{'fused Triton kernel' if st.triton else f'chunks of {cfg.logprob_chunk}'}"
        + (f"; {shape.patches} image patches per micro-batch" if shape.patches else ""),
        "",
        f"  {'GiB per GPU':32s}" + "".join(f"{p:>16s}" for p in PHASES),
    ]
    table = [(row, [f"{v / GiB:.2f}" if v else "-" for v in (plan.phases[p].rows[row] for p in PHASES)])
             for row in ROWS if any(plan.phases[p].rows[row] for p in PHASES)]
    table += [("total", [f"{plan.phases[p].total / GiB:.2f}" for p in PHASES]),
              ("peak at", [plan.phases[p].moment for p in PHASES]),
              (f"fits in {plan.gpu_bytes / GiB:g} GiB",
               ["yes" if plan.phases[p].total <= plan.gpu_bytes else "NO" for p in PHASES])]
    lines += [f"  {row:32s}" + "".join(f"{v:>16s}" for v in values) for row, values in table]
    lines += [f"  note: {n}" for n in plan.notes] + [""] + advise(plan)
    return "\n".join(textwrap.fill(line, 116, subsequent_indent="    ") if len(line) > 116 else line
                     for line in lines)


def print_plan(cfg, gpu_mem_gb: float, nproc: int = 1) -> Plan:
    """--plan: the table for this config on `nproc` GPUs of `gpu_mem_gb` GiB, the verdict and the knobs; nothing is
    loaded."""
    plan = plan_memory(cfg, gpu_mem_gb, nproc)
    if not cfg.model:
        plan.notes.append(f"no --init given: planned on {STAGE1_MODEL}, the architecture of a stage-1 checkpoint")
    print(format_plan(plan))
    return plan
