"""The policy: load any Qwen2.5-VL (or Qwen2 / Qwen2.5 text) checkpoint, and its per-token log-probs.

Batches come from rl/batch.py: prompts left-padded to P, responses right-padded, so that response token j of every
row sits at column P + j.
"""

import copy

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

import lmm_kernels
from lmm_kernels.logprob import logprobs_from_hidden
from rl import lora
from rl.batch import model_inputs
from rl.offload import move
from rl.processor import load_processor


def load_policy(path: str, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa",
                device: str | torch.device = "cpu", load_in_4bit: bool = False):
    """(model, processor) through transformers' real classes, from a hub id or a local directory. A LoRA adapter
    folder (a LoRA run's checkpoint, final/adapter/) loads its base model with the adapter merged in (peft).
    `load_in_4bit`: the weights in bitsandbytes NF4, computing in bf16 (QLoRA's base; CUDA only)."""
    if lora.is_adapter(path):
        from peft import PeftModel

        base, processor = load_policy(lora.base_of(path), dtype, attn_implementation, device)
        return PeftModel.from_pretrained(base, path).merge_and_unload(), processor
    config = AutoConfig.from_pretrained(path)
    auto = AutoModelForImageTextToText if hasattr(config, "vision_config") else AutoModelForCausalLM
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.bfloat16)
        model = auto.from_pretrained(path, dtype=torch.bfloat16, attn_implementation=attn_implementation,
                                     quantization_config=nf4, device_map={"": torch.device(device)})
    else:
        model = auto.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation).to(device)
    return model, load_processor(path)


def load_reference(policy, path: str | None, dtype: torch.dtype, kernels_, device: torch.device,
                   compute_dtype: torch.dtype | None, offload: bool = False):
    """The KL reference, the initial policy: a copy of `policy` (loaded from `path` instead when the run resumes),
    frozen, in the compute dtype. With `offload` (--ref-offload, one process) it waits on the CPU and visits the
    device for the log-prob phase only."""
    if path is not None:
        ref, _ = load_policy(path, dtype, kernels_.attn_implementation, device)
        lmm_kernels.prepare_model(ref, kernels_)
    else:
        ref = copy.deepcopy(policy)
    ref.requires_grad_(False).eval()
    if compute_dtype is not None:
        ref.to(compute_dtype)
    if offload:
        move(ref, torch.device("cpu"))
    return ref


def response_hidden(backbone, batch: dict) -> torch.Tensor:
    """Hidden states [B, R, H] at the positions that predict response tokens (padded: P-1 ... P+R-2; packed:
    `hidden_index`)."""
    hidden = backbone(**model_inputs(backbone, batch), use_cache=False).last_hidden_state
    if "hidden_index" in batch:
        return hidden[0, batch["hidden_index"].to(hidden.device)]
    P = batch["prompt_len"]
    return hidden[:, P - 1:-1]


def response_tokens(model, batch: dict, keep_vision: bool = False):
    """(hidden [K, H], targets [K]) of the K response tokens, the action mask [B, R] that selects them (row-major)
    and the hidden states [B, R, H] they come from. Only these tokens go through the LM head."""
    hidden = response_hidden(model.model, batch)
    if keep_vision:
        hidden = vision_in_graph(model.model, hidden)
    mask = batch["action_mask"].to(hidden.device)
    return hidden[mask], batch["targets"].to(hidden.device)[mask], mask, hidden


def response_logprobs(model, batch: dict, temperature: float = 1.0, with_entropy: bool = False,
                      chunk_size: int = 1024, logprobs_fn=logprobs_from_hidden, keep_vision: bool = False):
    """Per-token log-prob [B, R] of each response token under `model` (and entropy [B, R] when asked), 0 on
    padding. Only the response tokens go through the LM head.

    Logits are divided by the sampling temperature, as the sampler did. `logprobs_fn` is the torch reference or
    the fused kernel."""
    h, targets, mask, hidden = response_tokens(model, batch, keep_vision)
    logp, entropy = logprobs_fn(h, model.get_output_embeddings().weight, targets, temperature,
                                with_entropy=with_entropy, chunk_size=chunk_size)
    if logp.numel() == 0:  # no response token (every response empty): 0 log-probs, still in the graph for backward
        logp = logp + 0.0 * hidden.sum()
    return scatter(mask, logp), (scatter(mask, entropy) if with_entropy else None)


