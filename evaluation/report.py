"""Results tables: one checkpoint (results.md), two side by side with deltas (--compare), the paper's figures beside.

The paper's figures are the LMM-R1 paper's reported accuracies (Peng et al., 2025, arXiv:2503.07536) for its
released model, in %, as the README records them with their source. Only benchmarks with a figure are listed.
"""

from __future__ import annotations

import json
from pathlib import Path

from data import R1_SYSTEM_PROMPT

__all__ = ["PAPER", "PAPER_NOTES", "markdown_table", "compare_table", "load_results"]

# benchmark -> accuracy in % reported for LMM-R1 (see the README, "Evaluation: the paper's figures").
PAPER = {"mathverse": 41.8, "mathvision_test": 25.2, "mathvista": 63.2, "mmstar": 58.0, "realworldqa": 64.0,
         "blink": 51.1}
PAPER_NOTES = {"mmstar": "55.0 is also reported", "mathvision_testmini": "26.9 is reported for MathVision without "
               "naming the split"}


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _paper(name: str) -> str:
    value = PAPER.get(name)
    return "-" if value is None else f"{value:.1f}"


def markdown_table(results: dict) -> str:
    """The table of one run: accuracy (mean@k), pass@k when k > 1, unextractable, mean response length, the
    share of responses cut at --max-new-tokens, and the paper's figure."""
    benches = results.get("benchmarks", {})
    ks = sorted({b["k"] for b in benches.values()})
    passk = [k for k in ks if k > 1]
    head = ["benchmark", "source", "n", "accuracy %"] + [f"pass@{k} %" for k in passk] + \
           ["unextractable %", "ambiguous %", "mean length", "truncated %", "paper %"]
    lines = [f"# {results.get('model') or 'model'}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, b in benches.items():
        row = [b.get("title", name), b.get("source", ""), str(b["n"]), _pct(b["accuracy"])]
        row += [_pct(b.get(f"pass@{k}")) for k in passk]
        row += [_pct(b["unextractable"]), _pct(b.get("ambiguous")), f"{b['response_len']:.0f}", _pct(b["truncated"]),
                _paper(name)]
        lines.append("| " + " | ".join(row) + " |")
    s = results.get("settings", {})
    decoding = "greedy" if not s.get("temperature") else f"temperature {s.get('temperature')}, top_p {s.get('top_p')}"
    prompts = {b.get("system_prompt") for b in benches.values()}
    prompt = ("R1 system prompt" if prompts == {R1_SYSTEM_PROMPT} else "no system prompt" if prompts <= {None}
              else "the system prompt of each benchmark as results.json records it")
    lines += ["", f"Decoding: {decoding}, {s.get('samples', 1)} response(s) per question, at most "
              f"{s.get('max_new_tokens')} new tokens; {prompt}. Accuracy is mean@k (k responses per question); "
              "unextractable: no answer could be read; ambiguous: the answer states two options; 'paper' is the "
              "accuracy the LMM-R1 paper reports for its model."
              + (f" Scorer {results['scorer']}." if results.get("scorer") else "")]
    for name, why in results.get("skipped", {}).items():
        lines.append(f"- {name}: skipped ({why})")
    for name, why in results.get("not_supported", {}).items():
        lines.append(f"- {name}: not supported ({why})")
    if any(b.get("source") == "fixture" for b in benches.values()):
        lines.append("- source 'fixture': the bundled few-item fixture, not the benchmark (the hub was not reachable "
                     "or --source fixture was given)")
    return "\n".join(lines) + "\n"


def compare_table(a: dict, b: dict, label_a: str = "A", label_b: str = "B") -> str:
    """Two runs side by side: accuracy of each, B - A in points, the paper's figure; benchmarks of either run."""
    ba, bb = a.get("benchmarks", {}), b.get("benchmarks", {})
    names = list(ba) + [n for n in bb if n not in ba]
    lines = [f"A = {label_a}", f"B = {label_b}", "",
             "| benchmark | n (A / B) | A % | B % | B - A | unextractable % (A / B) | paper % |",
             "|---|---|---|---|---|---|---|"]
    for name in names:
        x, y = ba.get(name), bb.get(name)
        title = (x or y).get("title", name)
        n = f"{x['n'] if x else '-'} / {y['n'] if y else '-'}"
        delta = f"{100 * (y['accuracy'] - x['accuracy']):+.1f}" if x and y else "-"
        unread = f"{_pct(x and x.get('unextractable'))} / {_pct(y and y.get('unextractable'))}"
        lines.append(f"| {title} | {n} | {_pct(x and x['accuracy'])} | {_pct(y and y['accuracy'])} | {delta} | "
                     f"{unread} | {_paper(name)} |")
    both = [n for n in names if n in ba and n in bb]
    if both:
        mean = sum(bb[n]["accuracy"] - ba[n]["accuracy"] for n in both) / len(both)
        lines += ["", f"Mean change over the {len(both)} benchmarks both ran: {100 * mean:+.2f} points."]
    return "\n".join(lines) + "\n"


def load_results(path: str | Path) -> dict:
    """results.json, or a folder holding it (an eval output folder, or a checkpoint with eval/results.json)."""
    p = Path(path)
    for candidate in (p, p / "results.json", p / "eval" / "results.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    raise FileNotFoundError(2, "no results.json here (run eval.py on it first)", str(p))
