"""Judge-free scoring of benchmark answers: every rule here is a deterministic function of the response text.

Each response gets a :class:`Score`: whether it is correct and what was read as its answer (`extracted`; None when
no answer could be extracted, which the report counts as "unextractable"). The answer is read from the last
`<answer>...</answer>` block when there is one, else from the whole response (as the rewards do).

* ``math``: the rewards' math verifier (math-verify, configured as in training), in killable worker processes
  with a time limit per check; extracted = the expression math-verify read from the answer
  (`rewards.math.read_answer`).
* ``choice``: the option letter (`rewards.choice.extract_choice`: "(B)", "B.", "B) 36", `\\boxed{B}`, "the answer
  is B"), else an answer equal to the text of one option ("36°" matches the option "36^\\circ").
* ``mathvista``: MathVista's free-form answers: the stated unit and LaTeX decoration are removed, the last number
  is read (fractions included), integers must be equal, floats equal after rounding both to the stated precision,
  lists equal element by element.
* ``short``: a short free-form answer (RealWorldQA's few non-letter golds): equal after normalisation, or equal
  as numbers.
* ``sokoban``: solved (every box on a target) by the answered action list, in the project's simulator.
* ``football``: the chosen action's simulated outcome earns more than the format score (a net gain).

Answer text is read with the rewards' helpers (`rewards.text`: `final_text`, `last_boxed`, `normalize_text`,
`numbers_in`); this module holds the scoring policy of each benchmark domain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rewards.choice import extract_choice
from rewards.football import FORMAT_SCORE, extract_action, football_reward
from rewards.math import DEFAULT_MEMORY_LIMIT_MB, check, read_answer, worker_setup
from rewards.pool import KillPool
from rewards.sokoban import parse_sokoban_response, sokoban_reward
from rewards.text import MAX_RESPONSE_CHARS, NORMALIZE_TEXT_CMD, final_text, last_boxed, normalize_text, numbers_in

__all__ = ["Score", "Scorer", "score_choice", "score_mathvista", "score_short", "score_sokoban", "score_football",
           "math_check"]

LETTERS = "ABCDEFGHIJ"


@dataclass
class Score:
    correct: bool
    extracted: str | None  # what was read as the answer; None = nothing could be extracted
    status: str = "ok"  # math: "ok", "gold_unparseable", "timeout", "error"
    reward: float | None = None  # football: the simulated reward


# --------------------------------------------------------------------------- rule-based scorers


def _choice_letter(response: str, options: list[str]) -> str | None:
    letter = extract_choice(response)
    if letter is not None:
        return letter
    answer = final_text(response)
    bare = re.fullmatch(r"\s*\(?([A-J])\)?[.):]?\s*", normalize_text(answer).upper() if answer.strip() else "")
    if bare and bare.group(1) in LETTERS[:max(len(options), 5)]:
        return bare.group(1)
    said = normalize_text(answer)
    if said:
        for i, option in enumerate(options):
            if said == normalize_text(option):
                return LETTERS[i]
    return None


def score_choice(response: str, gold: str, options: list[str] = ()) -> Score:
    """Option letter, or the text of an option; gold is the option letter."""
    letter = _choice_letter(response, list(options))
    return Score(letter is not None and letter == str(gold).strip().upper(), letter)


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
    values = numbers_in(text)
    if not values:
        return Score(False, None)
    pred = values[-1]
    try:
        want = float(str(gold).replace(",", ""))
    except ValueError:
        return Score(False, f"{pred:g}", status="gold_unparseable")
    if answer_type == "integer":
        return Score(pred == want, f"{pred:g}")
    digits = int(precision) if precision not in (None, "") else 2
    return Score(round(pred, digits) == round(want, digits), f"{pred:g}")


def score_short(response: str, gold: str) -> Score:
    said = normalize_text(final_text(response))
    if not said:
        return Score(False, None)
    want = normalize_text(gold)
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
    """(reward, status, extracted) for one response: the rewards' own check, plus what math-verify read."""
    result = check(response, gold, max_chars, timeout)
    return result.reward, result.status, read_answer(response, max_chars, timeout)


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
