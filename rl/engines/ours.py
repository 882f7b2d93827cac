"""The "ours" engine, in gpt-fast's shape: `prefill` runs each prompt once (with its image) and writes its K/V into
the preallocated cache rows of all n samples; `decode_one_token` runs one token for every live row; `sample` draws
from the tempered softmax by inverse CDF (one uniform per row, no sort unless top_p < 1) and returns the log-prob
and entropy of the draw, which the Rollout keeps (`sampler_logp`). Rows that stop leave the batch."""

import functools

import torch
import torch.nn.functional as F
from transformers.cache_utils import Cache, CacheLayerMixin

from rl.batch import is_vision_model, model_inputs

BLOCK = 256  # vocabulary entries per block of the two-level inverse-CDF draw


# -- sampling ------------------------------------------------------------------------------------------------------
def draw(weights: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """One index per row of `weights` [B, V] (>= 0), index i with probability weights[i] / weights.sum().

    Inverse CDF with one uniform per row, in two levels: a block of `block` entries by its mass, then the entry
    inside it (fp64 cumulative sums over B x V/block and B x block values). torch.multinomial instead draws V
    exponentials per row (the exponential race), most of a CPU decode step at V = 151,936."""
    B, V = weights.shape
    full = V // block * block
    mass = weights[:, :full].view(B, -1, block).sum(-1)
    if full < V:
        mass = torch.cat([mass, weights[:, full:].sum(-1, keepdim=True)], 1)
    mass = mass.double()
    cdf = mass.cumsum(-1)
    u = torch.rand(B, 1, dtype=torch.float64, device=weights.device) * cdf[:, -1:]
    blk = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[1] - 1)
    frac = ((u - (cdf.gather(1, blk) - mass.gather(1, blk))) / mass.gather(1, blk)).nan_to_num_(0.0).clamp_(0, 1)
    cols = blk * block + torch.arange(block, device=weights.device)
    inside = weights.gather(1, cols.clamp(max=V - 1)).double().masked_fill_(cols >= V, 0.0).cumsum_(-1)
    j = torch.searchsorted(inside, frac * inside[:, -1:], right=True).clamp_(max=block - 1)
    return (blk * block + j).squeeze(1).clamp_(max=V - 1)


def nucleus(weights: torch.Tensor, top_p: float) -> torch.Tensor:
    """`weights` [B, V] restricted to the smallest set of the largest entries whose mass reaches top_p (the nucleus
    of Holtzman et al. and transformers' TopPLogitsWarper; at least one entry), zero elsewhere; returns the draw."""
    sorted_w, order = weights.sort(-1, descending=True)
    before = sorted_w.double().cumsum(-1) - sorted_w.double()  # mass of the larger entries
    keep = before < top_p * sorted_w.double().sum(-1, keepdim=True)
    keep[:, 0] = True
    return order.gather(1, draw(sorted_w.masked_fill_(~keep, 0.0))[:, None]).squeeze(1)


def sample(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0, scratch: torch.Tensor | None = None):
    """Draw one token per row of `logits` [B, V] (fp32, overwritten) from softmax(logits / temperature), nucleus-
    truncated when top_p < 1; temperature 0 = greedy. Returns (token, log-prob, entropy), each [B], the last two
    of the full tempered softmax (what the training forward computes). `scratch` [>= B, V] saves an allocation."""
    if temperature <= 0:
        logp_all = torch.log_softmax(logits, -1)
        token = logp_all.argmax(-1)
        return token, logp_all.gather(1, token[:, None]).squeeze(1), -(logp_all.exp() * logp_all).sum(-1)
    x = logits
    if temperature != 1.0:
        x.div_(temperature)
    x.sub_(x.amax(-1, keepdim=True))  # x <= 0: exp cannot overflow
    e = torch.exp(x, out=scratch[:x.shape[0]]) if scratch is not None else x.exp()
    token = draw(e) if top_p >= 1.0 else nucleus(e, top_p)
    total = e.sum(-1)
    log_total = total.log()
    logp = x.gather(1, token[:, None]).squeeze(1) - log_total
    entropy = log_total - torch.mul(e, x, out=x).nan_to_num_(0.0).sum(-1) / total  # H = log Z - E_p[x]; 0 * -inf
    return token, logp, entropy


