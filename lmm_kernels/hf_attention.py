"""Packed variable-length attention behind transformers' attention interface (the glue; the kernels are in
lmm_kernels/attention_triton.py, the reference in lmm_kernels/attention.py).

* `register()`: registers "triton_varlen" (Triton kernels) and "torch_varlen" (the reference, for fast CPU checks of
  the same routing) in `transformers.AttentionInterface`, with flash-attention-2's mask function in
  `AttentionMaskInterface`, so that the model hands the attention function a 2-D padding mask (or None when there
  is no padding) instead of a 4-D mask. Then `from_pretrained(..., attn_implementation="triton_varlen")` or
  `model.set_attn_implementation("triton_varlen")` routes the language model and the vision tower through it.

What the attention function receives from Qwen2.5-VL (transformers 5.23):
* language model (`Qwen2_5_VLAttention`): query [B, Hq, L, D], key/value [B, Hkv, Lk, D], `attention_mask` = the
  2-D [B, Lk] bool padding mask or None (no padding), `scaling`, `dropout`, `sliding_window=None`, `position_ids`
  (the text positions, only when 4-row packed position ids were given, else None) and the model forward's extra
  kwargs (e.g. `cu_seq_lens_q/k`, `max_length_q/k` for padding-free batches). `module.is_causal` is True.
* vision tower (`Qwen2_5_VLVisionAttention`): transformers decides by the *name* of the implementation
  (`"flash" in name`) whether to pass the packed sequences. With "triton_varlen"/"torch_varlen" it splits the
  windows / images itself and calls the function once per window (full-attention layers: once per image), each
  with query/key/value [1, H, L_i, D], `attention_mask=None`, `is_causal=False`. Under a name containing "flash"
  it would call once per layer with [1, H, total, D] and `cu_seq_lens_q/k`, `max_length_q/k`, `is_causal=False`,
  but transformers then tries to import a flash-attention package for such a name at load time; both forms are
  handled here, and `pack_vision_attention(model)` switches an already loaded model's vision tower to the packed
  form (one kernel launch per layer instead of one per window).

The function returns (attn_output [B, L, Hq, D], None), like sdpa_attention_forward / flash_attention_forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmm_kernels.attention import varlen_attention_torch


def _triton_backend(*args, **kwargs):
    from lmm_kernels.attention_triton import varlen_attention  # lazily: TRITON_INTERPRET is read when the kernels are defined
    return varlen_attention(*args, **kwargs)


def _cu_seqlens(lengths: torch.Tensor) -> torch.Tensor:
    return F.pad(torch.cumsum(lengths, 0, dtype=torch.int32), (1, 0))


def _attention_forward(backend, module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                       is_causal=None, sliding_window=None, softcap=None, position_ids=None, cu_seq_lens_q=None,
                       cu_seq_lens_k=None, max_length_q=None, max_length_k=None, **kwargs):
    if dropout:
        raise NotImplementedError("varlen attention has no dropout (Qwen2.5-VL uses attention_dropout=0)")
    if sliding_window is not None or softcap is not None or kwargs.get("s_aux") is not None:
        raise NotImplementedError("varlen attention supports neither sliding windows, softcap nor attention sinks")
    if attention_mask is not None and attention_mask.dim() != 2:
        raise ValueError(f"expected a 2-D padding mask (the flash-attention mask interface), got "
                         f"{tuple(attention_mask.shape)}; register() this implementation before building the model")
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", True))
    if not query.dtype == key.dtype == value.dtype:  # autocast: rotary embeddings leave q and k in fp32, v in bf16
        device = query.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else value.dtype
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    bsz, hq, lq, d = query.shape
    hkv, lk = key.shape[1], key.shape[2]
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))  # [B, L, H, D]

    def run(qp, kp, vp, cu_q, cu_k, max_q, max_k):
        return backend(qp, kp, vp, cu_q, cu_k, max_q, max_k, causal, scaling)

    if attention_mask is not None:  # padded batch: unpad -> varlen -> repad
        mask = attention_mask.to(torch.bool)
        if lk > mask.shape[-1]:  # static cache longer than the mask
            k, v = k[:, :mask.shape[-1]], v[:, :mask.shape[-1]]
            lk = mask.shape[-1]
        mask_q = mask[:, -lq:]  # the queries are the last lq positions (left padding when decoding)
        idx_k = mask.flatten().nonzero().flatten()
        idx_q = mask_q.flatten().nonzero().flatten()
        len_k, len_q = mask.sum(-1, dtype=torch.int32), mask_q.sum(-1, dtype=torch.int32)
        out = run(q.reshape(bsz * lq, hq, d)[idx_q], k.reshape(bsz * lk, hkv, d)[idx_k],
                  v.reshape(bsz * lk, hkv, d)[idx_k], _cu_seqlens(len_q), _cu_seqlens(len_k),
                  int(len_q.max()), int(len_k.max()))
        padded = out.new_zeros(bsz * lq, hq, d)
        padded[idx_q] = out
        return padded.view(bsz, lq, hq, d)

    if cu_seq_lens_q is None and position_ids is not None and bsz == 1 and lq > 1 and lq == lk:
        pos = position_ids.reshape(-1)
        if pos.numel() == lq and bool((pos.diff() < 0).any()):  # packed sequences restart their positions
            starts = (pos == pos.min()).nonzero().flatten()
            cu_seq_lens_q = cu_seq_lens_k = torch.cat([starts, starts.new_tensor([lq])]).to(torch.int32)
            max_length_q = max_length_k = int(cu_seq_lens_q.diff().max())

    if cu_seq_lens_q is not None:  # padding-free packed batch (vision tower under a flash name, or packed LM)
        if cu_seq_lens_k is None:
            cu_seq_lens_k = cu_seq_lens_q
        cu_q, cu_k = cu_seq_lens_q.to(torch.int32), cu_seq_lens_k.to(torch.int32)
        max_q = int(max_length_q) if max_length_q is not None else int(cu_q.diff().max())
        max_k = int(max_length_k) if max_length_k is not None else int(cu_k.diff().max())
        out = run(q.reshape(-1, hq, d), k.reshape(-1, hkv, d), v.reshape(-1, hkv, d), cu_q, cu_k, max_q, max_k)
        return out.view(bsz, -1, hq, d)

    # every row full length (no padding, or one window of the vision tower)
    ar = torch.arange(bsz + 1, dtype=torch.int32, device=query.device)
    out = run(q.reshape(bsz * lq, hq, d), k.reshape(bsz * lk, hkv, d), v.reshape(bsz * lk, hkv, d),
              ar * lq, ar * lk, lq, lk)
    return out.view(bsz, lq, hq, d)


def triton_varlen_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention-interface function over the Triton kernels: ([B, L, Hq, D], None)."""
    return _attention_forward(_triton_backend, module, query, key, value, attention_mask, scaling, dropout,
                              **kwargs), None


