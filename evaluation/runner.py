"""Run benchmarks on a model: prompts -> the training code's generation (rl.rollout.generate) -> judge-free scores.

`evaluate` is what eval.py and the trainer's periodic evaluation call. It returns (and, given an output folder,
writes) results.json, results.md and responses.jsonl: one line per response, with what was extracted from it and
whether it was right, so that a person can audit any score; and samples.html, the first items of each benchmark
(prompt with its images, gold, responses, verdicts) as a page to look at. Under torchrun every process calls it (with the full
weights, rl.dist.gathered): each generates its share of the items, and the main process scores all of them, writes
and returns the results (the others return None).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from data import DataError
from data.benchmarks import BENCHMARKS, UNSUPPORTED, load_benchmark
from rl import dist
from rl.batch import encode_prompts, is_vision_model
from rl.processor import tokenizer_of
from rl.rollout import generate
from rl.samples_page import write_samples_page

from .report import markdown_table
from .scoring import Scorer, scorer_version

__all__ = ["EvalSettings", "evaluate", "summarize", "write_results", "rescore"]


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
           "ambiguous": _mean(s.status == "ambiguous" for s in scores),
           "response_len": _mean(lengths),
           "truncated": _mean(not f for f in finished)}
    if k > 1:
        out[f"pass@{k}"] = _mean(any(c) for c in per_item)
    bad_gold = sum(s.status == "gold_unparseable" for s in scores)
    if bad_gold:
        out["gold_unparseable"] = bad_gold
    not_letter = sum(s.status == "gold_not_a_letter" for s in scores)
    if not_letter:
        out["gold_not_a_letter"] = not_letter
    timeouts = sum(s.status in ("timeout", "error") for s in scores)
    if timeouts:
        out["check_timeout_or_error"] = timeouts
    rewards = [s.reward for s in scores if s.reward is not None]
    if samples and samples[0].domain in ("sokoban", "football"):
        out["mean_reward"] = _mean(rewards + [0.0] * (len(scores) - len(rewards)))
    return out


def _image_refs(sample) -> list[str]:
    return [im if isinstance(im, str) else "<image in the dataset row>" for im in sample.images]


SHOWN = 5  # items per benchmark on samples.html


def run_benchmark(model, processor, name: str, settings: EvalSettings, scorer: Scorer, responses_file=None,
                  progress: bool = True, autocast=contextlib.nullcontext, shown: list | None = None) -> dict:
    source = settings.data_paths.get(name, settings.source)
    samples, origin = load_benchmark(name, source, settings.limit, settings.env_samples)
    k, tok, t0 = settings.samples, tokenizer_of(processor), time.perf_counter()
    mine = samples[dist.rank()::dist.world()]  # this process's share: all of them in one process
    texts, lengths, finished = [], [], []
    bar = tqdm(total=len(mine) * k, desc=name, unit="resp", dynamic_ncols=True, disable=not progress)
    try:
        for start in range(0, len(mine), settings.batch_size):
            rows = encode_prompts(processor, mine[start:start + settings.batch_size])  # a chunk at a time: pixels
            with autocast():
                rollout = generate(model, processor, rows, k, settings.temperature, settings.top_p,
                                   settings.max_new_tokens, batch_size=len(rows))
            texts += tok.batch_decode(rollout.responses, skip_special_tokens=True)
            lengths += [r.numel() for r in rollout.responses]
            finished += list(rollout.finished)
            bar.update(len(rollout))
    finally:
        bar.close()
    if dist.world() > 1:  # every share, back in item order (item i was generated by process i % world)
        shares = dist.all_gather_objects([(texts[j:j + k], lengths[j:j + k], finished[j:j + k])
                                          for j in range(0, len(texts), k)])
        items = [shares[i % len(shares)][i // len(shares)] for i in range(len(samples))]
        texts, lengths, finished = ([x for item in items for x in item[part]] for part in range(3))
        if not dist.is_main():
            return None
    group = [s for s in samples for _ in range(k)]
    scores = scorer.score(group, texts)
    result = {"title": BENCHMARKS[name].title, "source": origin, **data_record(name, origin, samples),
              **summarize(samples, scores, lengths, finished, k), "seconds": time.perf_counter() - t0}
    if shown is not None:  # the first items, for samples.html
        def verdict(sc):
            return {"correct": sc.correct, "read": sc.extracted or "-",
                    **({"reward": sc.reward} if sc.reward is not None else {})}

        shown.append({"heading": f"{BENCHMARKS[name].title} ({origin})", "items": [
            {"prompt": s.question, "images": s.images, "gold": s.answer,
             "responses": [{"text": texts[i], "scores": verdict(scores[i])} for i in range(q * k, (q + 1) * k)]}
            for q, s in enumerate(samples[:SHOWN])]})
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_record(name: str, origin: str, samples: list) -> dict:
    """What a reader needs to rebuild a benchmark's prompts: the data file's hash (a local file or the fixture) and
    the system prompt the items were asked with."""
    path = BENCHMARKS[name].fixture if origin == "fixture" else Path(origin)
    out = {"data_sha256": _sha256(path)} if path.is_file() else {}
    system = [m["content"] for m in (samples[0].messages if samples else []) if m.get("role") == "system"]
    if system:
        out["system_prompt"] = system[0] if isinstance(system[0], str) else json.dumps(system[0])
    return out


def write_results(results: dict, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    (out / "results.md").write_text(markdown_table(results))
    return out / "results.json"


def evaluate(model, processor, names: list[str], settings: EvalSettings, scorer: Scorer | None = None,
             out_dir: str | Path | None = None, model_name: str = "", progress: bool = True,
             autocast=contextlib.nullcontext, log=print) -> dict:
    """Every benchmark in `names` on `model`; the results dict (and files in `out_dir` when given). Under torchrun
    every process calls it with the full weights; the main process returns the results, the others None."""
    main = dist.is_main()  # the others only generate their shares
    own_scorer = scorer is None and main
    scorer = scorer or (Scorer() if main else None)
    results = {"model": model_name, "settings": asdict(settings), "scorer": scorer_version(), "benchmarks": {},
               "skipped": {}, "not_supported": dict(UNSUPPORTED)}
    responses_file, shown = None, None
    if out_dir is not None and main:
        shown = []
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        responses_file = open(Path(out_dir) / "responses.jsonl", "w", encoding="utf-8")
    try:
        if main and any(BENCHMARKS[n].modality != "env" for n in names):
            scorer.start()
        for name in names:
            if BENCHMARKS[name].modality != "text" and not is_vision_model(model):
                results["skipped"][name] = "the checkpoint has no vision tower"
                log(f"{name}: skipped (the checkpoint has no vision tower)")
                continue
            res = run_benchmark(model, processor, name, settings, scorer, responses_file, progress and main, autocast,
                                shown)
            if res is not None:
                results["benchmarks"][name] = res
                log(f"{name}: accuracy {100 * res['accuracy']:.1f} % of {res['n']} ({res['source']})")
    finally:
        if responses_file is not None:
            responses_file.close()
        if own_scorer:
            scorer.close()
    if not main:
        return None
    if out_dir is not None:
        write_results(results, out_dir)
        write_samples_page(Path(out_dir) / "samples.html", f"eval of {model_name or 'a model'}: the first items of "
                           f"each benchmark", shown)
    return results


def _source_of(origin: str) -> str:
    """load_benchmark's `source` for the origin a results.json recorded."""
    if origin == "fixture":
        return "fixture"
    if origin.startswith("generated"):  # generated whatever the source
        return "auto"
    return "hub" if origin.endswith("]") and not Path(origin).exists() else origin


