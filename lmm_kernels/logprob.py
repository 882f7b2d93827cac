"""Log-prob of the taken token (and entropy) straight from hidden states and the LM head, never all the logits.

The plain path materialises logits [T, V] (V = 151,936 for Qwen2.5-VL) and several [T, V] copies for backward
(`logprobs_plain`, the definition). Here:

forward   chunk by chunk: logits [chunk, V] -> logsumexp, the target's logit, entropy; keeps no graph, saves lse [T].
backward  chunk by chunk: recompute the logits into one reused [chunk, V] buffer as
          dlogits = grad_logp * (onehot(target) - softmax) / temperature, then grad_hidden = dlogits @ W and
          grad_W += dlogits^T @ h in place (entropy is a metric: no gradient flows through it).

Peak extra memory is chunk x V plus the gradients themselves, whatever T is. `linear_logprobs` runs this
orchestration with either the torch chunk functions below or the Triton kernels of lmm_kernels/logprob_triton.py.
"""

import torch


def logprobs_plain(hidden, weight, targets, temperature: float = 1.0, with_entropy: bool = False):
    """The definition, with full [..., V] logits: for tests and as the benchmark's baseline."""
    logits = hidden @ weight.T
    logp_all = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature, dim=-1)
    logp = logp_all.gather(-1, targets[..., None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1).detach() if with_entropy else None
    return logp, entropy


def torch_forward(h, w, t, temperature: float, with_entropy: bool, chunk_size: int):
    """h [T, H], w [V, H], t [T] -> (logp, entropy | None, lse), fp32 (fp64 for fp64 inputs), chunk x V at a time.

    Two reused [chunk, V] buffers and one exp per logit: lse = max + log(sum exp(x - max)), entropy =
    log(sum) - sum(e * (x - max)) / sum with e = exp(x - max) (a fresh [chunk, V] tensor per chunk and logsumexp's
    own passes cost ~40 % more on the CPU)."""
    T = h.shape[0]
    dtype = torch.promote_types(h.dtype, torch.float32)
    lse = torch.empty(T, dtype=dtype, device=h.device)
    t_logit = torch.empty_like(lse)
    entropy = torch.empty_like(lse) if with_entropy else None
    logits = torch.empty(min(chunk_size, T), w.shape[0], dtype=dtype, device=h.device)
    exps = torch.empty_like(logits)
    with torch.no_grad():
        for i in range(0, T, chunk_size):
            hc = h[i:i + chunk_size]
            c = hc.shape[0]
            x = torch.mm(hc, w.T, out=logits[:c]) if hc.dtype == w.dtype == dtype else \
                logits[:c].copy_(hc @ w.T)
            if temperature != 1.0:
                x.div_(temperature)
            t_logit[i:i + c] = x.gather(-1, t[i:i + c, None]).squeeze(-1)
            top = x.amax(-1, keepdim=True)
            e = torch.exp(x.sub_(top), out=exps[:c])
            total = e.sum(-1)
            log_total = total.log()
            lse[i:i + c] = top.squeeze(-1) + log_total
            if with_entropy:
                entropy[i:i + c] = log_total - torch.mul(e, x, out=x).sum(-1) / total
    return t_logit - lse, entropy, lse


def torch_dlogits(h, w, t, lse, g, out, temperature: float):
    """Fill out [c, V] with g * (onehot(t) - softmax(h @ w.T / temperature)) / temperature."""
    x = torch.mm(h, w.T, out=out) if out.dtype == h.dtype == torch.promote_types(h.dtype, torch.float32) \
        else (h @ w.T).to(lse.dtype)
    if temperature != 1.0:
        x.div_(temperature)
    x.sub_(lse[:, None]).exp_()  # softmax
    x[torch.arange(x.shape[0], device=x.device), t] -= 1.0
    x.mul_((g / -temperature)[:, None])
    if x is not out:
        out.copy_(x)


class LinearLogprob(torch.autograd.Function):
    """(hidden [T, H], weight [V, H], targets [T]) -> (logp [T], entropy [T], not differentiable)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, with_entropy, chunk_size, forward_fn, dlogits_fn):
        logp, entropy, lse = forward_fn(hidden, weight, targets, temperature, with_entropy, chunk_size)
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.temperature, ctx.chunk_size, ctx.dlogits_fn = temperature, chunk_size, dlogits_fn
        entropy = lse.new_zeros(0) if entropy is None else entropy
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, _grad_entropy):
        h, w, t, lse = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[:2]
        T, V = h.shape[0], w.shape[0]
        chunk = max(1, min(ctx.chunk_size, T))
        dl_buf = torch.empty((chunk, V), dtype=torch.promote_types(h.dtype, torch.float32)
                             if h.dtype == torch.float64 else h.dtype, device=h.device)
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros(w.shape, dtype=torch.promote_types(w.dtype, torch.float32), device=w.device) \
            if need_w else None
        g = grad_logp.to(lse.dtype).contiguous()  # the kernel reads it as contiguous (a .sum() gives stride 0)
        for i in range(0, T, chunk):
            c = min(chunk, T - i)
            dl = dl_buf[:c]
            ctx.dlogits_fn(h[i:i + c], w, t[i:i + c], lse[i:i + c], g[i:i + c], dl, ctx.temperature)
            if need_h:
                torch.mm(dl, w, out=grad_h[i:i + c])
            if need_w:
                if grad_w.dtype == dl.dtype:
                    grad_w.addmm_(dl.t(), h[i:i + c])  # in place: no second [V, H] buffer
                else:  # 16-bit inputs: per-chunk product in the input dtype, running sum in fp32
                    grad_w.add_(torch.mm(dl.t(), h[i:i + c]))
        if need_w:
            grad_w = grad_w.to(w.dtype)
        return grad_h, grad_w, None, None, None, None, None, None


def linear_logprobs(hidden, weight, targets, temperature, with_entropy, chunk_size, forward_fn, dlogits_fn):
    """Shapes and dtypes around LinearLogprob: hidden [..., H], targets [...] -> (logp [...], entropy | None)."""
    if weight.dtype != hidden.dtype:
        raise TypeError(f"hidden and weight must share a dtype, got {hidden.dtype} / {weight.dtype}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"weight {tuple(weight.shape)} does not match hidden size {hidden.shape[-1]}")
    shape = targets.shape
    h = hidden.reshape(-1, hidden.shape[-1])
    h = h if h.stride(-1) == 1 else h.contiguous()
    w = weight if weight.stride(-1) == 1 else weight.contiguous()
    t = targets.reshape(-1).to(torch.int64).contiguous()
    if t.numel() == 0:
        zeros = h.new_zeros(shape, dtype=torch.promote_types(h.dtype, torch.float32))
        return zeros, (zeros.clone() if with_entropy else None)
    logp, entropy = LinearLogprob.apply(h, w, t, float(temperature), bool(with_entropy), int(chunk_size),
                                        forward_fn, dlogits_fn)
    return logp.reshape(shape), (entropy.reshape(shape) if with_entropy else None)


def logprobs_from_hidden(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                         with_entropy: bool = False, chunk_size: int = 128):
    """hidden [..., H], weight [V, H], targets [...] -> (log-prob [...], entropy [...] or None), at least fp32.

    The torch implementation of the chunked algorithm (the `--kernels torch` path and the CPU path)."""
    return linear_logprobs(hidden, weight, targets, temperature, with_entropy, chunk_size, torch_forward,
                           torch_dlogits)
