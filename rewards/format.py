"""Format reward: `<think>...</think><answer>...</answer>` and nothing else."""
import re

FORMAT_SCORE = 0.5
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
# Lazy groups are safe here: the tag counts are checked first, so each group
# has exactly one place to stop and the match is linear.
_PATTERN = re.compile(r"<think>.*?</think><answer>.*?</answer>", re.DOTALL)


def format_reward(response: str) -> float:
    """0.5 if the stripped response is exactly think-then-answer (no gap between), else 0.0."""
    text = (response or "").strip()
    if any(text.count(tag) != 1 for tag in _TAGS):
        return 0.0
    return FORMAT_SCORE if _PATTERN.fullmatch(text) else 0.0
