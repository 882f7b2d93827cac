"""Rule-based rewards, looked up by name.

    reward_fn = get_reward("r1_math", workers=2, timeout=5.0)
    out = reward_fn(responses, golds, metas)
    out.components["total"], out.counts
    reward_fn.close()

The R1 rewards (format, r1_math, r1_math_answer, r1_choice, r1_auto) are in `rewards/r1.py`, the game rewards in
`rewards/sokoban.py` and `rewards/football.py`; this module holds the registry and re-exports their names.
"""
from .base import COUNT_NAMES, RewardFn, RewardOutput
from .choice import choice_reward, extract_choice, gold_letter
from .football import FootballReward
from .format import format_reward
from .math import READINGS, STATUSES, MathResult, MathVerifier, math_accuracy
from .r1 import FormatReward, R1AutoReward, R1ChoiceReward, R1MathAnswerReward, R1MathReward
from .sokoban import SokobanReward
from .text import MAX_RESPONSE_CHARS, answer_text

__all__ = [
    "REWARDS", "get_reward", "RewardFn", "RewardOutput", "R1MathReward", "R1MathAnswerReward", "R1ChoiceReward",
    "FormatReward", "format_reward", "choice_reward", "extract_choice", "gold_letter",
    "MathVerifier", "MathResult", "math_accuracy", "STATUSES", "READINGS", "answer_text", "MAX_RESPONSE_CHARS",
]


REWARDS: dict[str, type] = {
    "r1_math": R1MathReward,  # the released rule: the paper presets
    "r1_math_answer": R1MathAnswerReward,
    "r1_choice": R1ChoiceReward,
    "r1_auto": R1AutoReward,
    "format": FormatReward,
    "sokoban": SokobanReward,
    "football": FootballReward,
}


def get_reward(name: str, **options) -> RewardFn:
    """A new reward function; call close() on it when done (it may own worker processes)."""
    if name not in REWARDS:
        raise KeyError(f"unknown reward {name!r}; known: {sorted(REWARDS)}")
    return REWARDS[name](**options)
