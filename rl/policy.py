"""Load the policy (any Qwen2.5-VL, or Qwen2/Qwen2.5 text, checkpoint), build batches and compute log-probs.

Rows of a batch are per-sample dicts (prompt ids, response ids, images already encoded); `collate` pads them into
one batch: prompts left-padded, responses right-padded, so that response token j of every row sits at column P + j.
"""

import copy
import json
from pathlib import Path

import torch
from torch import nn
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor,
                          AutoTokenizer, Qwen2_5_VLProcessor)
from transformers.processing_utils import ProcessorMixin
from transformers.utils import is_torchvision_available

from kernels.logprob import logprobs_from_hidden


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """The real Qwen2.5-VL processor minus its video processor.

    transformers 5 builds Qwen's video processor only with torchvision, which cannot be installed beside the CPU
    build of torch. Images and text go through the parent's code unchanged; files are saved under the parent's name
    so that a GPU box (with torchvision) loads the checkpoint with AutoProcessor as usual."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def save_pretrained(self, save_directory, **kwargs):
        out = super().save_pretrained(save_directory, **kwargs)
        for name in ("processor_config.json", "tokenizer_config.json"):
            path = Path(save_directory) / name
            if path.exists():
                cfg = json.loads(path.read_text())
                if cfg.get("processor_class") == type(self).__name__:
                    cfg["processor_class"] = "Qwen2_5_VLProcessor"
                    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))
        return out


def make_processor(tokenizer, chat_template: str, min_pixels: int, max_pixels: int):
    """A Qwen2.5-VL processor from parts (the tiny debug checkpoint builds one this way)."""
    kw = dict(min_pixels=min_pixels, max_pixels=max_pixels, patch_size=14, merge_size=2, temporal_patch_size=2)
    if is_torchvision_available():
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor
        return Qwen2_5_VLProcessor(Qwen2VLImageProcessor(**kw), tokenizer, Qwen2VLVideoProcessor(),
                                   chat_template=chat_template)
    from transformers import Qwen2VLImageProcessorPil
    return ImageOnlyQwen2_5_VLProcessor(Qwen2VLImageProcessorPil(**kw), tokenizer, chat_template=chat_template)


def set_image_pixels(processor, min_pixels: int, max_pixels: int):
    """Images are resized so that their pixel count lies in [min_pixels, max_pixels] (aspect ratio kept)."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is not None:
        image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}


def is_vision_model(model) -> bool:
    return hasattr(model.config, "vision_config")


def load_processor(path: str):
    """Processor of a vision-language checkpoint, tokenizer of a text-only one."""
    config = AutoConfig.from_pretrained(path)
    if not hasattr(config, "vision_config"):
        return AutoTokenizer.from_pretrained(path)
    if is_torchvision_available() or config.model_type != "qwen2_5_vl":
        return AutoProcessor.from_pretrained(path)
    return ImageOnlyQwen2_5_VLProcessor.from_pretrained(path)


def load_policy(path: str, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa",
                device: str | torch.device = "cpu"):
    """(model, processor) through transformers' real classes, from a hub id or a local directory."""
    config = AutoConfig.from_pretrained(path)
    auto = AutoModelForImageTextToText if hasattr(config, "vision_config") else AutoModelForCausalLM
    model = auto.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation).to(device)
    return model, load_processor(path)


def tokenizer_of(processor):
    return getattr(processor, "tokenizer", processor)


