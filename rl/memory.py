"""The memory planner's byte model: what each GPU holds in each phase of a step (generation, log-prob, update),
before anything is loaded. rl/memory_plan.py prints it (--plan), says whether the run fits and turns the knobs that
make it fit.

    python train_fre.py --plan --gpu-mem-gb 40 [--nproc 8]     # any preset, any flags; prints the table, exits

Parameters are counted exactly (rl/memory_model.py: the model built from its config on the meta device, no weights;
the paper's models plan offline). The rest is arithmetic on what the trainer does (rl/trainer.py, rl/policy.py,
rl/engines/ours.py, lmm_kernels/logprob.py), per GPU:

* master weights: the policy's parameters, fp32 (bf16 with --optim adamw_8bit_bf16). Under bf16 autocast over fp32
  weights, autocast's cache holds a bf16 copy of every weight a matmul reads for as long as the autocast block lasts
  ("weights"): the whole generation, the whole log-prob phase, the forward of each update micro-batch.
* gradients: of the trained parameters in their dtype, in the update only (freed after each optimizer step).
* optimizer states: 8-bit AdamW (bitsandbytes, its paged variant counted as resident, and torchao's): per tensor of
  >= 4096 elements two uint8 states with an fp32 scale per block of 256 (2n + 8 ceil(n / 256) bytes; torchao: only
  where n is a multiple of 256, else states in the parameter's dtype) and 256-entry fp32 maps; bitsandbytes' fp32
  states below 4096 (8n); torch AdamW 8n. Temporaries of the step: torch's foreach AdamW an fp32 copy of the
  parameters; torchao's compiled per-tensor step two fp32 copies of the largest tensor (an estimate).
* reference (kl > 0): a bf16 copy of the policy (--ref-offload: on the GPU only in the log-prob phase; with FSDP2
  never). critic (gae): an fp32 copy of the backbone + a value head, with its own gradients and optimizer states
  (--critic-offload: off the GPU during generation; with FSDP2 always).
* activations at the token budget: what each decoder layer saves for backward per token under autocast over fp32
  weights (fp32 residual stream and norms, a bf16 copy of each projection's input, bf16 attention and MLP
  tensors), or with activation checkpointing one fp32 [tokens, hidden] input per layer plus one layer recomputed.
* the log-prob path: the LM head over [chunk, vocab] logits (never [tokens, vocab]), and in backward the fp32
  [vocab, hidden] gradient of the head; in generation the [rows, vocab] logits of a decode step.
* the generation KV cache, preallocated: gen-batch-size x n-samples rows of prompt (at most --max-prompt-len) +
  --max-new-tokens positions; keys fp32 (the rotary embedding promotes them to the residual's dtype), values bf16.

With --nproc N (torchrun + FSDP2) master weights, gradients, optimizer states, reference and critic are sharded N
ways (dim 0); the forward gathers bf16 weights one layer at a time (plus one prefetched; embedding and head stay
gathered) and generation is planned on the gathered bf16 model. tests/test_memory.py checks these bytes against a
real model, optimizer and one update's measured allocator peak on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rl.memory_model import ModelInfo, Param, inspect_model, lora_params, model_config, nf4_bytes, quantized

GiB = 2**30
RESERVE_BYTES = 1 * GiB  # CUDA context, cuBLAS/NCCL workspaces: outside PyTorch's allocator
FRAGMENTATION = 0.05  # the caching allocator's slack on top of live tensors
MIN_8BIT_SIZE, BNB_BLOCK, BNB_QMAP_BYTES = 4096, 256, 2 * 256 * 4  # bitsandbytes 0.50 AdamW8bit (torchao 0.18 alike)
IMAGE_DATA = ("vermulti", "mathv360k", "geo-fixture", "synthetic-geo", "sokoban", "football", "fixture:message",
              "classroom-image", "classroom-geo")


# -- bytes of the persistent state -----------------------------------------------------------------------------------
def shard_numel(shape: tuple, nproc: int) -> int:
    """Elements of the largest FSDP2 shard (dim 0 split in `nproc` chunks, as torch.chunk)."""
    return math.prod(shape) if nproc == 1 or not shape else -(-shape[0] // nproc) * math.prod(shape[1:])


def adamw8bit_state_bytes(numel: int) -> int:
    """bitsandbytes AdamW8bit's state of one tensor: uint8 exp_avg and exp_avg_sq with an fp32 absmax per block of
    256, or both fp32 below min_8bit_size (4096 elements). The two quantisation maps are counted per optimizer."""
    if numel < MIN_8BIT_SIZE:
        return 8 * numel
    return 2 * numel + 2 * 4 * -(-numel // BNB_BLOCK)


def optimizer_state_bytes(shapes: list, optim: str, nproc: int = 1) -> int:
    """Bytes of the optimizer states of parameters `shapes` (one FSDP shard of each with nproc > 1)."""
    numels = [shard_numel(s, nproc) for s in shapes]
    if optim in ("adamw", "adamw_torch"):
        return 8 * sum(numels)  # exp_avg, exp_avg_sq (the step counters are host scalars)
    if optim == "adamw_8bit_bf16":  # torchao: codes, a scale per block and a map per state; else bf16 states
        return sum(2 * (n + 4 * (n // BNB_BLOCK) + 256 * 4) if n >= MIN_8BIT_SIZE and n % BNB_BLOCK == 0 else 4 * n
                   for n in numels)
    eight_bit = sum(adamw8bit_state_bytes(n) for n in numels)
    return eight_bit + (BNB_QMAP_BYTES if any(n >= MIN_8BIT_SIZE for n in numels) else 0)


# -- activations -----------------------------------------------------------------------------------------------------
def layer_saved(h: int, kv: int, inter: int, heads: int, autocast: bool) -> int:
    """Bytes one decoder layer saves for backward per token (transformers' Qwen2 layer, sdpa-style attention saving
    q, k, v, output and log-sum-exp). Autocast over fp32 weights: two RMSNorms save input and normalised value in
    fp32 (8h each), each of the five projections from a norm saves its own bf16 copy of its input (q, k, v, gate,
    up: 10h), attention its bf16 q (2h), k and v (2kv each), output (= o_proj's input, 2h) and fp32 lse; the MLP
    saves gate, silu(gate), up and their product in bf16 (8i). In fp32 the projections share their input."""
    if autocast:
        return 30 * h + 4 * kv + 8 * inter + 4 * heads + 8
    return 32 * h + 8 * kv + 16 * inter + 4 * heads + 8


def layer_transient(h: int, kv: int, inter: int, autocast: bool) -> int:
    """Peak bytes per token inside one layer's forward without a graph (the log-prob phase, generation's prefill,
    a checkpointed layer): the fp32 residual and norm output, then the attention's q/k/v and rotary copies or the
    MLP's gate, silu and up outputs."""
    b = 2 if autocast else 4
    attn = 16 * h + (b + 4 + 4) * h + (2 * b + 8) * kv
    mlp = 8 * h + 2 * h + 3 * b * inter
    return max(attn, mlp)


