"""Benchmark evaluation (eval.py and the trainer's --eval-every): run, score without a judge, report.

    runner.py   evaluate(model, processor, names, settings): generation through rl.rollout.generate, scoring,
                results.json / results.md / responses.jsonl
    scoring.py  Scorer: runs the judge-free rules of rewards/benchmarks.py, math checks in killable workers
    report.py   the results table, two runs side by side (--compare), the paper's figures
    export.py   --export vlmevalkit: the responses as VLMEvalKit prediction tables, for its scorer and judges

The benchmarks themselves (hub ids, fixtures, prompts) are in data/benchmarks.py.
"""

from .report import PAPER, compare_table, load_results, markdown_table
from .runner import EvalSettings, TrainingEvaluator, evaluate, summarize, write_results
from .scoring import Score, Scorer

__all__ = ["EvalSettings", "TrainingEvaluator", "evaluate", "summarize", "write_results", "Score", "Scorer", "PAPER",
           "compare_table", "load_results", "markdown_table"]