def stop_token_ids(processor) -> list[int]:
    """<|im_end|> ends an assistant turn in the chat template; <|endoftext|> ends a document."""
    tok = tokenizer_of(processor)
    ids = [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    ids = [i for i in ids if i is not None and i != tok.unk_token_id]
    return ids or [tok.eos_token_id]


def pad_token_id(processor) -> int:
    tok = tokenizer_of(processor)
    return tok.pad_token_id if tok.pad_token_id is not None else stop_token_ids(processor)[-1]


def _text_only(messages: list[dict]) -> list[dict]:
    out = []
    for m in messages:
        content = m["content"]
        if not isinstance(content, str):
            if any(part.get("type") == "image" or "image" in part for part in content):
                raise ValueError("this checkpoint has no vision tower but the prompt has an image")
            content = "".join(part.get("text", "") for part in content)
        out.append({"role": m["role"], "content": content})
    return out


def encode_prompts(processor, samples, max_prompt_len: int | None = None) -> list[dict]:
    """Per-sample prompt rows: `prompt_ids`, `mm_token_type_ids`, `pixel_values`, `image_grid_thw` (CPU tensors)."""
    rows = []
    vision = isinstance(processor, ProcessorMixin)
    for s in samples:
        messages = s.messages if vision else _text_only(s.messages)
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        images = list(s.images) if vision else []
        if images:
            from data import load_image
            enc = processor(text=[text], images=[load_image(im) for im in images], return_tensors="pt")
        else:
            enc = processor(text=[text], return_tensors="pt")
        ids = enc["input_ids"][0]
        if max_prompt_len is not None and ids.numel() > max_prompt_len:
            raise ValueError(f"prompt of {ids.numel()} tokens exceeds --max-prompt-len {max_prompt_len} "
                             f"({s.meta.get('source', '?')} row {s.meta.get('row', '?')})")
        row = {"prompt_ids": ids}
        if "mm_token_type_ids" in enc:
            row["mm_token_type_ids"] = enc["mm_token_type_ids"][0]
        if images:
            row["pixel_values"] = enc["pixel_values"]
            row["image_grid_thw"] = enc["image_grid_thw"]
        rows.append(row)
    return rows


def collate(rows: list[dict], pad_id: int, token_keys=()) -> dict:
    """Pad rows into one batch. Prompts are left-padded to P, responses right-padded to R.

    Returns input_ids/attention_mask [B, P+R], mm_token_type_ids, pixel_values/image_grid_thw (concatenated),
    action_mask [B, R] and every per-token key of `token_keys` padded with zeros to [B, R]."""
    P = max(r["prompt_ids"].numel() for r in rows)
    R = max((r["response_ids"].numel() for r in rows if "response_ids" in r), default=0)
    B = len(rows)
    input_ids = torch.full((B, P + R), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(B, P + R, dtype=torch.long)
    mm_types = torch.zeros(B, P + R, dtype=torch.long)
    action_mask = torch.zeros(B, R, dtype=torch.bool)
    for i, r in enumerate(rows):
        p = r["prompt_ids"].numel()
        input_ids[i, P - p:P] = r["prompt_ids"]
        attention_mask[i, P - p:P] = 1
        if "mm_token_type_ids" in r:
            mm_types[i, P - p:P] = r["mm_token_type_ids"]
        if "response_ids" in r:
            n = r["response_ids"].numel()
            input_ids[i, P:P + n] = r["response_ids"]
            attention_mask[i, P:P + n] = 1
            action_mask[i, :n] = True
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "action_mask": action_mask,
             "prompt_len": P}
    if any("mm_token_type_ids" in r for r in rows):
        batch["mm_token_type_ids"] = mm_types
    if any("pixel_values" in r for r in rows):
        batch["pixel_values"] = torch.cat([r["pixel_values"] for r in rows if "pixel_values" in r])
        batch["image_grid_thw"] = torch.cat([r["image_grid_thw"] for r in rows if "image_grid_thw" in r])
    for key in token_keys:
        out = torch.zeros(B, R, dtype=torch.float32)
        for i, r in enumerate(rows):
            out[i, :r[key].numel()] = r[key]
        batch[key] = out
    return batch


def position_ids(backbone, batch: dict) -> torch.Tensor:
    """Positions exactly as `generate` computes them: 1-D positions that skip left padding, and Qwen2.5-VL's 3-D
    M-RoPE positions when images are present (which needs `mm_token_type_ids`; without it transformers 5 silently
    falls back to 1-D positions)."""
    mask = batch["attention_mask"]
    text = (mask.cumsum(-1) - 1).clamp(min=0)
    if not is_vision_model(backbone):
        return text
    if batch.get("image_grid_thw") is not None:
        pos, _ = backbone.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"],
                                            image_grid_thw=batch["image_grid_thw"], attention_mask=mask)
        return pos
    return text[None].expand(3, -1, -1)


def model_inputs(backbone, batch: dict) -> dict:
    """Keyword arguments of the backbone's forward, on its device."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "position_ids": position_ids(backbone, batch)}
    if is_vision_model(backbone) and batch.get("pixel_values") is not None:
        inputs["pixel_values"] = batch["pixel_values"].to(dtype=backbone.dtype)
        inputs["image_grid_thw"] = batch["image_grid_thw"]
        inputs["mm_token_type_ids"] = batch["mm_token_type_ids"]
    return {k: v.to(backbone.device) for k, v in inputs.items()}


def response_hidden(backbone, batch: dict) -> torch.Tensor:
    """Hidden states [B, R, H] at the positions that predict response tokens (P-1 ... P+R-2)."""
    hidden = backbone(**model_inputs(backbone, batch), use_cache=False).last_hidden_state
    P = batch["prompt_len"]
    return hidden[:, P - 1:-1]


def response_logprobs(model, batch: dict, temperature: float = 1.0, with_entropy: bool = False,
                      chunk_size: int = 1024, logprobs_fn=logprobs_from_hidden):
    """Per-token log-prob [B, R] of each response token under `model` (and entropy [B, R] when asked).

    Logits are divided by the sampling temperature, as the sampler did. Values at padding are meaningless:
    callers mask them with `batch["action_mask"]`. `logprobs_fn` is the torch reference or the fused kernel."""
    hidden = response_hidden(model.model, batch)
    P = batch["prompt_len"]
    targets = batch["input_ids"][:, P:].to(hidden.device)
    return logprobs_fn(hidden, model.get_output_embeddings().weight, targets, temperature,
                       with_entropy=with_entropy, chunk_size=chunk_size)


class Critic(nn.Module):
    """PPO critic: a copy of the policy's backbone with a scalar value head (OpenRLHF's critic, LMM-R1's GAE runs)."""

    def __init__(self, policy):
        super().__init__()
        self.backbone = copy.deepcopy(policy.model)
        hidden = policy.get_output_embeddings().weight.shape[1]
        self.value_head = nn.Linear(hidden, 1, dtype=policy.dtype)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, batch: dict) -> torch.Tensor:
        """Value [B, R] of the state before each response token."""
        hidden = response_hidden(self.backbone, batch)
        return self.value_head(hidden).squeeze(-1).float()
