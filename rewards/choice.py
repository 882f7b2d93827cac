"""Multiple-choice reward: extract an option letter A-E and compare with the gold letter."""
import re

from .text import BOXED_FLAT, CHOICE_TEXT_CMD, MAX_RESPONSE_CHARS, answer_text, last_boxed, last_match


def option_letter(letters: str = "A-E") -> str:
    """An option letter in group 1: only capitals in `letters`, never next to another letter or digit, so
    "A triangle", "BAD" or "a" do not read as options."""
    return rf"\(?([{letters}])\)?(?![A-Za-z0-9])"


def answer_phrase(letters: str = "A-E") -> re.Pattern:
    """"answer B" / "answer is: (B)"; option/choice need "is" or ":" so "option A is wrong" does not count. Each
    whitespace run has one place to go, so a long run of spaces cannot backtrack quadratically."""
    return re.compile(r"(?i:answer\s*(?:is\b\s*)?(?:[:=]\s*)?|(?:option|choice)\s*(?:is\b|[:=])\s*)"
                      + option_letter(letters))


_OPT = option_letter()
_PHRASE = answer_phrase()
_LEADING = re.compile(r"\s*\(?([A-E])(?:\s*[.):]|\s*$)")  # "B", "B.", "(B)", "B) 36°", "B: ..."
_PAREN = re.compile(r"\(([A-E])\)")
_BOXED_OPT = re.compile(r"\s*" + _OPT)


def _clean(text: str) -> str:
    # Unwrap \text{B} and drop $ and markdown bold so the patterns see the bare letter.
    return CHOICE_TEXT_CMD.sub(r"\1", text).replace("$", "").replace("*", "")


def extract_choice(response: str, max_chars: int = MAX_RESPONSE_CHARS) -> str | None:
    """Option letter from the answer block (or the whole response), else None.

    Tried in order: last \\boxed{...}; "answer is B" / "option: (B)"; a final line that
    starts with the letter ("B", "B.", "(B)", "B) 36°"); the last "(B)" anywhere.
    """
    text = _clean(answer_text(response or "", max_chars))
    boxed = last_boxed(text, BOXED_FLAT)
    if boxed is not None:
        m = _BOXED_OPT.match(boxed)
        if m:
            return m.group(1)
    letter = last_match(_PHRASE, text)
    if letter:
        return letter
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines:
        m = _LEADING.match(lines[-1])
        if m:
            return m.group(1)
    return last_match(_PAREN, text)


def gold_letter(gold: str) -> str | None:
    """Gold option letter: "B", "(b)", "B." or anything extract_choice understands."""
    g = str(gold).strip()
    m = re.fullmatch(r"\(?([A-Ea-e])\)?\.?", g)
    return m.group(1).upper() if m else extract_choice(g)


def choice_reward(response: str, gold: str) -> float:
    """1.0 when the extracted option equals the gold letter, else 0.0."""
    want = gold_letter(gold)
    return 1.0 if want is not None and extract_choice(response) == want else 0.0
