"""The model of a run, counted exactly for the memory planner (rl/memory.py): every parameter tensor, its shape and
what reads it, from the model built on the meta device (no weights, no memory, no download). The configs of
Qwen2.5-VL-3B/7B-Instruct and of the tiny debug model are below, so the paper's runs plan offline.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

# config.json of the released checkpoints (the fields that shape the model; the rest are transformers' defaults).
_VISION = dict(depth=32, hidden_act="silu", hidden_size=1280, intermediate_size=3420, num_heads=16, in_chans=3,
               patch_size=14, spatial_merge_size=2, spatial_patch_size=14, window_size=112,
               fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, temporal_patch_size=2)
_QWEN2_5_VL = dict(architectures=["Qwen2_5_VLForConditionalGeneration"], model_type="qwen2_5_vl",
                   attention_dropout=0.0, bos_token_id=151643, eos_token_id=151645, vision_start_token_id=151652,
                   vision_end_token_id=151653, vision_token_id=151654, image_token_id=151655, video_token_id=151656,
                   hidden_act="silu", initializer_range=0.02, max_position_embeddings=128000, rms_norm_eps=1e-06,
                   rope_theta=1000000.0, sliding_window=32768, torch_dtype="bfloat16", use_cache=True,
                   use_sliding_window=False, rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]})
KNOWN_CONFIGS = {
    "Qwen/Qwen2.5-VL-3B-Instruct": dict(
        _QWEN2_5_VL, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
        num_key_value_heads=2, max_window_layers=70, tie_word_embeddings=True, vocab_size=151936,
        vision_config=dict(_VISION, out_hidden_size=2048)),
    "Qwen/Qwen2.5-VL-7B-Instruct": dict(
        _QWEN2_5_VL, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, max_window_layers=28, tie_word_embeddings=False, vocab_size=152064,
        vision_config=dict(_VISION, out_hidden_size=3584)),
    # Qwen3-VL-4B-Instruct's config.json (transformers 5 names: rope_parameters)
    "Qwen/Qwen3-VL-4B-Instruct": dict(
        model_type="qwen3_vl", image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
        vision_end_token_id=151653, tie_word_embeddings=True,
        text_config=dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=128, hidden_act="silu",
                         max_position_embeddings=262144, rms_norm_eps=1e-6, tie_word_embeddings=True,
                         bos_token_id=151643, eos_token_id=151645,
                         rope_parameters={"rope_type": "default", "rope_theta": 5000000, "mrope_interleaved": True,
                                          "mrope_section": [24, 20, 20]}),
        vision_config=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2560,
                           patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
                           deepstack_visual_indexes=[5, 11, 17], hidden_act="gelu_pytorch_tanh")),
    # rl/tiny_model.py's debug model (its BPE vocabulary is at most 512 tokens; a built checkpoint plans exactly)
    "tiny": dict(
        model_type="qwen2_5_vl", image_token_id=511, video_token_id=510, vision_start_token_id=509,
        vision_end_token_id=508,
        text_config=dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=False, bos_token_id=0, eos_token_id=1, pad_token_id=0,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1])),
}
# FRE-Text's default model stands in for an MGT preset planned without --init (a stage-1 checkpoint of it)
STAGE1_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"



def model_config(name: str):
    """The transformers config of `name`: a known id (offline), a local checkpoint directory, or the hub's cache."""
    from transformers import AutoConfig, Qwen2_5_VLConfig, Qwen3VLConfig

    from rl.config import TINY_MODELS
    name = "tiny" if name == "classroom" else name or STAGE1_MODEL  # the classroom model has the tiny one's sizes
    if name in TINY_MODELS and name not in KNOWN_CONFIGS:  # the other tiny families, at the tiny sizes
        from rl.tiny_model import SPECIAL_TOKENS, tiny_config
        return tiny_config(TINY_MODELS[name], {t: 511 - i for i, t in enumerate(SPECIAL_TOKENS)}, 512)
    if name in KNOWN_CONFIGS:
        values = json.loads(json.dumps(KNOWN_CONFIGS[name]))
        family = values.pop("model_type", "qwen2_5_vl")
        return (Qwen3VLConfig if family == "qwen3_vl" else Qwen2_5_VLConfig)(**values)
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return AutoConfig.from_pretrained(str(path))
    try:
        return AutoConfig.from_pretrained(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached: one line naming what does work offline
        raise SystemExit(f"error: --model {name}: no config known offline; pass a local checkpoint directory or one "
                         f"of {', '.join(KNOWN_CONFIGS)}") from None


@dataclass(frozen=True)
class Param:
    name: str
    shape: tuple
    vision: bool  # in the vision tower
    matmul: bool  # read by a matmul (Linear / Conv): autocast makes a bf16 copy of it
    head: bool  # the LM head's weight (tied: the embedding too)
    backbone: bool  # in `model.model`, which the critic copies (all but an untied head)
    block: int  # index of the decoder layer / vision block it belongs to (-1: neither), FSDP2's units

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ModelInfo:
    params: tuple  # every parameter tensor once (a tied embedding is the head too)
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    vision: dict | None  # hidden, depth, heads, intermediate, patch, merge, temporal (None: a text model)

    @property
    def largest(self) -> int:  # the largest weight in a layer: its gradient, made before it is accumulated
        return max(p.numel for p in self.params if p.block >= 0)

    @property
    def block_params(self) -> int:
        """Elements of the largest FSDP2 unit (a decoder layer or a vision block)."""
        units = {(p.vision, p.block) for p in self.params if p.block >= 0}
        return max((sum(p.numel for p in self.params if (p.vision, p.block) == u) for u in units), default=0)


def quantized(p: Param) -> bool:
    """A weight that --load-in-4bit stores in NF4: a Linear's 2-D weight, not the LM head (bitsandbytes' rule)."""
    return p.matmul and len(p.shape) == 2 and p.name.endswith(".weight") and not p.head


def nf4_bytes(numel: int) -> int:
    """bitsandbytes NF4 with double quantisation: 4 bits per weight, an 8-bit absmax per block of 64, an fp32 scale
    per 256 of those blocks."""
    return numel // 2 + -(-numel // 64) + 4 * -(-numel // (64 * 256))


def lora_params(info: ModelInfo, cfg) -> list[Param]:
    """The LoRA adapters of a run (none without --lora-rank): A [r, in] and B [out, r] for each targeted Linear - the
    language model's, the vision tower's blocks too with --lora-vision, never the LM head or the patch merger - as
    rl/lora.py's peft config places them."""
    from rl.lora import VISION_TARGETS
    if not cfg.lora_rank:
        return []
    names = {t.strip() for t in cfg.lora_targets.split(",") if t.strip()}
    everything = names == {"all-linear"}
    if cfg.lora_vision:
        names |= set(VISION_TARGETS)
    out = []
    for p in info.params:
        module = p.name.rsplit(".", 2)[-2] if p.name.count(".") >= 1 else ""
        if not quantized(p) or (p.vision and (not cfg.lora_vision or ".visual.blocks." not in f".{p.name}")):
            continue
        if everything or module in names:
            r, (rows, cols) = cfg.lora_rank, p.shape
            prefix = p.name.removesuffix(".weight")
            out += [Param(f"{prefix}.lora_A.weight", (r, cols), p.vision, True, False, True, p.block),
                    Param(f"{prefix}.lora_B.weight", (rows, r), p.vision, True, False, True, p.block)]
    return out


def inspect_model(config) -> ModelInfo:
    """Every parameter of the model `config` describes, built on the meta device (no memory, no download)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    is_vlm = hasattr(config, "vision_config")
    with torch.device("meta"):
        model = (AutoModelForImageTextToText if is_vlm else AutoModelForCausalLM).from_config(config)
    linear = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv3d))]
    matmul = {id(t) for m in linear for t in (m.weight, m.bias) if t is not None}
    head = model.get_output_embeddings().weight
    tied = head is model.get_input_embeddings().weight
    def block(name):
        match = re.search(r"\.(?:layers|blocks)\.(\d+)\.", name)
        return int(match.group(1)) if match else -1

    params = tuple(Param(n, tuple(p.shape), ".visual." in f".{n}", id(p) in matmul, p is head,
                         tied or p is not head, block(n)) for n, p in model.named_parameters())
    text = config.get_text_config()
    heads = text.num_attention_heads
    vision = None
    if is_vlm:
        v = config.vision_config
        width = getattr(v, "embed_dim", None) or v.hidden_size  # Qwen2-VL: embed_dim (hidden_size is the output)
        mlp = getattr(v, "intermediate_size", None) or int(width * v.mlp_ratio)
        vision = dict(hidden=width, depth=v.depth, heads=v.num_heads, intermediate=mlp, patch=v.patch_size,
                      merge=v.spatial_merge_size)
    return ModelInfo(params, text.hidden_size, text.num_hidden_layers, heads, text.num_key_value_heads,
                     getattr(text, "head_dim", None) or text.hidden_size // heads, text.intermediate_size,
                     text.vocab_size, tied, vision)