def response_loss(model, batch: dict, loss_fn, token_loss, temperature: float = 1.0, with_entropy: bool = False,
                  chunk_size: int = 1024, keep_vision: bool = False):
    """(loss, log-probs [B, R], entropy [B, R] | None) where loss = the sum of token_loss(logp_rows, rows) over the
    response tokens (rows of the action mask's tokens, row-major), its gradient computed inside the log-prob forward
    (`loss_fn`: lmm_kernels.Kernels.logprob_loss) so that the backward recomputes no logits. The log-probs and
    entropy are detached (metrics)."""
    h, targets, mask, hidden = response_tokens(model, batch, keep_vision)
    loss, logp, entropy = loss_fn(h, model.get_output_embeddings().weight, targets, token_loss, temperature,
                                  with_entropy=with_entropy, chunk_size=chunk_size)
    if logp.numel() == 0:  # no response token: a loss of 0, still in the graph for backward (as above)
        loss = loss + 0.0 * hidden.sum()
    return loss, scatter(mask, logp), (scatter(mask, entropy) if with_entropy else None)


def scatter(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Per-token values [K] of the mask's tokens as [B, R], 0 elsewhere."""
    return torch.zeros(mask.shape, dtype=values.dtype, device=values.device).masked_scatter(mask, values)


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


class LogProbs(nn.Module):
    """A model's per-token log-probs as one module call: FSDP2 shards this module as its root unit, so the LM head
    (tied to the embeddings in the 3B model) is gathered inside the forward that uses it."""

    def __init__(self, model, temperature: float, chunk_size: int, keep_vision_in_graph: bool = False):
        super().__init__()
        self.model, self.temperature, self.chunk_size = model, temperature, chunk_size
        self.keep_vision_in_graph = keep_vision_in_graph and hasattr(model.config, "vision_config")

    def forward(self, batch: dict, logprobs_fn=logprobs_from_hidden, with_entropy: bool = False, token_loss=None):
        """(logp, entropy | None); with `token_loss`, logprobs_fn is a loss kernel (Kernels.logprob_loss) and the
        result is response_loss's (loss, logp, entropy | None)."""
        keep = self.keep_vision_in_graph and batch.get("pixel_values") is None
        if token_loss is not None:
            return response_loss(self.model, batch, logprobs_fn, token_loss, self.temperature, with_entropy,
                                 self.chunk_size, keep_vision=keep)
        return response_logprobs(self.model, batch, self.temperature, with_entropy, self.chunk_size, logprobs_fn,
                                 keep_vision=keep)


def check_kernels(trainer, batch: dict, logp: torch.Tensor) -> float:
    """--kernel-check-every: the same micro-batch through the torch references (attention and log-prob); the
    largest |log-prob difference|, an error above --kernel-check-tol."""
    cfg, mask = trainer.cfg, batch["action_mask"]
    reference = lmm_kernels.reference_attention(trainer.policy, trainer.kernels, cfg.attn)
    with torch.no_grad(), trainer.autocast(), reference:
        ref, _ = trainer.policy_logprobs(batch)  # the torch log-prob path
    diff = (logp.detach().float() - ref.float()).abs()[mask].max().item() if mask.any() else 0.0
    tol = cfg.kernel_check_tol or (1e-3 if trainer.autocast_dtype is None else 5e-2)
    if not diff <= tol:
        raise RuntimeError(f"kernel check failed at update {trainer.update_step}: log-probs of the "
                           f"{trainer.kernels.name} kernels differ from the torch references by {diff:.3g} > "
                           f"{tol:g}; rerun with --kernels torch")
    return diff
