"""Log-prob of the taken token (and entropy) straight from hidden states and the LM head, chunk by chunk.

The plain path materialises logits [T, V] (V = 151,936 for Qwen2.5-VL) plus log_softmax copies for backward; here
each chunk of tokens is recomputed in backward (activation checkpointing), so at most [chunk, V] logits exist.
"""

import torch
from torch.utils.checkpoint import checkpoint


def _chunk_logprob(hidden, weight, targets, temperature: float):
    logits = hidden @ weight.T
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature  # bf16 logits -> fp32
    logz = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets[:, None]).squeeze(-1) - logz
    return logp, logits, logz


def _chunk_logprob_entropy(hidden, weight, targets, temperature: float):
    logp, logits, logz = _chunk_logprob(hidden, weight, targets, temperature)
    probs = torch.softmax(logits, dim=-1)
    entropy = logz - (probs * logits).sum(-1)
    return logp, entropy


def logprobs_from_hidden(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                         with_entropy: bool = False, chunk_size: int = 1024):
    """hidden [..., H], weight [V, H], targets [...] -> (log-prob [...], entropy [...] or None), at least fp32.

    The entropy is a metric: it is returned detached."""
    shape = targets.shape
    h, t = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    logps, entropies = [], []
    for i in range(0, t.numel(), chunk_size):
        hc, tc = h[i:i + chunk_size], t[i:i + chunk_size]
        if torch.is_grad_enabled() and (hc.requires_grad or weight.requires_grad):
            logp = checkpoint(lambda a, b, c: _chunk_logprob(a, b, c, temperature)[0], hc, weight, tc,
                              use_reentrant=False)
            if with_entropy:
                with torch.no_grad():
                    entropies.append(_chunk_logprob_entropy(hc, weight, tc, temperature)[1])
        elif with_entropy:
            logp, ent = _chunk_logprob_entropy(hc, weight, tc, temperature)
            entropies.append(ent)
        else:
            logp = _chunk_logprob(hc, weight, tc, temperature)[0]
        logps.append(logp)
    logp = torch.cat(logps).reshape(shape) if logps else h.new_zeros(shape, dtype=torch.float32)
    entropy = torch.cat(entropies).reshape(shape).detach() if with_entropy and entropies else None
    return logp, entropy
