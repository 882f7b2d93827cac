"""One step's data: prompts encoded once, padded batches built in one place, and the `Rollout` that holds them.

A prompt row is a dict of CPU tensors: `prompt_ids`, `mm_token_type_ids` and, with images, `pixel_values` and
`image_grid_thw` (as the processor made them). `collate` pads rows into one batch: prompts left-padded to P,
responses right-padded to R, so that response token j of every row sits at column P + j.

`Rollout` holds the step: the prompt rows, n responses per prompt, and preallocated per-token tensors [N, R] that the
log-prob pass writes into and the PPO micro-batches slice by index (nothing is copied back into rows).
"""

from dataclasses import dataclass, field

import torch
from transformers.processing_utils import ProcessorMixin

from data import load_image

TOKEN_KEYS = ("old_logp", "ref_logp", "old_values", "advantages", "returns", "entropy", "sampler_logp")


def is_vision_model(model) -> bool:
    return hasattr(model.config, "vision_config")


class UnusablePrompt(ValueError):
    """A prompt that cannot be used when a step draws it; the message names the row (file:line). `reason` names the
    count it adds to (data/<reason>)."""
    reason = "unusable_prompt"


class UnreadableImage(UnusablePrompt):
    """An image of the prompt cannot be read (a damaged or vanished file)."""
    reason = "unreadable_image"


class ImageTokenMismatch(UnusablePrompt):
    """The prompt's image placeholder tokens do not match its images (text that holds `<|image_pad|>` of its own):
    the processor refuses it here, before the model would fail on image features that do not match."""
    reason = "image_token_mismatch"


def _read_image(sample, image):
    try:
        return load_image(image)
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes Pillow raise: this one image is unreadable
        raise UnreadableImage(f"{sample.where}: image {image} cannot be read ({type(e).__name__}: "
                              f"{str(e).strip()[:200]})") from None


def _text_only(messages: list[dict]) -> list[dict]:
    out = []
    for m in messages:
        content = m["content"]
        if not isinstance(content, str):
            if any(part.get("type") == "image" or "image" in part for part in content):
                raise ValueError("this checkpoint has no vision tower but the prompt has an image")
            content = "".join(part.get("text", "") for part in content)
        out.append({"role": m["role"], "content": content})
    return out


def encode_prompts(processor, samples, max_prompt_len: int | None = None) -> list[dict]:
    """Per-sample prompt rows: `prompt_ids`, `mm_token_type_ids`, `pixel_values`, `image_grid_thw` (CPU tensors)."""
    rows = []
    vision = isinstance(processor, ProcessorMixin)
    for s in samples:
        messages = s.messages if vision else _text_only(s.messages)
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        images = [_read_image(s, im) for im in s.images] if vision else []
        try:
            enc = processor(text=[text], return_tensors="pt", **({"images": images} if images else {}))
        except ValueError as e:  # image placeholders in the text that its images do not fill
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise ImageTokenMismatch(f"{s.where}: {len(images)} image(s), but its text does not match them: "
                                     f"{first}") from None
        ids = enc["input_ids"][0]
        if max_prompt_len is not None and ids.numel() > max_prompt_len:
            raise ValueError(f"{s.where}: prompt of {ids.numel()} tokens exceeds --max-prompt-len {max_prompt_len}")
        row = {"prompt_ids": ids}
        if "mm_token_type_ids" in enc:
            row["mm_token_type_ids"] = enc["mm_token_type_ids"][0]
        if images:
            row["pixel_values"] = enc["pixel_values"]
            row["image_grid_thw"] = enc["image_grid_thw"]
        rows.append(row)
    return rows


def collate(rows: list[dict], pad_id: int) -> dict:
    """Pad rows into one batch. Prompts are left-padded to P, responses right-padded to R.

    Returns input_ids/attention_mask [B, P+R], mm_token_type_ids, pixel_values/image_grid_thw (concatenated),
    action_mask [B, R] and prompt_len P."""
    P = max(r["prompt_ids"].numel() for r in rows)
    R = max((r["response_ids"].numel() for r in rows if "response_ids" in r), default=0)
    B = len(rows)
    input_ids = torch.full((B, P + R), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(B, P + R, dtype=torch.long)
    mm_types = torch.zeros(B, P + R, dtype=torch.long)
    action_mask = torch.zeros(B, R, dtype=torch.bool)
    for i, r in enumerate(rows):
        p = r["prompt_ids"].numel()
        input_ids[i, P - p:P] = r["prompt_ids"]
        attention_mask[i, P - p:P] = 1
        if "mm_token_type_ids" in r:
            mm_types[i, P - p:P] = r["mm_token_type_ids"]
        if "response_ids" in r:
            n = r["response_ids"].numel()
            input_ids[i, P:P + n] = r["response_ids"]
            attention_mask[i, P:P + n] = 1
            action_mask[i, :n] = True
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "action_mask": action_mask,
             "prompt_len": P, "targets": input_ids[:, P:]}
    if any("mm_token_type_ids" in r for r in rows):
        batch["mm_token_type_ids"] = mm_types
    if any("pixel_values" in r for r in rows):
        batch["pixel_values"] = torch.cat([r["pixel_values"] for r in rows if "pixel_values" in r])
        batch["image_grid_thw"] = torch.cat([r["image_grid_thw"] for r in rows if "image_grid_thw" in r])
    return batch


