"""LoRA and QLoRA RL through peft: low-rank adapters train, the base model stays frozen.

    --lora-rank 64 --lora-alpha 32 [--lora-targets ...] [--lora-vision] [--load-in-4bit]

The adapters are injected into the policy in place (`add_adapters`), so the rest of the code sees the same
transformers model: generation, packing, the Triton kernels and FSDP2 run unchanged. The KL reference is the policy
with its adapters switched off (`Reference`): the same base weights, no second copy. Checkpoints hold the adapter in
peft's format (adapter_config.json + adapter_model.safetensors) and the optimizer state of the adapters only;
final/ holds the merged model, which stock `from_pretrained` loads (`merged_state_dict`), and the adapter in
final/adapter/.
"""

import contextlib
import json
from pathlib import Path

# The language model's linear layers (attention and MLP); the vision tower's blocks add their own with --lora-vision.
LANGUAGE_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# a vision block's attention and MLP: qkv, proj; Qwen2.5-VL's MLP has the language model's names, Qwen2-VL's fc1 / fc2,
# Qwen3-VL's linear_fc1 / linear_fc2
VISION_TARGETS = ("qkv", "proj", "fc1", "fc2", "linear_fc1", "linear_fc2")
ADAPTER_DIR = "adapter"  # final/adapter/: the adapter beside the merged model


def lora_config(cfg, vision: bool):
    """peft's LoraConfig for the run: `cfg.lora_targets` (comma-separated module names, or 'all-linear') in the
    language model, and in the vision tower's blocks only with --lora-vision (never its patch embedding or merger)."""
    from peft import LoraConfig

    targets = [t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
    adapt_vision = vision and cfg.lora_vision
    if targets == ["all-linear"]:
        targets = "all-linear"
    elif adapt_vision:
        targets = sorted(set(targets) | set(VISION_TARGETS))
    exclude = (r".*\bvisual\.(?!blocks\.).*" if adapt_vision  # the blocks only: not the patch embedding or mergers
               else r".*\bvisual\b.*" if vision else None)
    return LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, exclude_modules=exclude, bias="none")


def add_adapters(model, cfg):
    """Inject LoRA adapters into `model` in place (everything else frozen); returns the peft model that owns them
    (saving, switching them off). Adapters are kept in fp32 over a bf16 base (peft's autocast_adapter_dtype)."""
    from peft import get_peft_model

    try:
        adapters = get_peft_model(model, lora_config(cfg, hasattr(model.config, "vision_config")))
    except ValueError as e:  # no module matches --lora-targets: one line
        raise SystemExit(f"error: --lora-targets {cfg.lora_targets}: {str(e).splitlines()[0]}") from None
    config = adapters.peft_config["default"]
    if Path(config.base_model_name_or_path or "").is_dir():  # a local base: found from any folder later (eval.py)
        config.base_model_name_or_path = str(Path(config.base_model_name_or_path).resolve())
    return adapters


class Reference:
    """The KL reference's log-probs: the policy's log-prob module called with its adapters switched off (the base
    model itself; no second copy)."""

    def __init__(self, adapters, policy_logprobs):
        self.adapters, self.policy_logprobs = adapters, policy_logprobs

    def __call__(self, batch: dict, *args, **kw):
        with self.adapters.disable_adapter():
            return self.policy_logprobs(batch, *args, **kw)


def scaling(config) -> float:
    """The factor of the low-rank product: alpha / r (alpha / sqrt(r) with rsLoRA)."""
    return config.lora_alpha / (config.r ** 0.5 if config.use_rslora else config.r)


