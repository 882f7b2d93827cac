"""The processor of a checkpoint (chat template, tokenizer, image processor) and the tokenizer facts the rest uses.

A Qwen-VL checkpoint (Qwen2-VL, Qwen2.5-VL, Qwen3-VL: `FAMILIES`) loads with transformers' stock AutoProcessor
wherever torchvision is installed. transformers builds Qwen's video processors only with torchvision, and the PyPI
build of torchvision cannot be loaded beside the CPU build of torch (it links torch's CUDA libraries): on such a
machine the family's image-only processor (`_image_only`, e.g. `ImageOnlyQwen2_5_VLProcessor`) stands in. It
runs the stock processor's image and text code and saves exactly what the stock processor saves, so a checkpoint
written here loads with stock AutoProcessor on a machine with torchvision. (torchvision 0.28.0, the release for the
pinned torch 2.13.0, needs libtorch_cuda.so; the pins that would bring a loadable torchvision everywhere, torch
2.14.1 + torchvision 0.29.1, need triton 3.8, under which 8 fp32 kernel configurations spill on sm_80.)
"""

import copy
import json
from pathlib import Path

from transformers import (AutoConfig, AutoProcessor, AutoTokenizer, Qwen2_5_VLProcessor, Qwen2VLProcessor,
                          Qwen3VLProcessor)
from transformers.processing_utils import ProcessorMixin
from transformers.utils import is_torchvision_available


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


def qwen3_vl_video_processor_config(image_processor) -> dict:
    """The config of the Qwen3VLVideoProcessor that goes with `image_processor` (its class builds without
    torchvision; only the Qwen3-VL processor around it does not)."""
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    image = json.loads(image_processor.to_json_string())
    shared = ("patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std")
    return Qwen3VLVideoProcessor(**{k: image[k] for k in shared if k in image}).to_dict()


def _image_only(base, derive_video_config):
    """The real processor class `base` minus its video processor.

    transformers 5 builds Qwen's video processors only with torchvision, which cannot be installed beside the CPU
    build of torch, and its AutoProcessor then cannot load any Qwen-VL processor. Images and text go through the
    parent's code unchanged. The video processor's config is kept (the checkpoint's own, else the one
    `derive_video_config` derives from the image processor) and saved, under the parent's class name, exactly as
    the stock processor saves it, so that a machine with torchvision loads the checkpoint with AutoProcessor."""

    class ImageOnly(base):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            for name, default in (("image", "<|image_pad|>"), ("video", "<|video_pad|>"),
                                  ("vision_start", "<|vision_start|>"), ("vision_end", "<|vision_end|>")):
                token = getattr(tokenizer, f"{name}_token", None) or default
                setattr(self, f"{name}_token", token)
                setattr(self, f"{name}_token_id", tokenizer.convert_tokens_to_ids(token))
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
            self.video_processor_config = derive_video_config(image_processor)

        @classmethod
        def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
            processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
            saved = _saved_video_processor_config(str(pretrained_model_name_or_path), **kwargs)
            if saved:
                processor.video_processor_config = saved
            return processor

        def to_dict(self):
            """processor_config.json as the stock processor writes it: image_processor, video_processor, class."""
            out = super().to_dict()
            out["video_processor"] = copy.deepcopy(self.video_processor_config)
            out["processor_class"] = base.__name__
            return out

        def save_pretrained(self, save_directory, **kwargs):
            out = super().save_pretrained(save_directory, **kwargs)
            path = Path(save_directory) / "tokenizer_config.json"
            if path.exists():
                cfg = json.loads(path.read_text())
                if cfg.get("processor_class") == type(self).__name__:
                    cfg["processor_class"] = base.__name__
                    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
            return out

    ImageOnly.__name__ = ImageOnly.__qualname__ = f"ImageOnly{base.__name__}"
    return ImageOnly


ImageOnlyQwen2VLProcessor = _image_only(Qwen2VLProcessor, video_processor_config)
ImageOnlyQwen2_5_VLProcessor = _image_only(Qwen2_5_VLProcessor, video_processor_config)
ImageOnlyQwen3VLProcessor = _image_only(Qwen3VLProcessor, qwen3_vl_video_processor_config)
# model_type -> (the stock processor, its image-only stand-in, the image processor's patch size and normalisation)
FAMILIES = {
    "qwen2_vl": (Qwen2VLProcessor, ImageOnlyQwen2VLProcessor, 14, None),
    "qwen2_5_vl": (Qwen2_5_VLProcessor, ImageOnlyQwen2_5_VLProcessor, 14, None),
    "qwen3_vl": (Qwen3VLProcessor, ImageOnlyQwen3VLProcessor, 16, [0.5, 0.5, 0.5]),
}


def make_processor(tokenizer, chat_template: str, min_pixels: int, max_pixels: int, family: str = "qwen2_5_vl"):
    """A Qwen-VL processor from parts (the tiny checkpoints build one this way); the video processor, where
    torchvision can build it, has the image processor's sizes. Both branches save the same processor_config.json."""
    stock, image_only, patch, norm = FAMILIES[family]
    kw = dict(min_pixels=min_pixels, max_pixels=max_pixels, patch_size=patch, merge_size=2, temporal_patch_size=2,
              **({"image_mean": norm, "image_std": norm} if norm else {}))
    if is_torchvision_available():
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor, Qwen3VLVideoProcessor
        video = Qwen3VLVideoProcessor if family == "qwen3_vl" else Qwen2VLVideoProcessor
        return stock(Qwen2VLImageProcessor(**kw), tokenizer, video(**kw), chat_template=chat_template)
    from transformers import Qwen2VLImageProcessorPil
    return image_only(Qwen2VLImageProcessorPil(**kw), tokenizer, chat_template=chat_template)


def set_image_pixels(processor, min_pixels: int, max_pixels: int):
    """Images are resized so that their pixel count lies in [min_pixels, max_pixels] (aspect ratio kept)."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is not None:
        image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}


def load_processor(path: str):
    """Processor of a vision-language checkpoint, tokenizer of a text-only one.

    A Qwen-VL checkpoint loads with the stock AutoProcessor where torchvision is installed, and as its family's
    image-only processor where it is not (stock transformers cannot load it there). A Qwen2.5-VL checkpoint that
    states no video processor at all (saved without torchvision by an earlier version of this project) gets the one
    derived from its image processor."""
    config = AutoConfig.from_pretrained(path)
    if not hasattr(config, "vision_config"):
        return AutoTokenizer.from_pretrained(path)
    if config.model_type not in FAMILIES:
        return AutoProcessor.from_pretrained(path)
    if not is_torchvision_available():
        return FAMILIES[config.model_type][1].from_pretrained(path)
    if config.model_type != "qwen2_5_vl":
        return AutoProcessor.from_pretrained(path)
    from transformers.models.auto.video_processing_auto import get_video_processor_config
    if get_video_processor_config(path):
        return AutoProcessor.from_pretrained(path)
    from transformers import Qwen2VLVideoProcessor
    parts = ImageOnlyQwen2_5_VLProcessor.from_pretrained(path)
    return Qwen2_5_VLProcessor(parts.image_processor, parts.tokenizer,
                               Qwen2VLVideoProcessor.from_dict(parts.video_processor_config),
                               chat_template=parts.chat_template)


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
