"""Format reward, the released LMM-R1 rule: `<think>...</think><answer>...</answer>` and nothing else."""
import re

FORMAT_SCORE = 0.5
# The released pattern, word for word: neither block may contain its own closing tag, nothing before or after.
# Linear: each `(?:(?!</tag>).)*` stops at the first closing tag, and the literal after it fails at once.
_PATTERN = re.compile(r"^<think>(?:(?!</think>).)*</think><answer>(?:(?!</answer>).)*</answer>\Z", re.DOTALL)
# The released rule counts the OPENING tags only: a stray `</answer>` inside the thinking still scores.
_COUNTED = ("<think>", "<answer>")


def format_reward(response: str) -> float:
    """0.5 when the stripped response matches think-then-answer (no gap between) and holds exactly one `<think>`
    and one `<answer>`, else 0.0."""
    text = (response or "").strip()
    if any(text.count(tag) != 1 for tag in _COUNTED):  # cheap, and first: the pattern then runs once
        return 0.0
    return FORMAT_SCORE if _PATTERN.match(text) else 0.0
