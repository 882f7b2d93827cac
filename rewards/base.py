"""What every reward returns, and the base of rewards that own no worker processes."""
from dataclasses import dataclass
from typing import Protocol


@dataclass
class RewardOutput:
    components: dict[str, list[float]]  # name -> per-sample values; always has "total"
    counts: dict[str, int]  # per-call status counts under their metric names, e.g. {"reward/timeout": 1}


# Metric names of the check statuses: a gold answer that does not parse is a data problem, the rest are the checker's.
COUNT_NAMES = {"ok": "reward/checked", "gold_unparseable": "data/gold_unparseable", "timeout": "reward/timeout",
               "error": "reward/error"}
# A prediction that parsed to only a piece of what the model wrote (scored 0, see rewards.math).
PARTIAL_PARSE = "reward/partial_parse"
# Worker pool events of the call: a worker replaced (after a time-out, an error or a crash), a failed start.
POOL_COUNT_NAMES = {"restarts": "reward/worker_restarts", "start_failures": "reward/worker_start_failures"}


class RewardFn(Protocol):
    def __call__(self, responses: list[str], golds: list[str],
                 metas: list[dict] | None = None) -> RewardOutput: ...

    def close(self) -> None: ...


def _check_lengths(responses, golds, metas) -> None:
    if len(responses) != len(golds) or (metas is not None and len(metas) != len(responses)):
        raise ValueError("responses, golds and metas must have the same length")


class _NoPool:
    """Base for rewards without worker processes. Pool options (workers, timeout,
    ...) are accepted and ignored, so the trainer can pass one set of options for any reward."""

    def __init__(self, **_pool_options):
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
