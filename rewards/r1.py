"""The R1 rewards (format 0 / 0.5 plus accuracy 0 / 1): "format"; "r1_math", the released LMM-R1 rule (the paper
presets use it for every sample, multiple choice included); and this project's own readings, "r1_math_answer" (math
read from the last answer block), "r1_choice" (option letters) and "r1_auto" (option letters for multiple-choice
samples, the released math rule for the rest)."""
from .base import COUNT_NAMES, PARTIAL_PARSE, POOL_COUNT_NAMES, RewardOutput, _check_lengths, _NoPool
from .choice import choice_reward, gold_letter
from .format import format_reward
from .math import STATUSES, MathVerifier

__all__ = ["FormatReward", "R1ChoiceReward", "R1MathReward", "R1MathAnswerReward", "R1AutoReward"]


class FormatReward(_NoPool):
    """Name "format": 0.5 for `<think>...</think><answer>...</answer>`."""

    def __call__(self, responses, golds, metas=None) -> RewardOutput:
        _check_lengths(responses, golds, metas)
        fmt = [format_reward(r) for r in responses]
        return RewardOutput({"format": fmt, "total": list(fmt)}, {})


class R1ChoiceReward(_NoPool):
    """Name "r1_choice": format (0 / 0.5) + option-letter accuracy (0 / 1)."""

    def __call__(self, responses, golds, metas=None) -> RewardOutput:
        _check_lengths(responses, golds, metas)
        fmt = [format_reward(r) for r in responses]
        acc = [choice_reward(r, g) for r, g in zip(responses, golds)]
        bad_gold = sum(gold_letter(g) is None for g in golds)
        return RewardOutput({"format": fmt, "accuracy": acc, "total": [f + a for f, a in zip(fmt, acc)]},
                            {COUNT_NAMES["ok"]: len(golds) - bad_gold, COUNT_NAMES["gold_unparseable"]: bad_gold})


class R1MathReward:
    """Name "r1_math": format (0 / 0.5) + math-verify accuracy (0 / 1) as the released code reads it (`rewards.math`,
    reading "released"), checked in a worker pool. A prediction that parses to only part of what the model wrote
    scores 0 (`whole_answer=False`: paid, as released).

    `counts` has every status in STATUSES under its metric name (COUNT_NAMES), the partial parses
    (`reward/partial_parse`) and the pool's worker restarts and failed starts of this call (POOL_COUNT_NAMES).
    """

    reading = "released"

    def __init__(self, workers: int = 2, timeout: float = 5.0, **verifier_options):
        verifier_options.setdefault("reading", self.reading)
        self.verifier = MathVerifier(workers=workers, timeout=timeout, **verifier_options)

    def __call__(self, responses, golds, metas=None) -> RewardOutput:
        _check_lengths(responses, golds, metas)
        fmt = [format_reward(r) for r in responses]
        before = dict(self.verifier.stats)
        results = self.verifier.score(responses, golds)
        acc = [r.reward for r in results]
        counts = {COUNT_NAMES[s]: sum(r.status == s for r in results) for s in STATUSES}
        counts[PARTIAL_PARSE] = sum(r.partial for r in results)
        counts.update({name: self.verifier.stats[k] - before.get(k, 0) for k, name in POOL_COUNT_NAMES.items()})
        return RewardOutput({"format": fmt, "accuracy": acc, "total": [f + a for f, a in zip(fmt, acc)]},
                            counts)

    def close(self) -> None:
        self.verifier.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class R1MathAnswerReward(R1MathReward):
    """Name "r1_math_answer": this project's reading (`rewards.math`, reading "answer"): the last answer block,
    bare numbers count, verify(gold, prediction), prose golds refused. Format as in "r1_math"."""

    reading = "answer"


class R1AutoReward(R1MathReward):
    """Name "r1_auto": mixed data (PerceReason). Multiple-choice samples (meta "domain" == "choice") are scored by
    option letter, the rest by math-verify; format as in the other R1 rewards."""

    def __call__(self, responses, golds, metas=None) -> RewardOutput:
        _check_lengths(responses, golds, metas)
        metas = metas or [{}] * len(responses)
        choice = [m.get("domain") == "choice" for m in metas]
        math_idx = [i for i, c in enumerate(choice) if not c]
        out = super().__call__([responses[i] for i in math_idx], [golds[i] for i in math_idx])
        fmt = [format_reward(r) for r in responses]
        acc = [choice_reward(r, g) if c else 0.0 for r, g, c in zip(responses, golds, choice)]
        for j, i in enumerate(math_idx):
            acc[i] = out.components["accuracy"][j]
        counts = dict(out.counts)
        bad = sum(gold_letter(g) is None for g, c in zip(golds, choice) if c)
        counts[COUNT_NAMES["ok"]] += sum(choice) - bad
        counts[COUNT_NAMES["gold_unparseable"]] += bad
        return RewardOutput({"format": fmt, "accuracy": acc, "total": [f + a for f, a in zip(fmt, acc)]}, counts)
