"""Log-prob of the taken token (and entropy) straight from hidden states and the LM head, never all the logits.

The plain path materialises logits [T, V] (V = 151,936 for Qwen2.5-VL) and several [T, V] copies for backward
(`logprobs_plain`, the definition). Here:

forward   chunk by chunk: logits [chunk, V] -> logsumexp, the target's logit, entropy; keeps no graph, saves lse [T].
backward  chunk by chunk: recompute the logits into one reused [chunk, V] buffer as
          dlogits = grad_logp * (onehot(target) - softmax) / temperature, then grad_hidden = dlogits @ W and
          grad_W += dlogits^T @ h in place (entropy is a metric: no gradient flows through it).

Peak extra memory is chunk x V plus the gradients themselves, whatever T is. `linear_logprobs` runs this
orchestration with either the torch chunk functions below or the Triton kernels of lmm_kernels/logprob_triton.py.

The gradient in the forward (`linear_logprob_loss`, Liger-Kernel's fused linear cross-entropy made to fit a policy
loss): the backward above recomputes every logit because the upstream gradient d loss / d logp_t is unknown in the
forward, and grad_W = sum_t g_t dlogits_t^T h_t cannot be summed over tokens without it (storing dlogits is the
[T, V] tensor we avoid). For a loss that is a sum of per-token terms, loss = sum_t f_t(logp_t) (every token-level
policy loss: the aggregations are linear, the ratio, clip, KL and correction weight are per token), g_t = f_t'(logp_t)
is known as soon as the chunk's logp_t is. So the caller hands over f (`token_loss`) and, while the chunk's logits
are in memory: logp -> g = autograd of f -> dlogits -> grad_hidden = dlogits @ W, grad_W += dlogits^T @ h. The
backward only scales the stored gradients by the scalar upstream gradient: 3 GEMMs in all, like the plain path,
against 4 with the recompute. Not for losses that couple tokens (GSPO's sequence ratio): those keep the path above.
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


def _flat(hidden, weight, targets):
    """Checked and flattened inputs: (targets' shape, h [T, H], w [V, H], t [T] int64), rows contiguous."""
    if weight.dtype != hidden.dtype:
        raise TypeError(f"hidden and weight must share a dtype, got {hidden.dtype} / {weight.dtype}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"weight {tuple(weight.shape)} does not match hidden size {hidden.shape[-1]}")
    h = hidden.reshape(-1, hidden.shape[-1])
    h = h if h.stride(-1) == 1 else h.contiguous()
    w = weight if weight.stride(-1) == 1 else weight.contiguous()
    return targets.shape, h, w, targets.reshape(-1).to(torch.int64).contiguous()


def linear_logprobs(hidden, weight, targets, temperature, with_entropy, chunk_size, forward_fn, dlogits_fn):
    """Shapes and dtypes around LinearLogprob: hidden [..., H], targets [...] -> (logp [...], entropy | None)."""
    shape, h, w, t = _flat(hidden, weight, targets)
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


# ------------------------------------------------------------------------------------------------------------------
# The gradient in the forward: a scalar loss of per-token terms
# ------------------------------------------------------------------------------------------------------------------


def scratch(bufs: dict, name: str, rows: int, cols: int, dtype, device):
    """A [rows, cols] view of the buffer `name` of `bufs`, allocated by the first (largest) chunk, reused after."""
    if name not in bufs:
        bufs[name] = torch.empty(rows, cols, dtype=dtype, device=device)
    return bufs[name][:rows]


def logprob_loss_plain(hidden, weight, targets, token_loss, temperature: float = 1.0, with_entropy: bool = False):
    """The definition of `logprob_loss_from_hidden` on full logits: (sum of token_loss(logp, all), logp, entropy)."""
    logp, entropy = logprobs_plain(hidden, weight, targets, temperature, with_entropy)
    return token_loss(logp.reshape(-1), slice(0, logp.numel())).sum(), logp.detach(), entropy


def torch_loss_chunk(h, w, t, temperature: float, with_entropy: bool, grad_of, bufs: dict):
    """One chunk of the in-forward path: h [c, H] -> (logp [c], entropy [c] | None, dlogits [c, V] | None).

    dlogits = g * (onehot(t) - softmax) / temperature with g = grad_of(logp), in the matmul dtype (h's; fp32 for
    fp32). One [c, V] buffer and one exp per logit: e = exp(x - max) replaces x in place and gives lse, entropy and
    then, scaled in place, dlogits. The entropy's sum_j e_j (x_j - max) is taken row block by row block, before each
    block's exp overwrites its x (a [16, V] buffer, not a second [c, V] one)."""
    c, V = h.shape[0], w.shape[0]
    dtype = torch.promote_types(h.dtype, torch.float32)
    x = scratch(bufs, "logits", c, V, dtype, h.device)
    if h.dtype == dtype:
        torch.mm(h, w.T, out=x)
    else:
        x.copy_(h @ w.T)
    if temperature != 1.0:
        x.div_(temperature)
    t_logit = x.gather(-1, t[:, None]).squeeze(-1)
    top = x.amax(-1, keepdim=True)
    x.sub_(top)
    if with_entropy:
        e_dot_x = torch.empty(c, dtype=dtype, device=h.device)
        rows = scratch(bufs, "rows", min(c, 16), V, dtype, h.device)
        for r in range(0, c, 16):
            xr = x[r:r + 16]
            er = torch.exp(xr, out=rows[:xr.shape[0]])
            e_dot_x[r:r + 16] = torch.bmm(er[:, None], xr[:, :, None]).view(-1)
            xr.copy_(er)
        e = x
    else:
        e = x.exp_()
    total = e.sum(-1)
    log_total = total.log()
    logp = t_logit - (top.squeeze(-1) + log_total)
    entropy = log_total - e_dot_x / total if with_entropy else None
    if grad_of is None:
        return logp, entropy, None
    g = grad_of(logp).to(dtype) / temperature
    e.mul_((-g / total)[:, None])  # -g * softmax / temperature
    e[torch.arange(c, device=e.device), t] += g
    dl = e if h.dtype == dtype else scratch(bufs, "dl", c, V, h.dtype, h.device).copy_(e)
    return logp, entropy, dl


class LinearLogprobLoss(torch.autograd.Function):
    """(hidden [T, H], weight [V, H], targets [T], token_loss) -> (loss [], logp [T], entropy [T] | [0]); only the
    loss is differentiable, and its gradients are computed in the forward (see the module docstring)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, token_loss, temperature, with_entropy, chunk_size, need_h, need_w,
                chunk_fn):
        T = hidden.shape[0]
        dtype = torch.promote_types(hidden.dtype, torch.float32)
        logp = torch.empty(T, dtype=dtype, device=hidden.device)
        entropy = torch.empty_like(logp) if with_entropy else logp.new_zeros(0)
        loss = torch.zeros((), dtype=dtype, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.promote_types(weight.dtype, torch.float32),
                             device=weight.device) if need_w else None
        bufs = {}
        for i in range(0, T, chunk_size):
            rows = slice(i, min(i + chunk_size, T))
            h = hidden[rows]

            def grad_of(lp, rows=rows):
                nonlocal loss
                with torch.enable_grad():
                    lp = lp.detach().requires_grad_()
                    part = token_loss(lp, rows).sum()
                    g = torch.autograd.grad(part, lp)[0] if part.requires_grad else torch.zeros_like(lp)
                loss = loss + part.detach()
                return g

            lp, ent, dl = chunk_fn(h, weight, targets[rows], temperature, with_entropy,
                                   grad_of if need_h or need_w else None, bufs)
            if dl is None:
                loss = loss + token_loss(lp, rows).sum()
            logp[rows] = lp
            if with_entropy:
                entropy[rows] = ent
            if need_h:
                torch.mm(dl, weight, out=grad_h[rows])
            if need_w:
                if grad_w.dtype == dl.dtype:
                    grad_w.addmm_(dl.t(), h)  # in place: no second [V, H] buffer
                else:  # 16-bit inputs: per-chunk product in the input dtype, running sum in fp32
                    grad_w.add_(torch.mm(dl.t(), h))
        del bufs
        ctx.grads = [grad_h, None if grad_w is None else grad_w.to(weight.dtype)]
        ctx.mark_non_differentiable(logp, entropy)
        return loss, logp, entropy

    @staticmethod
    def backward(ctx, grad_loss, _grad_logp, _grad_entropy):
        if ctx.grads is None:
            raise RuntimeError("linear_logprob_loss: its gradients were handed out by a first backward (they are "
                               "computed once, in the forward); do not backward through it twice")
        grad_h, grad_w = ctx.grads
        ctx.grads = None  # autograd takes these tensors as they are (no copy): drop our references
        scale = grad_loss.item()  # a Python number: 16-bit gradients are scaled in fp32, then rounded once
        grads = [None if x is None else x.mul_(scale) for x in (grad_h, grad_w)]
        return (*grads, None, None, None, None, None, None, None, None)


def linear_logprob_loss(hidden, weight, targets, token_loss, temperature, with_entropy, chunk_size, chunk_fn):
    """Shapes around LinearLogprobLoss: hidden [..., H], targets [...] -> (loss [], logp [...] detached, entropy).

    token_loss(logp_rows, rows) -> per-token loss terms of those tokens; logp_rows is fp32 [rows] (fp64 for fp64
    inputs), rows a slice of the flattened token order. The loss is the sum of all terms; its gradient reaches hidden
    and weight only (token_loss's other inputs are constants) and must be a per-token function of logp."""
    shape, h, w, t = _flat(hidden, weight, targets)
    grad = torch.is_grad_enabled()
    need_h, need_w = grad and hidden.requires_grad, grad and weight.requires_grad
    if t.numel() == 0:
        zeros = h.new_zeros(shape, dtype=torch.promote_types(h.dtype, torch.float32))
        loss = token_loss(zeros.reshape(-1), slice(0, 0)).sum() + 0.0 * h.sum() + 0.0 * w.sum()
        return loss, zeros, (zeros.clone() if with_entropy else None)
    loss, logp, entropy = LinearLogprobLoss.apply(h, w, t, token_loss, float(temperature), bool(with_entropy),
                                                  max(1, int(chunk_size)), need_h, need_w, chunk_fn)
    return loss, logp.reshape(shape), (entropy.reshape(shape) if with_entropy else None)


def logprob_loss_from_hidden(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, token_loss,
                             temperature: float = 1.0, with_entropy: bool = False, chunk_size: int = 128):
    """hidden [..., H], weight [V, H], targets [...] -> (loss = sum of token_loss terms, logp [...], entropy | None),
    the gradients of the loss computed in the forward (torch implementation; `linear_logprob_loss` says the
    contract). Equals `logprob_loss_plain` up to float rounding."""
    return linear_logprob_loss(hidden, weight, targets, token_loss, temperature, with_entropy, chunk_size,
                               torch_loss_chunk)
