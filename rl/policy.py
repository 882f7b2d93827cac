"""Load the policy (any Qwen2.5-VL, or Qwen2/Qwen2.5 text, checkpoint), its per-token log-probs, and the critic.

Batches come from rl/batch.py: prompts left-padded to P, responses right-padded, so that response token j of every
row sits at column P + j.
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
from rl.batch import model_inputs


# The fields that Qwen2VLVideoProcessor shares with the image processor, and the values of its own video settings, as
# transformers 5.23 saves them (`Qwen2VLVideoProcessor(...).to_dict()`; tests/test_checkpoint_loading.py checks both
# against the real class). With torchvision, stock transformers builds the video processor of a checkpoint that has
# only preprocessor_config.json (the layout Qwen2.5-VL was released in) the same way: the image processor's values
# plus these defaults.
_VIDEO_FIELDS_FROM_IMAGE = ("do_convert_rgb", "do_normalize", "do_rescale", "do_resize", "image_mean", "image_std",
                            "merge_size", "patch_size", "resample", "rescale_factor", "size", "temporal_patch_size")
QWEN2_VL_VIDEO_DEFAULTS = {"do_sample_frames": False, "max_frames": 768, "max_video_tokens": 128000, "min_frames": 4,
                           "return_metadata": False, "video_processor_type": "Qwen2VLVideoProcessor"}


def video_processor_config(image_processor) -> dict:
    """The config of the Qwen2VLVideoProcessor that goes with `image_processor` (same pixels, patch, merge and
    temporal sizes, normalisation), written without building the video processor (which needs torchvision)."""
    image = json.loads(image_processor.to_json_string())
    config = {k: image[k] for k in _VIDEO_FIELDS_FROM_IMAGE if k in image}
    return dict(sorted({**config, **QWEN2_VL_VIDEO_DEFAULTS}.items()))


def _saved_video_processor_config(path: str, **kwargs) -> dict:
    """The video processor config a checkpoint states (processor_config.json's `video_processor`, else
    video_preprocessor_config.json), as stock transformers reads it, or {} when it states none (then stock
    transformers derives it from preprocessor_config.json, as video_processor_config does, or, with no such file,
    cannot load the processor). Kept as written, so that what is saved again loads as the original would."""
    from transformers.models.auto.video_processing_auto import get_video_processor_config

    hub = {k: kwargs[k] for k in ("cache_dir", "force_download", "token", "revision", "local_files_only")
           if k in kwargs}
    config = dict(get_video_processor_config(path, **hub))
    config.pop("processor_class", None)
    return config if config.get("video_processor_type") else {}


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """The real Qwen2.5-VL processor minus its video processor.

    transformers 5 builds Qwen's video processor only with torchvision, which cannot be installed beside the CPU
    build of torch, and its AutoProcessor then cannot load any Qwen2.5-VL processor. Images and text go through the
    parent's code unchanged. The video processor's config is kept (`video_processor_config`: the checkpoint's own,
    else the one derived from the image processor) and saved, under the parent's class name, exactly as the stock
    processor saves it, so that a machine with torchvision loads the checkpoint with AutoProcessor as usual."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
        self.video_processor_config = video_processor_config(image_processor)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        saved = _saved_video_processor_config(str(pretrained_model_name_or_path), **kwargs)
        if saved:
            processor.video_processor_config = saved
        return processor

    def to_dict(self):
        """processor_config.json as Qwen2_5_VLProcessor writes it: image_processor, video_processor, class name."""
        out = super().to_dict()
        out["video_processor"] = copy.deepcopy(self.video_processor_config)
        out["processor_class"] = "Qwen2_5_VLProcessor"
        return out

    def save_pretrained(self, save_directory, **kwargs):
        out = super().save_pretrained(save_directory, **kwargs)
        path = Path(save_directory) / "tokenizer_config.json"
        if path.exists():
            cfg = json.loads(path.read_text())
            if cfg.get("processor_class") == type(self).__name__:
                cfg["processor_class"] = "Qwen2_5_VLProcessor"
                path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
        return out


def make_processor(tokenizer, chat_template: str, min_pixels: int, max_pixels: int):
    """A Qwen2.5-VL processor from parts (the tiny debug checkpoint builds one this way); the video processor, where
    torchvision can build it, has the image processor's sizes. Both branches save the same processor_config.json."""
    kw = dict(min_pixels=min_pixels, max_pixels=max_pixels, patch_size=14, merge_size=2, temporal_patch_size=2)
    if is_torchvision_available():
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor
        return Qwen2_5_VLProcessor(Qwen2VLImageProcessor(**kw), tokenizer, Qwen2VLVideoProcessor(**kw),
                                   chat_template=chat_template)
    from transformers import Qwen2VLImageProcessorPil
    return ImageOnlyQwen2_5_VLProcessor(Qwen2VLImageProcessorPil(**kw), tokenizer, chat_template=chat_template)


