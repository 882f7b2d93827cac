"""The benchmark scorer: runs the judge-free rules of `rewards/benchmarks.py` over a batch of responses, the math
checks in killable worker processes with a time limit each (model output is untrusted text)."""

from __future__ import annotations

from rewards.benchmarks import RULES, Score, math_check, scorer_version
from rewards.math import DEFAULT_MEMORY_LIMIT_MB, worker_setup
from rewards.pool import KillPool
from rewards.text import MAX_RESPONSE_CHARS

__all__ = ["Score", "Scorer", "scorer_version"]


class Scorer:
    """Scores responses of any benchmark domain. Math checks run in `workers` killable processes (spawned on
    first use, `timeout` seconds each), or in this process with workers=0 (no hard time limit: trusted text only,
    e.g. tests); call close() when done."""

    def __init__(self, workers: int = 2, timeout: float = 5.0):
        self.workers, self.timeout = workers, timeout
        self._pool = None

    def start(self) -> "Scorer":
        """Start the math workers now (they take seconds to start; generation can run meanwhile)."""
        if self._pool is None and self.workers > 0:
            self._pool = KillPool(math_check, workers=self.workers, timeout=self.timeout, setup=worker_setup,
                                  setup_args=(DEFAULT_MEMORY_LIMIT_MB,))
        return self

    def _math(self, responses: list[str], golds: list[str]) -> list[Score]:
        self.start()
        tasks = [((r or "")[-MAX_RESPONSE_CHARS:], str(g), MAX_RESPONSE_CHARS) for r, g in zip(responses, golds)]
        results = self._pool.map(tasks) if self._pool is not None else [("ok", math_check(*t)) for t in tasks]
        out = []
        for status, value in results:
            if status != "ok":
                out.append(Score(False, None, status))
            else:
                reward, check_status, extracted = value
                out.append(Score(reward > 0, extracted, check_status))
        return out

    def score(self, samples: list, responses: list[str]) -> list[Score]:
        """One Score per response; response i answers samples[i]."""
        scores: list[Score | None] = [None] * len(responses)
        math_idx = [i for i, s in enumerate(samples) if s.domain == "math"]
        for i, sc in zip(math_idx, self._math([responses[i] for i in math_idx], [samples[i].answer for i in math_idx])
                         if math_idx else []):
            scores[i] = sc
        for i, (s, r) in enumerate(zip(samples, responses)):
            if s.domain != "math":
                if s.domain not in RULES:
                    raise ValueError(f"no scorer for domain {s.domain!r}")
                scores[i] = RULES[s.domain](r, s.answer, s.meta)
        return scores

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
