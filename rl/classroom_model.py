"""The classroom model: a tiny Qwen2.5-VL that reads the drawn problems but mostly guesses, so RL has something to teach.

A random tiny model earns reward 0 at every step and learns nothing a person can see. This one is the real
Qwen2.5-VL classes at toy size (rl/tiny_model.py), given a supervised warm-up on the classroom problems
(data/synth/classroom.py) in two phases: first it only reads (image -> the text drawn in it, READ_FIRST steps), then
it learns the text form, the image form (read, then work out), a little geometry, and keeps reading. Its teacher
answers in two habits: it works the problem out ("<think> 3 + 5 = 8 </think>...") or it guesses a number of the
kind's range ("<think> I guess 7 </think>..."), the guess more often (GUESS); half of either without the R1 tags.
So the model starts as the paper's base model does: it perceives well (`perception_probe`: the share of held-out
drawn problems it transcribes exactly) and reasons weakly - greedy, it mostly guesses - and RL, rewarded only on
the answer and the format, can teach it to work problems out.

Two choices make a model this small able to read at all (measured while diagnosing, docs/classroom.md):
* its vision tower stays as initialised (frozen): trained with Adam next to the language model, the tiny tower's
  output collapsed to one large constant (norm 30 against 0.2 for a word; two images differed by 0.005) and the
  model read nothing; its random features (two glyphs differ by half their norm) are a fixed perception that the
  language model learns to read;
* its M-RoPE gives every rotary frequency to the width axis (mrope_section [0, 0, HIDDEN // 8]): Qwen's split gives
  the width the slowest three of a 16-dim head's eight, about 0.003 rad per column, so the characters of a drawn
  strip could not be told apart by position. Text positions do not change (time = height = width for text).

    model = classroom_model(seed=0)      # <cache>/classroom_model/v3_seed0, built once (about 1.5 minutes)

`--model classroom` (the classroom presets) resolves here with the run's --seed; the cache is $LMM_R1_CACHE or
~/.cache/lmm_r1, and a missing, half-written or damaged model (warmup.json keeps the sha256 of every file) is
rebuilt, with a message. Deterministic for a seed (the same weights on the same machine and library versions,
whatever its number of cores: the warm-up runs on one thread, because the order of a multi-threaded sum changes the
rounding, and over a warm-up that changes the model).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import shutil
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

VERSION = 3  # bump when anything below changes what is built (2: built on one thread; 3: reads, guesses)
HIDDEN, LAYERS = 64, 2  # the debug model's sizes (rl/tiny_model.py)
ROPE_THETA = 1e4  # Qwen's 1e6 leaves a head of 16 dims almost no resolution between neighbouring tokens
STEPS, BATCH, LR = 1500, 32, 3e-3  # the warm-up: AdamW, cosine to 0, on the response tokens only
READ_FIRST = 300  # of which the first steps only read (image -> its text), with a cosine of their own
MIX = {"text": 0.35, "image": 0.35, "read": 0.2, "geo": 0.1}  # share of each task in the rest
GUESS = 0.6  # share of warm-up answers that are a guess ("<think> I guess 7 </think>..."), not worked out
OFF_FORMAT = 0.5  # share of warm-up answers written without the R1 tags ("... The answer is \boxed{8}.")
POOL = 2048  # warm-up problems (drawn from the training split only)
READ_QUESTION = "What is written in the image?"


def cache_dir(cache: str | Path | None = None) -> Path:
    from data.io import DEFAULT_CACHE
    return Path(cache or DEFAULT_CACHE) / "classroom_model"


def classroom_model(seed: int = 0, cache: str | Path | None = None, steps: int | None = None, log=print) -> Path:
    """The warm classroom model of `seed` (and `steps` warm-up steps, the recipe's STEPS by default): built into the
    cache when missing, then its path."""
    steps = steps or STEPS
    folder = cache_dir(cache) / (f"v{VERSION}_seed{seed}" + (f"_steps{steps}" if steps != STEPS else ""))
    problem = damage(folder)
    if not problem:
        return folder
    if folder.exists():
        log(f"the cached classroom model in {folder} is unusable ({problem}): rebuilding it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=folder.parent))
    try:
        log(f"building the classroom model (seed {seed}) into {folder}: a tiny Qwen2.5-VL and a {steps}-step "
            f"warm-up on the classroom problems")
        build(tmp, seed, steps)
        if folder.exists():  # an incomplete or damaged earlier build
            shutil.rmtree(folder)
        try:
            tmp.rename(folder)  # atomic: a half-written model is never used
        except OSError:
            if damage(folder):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def damage(folder: Path) -> str:
    """What makes the cached model in `folder` unusable ('' when nothing): missing, unfinished (no warmup.json), or
    a file whose bytes differ from those the build wrote (warmup.json keeps their sha256)."""
    if not folder.is_dir():
        return "missing"
    try:
        files = json.loads((folder / "warmup.json").read_text())["files"]
    except FileNotFoundError:
        return "no warmup.json: an unfinished build"
    except (ValueError, KeyError, TypeError):
        return "warmup.json unreadable"
    for name, digest in files.items():
        if not (folder / name).is_file():
            return f"{name} missing"
        if _sha256(folder / name) != digest:
            return f"{name} is not the file the build wrote"
    return ""


def off_format(target: str) -> str:
    """The same worked answer without the R1 tags: '<think> 3 + 5 = 8 </think><answer> \\boxed{8} </answer>' ->
    '3 + 5 = 8. The answer is \\boxed{8}.'"""
    steps = target.split("<think>", 1)[1].split("</think>", 1)[0].strip()
    answer = target.split("<answer>", 1)[1].split("</answer>", 1)[0].strip()
    return f"{steps}. The answer is {answer}."


def guessed(sample, rng: random.Random) -> str:
    """A guess in the R1 format, no working: a number drawn from the range of the problem's kind of answers."""
    top = 36 if sample.meta["form"] == "geo" else 19
    guess = rng.randint(0, top)
    return f"<think> I guess {guess} </think><answer> \\boxed{{{guess}}} </answer>"


def reading(sample):
    """The transcription task of a drawn problem: (the sample asked what is written in its image, the text)."""
    from data.sample import make_messages

    return dataclasses.replace(sample, messages=make_messages(READ_QUESTION, sample.images, system=None)), \
        sample.meta["shows"]


def warmup_data(seed: int) -> list:
    """(sample, response text) pairs of the warm-up, shuffled."""
    from data.synth.classroom import classroom_samples

    rng = random.Random(f"classroom-warmup/{seed}")
    pairs = []
    for form, share in MIX.items():
        for s in classroom_samples("image" if form == "read" else form, round(POOL * share), seed=seed,
                                   split="train"):
            if form == "read":
                pairs.append(reading(s))
                continue
            target = guessed(s, rng) if rng.random() < GUESS else s.meta["target"]
            pairs.append((s, off_format(target) if rng.random() < OFF_FORMAT else target))
    rng.shuffle(pairs)
    return pairs


def perception_probe(model, processor, n: int = 200, split: str = "test", batch_size: int = 50) -> float:
    """Share of n held-out drawn problems (of `split`) whose image the model transcribes exactly (greedy)."""
    from data.synth.classroom import classroom_samples
    from rl.batch import encode_prompts
    from rl.processor import tokenizer_of
    from rl.rollout import generate

    samples = [reading(s) for s in classroom_samples("image", n, seed=0, split=split)]
    tok, right = tokenizer_of(processor), 0
    for i in range(0, n, batch_size):
        chunk = samples[i:i + batch_size]
        rollout = generate(model, processor, encode_prompts(processor, [s for s, _ in chunk]), 1, 0.0,
                           max_new_tokens=16, batch_size=len(chunk))
        texts = tok.batch_decode(rollout.responses, skip_special_tokens=True)
        right += sum(t.strip() == shows for t, (_, shows) in zip(texts, chunk))
    return right / n


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
                          max_pixels=112 * 112, seed=seed, mrope_section=[0, 0, HIDDEN // 8])
    model, processor = load_policy(str(path))
    tok = tokenizer_of(processor)
    end = stop_token_ids(processor)[0]
    rows = encode_prompts(processor, [s for s, _ in pairs])
    for row, (_, text) in zip(rows, pairs):
        row["response_ids"] = torch.tensor(tok(text, add_special_tokens=False)["input_ids"] + [end])
    pad = pad_token_id(processor)

    torch.manual_seed(seed)
    model.model.visual.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)
    reading_steps = steps * READ_FIRST // STEPS  # the reading phase's share of a shorter or longer warm-up

    def cosine(i):  # one cosine over the reading phase, one over the rest
        i, n = (i, reading_steps) if i < reading_steps else (i - reading_steps, steps - reading_steps)
        return 0.5 * (1 + math.cos(math.pi * i / n))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    reads = [k for k in order if pairs[k][0].question == READ_QUESTION]
    losses = []
    model.train()
    for i in tqdm(range(steps), desc="classroom warm-up", unit="step", dynamic_ncols=True):
        idx = [reads[(i * BATCH + j) % len(reads)] for j in range(BATCH)] if i < reading_steps else \
            [order[(i * BATCH + j) % len(order)] for j in range(BATCH)]
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
    probe = perception_probe(model, processor)
    model.save_pretrained(path)
    info = dict(files={f.name: _sha256(f) for f in sorted(path.iterdir()) if f.is_file()}, version=VERSION,
                seed=seed, steps=steps, read_first=reading_steps, batch=BATCH, lr=LR, mix=MIX, guess=GUESS,
                off_format=OFF_FORMAT, hidden=HIDDEN, layers=LAYERS, probe=probe, loss=losses)
    (path / "warmup.json").write_text(json.dumps(info))
    return info
