"""The benchmarks' judge-free rules: every verdict is a deterministic function of the response text.

Each response gets a :class:`Score`: whether it is correct and what was read as its answer (`extracted`; None when
no answer could be extracted, which the report counts as "unextractable"). The answer is read from the last
`<answer>...</answer>` block when there is one, else from the whole response (as the rewards do). One function per
benchmark domain (`RULES`); `evaluation.Scorer` runs them, the math checks in killable worker processes.

* ``math`` (`math_check`): the rewards' math verifier (math-verify) in its answer reading - the last answer block,
  `\\boxed{}` first, then LaTeX or a plain expression ("<answer>18</answer>" reads 18; training keeps the released
  reading, `\\boxed{}` or anchored `$...$` only); number words read as digits; extracted = the expression that
  reading found (`rewards.math.read_answer`), so the verdict and `extracted` come from the same reading.
* ``choice`` (`score_choice`): the option letter (`rewards.choice.choice_reading`): "(B)", "B.", `\\boxed{B}`, "the
  answer is B", 答案是C / 选C, letters up to the number of options; else the option whose text the answer states (the
  whole answer, or the longest option text in a sentence, unambiguous), else the option equal in value ("8:5" and
  "$8: 5$"). An option text that two options share is right under either letter; a gold that is no letter is
  counted, not scored.
* ``mathvista`` (`score_mathvista`): MathVista's free-form answers: the stated unit and LaTeX decoration are
  removed, number words up to twenty read as digits, the number after "the answer is" (else the last number) is read
  (fractions included), integers must be equal, floats equal after rounding both to the stated precision, lists
  equal element by element.
* ``short`` (`score_short`): a short free-form answer (RealWorldQA's few non-letter golds): equal after
  normalisation, or equal as numbers.
* ``sokoban``: solved (every box on a target) by the answered action list, in the project's simulator.
* ``football``: the chosen action's simulated outcome earns more than the format score (a net gain).

The answer text is read with `rewards.text`'s helpers, the same ones the training rewards and `data/gold.py` use.
`scorer_version()` hashes the files whose rules decide a verdict (`RULE_FILES`: the rewards and the simulators).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from .choice import LETTERS, choice_reading, letter_of
from .football import FORMAT_SCORE, extract_action, football_reward
from .math import check, read_answer
from .sokoban import parse_sokoban_response, sokoban_reward
from .text import (MAX_RESPONSE_CHARS, NORMALIZE_TEXT_CMD, NUMBER_WORD, final_text, last_boxed, normalize_text,
                   numbers_in, stated_number, with_digits)

__all__ = ["Score", "RULES", "RULE_FILES", "scorer_version", "math_check", "score_choice", "score_mathvista",
           "score_short", "score_sokoban", "score_football"]

# The files whose rules decide a verdict: their hash is the scorer's version (results.json records it).
_ROOT = Path(__file__).resolve().parents[1]
RULE_FILES = (tuple(sorted((_ROOT / "rewards").glob("*.py"))) + (_ROOT / "envs" / "sokoban.py",)
              + tuple(sorted((_ROOT / "envs" / "football").glob("*.py"))))


def scorer_version(files=RULE_FILES) -> str:
    """A hash of the scoring rules (the files that decide a verdict) and math-verify's version: it changes when a
    rule changes, so a results.json says which scorer made it."""
    from importlib.metadata import version

    h = hashlib.sha256(f"math-verify {version('math-verify')}".encode())
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:16]


@dataclass
class Score:
    correct: bool
    extracted: str | None  # what was read as the answer; None = nothing could be extracted
    status: str = "ok"  # math: "ok", "gold_unparseable", "timeout", "error"
    reward: float | None = None  # football: the simulated reward


def score_choice(response: str, gold: str, options: list[str] = ()) -> Score:
    """The option letter an answer gives (choice_reading); gold is the option letter. An option whose text appears
    twice among the options is right under either letter. A gold that is no option letter scores 0 with the status
    "gold_not_a_letter" (the loaders flag such rows)."""
    options = list(options)
    letter, ambiguous = choice_reading(response, options)
    want = letter_of(gold) or ""  # "B", "(b)", "B."
    if not want or (options and LETTERS.index(want) >= len(options)):
        return Score(False, letter, status="gold_not_a_letter")
    same = {want} | {LETTERS[i] for i, o in enumerate(options)
                     if normalize_text(o) == normalize_text(options[LETTERS.index(want)])}
    return Score(letter is not None and letter in same, letter, status="ambiguous" if ambiguous else "ok")


_UNIT_POWER = re.compile(r"[A-Za-z]+\s*\^\s*\{?\s*\d+\s*\}?")  # cm^2, m^{3}: the exponent is not an answer


def _strip_unit(text: str, unit: str) -> str:
    if unit:
        text = text.replace(unit, " ")
        text = re.sub(re.escape(unit.split("^")[0]) + r"\b", " ", text) if unit.split("^")[0] else text
    return _UNIT_POWER.sub(" ", NORMALIZE_TEXT_CMD.sub(" ", text))


def score_mathvista(response: str, gold: str, answer_type: str, precision=None, unit: str = "") -> Score:
    """MathVista free-form: integer, float (at `precision` decimals) or list, after removing `unit`."""
    answer = final_text(response)
    boxed = last_boxed(answer)
    text = _strip_unit(boxed if boxed is not None else answer, unit or "")
    if answer_type == "list":
        pred, want = numbers_in(text), numbers_in(str(gold))
        return Score(bool(pred) and pred == want, str(pred) if pred else None)
    if answer_type not in ("integer", "float"):
        said = normalize_text(answer)
        return Score(bool(said) and said == normalize_text(gold), said or None)
    text = with_digits(text)
    values, stated = numbers_in(text), stated_number(text)
    if not values:
        return Score(False, None)
    pred = values[-1] if stated is None else stated
    try:
        want = float(str(gold).replace(",", ""))
    except ValueError:
        return Score(False, f"{pred:g}", status="gold_unparseable")
    if answer_type == "integer":
        return Score(pred == want, f"{pred:g}")
    digits = int(precision) if precision not in (None, "") else 2
    return Score(round(pred, digits) == round(want, digits), f"{pred:g}")


def score_short(response: str, gold: str) -> Score:
    said = normalize_text(with_digits(final_text(response)))
    if not said:
        return Score(False, None)
    want = normalize_text(with_digits(str(gold)))
    if said == want:
        return Score(True, said)
    a, b = numbers_in(said), numbers_in(want)
    numeric = len(a) == 1 and len(b) == 1 and re.fullmatch(r"[-\d.,/ ]+", said) is not None
    return Score(numeric and a[0] == b[0], said)


def score_sokoban(response: str, level) -> Score:
    parsed = parse_sokoban_response(response)
    if parsed is None:
        return Score(False, None)
    out = sokoban_reward(response, level)
    return Score(bool(out["success"]), ", ".join(parsed[1]), reward=out["total"])


def score_football(response: str, state) -> Score:
    action = extract_action(response)
    if action is None:
        return Score(False, None)
    total = football_reward(response, state)["total"]
    return Score(total > FORMAT_SCORE, action, reward=total)


def math_check(response: str, gold: str, max_chars: int = MAX_RESPONSE_CHARS, timeout: int | None = None):
    """(reward, status, extracted) for one response: the rewards' check in the answer reading (the last answer block,
    boxed first, then LaTeX or a plain expression; training keeps the released reading), and what it read - the
    verdict and `extracted` come from the same reading."""
    extracted = read_answer(response, max_chars, timeout)
    if extracted is None and NUMBER_WORD.search(final_text(response or "")):  # "three": read as 3
        response = with_digits(final_text(response))
        extracted = read_answer(response, max_chars, timeout)
    result = check(response, gold, max_chars, timeout, reading="answer")
    return result.reward, result.status, extracted


# The rule of each domain but math (whose checks run in worker processes): (response, gold, sample meta) -> Score.
RULES = {
    "choice": lambda r, gold, meta: score_choice(r, gold, meta.get("options", [])),
    "mathvista": lambda r, gold, meta: score_mathvista(r, gold, meta.get("answer_type"), meta.get("precision"),
                                                       meta.get("unit", "")),
    "short": lambda r, gold, meta: score_short(r, gold),
    "sokoban": lambda r, gold, meta: score_sokoban(r, meta["level"]),
    "football": lambda r, gold, meta: score_football(r, meta["state"]),
}