def pack(rows: list[dict], pad_id: int) -> dict:
    """Rows end to end in one sequence [1, T] with no padding: attention stays within each row (the model sees
    per-row positions that restart at 0), images keep their order. `hidden_index` [B, R] is where the hidden state
    that predicts response token j of row i sits; `action_mask`, `targets` [B, R] as for `collate`."""
    B = len(rows)
    R = max((r["response_ids"].numel() for r in rows if "response_ids" in r), default=0)
    ids, mm, lengths = [], [], []
    hidden_index = torch.zeros(B, R, dtype=torch.long)
    targets = torch.full((B, R), pad_id, dtype=torch.long)
    action_mask = torch.zeros(B, R, dtype=torch.bool)
    offset = 0
    for i, r in enumerate(rows):
        prompt = r["prompt_ids"]
        response = r.get("response_ids", prompt.new_zeros(0))
        p, n = prompt.numel(), response.numel()
        ids += [prompt, response]
        mm += [r.get("mm_token_type_ids", torch.zeros(p, dtype=torch.long)), torch.zeros(n, dtype=torch.long)]
        hidden_index[i, :n] = offset + p - 1 + torch.arange(n)
        targets[i, :n] = response
        action_mask[i, :n] = True
        lengths.append(p + n)
        offset += p + n
    batch = {"input_ids": torch.cat(ids)[None], "seq_lens": lengths, "hidden_index": hidden_index,
             "targets": targets, "action_mask": action_mask,
             "row_grids": [r.get("image_grid_thw") for r in rows]}
    if any("mm_token_type_ids" in r for r in rows):
        batch["mm_token_type_ids"] = torch.cat(mm)[None]
    if any("pixel_values" in r for r in rows):
        batch["pixel_values"] = torch.cat([r["pixel_values"] for r in rows if "pixel_values" in r])
        batch["image_grid_thw"] = torch.cat([r["image_grid_thw"] for r in rows if "image_grid_thw" in r])
    return batch


def micro_batches(lengths: list[int], max_tokens: int, max_rows: int = 0) -> list[list[int]]:
    """Positions of `lengths` grouped so that each group's total stays within `max_tokens` (and `max_rows` rows,
    0 = no limit): first-fit decreasing. A row longer than the budget is a group of its own."""
    bins, totals = [], []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for b, total in enumerate(totals):
            if total + lengths[i] <= max_tokens and (not max_rows or len(bins[b]) < max_rows):
                bins[b].append(i)
                totals[b] += lengths[i]
                break
        else:
            bins.append([i])
            totals.append(lengths[i])
    return [sorted(b) for b in bins]


def _packed_position_ids(backbone, batch: dict) -> torch.Tensor:
    """Per-row positions, end to end: [1, T] for a text model; for Qwen2.5-VL [4, 1, T], the text positions (from
    which transformers builds the per-row attention) above each row's own 3-D M-RoPE positions."""
    text = torch.cat([torch.arange(n) for n in batch["seq_lens"]])[None]
    if not is_vision_model(backbone):
        return text
    rows, start = [], 0
    for n, grid in zip(batch["seq_lens"], batch["row_grids"]):
        if grid is None:
            rows.append(torch.arange(n).expand(3, 1, n))
        else:
            ids = batch["input_ids"][:, start:start + n]
            pos, _ = backbone.get_rope_index(ids, batch["mm_token_type_ids"][:, start:start + n], image_grid_thw=grid)
            rows.append(pos.cpu())
        start += n
    return torch.cat([text[None], torch.cat(rows, dim=-1)])


def position_ids(backbone, batch: dict) -> torch.Tensor:
    """Positions exactly as `generate` computes them: 1-D positions that skip left padding, and Qwen2.5-VL's 3-D
    M-RoPE positions when images are present (which needs `mm_token_type_ids`; without it transformers 5 silently
    falls back to 1-D positions)."""
    if "seq_lens" in batch:
        return _packed_position_ids(backbone, batch)
    mask = batch["attention_mask"]
    text = (mask.cumsum(-1) - 1).clamp(min=0)
    if not is_vision_model(backbone):
        return text
    if batch.get("image_grid_thw") is not None:
        pos, _ = backbone.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"],
                                            image_grid_thw=batch["image_grid_thw"], attention_mask=mask)
        return pos
    return text[None].expand(3, -1, -1)


def model_inputs(backbone, batch: dict) -> dict:
    """Keyword arguments of the backbone's forward, on its device."""
    inputs = {"input_ids": batch["input_ids"], "position_ids": position_ids(backbone, batch)}
    if "attention_mask" in batch:  # packed batches have none: the positions say where each row starts
        inputs["attention_mask"] = batch["attention_mask"]
    if is_vision_model(backbone) and batch.get("pixel_values") is not None:
        inputs["pixel_values"] = batch["pixel_values"].to(dtype=backbone.dtype)
        inputs["image_grid_thw"] = batch["image_grid_thw"]
        inputs["mm_token_type_ids"] = batch["mm_token_type_ids"]
    return {k: v.to(backbone.device) for k, v in inputs.items()}


