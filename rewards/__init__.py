"""Rule-based rewards, looked up by name.

    reward_fn = get_reward("r1_math", workers=2, timeout=5.0)
    out = reward_fn(responses, golds, metas)
    out.components["total"], out.counts
    reward_fn.close()

The R1 rewards (format, r1_math, r1_math_answer, r1_choice, r1_auto) are in `rewards/r1.py`, the game rewards in
`rewards/sokoban.py` and `rewards/football.py`; this module holds the registry and re-exports their names.
`rewards/benchmarks.py` holds eval.py's judge-free rule of each benchmark domain (the answer reading, not the released
one); `rewards/text.py` the answer-text helpers that the rewards, `data/gold.py` and the benchmark rules share.

The names of the modules that load math-verify and sympy or a game simulator (math, r1, sokoban, football), and
REWARDS, are imported on first use, so `rewards.text` and `rewards.choice` stay cheap to import (`data` reads gold
answers with them).
"""
import importlib

from .base import COUNT_NAMES, RewardFn, RewardOutput
from .choice import choice_reward, extract_choice, gold_letter
from .format import format_reward
from .text import MAX_RESPONSE_CHARS, answer_text

__all__ = [
    "REWARDS", "get_reward", "RewardFn", "RewardOutput", "R1MathReward", "R1MathAnswerReward", "R1ChoiceReward",
    "FormatReward", "format_reward", "choice_reward", "extract_choice", "gold_letter",
    "MathVerifier", "MathResult", "math_accuracy", "STATUSES", "READINGS", "answer_text", "MAX_RESPONSE_CHARS",
]


_LAZY = {"MathResult": "math", "MathVerifier": "math", "math_accuracy": "math", "READINGS": "math",
         "STATUSES": "math", "FormatReward": "r1", "R1AutoReward": "r1", "R1ChoiceReward": "r1",
         "R1MathAnswerReward": "r1", "R1MathReward": "r1", "SokobanReward": "sokoban", "FootballReward": "football"}


def _registry() -> dict[str, type]:
    """REWARDS (reward name -> class), built on first use; one dict, so names added to it are found by get_reward."""
    if "REWARDS" not in globals():
        from .football import FootballReward
        from .r1 import FormatReward, R1AutoReward, R1ChoiceReward, R1MathAnswerReward, R1MathReward
        from .sokoban import SokobanReward

        globals()["REWARDS"] = {
            "r1_math": R1MathReward,  # the released rule: the paper presets
            "r1_math_answer": R1MathAnswerReward,
            "r1_choice": R1ChoiceReward,
            "r1_auto": R1AutoReward,
            "format": FormatReward,
            "sokoban": SokobanReward,
            "football": FootballReward,
        }
    return globals()["REWARDS"]


def __getattr__(name: str):
    if name == "REWARDS":
        return _registry()
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def get_reward(name: str, **options) -> RewardFn:
    """A new reward function; call close() on it when done (it may own worker processes)."""
    rewards = _registry()
    if name not in rewards:
        raise KeyError(f"unknown reward {name!r}; known: {sorted(rewards)}")
    return rewards[name](**options)