def merged_state_dict(state: dict, scale: float, adapter: str = "default") -> dict:
    """A model state dict with LoRA layers (`x.base_layer.weight`, `x.lora_A.<adapter>.weight`,
    `x.lora_B.<adapter>.weight`) as the plain model's: `x.weight = W + scale * B @ A`, in W's dtype. Pure: the
    tensors given are not changed."""
    out = {}
    for key, value in state.items():
        if f".lora_A.{adapter}." in key or f".lora_B.{adapter}." in key:
            continue
        if ".base_layer." in key:
            prefix, _, name = key.partition(".base_layer.")
            if name == "weight" and f"{prefix}.lora_A.{adapter}.weight" in state:
                a, b = state[f"{prefix}.lora_A.{adapter}.weight"], state[f"{prefix}.lora_B.{adapter}.weight"]
                value = (value.float() + scale * (b.float() @ a.float())).to(value.dtype)
            key = f"{prefix}.{name}"
        out[key] = value
    return out


def dequantized_state_dict(model) -> dict:
    """The model's state dict with each bitsandbytes 4-bit weight (QLoRA's base) dequantized to bf16 and its
    quantisation state left out; the model's own state dict when nothing is quantized."""
    state = model.state_dict()
    if getattr(model, "hf_quantizer", None) is None:
        return state
    import bitsandbytes as bnb
    import torch
    from bitsandbytes.functional import dequantize_4bit

    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            for key in [k for k in state if k.startswith(f"{name}.weight.")]:
                del state[key]
            weight = module.weight
            state[f"{name}.weight"] = dequantize_4bit(weight.data, weight.quant_state).to(torch.bfloat16)
    return state


@contextlib.contextmanager
def unquantized(model):
    """save_pretrained of a dequantized state dict from a 4-bit model: transformers would write its quantized state
    instead, so the quantizer and its config are set aside for the block (stock classes then load a bf16 model)."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        yield
        return
    config = model.config.quantization_config
    model.hf_quantizer = None
    del model.config.quantization_config
    try:
        yield
    finally:
        model.hf_quantizer, model.config.quantization_config = quantizer, config


def adapter_state_dict(state: dict, adapter: str = "default") -> dict:
    """The adapter's tensors of a model state dict, named as peft saves them (`...lora_A.weight`)."""
    return {k.replace(f".{adapter}.", "."): v for k, v in state.items()
            if f".lora_A.{adapter}." in k or f".lora_B.{adapter}." in k}


def save_adapter(adapters, path: Path, state: dict | None = None) -> None:
    """The adapter in peft's format (adapter_config.json, adapter_model.safetensors) in `path`; `state` is the full
    model state dict when the weights are sharded (gathered by the caller)."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    adapters.peft_config["default"].save_pretrained(str(path))
    state = state if state is not None else adapters.get_base_model().state_dict()
    tensors = {"base_model.model." + k: v.detach().contiguous().cpu() for k, v in adapter_state_dict(state).items()}
    save_file(tensors, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})


def load_adapter(adapters, path: Path) -> None:
    """Put the adapter saved in `path` into `adapters` (every tensor must match: a mismatch is an error naming the
    checkpoint)."""
    from safetensors.torch import load_file

    saved = load_file(str(Path(path) / "adapter_model.safetensors"))
    model = adapters.get_base_model()
    wanted = {k.replace(".default.", "."): k for k in model.state_dict() if ".lora_A.default." in k
              or ".lora_B.default." in k}
    got = {k.removeprefix("base_model.model."): v for k, v in saved.items()}
    if set(got) != set(wanted):
        missing, extra = sorted(set(wanted) - set(got)), sorted(set(got) - set(wanted))
        raise ValueError(f"{path}: the adapter does not fit this run's LoRA layers (missing {missing[:2]}, "
                         f"unexpected {extra[:2]}): same --lora-rank, --lora-targets and --lora-vision as the run")
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, key in wanted.items():
            params[key].copy_(got[name])


def is_adapter(path: str | Path) -> bool:
    """A folder that holds a peft adapter and no model of its own (checkpoints of a LoRA run, final/adapter/)."""
    p = Path(path)
    return (p / "adapter_config.json").is_file() and not (p / "config.json").is_file()


def base_of(path: str | Path) -> str:
    """The base model an adapter folder was trained on (its adapter_config.json)."""
    return json.loads((Path(path) / "adapter_config.json").read_text())["base_model_name_or_path"]