@dataclass
class Rollout:
    """The step's samples: response i answers prompt i // n. Per-token tensors are [N, R] fp32 on the CPU, R the
    longest response, 0 on padding; `mask` is True on response tokens."""
    prompts: list[dict]
    n: int
    responses: list[torch.Tensor]
    finished: list[bool]
    mask: torch.Tensor = field(init=False)
    old_logp: torch.Tensor = field(init=False)
    ref_logp: torch.Tensor = field(init=False)
    old_values: torch.Tensor = field(init=False)
    advantages: torch.Tensor = field(init=False)
    returns: torch.Tensor = field(init=False)
    entropy: torch.Tensor = field(init=False)
    sampler_logp: torch.Tensor = field(init=False)  # written by the rollout engine that records its draws
    trainable: torch.Tensor = field(init=False)  # [N] bool: the sample is in the loss (--mask-truncated: finished)

    def __post_init__(self):
        lengths = torch.tensor([r.numel() for r in self.responses], dtype=torch.long)
        R = int(lengths.max()) if len(lengths) else 0
        self.mask = torch.arange(R)[None, :] < lengths[:, None]
        for key in TOKEN_KEYS:
            setattr(self, key, torch.zeros(len(self.responses), R))
        self.trainable = torch.ones(len(self.responses), dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.responses)

    def rows(self, idx) -> list[dict]:
        return [{**self.prompts[i // self.n], "response_ids": self.responses[i]} for i in idx]

    def lengths(self) -> list[int]:
        """Prompt + response tokens of each sample."""
        return [self.prompts[i // self.n]["prompt_ids"].numel() + r.numel() for i, r in enumerate(self.responses)]

    def micro_batches(self, idx, max_tokens: int, size: int) -> list[list[int]]:
        """Samples `idx` in micro-batches: packed up to `max_tokens` (prompt + response; at most `size` samples
        each) when max_tokens > 0, else `size` at a time."""
        idx = list(idx)
        if not max_tokens:
            return [idx[i:i + size] for i in range(0, len(idx), size)]
        lengths = self.lengths()
        return [[idx[j] for j in g] for g in micro_batches([lengths[i] for i in idx], max_tokens, size)]

    def texts(self, tokenizer, empty_response: str = "zero") -> list[str]:
        """The response texts the reward reads (special tokens dropped). --empty-response prompt, the released
        verifiers' `get_response_from_query(q) or q`: an empty (or blank) response is read as its whole query q,
        the prompt and the response decoded with special tokens."""
        texts = tokenizer.batch_decode(self.responses, skip_special_tokens=True)
        if empty_response == "prompt":
            texts = [t if t.strip() else tokenizer.decode(torch.cat([row["prompt_ids"], row["response_ids"]]))
                     for t, row in zip(texts, self.rows(range(len(self))))]
        return texts

    def batch(self, idx, pad_id: int, packed: bool = False) -> dict:
        """The model batch of samples `idx` (padded, or packed end to end), with their per-token tensors sliced
        to its width."""
        idx = list(idx)
        batch = (pack if packed else collate)(self.rows(idx), pad_id)
        R = batch["action_mask"].shape[1]
        batch.update({key: getattr(self, key)[idx, :R] for key in TOKEN_KEYS})
        batch["loss_mask"] = batch["action_mask"] & self.trainable[idx, None]
        return batch

    def groups(self, keep) -> "Rollout":
        """The prompts `keep` (indices) with their n samples each, and everything the rollout holds of them."""
        idx = [g * self.n + j for g in keep for j in range(self.n)]
        out = Rollout([self.prompts[g] for g in keep], self.n, [self.responses[i] for i in idx],
                      [self.finished[i] for i in idx])
        R = out.mask.shape[1]
        for key in TOKEN_KEYS:
            setattr(out, key, getattr(self, key)[idx, :R].clone())
        out.trainable = self.trainable[idx].clone()
        return out

    @classmethod
    def join(cls, parts: list["Rollout"]) -> "Rollout":
        """One rollout of several (the same n), in order."""
        out = cls([p for r in parts for p in r.prompts], parts[0].n, [x for r in parts for x in r.responses],
                  [f for r in parts for f in r.finished])
        row = 0
        for r in parts:
            for key in TOKEN_KEYS:
                getattr(out, key)[row:row + len(r), :r.mask.shape[1]] = getattr(r, key)
            out.trainable[row:row + len(r)] = r.trainable
            row += len(r)
        return out

    def store(self, idx, key: str, values: torch.Tensor):
        """Write per-token values [B, R_b] of the samples `idx` (a batch of them) into `key`; 0 on padding."""
        idx = list(idx)
        R = values.shape[1]
        getattr(self, key)[idx, :R] = torch.where(self.mask[idx, :R], values.detach().float().cpu(), 0.0)