def rescore(out_dir: str | Path, scorer: Scorer | None = None) -> dict:
    """Score the responses of an earlier evaluation (`out_dir`: its results.json and responses.jsonl) again, with
    today's rules, without generating; rewrites its results files (the scorer's version recorded)."""
    out_dir = Path(out_dir)
    results = json.loads((out_dir / "results.json").read_text())
    lines = [json.loads(x) for x in (out_dir / "responses.jsonl").read_text(encoding="utf-8").splitlines() if x]
    settings = EvalSettings(**results["settings"])
    own = scorer is None
    scorer = scorer or Scorer()
    try:
        for name, before in results["benchmarks"].items():
            samples, _ = load_benchmark(name, _source_of(before["source"]), settings.limit, settings.env_samples)
            by_id = {s.meta["id"]: s for s in samples}
            mine = [x for x in lines if x["benchmark"] == name]
            missing = sorted({str(x["id"]) for x in mine} - set(map(str, by_id)))
            if missing:
                raise DataError(str(out_dir / "responses.jsonl"), None, "not_in_data",
                                f"{name} items {', '.join(missing[:5])} are not in its data ({before['source']}) "
                                f"any more")
            group = [by_id[x["id"]] if x["id"] in by_id else by_id[str(x["id"])] for x in mine]
            scores = scorer.score(group, [x["response"] for x in mine])
            k = before["k"]
            items = [group[i] for i in range(0, len(group), k)]
            results["benchmarks"][name] = {**before, **summarize(items, scores, [x["tokens"] for x in mine],
                                                                 [x["finished"] for x in mine], k)}
            for x, sc in zip(mine, scores):
                x.update(extracted=sc.extracted, correct=sc.correct, status=sc.status,
                         **({"reward": sc.reward} if sc.reward is not None else {}))
    finally:
        if own:
            scorer.close()
    results["scorer"] = scorer_version()
    with open(out_dir / "responses.jsonl", "w", encoding="utf-8") as f:
        for x in lines:
            f.write(json.dumps(x, ensure_ascii=False, default=str) + "\n")
    write_results(results, out_dir)
    return results


class TrainingEvaluator:
    """--eval-benchmarks during training: what the trainer's monitor calls (`evaluator(policy, processor, out_dir,
    model_name, autocast)`) and closes at the end. The entry scripts hand it to the run, so that rl/ never imports
    evaluation/. Greedy, with the training run's own generation settings; one answer-checker pool for the run."""

    def __init__(self, cfg):
        from data.benchmarks import resolve_benchmark_names

        try:
            self.names = resolve_benchmark_names(cfg.eval_benchmarks)
        except ValueError as e:
            raise SystemExit(f"error: --eval-benchmarks: {e}") from None
        self.settings = EvalSettings(max_new_tokens=cfg.eval_max_new_tokens or cfg.max_new_tokens,
                                     batch_size=cfg.gen_batch_size, limit=cfg.eval_limit or None)
        self.workers, self.timeout = max(1, cfg.reward_workers), cfg.reward_timeout
        self.scorer = None

    def __call__(self, policy, processor, out_dir: Path, model_name: str, autocast) -> dict | None:
        if self.scorer is None and dist.is_main():
            self.scorer = Scorer(workers=self.workers, timeout=self.timeout)
        return evaluate(policy, processor, self.names, self.settings, self.scorer, out_dir=out_dir,
                        model_name=model_name, progress=False, autocast=autocast, log=lambda m: None)

    def close(self):
        if self.scorer is not None:
            self.scorer.close()
            self.scorer = None