def backward_working(h: int, inter: int, autocast: bool) -> int:
    """Bytes per token that one layer's backward adds to what it saved, fitted to measured CPU peaks at seven
    shapes: the peak falls in the MLP's backward, with about 1.75 [tokens, inter] gradients alive and about three
    [tokens, hidden] fp32 tensors of the layer already released (negative for a narrow MLP)."""
    return int((3.5 if autocast else 7.0) * inter - 11 * h)


def logprob_forward_peak(rows: int, chunk: int, vocab: int, triton: bool, bf16_head: bool = False) -> int:
    """The chunked LM head's forward (lmm_kernels/logprob.py): two reused fp32 [chunk, vocab] buffers (logits, exp),
    and a bf16 product per chunk when the head is bf16 (FSDP2's gathered weights). The fused Triton kernel keeps
    only [splits, rows] partials."""
    return 16 * rows if triton else (10 if bf16_head else 8) * min(chunk, rows) * vocab


def logprob_backward_peak(rows: int, chunk: int, vocab: int, hidden: int, head_grad: bool = True) -> int:
    """The LM head's backward (both kernels): a reused fp32 [chunk, vocab] dlogits buffer, the [vocab, hidden] fp32
    weight gradient (none for a frozen head: LoRA), the [rows, hidden] fp32 hidden gradient."""
    return 4 * min(chunk, rows) * vocab + 4 * vocab * hidden * head_grad + 4 * rows * hidden


