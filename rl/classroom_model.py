"""The classroom model: a tiny Qwen2.5-VL that already half knows the classroom tasks, so RL has something to sharpen.

A random tiny model earns reward 0 at every step and learns nothing a person can see. This one is the real
Qwen2.5-VL classes at toy size (rl/tiny_model.py), given a short supervised warm-up on the classroom problems
(data/synth/classroom.py): the text form, the image form and a little geometry, answering as worked steps. The
warm-up is deliberately short and half of its answers are written without the R1 tags, so the model starts weak -
right now and then, more often on text than on images, and in the R1 format only about half the time - like a base
model before RL: the format reward rises first, then accuracy.

    model = classroom_model(seed=0)      # <cache>/classroom_model/v2_seed0, built once (about a minute on 2 cores)

`--model classroom` (the classroom presets) resolves here with the run's --seed; the cache is $LMM_R1_CACHE or
~/.cache/lmm_r1, and a missing or half-written model is rebuilt. Deterministic for a seed (the same weights on the
same machine and library versions, whatever its number of cores: the warm-up runs on one thread, because the
order of a multi-threaded sum changes the rounding, and over 800 steps that changes the model: seed 42 read 29 % of
the held-out text problems when built on 2 threads and 35 % on one).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

VERSION = 2  # bump when anything below changes what is built (2: built on one thread)
HIDDEN, LAYERS = 64, 2  # the debug model's sizes (rl/tiny_model.py)
ROPE_THETA = 1e4  # Qwen's 1e6 leaves a head of 16 dims almost no resolution between neighbouring tokens
STEPS, BATCH, LR = 800, 32, 3e-3  # the warm-up: AdamW, cosine to 0, on the response tokens only
MIX = {"text": 0.45, "image": 0.45, "geo": 0.10}  # share of each form in the warm-up data
OFF_FORMAT = 0.5  # share of warm-up answers written without the R1 tags ("... The answer is \boxed{8}.")
POOL = 2048  # warm-up problems (drawn from the training split only)


def cache_dir(cache: str | Path | None = None) -> Path:
    from data.io import DEFAULT_CACHE
    return Path(cache or DEFAULT_CACHE) / "classroom_model"


def classroom_model(seed: int = 0, cache: str | Path | None = None, steps: int | None = None, log=print) -> Path:
    """The warm classroom model of `seed` (and `steps` warm-up steps, the recipe's STEPS by default): built into the
    cache when missing, then its path."""
    steps = steps or STEPS
    folder = cache_dir(cache) / (f"v{VERSION}_seed{seed}" + (f"_steps{steps}" if steps != STEPS else ""))
    if (folder / "warmup.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=folder.parent))
    try:
        log(f"building the classroom model (seed {seed}) into {folder}: a tiny Qwen2.5-VL and a {steps}-step "
            f"warm-up on the classroom problems")
        build(tmp, seed, steps)
        if folder.exists():  # an incomplete earlier build (no warmup.json)
            shutil.rmtree(folder)
        try:
            tmp.rename(folder)  # atomic: a half-written model is never used
        except OSError:
            if not (folder / "warmup.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def off_format(target: str) -> str:
    """The same worked answer without the R1 tags: '<think> 3 + 5 = 8 </think><answer> \\boxed{8} </answer>' ->
    '3 + 5 = 8. The answer is \\boxed{8}.'"""
    steps = target.split("<think>", 1)[1].split("</think>", 1)[0].strip()
    answer = target.split("<answer>", 1)[1].split("</answer>", 1)[0].strip()
    return f"{steps}. The answer is {answer}."


def warmup_data(seed: int) -> list:
    """(sample, response text) pairs of the warm-up, shuffled."""
    from data.synth.classroom import classroom_samples

    rng = random.Random(f"classroom-warmup/{seed}")
    pairs = []
    for form, share in MIX.items():
        for s in classroom_samples(form, round(POOL * share), seed=seed, split="train"):
            target = s.meta["target"]
            pairs.append((s, off_format(target) if rng.random() < OFF_FORMAT else target))
    rng.shuffle(pairs)
    return pairs


def build(path: Path, seed: int, steps: int) -> dict:
    """Write the warm classroom model to `path` (model, processor, warmup.json with the loss curve), on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(path, seed, steps)
    finally:
        torch.set_num_threads(threads)


def _build(path: Path, seed: int, steps: int) -> dict:
    from rl.batch import collate, encode_prompts
    from rl.policy import load_policy, response_logprobs
    from rl.processor import pad_token_id, stop_token_ids, tokenizer_of
    from rl.tiny_model import build_tiny_checkpoint

    pairs = warmup_data(seed)
    corpus = [s.question for s, _ in pairs[:512]] + [t for _, t in pairs[:512]]
    build_tiny_checkpoint(path, corpus=corpus, hidden=HIDDEN, layers=LAYERS, rope_theta=ROPE_THETA,
                          max_pixels=112 * 112, seed=seed)
    model, processor = load_policy(str(path))
    tok = tokenizer_of(processor)
    end = stop_token_ids(processor)[0]
    rows = encode_prompts(processor, [s for s, _ in pairs])
    for row, (_, text) in zip(rows, pairs):
        row["response_ids"] = torch.tensor(tok(text, add_special_tokens=False)["input_ids"] + [end])
    pad = pad_token_id(processor)

    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    losses = []
    model.train()
    for i in tqdm(range(steps), desc="classroom warm-up", unit="step", dynamic_ncols=True):
        idx = [order[(i * BATCH + j) % len(order)] for j in range(BATCH)]
        batch = collate([rows[k] for k in idx], pad)
        logp, _ = response_logprobs(model, batch)
        loss = -logp.sum() / batch["action_mask"].sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(loss.item(), 4))
    model.eval()
    model.save_pretrained(path)
    info = dict(version=VERSION, seed=seed, steps=steps, batch=BATCH, lr=LR, mix=MIX, off_format=OFF_FORMAT,
                hidden=HIDDEN, layers=LAYERS, loss=losses)
    (path / "warmup.json").write_text(json.dumps(info))
    return info