def head_logits(hidden: torch.Tensor, weight: torch.Tensor, out: torch.Tensor | None = None,
                tmp: torch.Tensor | None = None) -> torch.Tensor:
    """LM head, fp32 logits [B, V]; written into `out` (rows :B) when given: on the CPU a fresh [B, V] buffer per
    step costs as much as the sampling itself (page faults). Under autocast the product is bf16, on a GPU and on a
    CPU alike (with AVX-512 BF16, 8 rows, V = 151,936, one thread: 17 vs 30 ms at H = 256, 64 vs 262 ms at
    H = 2048; bench/cpu_bf16.py --head), then copied into `out`. Else, with `tmp` (>= B x V elements) and at most
    32 rows on the CPU, W @ h^T goes into `tmp` and one transposing copy into `out`: MKL is much slower at h @ W^T
    for a few rows (27 vs 42 ms at 8 rows, H = 256)."""
    B, V = hidden.shape[0], weight.shape[0]
    if out is None or not hidden.dtype == weight.dtype == out.dtype or \
            torch.is_autocast_enabled(hidden.device.type):
        logits = F.linear(hidden, weight)
        return logits.float() if out is None else out[:B].copy_(logits)
    if tmp is not None and B <= 32 and hidden.device.type == "cpu":
        return out[:B].copy_(torch.mm(weight, hidden.t(), out=tmp.view(-1)[:V * B].view(V, B)).t())
    return torch.mm(hidden, weight.t(), out=out[:B])


# -- KV cache ------------------------------------------------------------------------------------------------------
class _Layer(CacheLayerMixin):
    """One layer's K/V, preallocated [rows, kv heads, max_len, head dim]; `update` returns views up to the length
    written so far. While `fanout` > 1 (the prefill), each incoming row is written into `fanout` consecutive rows."""
    is_sliding = False

    def __init__(self, max_len: int, fanout: int):
        super().__init__()
        self.max_len, self.fanout, self.length = max_len, fanout, 0

    def lazy_initialization(self, key_states, value_states):
        rows = key_states.shape[0] * self.fanout
        self.keys = key_states.new_zeros(rows, key_states.shape[1], self.max_len, key_states.shape[3])
        self.values = value_states.new_zeros(rows, value_states.shape[1], self.max_len, value_states.shape[3])
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, end = self.length, self.length + key_states.shape[2]
        if end > self.max_len:
            raise RuntimeError(f"KV cache of {self.max_len} positions is full")
        self.length = end
        if self.fanout > 1:  # a prompt: computed once, its K/V copied into the rows of its n samples
            if start:
                raise RuntimeError("prompts are written into an empty cache")
            self.keys[:, :, :end].unflatten(0, (-1, self.fanout)).copy_(key_states[:, None])
            self.values[:, :, :end].unflatten(0, (-1, self.fanout)).copy_(value_states[:, None])
            return key_states, value_states
        self.keys[:, :, start:end] = key_states
        self.values[:, :, start:end] = value_states
        return self.keys[:, :, :end], self.values[:, :, :end]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.max_len


class RolloutCache(Cache):
    """The K/V of one generation batch: n rows per prompt, rows dropped as they finish (`keep`)."""

    def __init__(self, num_layers: int, max_len: int, fanout: int):
        super().__init__(layers=[_Layer(max_len, fanout) for _ in range(num_layers)])

    def prompts_written(self):
        for layer in self.layers:
            layer.fanout = 1

    def keep(self, rows: torch.Tensor):
        for layer in self.layers:
            layer.keys, layer.values = layer.keys[rows], layer.values[rows]


# -- the engine ----------------------------------------------------------------------------------------------------
def language_model(model):
    """The decoder stack (token ids -> hidden states) of a Qwen2.5-VL or a Qwen2 text model."""
    return model.model.language_model if is_vision_model(model) else model.model


def prefill(model, inputs: dict, cache: RolloutCache) -> torch.Tensor:
    """The prompts (with their images) through the model once; K/V into the cache rows of all their samples.
    Returns the last position's hidden state per prompt [b, H]."""
    return model.model(**inputs, past_key_values=cache, use_cache=cache is not None).last_hidden_state[:, -1]