def set_image_pixels(processor, min_pixels: int, max_pixels: int):
    """Images are resized so that their pixel count lies in [min_pixels, max_pixels] (aspect ratio kept)."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is not None:
        image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}


def load_processor(path: str):
    """Processor of a vision-language checkpoint, tokenizer of a text-only one.

    A Qwen2.5-VL checkpoint loads with the stock AutoProcessor where torchvision is installed, and as
    ImageOnlyQwen2_5_VLProcessor where it is not (stock transformers cannot load it there). A checkpoint that states
    no video processor at all (saved without torchvision by an earlier version of this project) gets the one derived
    from its image processor."""
    config = AutoConfig.from_pretrained(path)
    if not hasattr(config, "vision_config"):
        return AutoTokenizer.from_pretrained(path)
    if config.model_type != "qwen2_5_vl":
        return AutoProcessor.from_pretrained(path)
    if not is_torchvision_available():
        return ImageOnlyQwen2_5_VLProcessor.from_pretrained(path)
    from transformers.models.auto.video_processing_auto import get_video_processor_config
    if get_video_processor_config(path):
        return AutoProcessor.from_pretrained(path)
    from transformers import Qwen2VLVideoProcessor
    parts = ImageOnlyQwen2_5_VLProcessor.from_pretrained(path)
    return Qwen2_5_VLProcessor(parts.image_processor, parts.tokenizer,
                               Qwen2VLVideoProcessor.from_dict(parts.video_processor_config),
                               chat_template=parts.chat_template)


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


def response_hidden(backbone, batch: dict) -> torch.Tensor:
    """Hidden states [B, R, H] at the positions that predict response tokens (padded: P-1 ... P+R-2; packed:
    `hidden_index`)."""
    hidden = backbone(**model_inputs(backbone, batch), use_cache=False).last_hidden_state
    if "hidden_index" in batch:
        return hidden[0, batch["hidden_index"].to(hidden.device)]
    P = batch["prompt_len"]
    return hidden[:, P - 1:-1]


def response_logprobs(model, batch: dict, temperature: float = 1.0, with_entropy: bool = False,
                      chunk_size: int = 1024, logprobs_fn=logprobs_from_hidden, keep_vision: bool = False):
    """Per-token log-prob [B, R] of each response token under `model` (and entropy [B, R] when asked), 0 on
    padding. Only the response tokens go through the LM head.

    Logits are divided by the sampling temperature, as the sampler did. `logprobs_fn` is the torch reference or
    the fused kernel."""
    hidden = response_hidden(model.model, batch)
    if keep_vision:
        hidden = vision_in_graph(model.model, hidden)
    mask = batch["action_mask"].to(hidden.device)
    targets = batch["targets"].to(hidden.device)
    logp, entropy = logprobs_fn(hidden[mask], model.get_output_embeddings().weight, targets[mask], temperature,
                                with_entropy=with_entropy, chunk_size=chunk_size)
    zeros = torch.zeros(mask.shape, dtype=logp.dtype, device=hidden.device)
    return zeros.masked_scatter(mask, logp), (zeros.masked_scatter(mask, entropy) if with_entropy else None)


def vision_in_graph(backbone, hidden: torch.Tensor) -> torch.Tensor:
    """`hidden` + 0 x the vision tower on one blank image. Under FSDP every rank must run the same modules in the
    same order: a micro-batch without images still passes through the vision tower (its gradient is 0)."""
    visual = backbone.visual
    cfg, m = visual.config, visual.spatial_merge_size
    param = next(visual.parameters())
    pixels = torch.zeros(m * m, cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size ** 2, dtype=param.dtype,
                         device=hidden.device)
    out = visual(pixels, grid_thw=torch.tensor([[1, m, m]], device=hidden.device))
    out = getattr(out, "pooler_output", out)
    return hidden + 0.0 * out.float().sum().to(hidden.dtype)


class Scorer(nn.Module):
    """A model's per-token log-probs as one module call: FSDP2 shards this module as its root unit, so the LM head
    (tied to the embeddings in the 3B model) is gathered inside the forward that uses it."""

    def __init__(self, model, temperature: float, chunk_size: int, keep_vision_in_graph: bool = False):
        super().__init__()
        self.model, self.temperature, self.chunk_size = model, temperature, chunk_size
        self.keep_vision_in_graph = keep_vision_in_graph and hasattr(model.config, "vision_config")

    def forward(self, batch: dict, logprobs_fn=logprobs_from_hidden, with_entropy: bool = False):
        return response_logprobs(self.model, batch, self.temperature, with_entropy, self.chunk_size, logprobs_fn,
                                 keep_vision=self.keep_vision_in_graph and batch.get("pixel_values") is None)


class Critic(nn.Module):
    """PPO critic: a copy of the policy's backbone with a scalar value head (OpenRLHF's critic, LMM-R1's GAE runs)."""

    def __init__(self, policy, keep_vision_in_graph: bool = False):
        super().__init__()
        self.backbone = copy.deepcopy(policy.model)
        hidden = policy.get_output_embeddings().weight.shape[1]
        # As the released critic: no bias, weight ~ N(0, 1 / (hidden + 1)) (the std, not the variance).
        self.value_head = nn.Linear(hidden, 1, bias=False, dtype=policy.dtype)
        nn.init.normal_(self.value_head.weight, std=1 / (hidden + 1))
        self.keep_vision_in_graph = keep_vision_in_graph and hasattr(policy.config, "vision_config")

    def forward(self, batch: dict) -> torch.Tensor:
        """Value [B, R] of the state before each response token."""
        hidden = response_hidden(self.backbone, batch)
        if self.keep_vision_in_graph and batch.get("pixel_values") is None:
            hidden = vision_in_graph(self.backbone, hidden)
        return self.value_head(hidden).squeeze(-1).float()
