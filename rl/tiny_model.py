"""A tiny random-weight Qwen2.5-VL checkpoint, built in code so that tests and the debug preset run offline.

It is saved with `save_pretrained` and then loaded by the same `load_policy` that loads the 3B model, so the debug
run exercises exactly the real classes, processor and chat template. Only the sizes (and a small BPE vocabulary
trained here on a few kilobytes of text) differ from Qwen/Qwen2.5-VL-3B-Instruct.
"""

import json
from pathlib import Path

import torch

# The chat template of Qwen2.5-VL-Instruct (tokenizer_config.json / chat_template.json of the released checkpoints).
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The ChatML template of Qwen2.5 text models, without the tool-calling branches.
QWEN2_5_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
]

# Text the tiny BPE is trained on: the R1 format, digits and the LaTeX that math answers use.
_CORPUS = [
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the answer.",
    "<think> Let me compute step by step. </think><answer> \\boxed{42} </answer>",
    "\\frac{1}{2} + \\frac{3}{4} = \\frac{5}{4}, x = 7, 0.5, 12%, \\sqrt{2}, \\pi, 3x + 5 = 20",
    "What is the area of the triangle? Solve for x. Find the value. How many? The answer is",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 25 30 50 100",
]


def train_tokenizer(corpus: list[str], vocab_size: int):
    """Byte-level BPE with Qwen2's pre-tokenizer, wrapped in the real Qwen2Tokenizer class."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, errors="replace")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.chat_template = QWEN2_5_VL_CHAT_TEMPLATE
    return tokenizer


def _mrope_section(head_dim: int) -> list[int]:
    """Qwen2.5-VL's split of the rotary frequencies over (time, height, width): 16/24/24 of 64 at head dim 128."""
    half = head_dim // 2
    return [half // 4, 3 * half // 8, half - half // 4 - 3 * half // 8]


def tiny_config(family: str, ids: dict, vocab: int, hidden: int = 64, layers: int = 2, rope_theta: float = 1e6,
                mrope_section: list[int] | None = None):
    """The config of a tiny random model of `family` (qwen2_5_vl, qwen2_vl, qwen3_vl): text hidden 64, 2 layers, 4
    heads / 2 kv; a vision tower of depth 2, hidden 32, merging 2x2 patches (14 px; 16 for Qwen3-VL)."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig

    heads = 4
    text = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=2, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": rope_theta,
                                 "mrope_section": mrope_section or _mrope_section(hidden // heads)},
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                tie_word_embeddings=False)
    tokens = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    if family == "qwen2_vl":
        vision = dict(depth=2, embed_dim=32, hidden_size=hidden, mlp_ratio=2, num_heads=2, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2)
        return Qwen2VLConfig(text_config=text, vision_config=vision, **tokens)
    if family == "qwen3_vl":  # interleaved M-RoPE, deep-stack features from the first vision block
        text = {**text, "head_dim": hidden // heads,
                "rope_parameters": {**text["rope_parameters"], "mrope_interleaved": True}}
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden,
                      patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                      deepstack_visual_indexes=[0])
        return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **tokens)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1])
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **tokens)


def build_tiny_checkpoint(path: str | Path, corpus: list[str] = (), vocab_size: int = 512, hidden: int = 64,
                          layers: int = 2, rope_theta: float = 1e6, max_pixels: int = 112 * 112, seed: int = 0,
                          text_only: bool = False, family: str = "qwen2_5_vl",
                          mrope_section: list[int] | None = None) -> Path:
    """Write a random tiny Qwen2.5-VL (text hidden 64, 2 layers, 4 heads / 2 kv; vision depth 2, hidden 32), or of
    another `family` (qwen2_vl, qwen3_vl: `tiny_config`), with its tokenizer and processor to `path`; returns the
    path. Deterministic for a given seed and corpus. `text_only` writes a tiny Qwen2 text model with the Qwen2.5
    chat template instead."""
    from transformers import AutoModelForImageTextToText, Qwen2Config, Qwen2ForCausalLM

    from rl.processor import make_processor

    path = Path(path)
    tokenizer = train_tokenizer(_CORPUS + list(corpus), vocab_size)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    heads = 4
    if text_only:
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
            num_attention_heads=heads, num_key_value_heads=2, max_position_embeddings=4096,
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]))
        tokenizer.chat_template = QWEN2_5_CHAT_TEMPLATE
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        return path
    config = tiny_config(family, ids, len(tokenizer), hidden, layers, rope_theta, mrope_section)
    assert sum(config.text_config.rope_parameters["mrope_section"]) == hidden // heads // 2
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    processor = make_processor(tokenizer, QWEN2_5_VL_CHAT_TEMPLATE, min_pixels=28 * 28, max_pixels=max_pixels,
                               family=family)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