def decode_one_token(model, tokens, positions, mask, cache, temperature, top_p, logits_buf=None, scratch=None):
    """One token for every row: tokens [B] at `positions` ([B, 1], or [3, B, 1] M-RoPE), `mask` [B, L+1] the
    padding mask of the cache plus this token -> (next token, log-prob, entropy), each [B]."""
    hidden = language_model(model)(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions,
                                   past_key_values=cache, use_cache=True).last_hidden_state[:, -1]
    logits = head_logits(hidden, model.get_output_embeddings().weight, logits_buf, scratch)
    return sample(logits, temperature, top_p, scratch)


def generate_batch(model, processor, batch: dict, n: int, temperature: float, top_p: float, max_new_tokens: int,
                   stop_ids: list[int], forbidden_ids: list[int], compile: bool = False):
    """n samples for each prompt of one collated batch -> tokens, log-probs, entropies, each [b*n, max_new_tokens]
    (CPU; what follows a row's first stop or forbidden token is left for the caller to cut)."""
    device = model.device
    done_ids = torch.tensor(list(stop_ids) + list(forbidden_ids), device=device)
    step_fn = _decode_step(compile, device)
    P, b = batch["prompt_len"], batch["input_ids"].shape[0]
    B, V = b * n, model.get_output_embeddings().weight.shape[0]
    inputs = model_inputs(model.model, batch)
    positions = inputs["position_ids"]  # [b, P] or [3, b, P]
    # After the prompt every axis continues from the largest prompt position + 1 (Qwen2.5-VL's rope_deltas).
    next_pos = (positions.amax(dim=(0, -1)) if positions.dim() == 3 else positions.amax(-1)) + 1
    next_pos = next_pos.repeat_interleave(n)
    mask = torch.zeros(B, P + max_new_tokens, dtype=torch.bool, device=device)
    mask[:, :P] = inputs["attention_mask"].bool().repeat_interleave(n, 0)
    cache = RolloutCache(model.config.get_text_config().num_hidden_layers, P + max_new_tokens, n) \
        if max_new_tokens > 1 else None
    logits_buf = torch.empty(B, V, device=device)
    scratch = torch.empty(B, V, device=device)

    hidden = prefill(model, inputs, cache)
    if cache is not None:
        cache.prompts_written()
    first = head_logits(hidden, model.get_output_embeddings().weight)
    logits_buf.view(b, n, V).copy_(first[:, None])
    token, logp, entropy = sample(logits_buf, temperature, top_p, scratch)

    out_tokens = torch.full((B, max_new_tokens), -1, dtype=torch.long, device=device)
    out_logp = torch.zeros(B, max_new_tokens, device=device)
    out_entropy = torch.zeros(B, max_new_tokens, device=device)
    rows = torch.arange(B, device=device)  # the output row of each live cache row
    stopped = torch.zeros(B, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        out_tokens[rows, t], out_logp[rows, t], out_entropy[rows, t] = token, logp, entropy
        stopped |= torch.isin(token, done_ids)
        if t + 1 == max_new_tokens:
            break
        n_stopped = int(stopped.sum())
        if n_stopped == len(rows):
            break
        if n_stopped and n_stopped >= len(rows) // 8:  # finished rows leave (each compaction copies the cache)
            live = (~stopped).nonzero().squeeze(1)
            rows, token, next_pos, mask, stopped = rows[live], token[live], next_pos[live], mask[live], stopped[live]
            cache.keep(live)
        mask[:, P + t] = True
        pos = (next_pos + t)[:, None]
        if positions.dim() == 3:
            pos = pos[None].expand(3, -1, -1)
        token, logp, entropy = step_fn(model, token, pos, mask[:, :P + t + 1], cache, temperature, top_p,
                                       logits_buf, scratch)
    return out_tokens.cpu(), out_logp.cpu(), out_entropy.cpu()


def _decode_step(compile: bool, device: torch.device):
    """The decode step, compiled on CUDA when asked (torch.compile with dynamic shapes: the batch shrinks and the
    cache grows, so no CUDA graphs), eager elsewhere."""
    if compile and device.type == "cuda":
        return _compiled_decode_step()
    return decode_one_token


@functools.cache
def _compiled_decode_step():
    return torch.compile(decode_one_token, dynamic=True)
