"""The processor of a checkpoint (chat template, tokenizer, image processor) and the tokenizer facts the rest uses.

A Qwen2.5-VL checkpoint loads with transformers' stock AutoProcessor wherever torchvision is installed. transformers
builds Qwen's video processor only with torchvision, and the PyPI build of torchvision cannot be loaded beside the
CPU build of torch (it links torch's CUDA libraries): on such a machine `ImageOnlyQwen2_5_VLProcessor` stands in. It
runs the stock processor's image and text code and saves exactly what the stock processor saves, so a checkpoint
written here loads with stock AutoProcessor on a machine with torchvision. (torchvision 0.28.0, the release for the
pinned torch 2.13.0, needs libtorch_cuda.so; the pins that would bring a loadable torchvision everywhere, torch
2.14.1 + torchvision 0.29.1, need triton 3.8, under which 8 fp32 kernel configurations spill on sm_80.)
"""

import copy
import json
from pathlib import Path

from transformers import AutoConfig, AutoProcessor, AutoTokenizer, Qwen2_5_VLProcessor
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