def torch_varlen_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The same routing over the PyTorch reference."""
    return _attention_forward(varlen_attention_torch, module, query, key, value, attention_mask, scaling, dropout,
                              **kwargs), None


def varlen_attention_sdpa(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None, causal=False,
                          softmax_scale=None):
    """torch's fused sdpa once per sequence: the fast torch path for packed batches (what a [T, T] block mask would
    compute, in time and memory linear in the number of sequences, not quadratic in their total)."""
    out = q.new_zeros(q.shape)
    cu_q, cu_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    for b in range(len(cu_q) - 1):
        qs, ks, vs = (x[lo:hi].transpose(0, 1)[None] for x, lo, hi in
                      ((q, cu_q[b], cu_q[b + 1]), (k, cu_k[b], cu_k[b + 1]), (v, cu_k[b], cu_k[b + 1])))
        if qs.shape[2] == 0 or ks.shape[2] == 0:
            continue
        mask = None
        if causal and qs.shape[2] != ks.shape[2]:  # bottom-right aligned, as flash-attn
            mask = (torch.arange(ks.shape[2], device=q.device)[None, :]
                    <= torch.arange(qs.shape[2], device=q.device)[:, None] + (ks.shape[2] - qs.shape[2]))
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, is_causal=causal and mask is None,
                                           scale=softmax_scale, enable_gqa=qs.shape[1] != ks.shape[1])
        out[cu_q[b]:cu_q[b + 1]] = o[0].transpose(0, 1)
    return out


def sdpa_varlen_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The same routing over torch's sdpa, one call per sequence (the torch path of packed batches)."""
    return _attention_forward(varlen_attention_sdpa, module, query, key, value, attention_mask, scaling, dropout,
                              **kwargs), None


IMPLEMENTATIONS = {
    "triton_varlen": triton_varlen_attention_forward,
    "torch_varlen": torch_varlen_attention_forward,
    "sdpa_varlen": sdpa_varlen_attention_forward,
    # vision-tower aliases: transformers passes the packed cu_seqlens only to implementations named "*flash*"
    "flash_triton_varlen": triton_varlen_attention_forward,
    "flash_torch_varlen": torch_varlen_attention_forward,
    "flash_sdpa_varlen": sdpa_varlen_attention_forward,
}


def register() -> list[str]:
    """Register the implementations and their mask function; returns their names. Idempotent: a name that is
    already registered (by an earlier call, or wrapped by a caller) is left as it is."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import flash_attention_mask
    for name, fn in IMPLEMENTATIONS.items():
        if name not in AttentionInterface._global_mapping:
            AttentionInterface.register(name, fn)
        if name not in AttentionMaskInterface._global_mapping:
            AttentionMaskInterface.register(name, flash_attention_mask)
    return list(IMPLEMENTATIONS)


def pack_vision_attention(model) -> None:
    """Make the vision tower of a model whose attention is "triton_varlen" / "torch_varlen" call the attention
    function once per layer with the packed `cu_seq_lens_q/k` instead of once per window.

    It sets the vision config's implementation to the "flash_" alias of the same function. Only the vision tower's
    own forward reads it (to choose the packed call); a later `model.set_attn_implementation(...)` resets it."""
    register()
    for module in model.modules():
        config = getattr(module, "config", None)
        impl = getattr(config, "_attn_implementation", None)
        vision = type(module).__name__.endswith(("VisionTransformerPretrainedModel", "VLVisionModel"))  # 2/2.5; 3
        if vision and impl in IMPLEMENTATIONS:
            if not impl.startswith("flash_"):
                config._attn_implementation_internal = "flash_" + impl
