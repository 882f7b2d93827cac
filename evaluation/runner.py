"""Run benchmarks on a model: prompts -> the training code's generation (rl.rollout.generate) -> judge-free scores.

`evaluate` is what eval.py and the trainer's periodic evaluation call. It returns (and, given an output folder,
writes) results.json, results.md and responses.jsonl: one line per response, with what was extracted from it and
whether it was right, so that a person can audit any score.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from data.benchmarks import BENCHMARKS, UNSUPPORTED, load_benchmark
from rl.batch import encode_prompts, is_vision_model
from rl.policy import tokenizer_of
from rl.rollout import generate

from .report import markdown_table
from .scoring import Scorer

__all__ = ["EvalSettings", "evaluate", "summarize", "write_results"]


@dataclass
class EvalSettings:
    samples: int = 1  # responses per question: 1 = greedy accuracy; k > 1 = pass@k and mean@k
    temperature: float = 0.0  # 0 = greedy decoding
    top_p: float = 1.0
    max_new_tokens: int = 4096
    batch_size: int = 8  # questions per generate() call
    limit: int | None = None  # first N items of each benchmark
    source: str = "auto"  # auto | hub | fixture | a local copy (see data.benchmarks.load_benchmark)
    env_samples: int = 200  # items of a generated benchmark (Sokoban, Football, classroom)
    data_paths: dict = field(default_factory=dict)  # benchmark name -> a local copy (overrides `source`)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def summarize(samples: list, scores: list, lengths: list[int], finished: list[bool], k: int) -> dict:
    """Per-benchmark numbers (fractions): accuracy (= mean@k), pass@k, unextractable, response length, truncated."""
    per_item = [[scores[i * k + j].correct for j in range(k)] for i in range(len(samples))]
    out = {"n": len(samples), "k": k,
           "accuracy": _mean(_mean(c) for c in per_item),
           "unextractable": _mean(s.extracted is None for s in scores),
           "response_len": _mean(lengths),
           "truncated": _mean(not f for f in finished)}
    if k > 1:
        out[f"pass@{k}"] = _mean(any(c) for c in per_item)
    bad_gold = sum(s.status == "gold_unparseable" for s in scores)
    if bad_gold:
        out["gold_unparseable"] = bad_gold
    timeouts = sum(s.status in ("timeout", "error") for s in scores)
    if timeouts:
        out["check_timeout_or_error"] = timeouts
    rewards = [s.reward for s in scores if s.reward is not None]
    if samples and samples[0].domain in ("sokoban", "football"):
        out["mean_reward"] = _mean(rewards + [0.0] * (len(scores) - len(rewards)))
    return out


def _image_refs(sample) -> list[str]:
    return [im if isinstance(im, str) else "<image in the dataset row>" for im in sample.images]


def run_benchmark(model, processor, name: str, settings: EvalSettings, scorer: Scorer, responses_file=None,
                  progress: bool = True, autocast=contextlib.nullcontext) -> dict:
    source = settings.data_paths.get(name, settings.source)
    samples, origin = load_benchmark(name, source, settings.limit, settings.env_samples)
    k, tok, t0 = settings.samples, tokenizer_of(processor), time.perf_counter()
    texts, lengths, finished = [], [], []
    bar = tqdm(total=len(samples) * k, desc=name, unit="resp", dynamic_ncols=True, disable=not progress)
    try:
        for start in range(0, len(samples), settings.batch_size):
            rows = encode_prompts(processor, samples[start:start + settings.batch_size])  # a chunk at a time: pixels
            with autocast():
                rollout = generate(model, processor, rows, k, settings.temperature, settings.top_p,
                                   settings.max_new_tokens, batch_size=len(rows))
            texts += tok.batch_decode(rollout.responses, skip_special_tokens=True)
            lengths += [r.numel() for r in rollout.responses]
            finished += list(rollout.finished)
            bar.update(len(rollout))
    finally:
        bar.close()
    group = [s for s in samples for _ in range(k)]
    scores = scorer.score(group, texts)
    result = {"title": BENCHMARKS[name].title, "source": origin,
              **summarize(samples, scores, lengths, finished, k), "seconds": time.perf_counter() - t0}
    if responses_file is not None:
        for i, (s, text, sc) in enumerate(zip(group, texts, scores)):
            responses_file.write(json.dumps({
                "benchmark": name, "id": s.meta["id"], "sample": i % k, "question": s.question,
                "images": _image_refs(s), "options": s.meta.get("options", []), "gold": s.answer,
                "response": text, "extracted": sc.extracted, "correct": sc.correct, "status": sc.status,
                **({"reward": sc.reward} if sc.reward is not None else {}),
                "tokens": lengths[i], "finished": finished[i]}, ensure_ascii=False, default=str) + "\n")
        responses_file.flush()
    return result


def write_results(results: dict, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    (out / "results.md").write_text(markdown_table(results))
    return out / "results.json"


def evaluate(model, processor, names: list[str], settings: EvalSettings, scorer: Scorer | None = None,
             out_dir: str | Path | None = None, model_name: str = "", progress: bool = True,
             autocast=contextlib.nullcontext, log=print) -> dict:
    """Every benchmark in `names` on `model`; the results dict (and files in `out_dir` when given)."""
    own_scorer = scorer is None
    scorer = scorer or Scorer()
    results = {"model": model_name, "settings": asdict(settings), "benchmarks": {}, "skipped": {},
               "not_supported": dict(UNSUPPORTED)}
    responses_file = None
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        responses_file = open(Path(out_dir) / "responses.jsonl", "w", encoding="utf-8")
    try:
        if any(BENCHMARKS[n].modality != "env" for n in names):
            scorer.start()
        for name in names:
            if BENCHMARKS[name].modality != "text" and not is_vision_model(model):
                results["skipped"][name] = "the checkpoint has no vision tower"
                log(f"{name}: skipped (the checkpoint has no vision tower)")
                continue
            res = run_benchmark(model, processor, name, settings, scorer, responses_file, progress, autocast)
            results["benchmarks"][name] = res
            log(f"{name}: accuracy {100 * res['accuracy']:.1f} % of {res['n']} ({res['source']})")
    finally:
        if responses_file is not None:
            responses_file.close()
        if own_scorer:
            scorer.close()
    if out_dir is not None:
        write_results(results, out_dir)
    return results