@dataclass
class Shape:
    """The tokens of one micro-batch (worst case) and of one generation call, from the config."""
    rows: int  # samples in a micro-batch
    seq: int  # longest sequence (prompt + response)
    tokens: int  # tokens through the model per micro-batch
    response: int  # tokens through the LM head per micro-batch
    padded: bool
    patches: int  # vision-tower patches per micro-batch
    gen_rows: int  # rows of one generation call (prompts x samples)


def shapes(cfg, info: ModelInfo) -> Shape:
    """Worst case: every prompt --max-prompt-len tokens, every response --max-new-tokens; one image a sample for an
    image data set, at --max-pixels."""
    seq, rows = cfg.max_prompt_len + cfg.max_new_tokens, cfg.micro_batch_size
    tokens = min(max(cfg.max_tokens_per_micro, seq), rows * seq) if cfg.max_tokens_per_micro else rows * seq
    images = info.vision is not None and cfg.data.startswith(IMAGE_DATA)
    patches = rows * (cfg.max_pixels // info.vision["patch"] ** 2) if images else 0
    return Shape(rows, seq, tokens, min(tokens, rows * cfg.max_new_tokens), not cfg.max_tokens_per_micro, patches,
                 cfg.gen_batch_size * cfg.n_samples)


@dataclass
class Setup:
    """How the trainer would run `cfg` on a GPU: compute dtype, kernels, attention."""
    autocast: bool
    triton: bool  # fused Triton log-prob kernel (CUDA and --kernels triton)
    masked_sdpa: bool  # padded batches through sdpa: a [rows, 1, L, L] mask and k/v repeated to every head
    bf16_head: bool = False  # the LM head's weight is bf16 (FSDP2's gathered weights under mixed precision)


def setup_of(cfg) -> Setup:
    gpu = cfg.device != "cpu"
    autocast = cfg.dtype == "bf16" or (cfg.dtype == "auto" and gpu)
    triton = gpu and cfg.kernels == "triton"
    masked = not triton and not cfg.max_tokens_per_micro and cfg.attn in ("sdpa", "eager")
    return Setup(autocast, triton, masked)


def train_activations(info: ModelInfo, shape: Shape, st: Setup, cfg, lm_head: bool = True) -> dict:
    """Peak bytes of one update micro-batch beyond the weights, by moment: end of forward, backward through the LM
    head, backward through one layer, backward through the embedding. Each value is (activations, log-prob path)."""
    h, T, R = info.hidden, shape.tokens, shape.response
    kv = h if st.masked_sdpa else info.kv_heads * info.head_dim
    per_layer = T * layer_saved(h, kv, info.intermediate, info.heads, st.autocast)
    if st.masked_sdpa:  # the mask as a float bias, saved by each layer's attention
        per_layer += shape.rows * shape.seq ** 2 * (2 if st.autocast else 4)
    inputs = T * (40 + 8 * info.head_dim + 8 * h + 4)  # ids, mask, positions; rotary cos/sin; final norm
    inputs += 4 * h * R if lm_head else 0  # the head's input rows, fp32
    vision_saved = vision_layer = 0
    if shape.patches:
        v = info.vision
        vl = shape.patches * layer_saved(v["hidden"], v["hidden"], v["intermediate"], v["heads"], st.autocast)
        vision_layer, vision_saved = vl, (shape.patches * 4 * v["hidden"] * v["depth"]
                                          if cfg.gradient_checkpointing else vl * v["depth"])
    if cfg.gradient_checkpointing:
        saved = info.layers * 4 * h * T + vision_saved + inputs
        transient = T * layer_transient(h, kv, info.intermediate, st.autocast)
        layer = saved + per_layer + T * backward_working(h, info.intermediate, st.autocast)
    else:
        saved = info.layers * per_layer + vision_saved + inputs
        transient = 0
        layer = saved + T * backward_working(h, info.intermediate, st.autocast)
    # a weight's gradient before it is added to .grad; with LoRA the base has none (an adapter's is negligible), nor
    # has the frozen embedding
    frozen = cfg.lora_rank > 0
    grad_tmp = 0 if frozen else info.largest * (6 if st.autocast else 4)
    out = {"forward": (saved + transient, 0), "layer": (layer + grad_tmp, 0),
           "embedding": (4 * info.hidden * info.vocab * (not frozen) + 4 * h * T, 0)}
    if vision_layer:
        out["vision"] = (saved - inputs + vision_layer + shape.patches * backward_working(
            info.vision["hidden"], info.vision["intermediate"], st.autocast), 0)
    if lm_head:
        lp_fwd = logprob_forward_peak(R, cfg.logprob_chunk, info.vocab, st.triton, st.bf16_head)
        out["forward"] = (saved + transient, 0) if transient > lp_fwd else (saved, lp_fwd)
        out["head"] = (saved + 4 * h * T, logprob_backward_peak(R, cfg.logprob_chunk, info.vocab, h, not frozen))
    return out


def nograd_activations(info: ModelInfo, tokens: int, response: int, st: Setup, chunk: int, lm_head: bool,
                       patches: int = 0) -> tuple:
    """Peak of a forward without a graph (log-prob phase): (activations, log-prob path)."""
    h = info.hidden
    kv = info.kv_heads * info.head_dim
    layer = tokens * (40 + 8 * info.head_dim + layer_transient(h, kv, info.intermediate, st.autocast))
    if patches:  # the vision tower runs first, one block at a time
        v = info.vision
        layer = max(layer, patches * layer_transient(v["hidden"], v["hidden"], v["intermediate"], st.autocast))
    if not lm_head:
        return layer, 0
    end = tokens * (40 + 8 * info.head_dim + 12 * h) + 4 * h * response
    return max(layer, end), logprob_forward_peak(response, chunk, info.vocab, st.triton, st.bf16_head)


# -- the plan --------------------------------------------------------------------------------------------------------
ROWS = ("weights (bf16 copy)", "master weights", "gradients", "optimizer states", "reference", "critic",
        "activations", "log-prob path", "generation KV cache", "CUDA context + allocator margin")
PHASES = ("generation", "log-prob", "update")


@dataclass
class Phase:
    rows: dict  # ROWS -> bytes
    moment: str  # where the phase peaks

    @property
    def total(self) -> int:
        return sum(self.rows.values())


@dataclass
class Plan:
    cfg: object
    nproc: int
    gpu_bytes: int
    info: ModelInfo
    shape: Shape
    setup: Setup
    phases: dict  # PHASES -> Phase
    notes: list

    @property
    def peak(self) -> tuple[str, int]:
        name = max(self.phases, key=lambda k: self.phases[k].total)
        return name, self.phases[name].total

    @property
    def fits(self) -> bool:
        return all(p.total <= self.gpu_bytes for p in self.phases.values())

    @property
    def overflow(self) -> int:
        return sum(max(0, p.total - self.gpu_bytes) for p in self.phases.values())


def _sharded(params, nproc: int, bytes_per: int) -> int:
    return sum(bytes_per * shard_numel(p.shape, nproc) for p in params)


def _phase(moment: str, **rows) -> Phase:
    """A phase from keyword rows (the first word of a row's name), plus the CUDA context and allocator margin."""
    named = {r: int(rows.get(r.split()[0].replace("-", "_"), 0)) for r in ROWS}
    named[ROWS[-1]] = RESERVE_BYTES + int(FRAGMENTATION * sum(named.values()))
    return Phase(named, moment)


def plan_memory(cfg, gpu_mem_gb: float, nproc: int = 1, info: ModelInfo | None = None) -> Plan:
    """Bytes per GPU of each phase of one step of `cfg` on `nproc` GPUs of `gpu_mem_gb` GiB."""
    info = info or inspect_model(model_config(cfg.model))
    st, shape, notes, n = setup_of(cfg), shapes(cfg, info), [], nproc
    st.bf16_head = n > 1 and st.autocast
    bf16_weights = cfg.optim == "adamw_8bit_bf16"
    low, wb = (2 if st.autocast else 4), (2 if bf16_weights else 4)  # compute dtype; parameter and gradient
    run_vision = shape.patches > 0  # a text-only step never runs (or casts) the vision tower
    adapters = lora_params(info, cfg)  # LoRA: the adapters train (fp32) over a frozen base in the compute dtype
    trained = adapters or [p for p in info.params if not (cfg.freeze_vision and p.vision)]
    grads = _sharded(trained, n, 4 if adapters else wb)
    states = optimizer_state_bytes([p.shape for p in trained], cfg.optim, n)
    step_tmp = {"adamw": _sharded(trained, n, 4),  # foreach AdamW: sqrt(exp_avg_sq); torchao: its largest tensor
                "adamw_8bit_bf16": 8 * max(shard_numel(p.shape, n) for p in trained)}.get(cfg.optim, 0)
    # the reference: a bf16 copy, or with LoRA the base itself (the adapters switched off)
    ref = _sharded(info.params, n, min(low, wb)) if cfg.kl > 0 and not adapters else 0
    master = _sharded(info.params, n, wb)
    if adapters:
        master = sum(nf4_bytes(shard_numel(p.shape, n)) if cfg.load_in_4bit and quantized(p) else
                     low * shard_numel(p.shape, n) for p in info.params) + _sharded(adapters, n, 4)

    def cast(params) -> int:  # autocast's bf16 copies of the matmul weights of `params`
        on = st.autocast and not bf16_weights
        params = () if adapters else params  # LoRA: the base is in the compute dtype already (the adapters: negligible)
        dequantized = 2 * info.largest if cfg.load_in_4bit else 0  # NF4 -> bf16, one weight at a time
        return dequantized + 2 * sum(p.numel for p in params if on and p.matmul and (run_vision or not p.vision))

    critic = critic_cast = critic_grads = 0
    if cfg.estimator == "gae":
        body = [p for p in info.params if p.backbone] + [Param("value_head.weight", (1, info.hidden), False, True,
                                                                False, True, -1)]
        # the critic trains all of it: --freeze-vision freezes the actor's tower only
        critic = _sharded(body, n, wb) + optimizer_state_bytes([p.shape for p in body], cfg.optim, n)
        critic_grads = _sharded(body, n, wb)
        critic_cast = cast([p for p in body if not p.head]) if n == 1 else 0
        if cfg.critic_offload and n > 1:  # FSDP2 CPU offload: shards, gradients and optimizer states on the CPU
            critic = critic_grads = 0
    if n == 1:
        cast_gen, cast_fwd = cast(info.params), cast([p for p in info.params if not p.head])
        cast_block = 2 * info.block_params if cast_fwd else 0  # one layer, recomputed in backward
    else:  # FSDP2: bf16 all-gathers, one unit at a time (+ one prefetched); root params stay gathered
        root = sum(p.numel for p in info.params if p.block < 0)
        cast_gen = 2 * sum(p.numel for p in info.params)
        cast_fwd = cast_block = 2 * (root + 2 * info.block_params)
        notes.append(f"{n} GPUs: FSDP2 shards master weights, gradients, optimizer states, reference and critic "
                     f"{n} ways; generation is planned on the gathered bf16 model")
    ref_between, critic_gen = (0 if cfg.ref_offload else ref), (0 if cfg.critic_offload else critic)
    ref = 0 if cfg.ref_offload and n > 1 else ref  # FSDP2 CPU offload: shards on the CPU, copied in unit by unit
    base = dict(master=master, optimizer=states, reference=ref_between)

    # generation: the KV cache of gen_batch_size x n_samples rows; prefill the prompts, then one token a step
    kv_dim, L = info.kv_heads * info.head_dim, shape.seq
    key_bytes = 2 if bf16_weights or (n > 1 and st.autocast) else 4  # FSDP2's bf16 compute: a bf16 residual
    kv = info.layers * shape.gen_rows * L * kv_dim * (key_bytes + low)
    prefill = cfg.gen_batch_size * cfg.max_prompt_len * (
        40 + 8 * info.head_dim + layer_transient(info.hidden, kv_dim, info.intermediate, st.autocast))
    decode = kv // info.layers + shape.gen_rows * (16 * cfg.max_new_tokens + L)  # a layer's K/V copy; outputs
    decode_logits = shape.gen_rows * info.vocab * (8 + 4 + low + (28 if cfg.top_p < 1 else 0))
    gen = max((_phase("prefill", activations=prefill, log_prob=cfg.gen_batch_size * info.vocab * (4 + low),
                      weights=cast_gen, generation=kv, critic=critic_gen, **base),
               _phase("decode", activations=decode, log_prob=decode_logits, weights=cast_gen, generation=kv,
                      critic=critic_gen, **base)), key=lambda p: p.total)

    # log-prob: old (and reference) log-probs, critic values, no graph; one autocast block for all of them
    act, lp = nograd_activations(info, shape.tokens, shape.response, st, cfg.logprob_chunk, True, shape.patches)
    logprob = _phase("policy forward", weights=cast_fwd, activations=act, log_prob=lp, critic=critic + critic_cast,
                     **{**base, "reference": ref})

    # update: forward + backward of one micro-batch (the train batch's gradients accumulate), the optimizer step
    ckpt = cfg.gradient_checkpointing
    weights_at = {"forward": cast_fwd, "head": 0 if ckpt else cast_fwd, "layer": cast_block if ckpt else cast_fwd,
                  "embedding": 0, "vision": cast_block if ckpt else cast_fwd}
    label = {"forward": "end of forward", "head": "bwd: LM head", "layer": "bwd: a layer",
             "embedding": "bwd: embedding", "vision": "bwd: vision"}
    held = dict(gradients=grads, critic=critic + critic_grads, **base)
    updates = [_phase(label[k], weights=cast_fwd if n > 1 else weights_at[k], activations=a, log_prob=lp, **held)
               for k, (a, lp) in train_activations(info, shape, st, cfg).items()]
    updates.append(_phase("optimizer step", **{**held, "optimizer": states + step_tmp}))
    if cfg.estimator == "gae":  # the critic's forward and backward come after the policy's
        for k, (a, _) in train_activations(info, shape, st, cfg, lm_head=False).items():
            critic_now = held["critic"] + (critic_cast if k == "forward" else 0)
            updates.append(_phase(f"critic {label[k][-9:]}", activations=a, **{**held, "critic": critic_now}))
    return Plan(cfg, nproc, int(gpu_mem_gb * GiB), info, shape, st,
                {"generation": gen, "log-prob": logprob, "update": max(updates, key=lambda p: p.total)}, notes)

