"""Judge-free scoring of benchmark answers: every rule here is a deterministic function of the response text.

Each response gets a :class:`Score`: whether it is correct and what was read as its answer (`extracted`; None when
no answer could be extracted, which the report counts as "unextractable"). The answer is read from the last
`<answer>...</answer>` block when there is one, else from the whole response (as the rewards do).

* ``math``: the rewards' math verifier (math-verify) in its answer reading - the last answer block, `\\boxed{}`
  first, then LaTeX or a plain expression ("<answer>18</answer>" reads 18; training keeps the released reading,
  `\\boxed{}` or anchored `$...$` only) - in killable worker processes with a time limit per check; extracted = the
  expression that reading found (`rewards.math.read_answer`).
* ``choice``: the option letter (`choice_reading`): "(B)", "B.", `\\boxed{B}`, "the answer is B", 答案是C / 选C,
  letters up to the number of options; else the option whose text the answer states (the whole answer, or the
  longest option text in a sentence, unambiguous), else the option equal in value ("8:5" and "$8: 5$"). An option
  text that two options share is right under either letter; a gold that is no letter is counted, not scored.
* ``mathvista``: MathVista's free-form answers: the stated unit and LaTeX decoration are removed, number words up
  to twenty read as digits, the number after "the answer is" (else the last number) is read (fractions included),
  integers must be equal, floats equal after rounding both to the stated precision, lists equal element by element.
* ``short``: a short free-form answer (RealWorldQA's few non-letter golds): equal after normalisation, or equal
  as numbers.
* ``sokoban``: solved (every box on a target) by the answered action list, in the project's simulator.
* ``football``: the chosen action's simulated outcome earns more than the format score (a net gain).

Answer text is read with the rewards' helpers (`rewards.text`: `final_text`, `last_boxed`, `normalize_text`,
`numbers_in`); this module holds the scoring policy of each benchmark domain.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from rewards.choice import answer_phrase
from rewards.football import FORMAT_SCORE, extract_action, football_reward
from rewards.math import DEFAULT_MEMORY_LIMIT_MB, check, read_answer, worker_setup
from rewards.pool import KillPool
from rewards.sokoban import parse_sokoban_response, sokoban_reward
from rewards.text import (MAX_RESPONSE_CHARS, NORMALIZE_TEXT_CMD, final_text, last_boxed, last_match, normalize_text,
                          numbers_in)

__all__ = ["Score", "Scorer", "scorer_version", "RULE_FILES", "choice_reading", "score_choice", "score_mathvista",
           "score_short", "score_sokoban", "score_football",
           "math_check"]

LETTERS = "ABCDEFGHIJ"
# The files whose rules decide a verdict: their hash is the scorer's version (results.json records it).
_ROOT = Path(__file__).resolve().parents[1]
RULE_FILES = tuple(_ROOT / f for f in ("evaluation/scoring.py", "rewards/math.py", "rewards/text.py",
                                      "rewards/choice.py", "rewards/sokoban.py", "rewards/football.py",
                                      "envs/sokoban.py")) + tuple(sorted((_ROOT / "envs" / "football").glob("*.py")))


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


# --------------------------------------------------------------------------- rule-based scorers


# Chinese answer forms: 答案是C, 答案为C, 答案：C, 故选C, 选择C, 选C
_ZH_ANSWER = re.compile(r"(?:答案\s*(?:是|为|应为)?\s*[:：]?|(?:故|所以)?\s*选(?:择)?\s*)\s*[(（]?([A-J])"
                        r"(?![A-Za-z0-9])")
_LEAD_LETTER = re.compile(r"\s*\(?([A-J])\s*[.):：]\s*(.+)\Z", re.DOTALL)  # "A: 6 cm": a letter, or "Answer:"?
_PHRASE = answer_phrase("A-J")
_PAREN = re.compile(r"\(([A-J])\)")
_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                 "sixteen seventeen eighteen nineteen twenty").split()
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_STATED_NUMBER = re.compile(r"(?i:answer\s*(?:is|:|=)|答案\s*(?:是|为)?\s*[:：]?)\s*\$?\s*(?:\\boxed\{)?\s*"
                            r"(-?[\d.,]+(?:\s*/\s*\d+)?)")


def with_digits(text: str) -> str:
    """Number words zero to twenty written as digits ("three apples" -> "3 apples")."""
    return _NUMBER_WORD.sub(lambda m: str(_NUMBER_WORDS.index(m.group(1).lower())), text)


def stated_number(text: str) -> float | None:
    """The number after the last "the answer is" / "answer:" / 答案是, else None: it wins over the last number."""
    stated = last_match(_STATED_NUMBER, text)
    values = numbers_in(stated.rstrip(".,")) if stated else []
    return values[0] if values else None


def _value(text: str) -> tuple[float, ...] | None:
    """The numbers of an option or an answer (a ratio 8:5 or a fraction as one value), None without numbers."""
    t = re.sub(r"(-?\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)", r"\1/\2", with_digits(normalize_text(text)))
    return tuple(round(v, 9) for v in numbers_in(t)) or None


def _option_in_text(said: str, options: list[str]) -> tuple[int | None, bool]:
    """(the option whose text the answer states, ambiguous): the longest option text found as whole words in the
    answer. Two different texts of that length, or a shorter option found outside it, are ambiguous."""
    found = []
    for i, option in enumerate(options):
        o = normalize_text(option)
        if o and re.search(r"(?<![\w.])" + re.escape(o) + r"(?!\w)", said):
            found.append((len(o), i, o))
    if not found:
        return None, False
    longest = max(n for n, _, _ in found)
    best = [(i, o) for n, i, o in found if n == longest]
    if len({o for _, o in best}) > 1:
        return None, True
    rest = said.replace(best[0][1], " ")  # "6" inside "6 cm" is part of it; a "6" elsewhere is not
    others = [o for n, i, o in found if n < longest and re.search(r"(?<![\w.])" + re.escape(o) + r"(?!\w)", rest)]
    return (None, True) if others else (best[0][0], False)


def choice_reading(response: str, options: list[str]) -> tuple[str | None, bool]:
    """(the option letter an answer gives, ambiguous). Tried in order: the answer equal to an option's text;
    "A: <an option's text>" (A: read as "Answer:"); `\\boxed{B}`; "the answer is B" / "option: (B)"; Chinese forms
    (答案是C, 选C); a bare letter; a last line that starts with one - letters up to the number of options (A-E
    without options); then the longest option text stated in a sentence; then an option equal in value ("8:5" =
    "$8: 5$", "\\frac{1}{3}" = "1:3")."""
    letters = LETTERS[:max(len(options), 5)]
    answer = final_text(response)
    said = normalize_text(answer)
    plain = answer.replace("*", "").replace("$", "")
    for i, option in enumerate(options):
        if said and said == normalize_text(option):
            return LETTERS[i], False
    lead = _LEAD_LETTER.match(plain)
    if lead and options:
        rest = normalize_text(lead.group(2))
        equal = [i for i, o in enumerate(options) if rest == normalize_text(o)]
        if equal:
            return LETTERS[equal[0]], False
    boxed = last_boxed(answer)
    m = re.fullmatch(r"\s*(?:\\text\{)?\(?([A-J])\)?\}?\s*", boxed) if boxed is not None else None
    letter = m.group(1) if m else None
    for pattern in (_PHRASE, _ZH_ANSWER):
        letter = letter or last_match(pattern, plain)
    if letter is None and said:
        bare = re.fullmatch(r"\s*\(?([A-J])\)?[.):]?\s*", said.upper())
        letter = bare.group(1) if bare else None
    lines = [ln for ln in plain.splitlines() if ln.strip()]
    if letter is None and lines:
        m = re.match(r"\s*\(?([A-J])(?:\s*[.):]|\s*\Z)", lines[-1])
        letter = m.group(1) if m else None
    if letter is None:
        letter = last_match(_PAREN, plain)
    if letter is not None and letter in letters:
        return letter, False
    if not options or not said:
        return None, False
    stated, ambiguous = _option_in_text(said, options)
    if stated is not None or ambiguous:
        return (LETTERS[stated] if stated is not None else None), ambiguous
    value = _value(answer)
    equal = [i for i, o in enumerate(options) if value is not None and _value(o) == value]
    return (LETTERS[equal[0]], False) if len(equal) == 1 else (None, len(equal) > 1)


def score_choice(response: str, gold: str, options: list[str] = ()) -> Score:
    """The option letter an answer gives (choice_reading); gold is the option letter. An option whose text appears
    twice among the options is right under either letter. A gold that is no option letter scores 0 with the status
    "gold_not_a_letter" (the loaders flag such rows)."""
    options = list(options)
    letter, ambiguous = choice_reading(response, options)
    m = re.fullmatch(r"\s*\(?([A-Ja-j])\)?\.?\s*", str(gold))  # "B", "(b)", "B."
    want = m.group(1).upper() if m else ""
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
    values = numbers_in(with_digits(text))
    stated = stated_number(with_digits(text))
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


# --------------------------------------------------------------------------- math, in worker processes


def math_check(response: str, gold: str, max_chars: int = MAX_RESPONSE_CHARS, timeout: int | None = None):
    """(reward, status, extracted) for one response: the rewards' check in the answer reading (the last answer block,
    boxed first, then LaTeX or a plain expression; training keeps the released reading), and what it read - the
    verdict and `extracted` come from the same reading."""
    extracted = read_answer(response, max_chars, timeout)
    if extracted is None and _NUMBER_WORD.search(final_text(response or "")):  # "three": read as 3
        response = with_digits(final_text(response))
        extracted = read_answer(response, max_chars, timeout)
    result = check(response, gold, max_chars, timeout, reading="answer")
    return result.reward, result.status, extracted


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
            if s.domain == "math":
                continue
            if s.domain == "choice":
                scores[i] = score_choice(r, s.answer, s.meta.get("options", []))
            elif s.domain == "mathvista":
                scores[i] = score_mathvista(r, s.answer, s.meta.get("answer_type"), s.meta.get("precision"),
                                            s.meta.get("unit", ""))
            elif s.domain == "short":
                scores[i] = score_short(r, s.answer)
            elif s.domain == "sokoban":
                scores[i] = score_sokoban(r, s.meta["level"])
            elif s.domain == "football":
                scores[i] = score_football(r, s.meta["state"])
            else:
                raise ValueError(f"no scorer for domain {s.domain!r}")
        return scores

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
