"""Gold answers: reading them out of free-form replies, and deciding which a rule can check.

* :func:`has_choices` / :func:`parse_choices` - the options a question lists (``Choices: (A) ...``).
* :func:`extract_final_answer` - the final answer of a free-form reply (MathV360K ``gpt`` turns): the
  option letter for a multiple-choice question, the bare number for numbers, else the text.
* :func:`gold_status` / :func:`verifiability_filter` - keep rows whose gold a reward can check (an option
  letter for choice questions, a math-verify parse otherwise) and count why the others were dropped.
* :func:`gold_ambiguity` / :func:`ambiguous_gold_filter` - golds that parse but that the verifier reads wrongly
  (a repeating decimal, a time, a number with words, a single letter in a math row): listed by ``--check-data``,
  skipped or kept before training as ``--on-ambiguous-gold`` says.

Option letters are read by the choice reward's own parser, :func:`rewards.choice.gold_letter`, and math
golds by the math reward's (:func:`rewards.math.parse_gold`), so a kept row is one the reward can score. Answer text
(``\\boxed{}``, ``\\text{}``, ``$``) is read with the rewards' helpers, :mod:`rewards.text`.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections import Counter
from dataclasses import replace
from typing import Iterable

from rewards.choice import gold_letter  # re-exported: data/vermulti.py reads it here
from rewards.text import PLAIN_NUMBER, UNWRAP_TEXT_CMD, last_boxed, unwrap

from .sample import Sample

__all__ = ["has_choices", "parse_choices", "extract_final_answer", "gold_status", "verifiability_filter",
           "gold_ambiguity", "ambiguous_gold_filter"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- answers and options

_CHOICES_HEAD = re.compile(r"(?im)^\s*(?:choices|options)\s*:")
_OPTION_LINE = re.compile(r"(?m)^\s*\(?([A-E])\s*[).:：]\s*(.*?)\s*$")
_OPTION_INLINE = re.compile(r"\(([A-E])\)\s*(.*?)\s*(?=\([A-E]\)|$)", re.S)
_ANSWER_PHRASE = re.compile(r"(?i)(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*:?\s*")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_NUMBER_UNIT = re.compile(r"([-+]?\$?\s*(?:\d[\d,]*(?:\.\d+)?|\.\d+))\s*"
                          r"(°|%|[A-Za-z]{1,12}(?:\s+[A-Za-z]{1,12})?(?:\^?[23²³])?)\.?")
_YES_NO = {"yes", "no"}
# number + unit: "5 cm", "30°", "12 square units"; not "2 pi", "5 x"
_UNIT_STOP = {"pi", "and", "or", "sqrt", "times", "over", "plus", "minus", "i", "e", "x", "y", "z", "n", "k"}


def has_choices(question: str) -> bool:
    """True when the question lists options: a ``Choices:`` line, or options ``(A)`` and ``(B)`` / ``A.`` and ``B.``."""
    if _CHOICES_HEAD.search(question):
        return True
    letters = {m.group(1) for m in _OPTION_LINE.finditer(question) if m.group(2)}
    if {"A", "B"} <= letters:
        return True
    return bool(re.search(r"\(A\)", question) and re.search(r"\(B\)", question))


def parse_choices(question: str) -> dict[str, str]:
    """``{"A": "text", ...}`` from the options listed in a question (after ``Choices:`` when present)."""
    m = _CHOICES_HEAD.search(question)
    tail = question[m.end():] if m else question
    opts = {k: v for k, v in ((mm.group(1), mm.group(2)) for mm in _OPTION_LINE.finditer(tail)) if v}
    if len(opts) < 2:
        opts = {mm.group(1): mm.group(2).strip() for mm in _OPTION_INLINE.finditer(tail.replace("\n", " "))}
    return opts


def _norm_text(s: str) -> str:
    return re.sub(r"\s+", " ", unwrap(s)).strip().casefold()


def extract_final_answer(text: str, question: str = "") -> str:
    """Final answer of a free-form reply (MathV360K ``gpt`` turns).

    The last ``\\boxed{...}`` wins, else the text after the last "answer is" / "Answer:", else the
    whole reply. For a multiple-choice ``question`` the option letter is returned (also when the
    reply quotes an option's text); for numbers, the number (thousands separators, a leading ``$``,
    and a trailing unit or degree sign removed). Anything else is returned as is, and
    :func:`verifiability_filter` decides whether it is checkable.
    """
    t = str(text or "").strip()
    ans = last_boxed(t)
    if ans is None:
        parts = _ANSWER_PHRASE.split(t)
        if len(parts) > 1:  # the rest of the line after the last "answer is"
            ans = parts[-1].strip().splitlines()[0] if parts[-1].strip() else ""
        else:
            ans = t
    ans = unwrap(ans)
    if question and has_choices(question):
        letter = gold_letter(ans)
        if letter:
            return letter
        want = _norm_text(ans)
        for k, v in parse_choices(question).items():
            if want and _norm_text(v) == want:
                return k
        return ans
    return _clean_number(ans)


def _clean_number(ans: str) -> str:
    a = ans.strip()
    if _THOUSANDS.fullmatch(a):
        return a.replace(",", "")
    m = _NUMBER_UNIT.fullmatch(a)
    if m and m.group(2) != "%" and m.group(2).split()[0].casefold() not in _UNIT_STOP:
        num = m.group(1).replace("$", "").replace(" ", "")
        if _THOUSANDS.fullmatch(num):
            num = num.replace(",", "")
        if PLAIN_NUMBER.fullmatch(num):
            return num
    m = re.fullmatch(r"\$\s*(\d[\d,]*(?:\.\d+)?)", a)  # currency
    if m:
        return m.group(1).replace(",", "")
    return a


# --------------------------------------------------------------------------- verifiability

_FAST_OK = re.compile(r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)|[-+]?\\frac\{\d+\}\{\d+\}|[-+]?\d+/\d+")
_WORDS = re.compile(r"[A-Za-z]{2,}(?:[\s'-]+[A-Za-z]+)*")
_MATH_WORDS = {"pi", "inf", "infinity", "oo"}


def _parse_timeout(timeout: float) -> int | None:
    # math-verify's timeout is signal.alarm based: main thread only, whole seconds.
    if threading.current_thread() is not threading.main_thread():
        return None
    return max(1, int(round(timeout)))


def gold_status(sample: Sample, *, max_chars: int = 200, timeout: float = 2.0) -> str:
    """``"ok"`` when the gold is checkable by a rule, else the drop reason.

    * ``empty``: no gold; ``too_long``: over ``max_chars`` characters (not parsed);
    * choice rows (``domain == "choice"``): ok iff the gold is one option letter A-E (and, when
      the options can be read from the question, one of them), else ``bad_choice``;
    * ``yes_no``: a bare Yes / No gold outside a choice question (no reward in ``rewards/``
      checks it: math-verify reads "No" as the product n*o);
    * otherwise the gold must parse with math-verify exactly as the math reward parses it
      (:func:`rewards.math.parse_gold`: gold wrapped in ``$...$``, prose refused) to a sympy
      number / expression / equation / set / interval: else ``free_text``; ``timeout`` when the
      parse ran over ``timeout`` seconds (signal based, main thread only).
    """
    gold = str(sample.answer if sample.answer is not None else "").strip()
    if not gold:
        return "empty"
    if len(gold) > max_chars:
        return "too_long"
    if sample.domain == "choice":
        letter = gold_letter(gold)
        if letter is None:
            return "bad_choice"
        opts = parse_choices(sample.question)
        return "ok" if len(opts) < 2 or letter in opts else "bad_choice"
    bare = unwrap(gold)
    if bare.casefold() in _YES_NO:
        return "yes_no"
    if _FAST_OK.fullmatch(bare):
        return "ok"
    if _WORDS.fullmatch(bare) and bare.casefold() not in _MATH_WORDS:
        return "free_text"  # words only: "increasing", "up", "red car"
    from math_verify.errors import TimeoutException
    from rewards.math import parse_gold  # the math reward's own gold parser: same verdict as training

    try:
        parsed = parse_gold(gold, _parse_timeout(timeout))
    except TimeoutException:
        return "timeout"
    except Exception:  # noqa: BLE001 - a gold that crashes the parser is not checkable
        return "free_text"
    return "ok" if parsed else "free_text"


def _as_yes_no_choice(sample: Sample) -> Sample:
    """A Yes/No row turned into a two-option question: ``Choices: (A) Yes (B) No``, gold A or B."""
    messages = copy.deepcopy(sample.messages)
    for msg in reversed(messages):
        if msg.get("role") == "user":
            parts = msg["content"] if isinstance(msg["content"], list) else [{"type": "text", "text": msg["content"]}]
            text_parts = [p for p in parts if isinstance(p, dict) and p.get("type") == "text"]
            text_parts[-1]["text"] = text_parts[-1]["text"].rstrip() + "\nChoices:\n(A) Yes\n(B) No"
            msg["content"] = parts
            break
    letter = "A" if unwrap(sample.answer).casefold() == "yes" else "B"
    return replace(sample, messages=messages, answer=letter, domain="choice",
                   meta={**sample.meta, "raw_answer": sample.meta.get("raw_answer", sample.answer)})


def verifiability_filter(
    samples: Iterable[Sample],
    *,
    max_chars: int = 200,
    timeout: float = 2.0,
    yes_no: str = "drop",
) -> tuple[list[Sample], Counter]:
    """Keep the samples whose gold a rule can check (see :func:`gold_status`).

    Returns ``(kept, report)``; ``report`` counts ``"total"``, ``"kept"`` and ``"dropped/<reason>"``
    (``empty``, ``too_long``, ``bad_choice``, ``yes_no``, ``free_text``, ``timeout``). One summary
    line is logged (INFO, logger ``data.gold``).

    Yes/No golds: ``yes_no="drop"`` (default) drops them, since neither the math nor the choice
    reward can score them as they are; ``yes_no="choice"`` keeps them as two-option questions
    (the question gets ``Choices: (A) Yes (B) No``, the gold becomes A/B, ``domain="choice"``),
    counted as ``"converted/yes_no"`` as well as ``"kept"``.
    """
    if yes_no not in ("drop", "choice"):
        raise ValueError(f"yes_no must be 'drop' or 'choice', got {yes_no!r}")
    kept: list[Sample] = []
    report: Counter = Counter()
    for s in samples:
        report["total"] += 1
        status = gold_status(s, max_chars=max_chars, timeout=timeout)
        if status == "yes_no" and yes_no == "choice":
            s = _as_yes_no_choice(s)
            report["converted/yes_no"] += 1
            status = "ok"
        if status == "ok":
            kept.append(s)
            report["kept"] += 1
        else:
            report[f"dropped/{status}"] += 1
    dropped = {k.split("/", 1)[1]: v for k, v in sorted(report.items()) if k.startswith("dropped/")}
    logger.info("verifiability_filter: kept %d of %d%s", report["kept"], report["total"],
                "; dropped " + ", ".join(f"{k}={v}" for k, v in dropped.items()) if dropped else "")
    return kept, report


# --------------------------------------------------------------------------- ambiguous golds

_REPEATING = re.compile(r"\\overline|\\dot\s*\{?\s*\d|\d\s*(?:\.{3}|\\[lc]?dots|…)")
_CLOCK = re.compile(r"(?<![\d.])\d{1,2}:\d{2}(?::\d{2})?(?!\d)")
_NUMBER_WORDS = re.compile(r"(?<![A-Za-z\\])\d[\d.,]*\s+[A-Za-z]{2,}")
_LETTER = re.compile(r"[A-Za-z]")
AMBIGUOUS = {
    "repeating_decimal": "a repeating decimal: the verifier reads only the digits written (0.\\overline{3} as 0, "
                         "0.333... as 0.333)",
    "clock_time": "a time or a ratio: the verifier reads 12:30 as the ratio 2/5",
    "number_words": "a number with words the verifier reads as a product of letters (5 dollars as 5*a*d*l*l*o*r*s): "
                    "no answer can match it",
    "letter": "a single letter in a math row: the verifier matches it in either case (B accepts b)",
}


def gold_ambiguity(sample: Sample) -> str | None:
    """Why the verifier would read this gold wrongly (a key of ``AMBIGUOUS``), or None.

    Only golds that parse are judged here (``gold_status`` reports the rest); choice rows are read by option letter
    and never ambiguous. Cheap: regular expressions first, math-verify only for a number followed by words (units
    it strips, "5 cm", are fine; words it turns into letters, "5 dollars", are not).
    """
    if sample.domain == "choice" or sample.answer is None:
        return None
    gold = str(sample.answer).strip()
    if not gold or len(gold) > 200:
        return None
    if _REPEATING.search(gold):
        return "repeating_decimal"
    if _CLOCK.search(gold):
        return "clock_time"
    bare = unwrap(gold)
    if _LETTER.fullmatch(bare):
        return "letter"
    if _NUMBER_WORDS.search(UNWRAP_TEXT_CMD.sub("", gold)):
        from rewards.math import parse_gold_released  # lazy: imports math-verify

        try:
            parsed = parse_gold_released(gold, _parse_timeout(2.0))
        except BaseException:  # noqa: BLE001 - a gold that hangs the parser is gold_status's business
            return None
        if any(getattr(x, "free_symbols", None) for x in parsed):
            return "number_words"
    return None


def ambiguous_gold_filter(samples: Iterable[Sample], mode: str = "skip") -> tuple[list[Sample], Counter]:
    """``--on-ambiguous-gold``: ``"skip"`` drops the rows whose gold is ambiguous (:func:`gold_ambiguity`),
    ``"keep"`` keeps them; either way ``report`` counts ``"ambiguous"`` and ``"ambiguous/<reason>"``, and one line
    is logged (WARNING, logger ``data.gold``) when there are any."""
    if mode not in ("skip", "keep"):
        raise ValueError(f"mode must be 'skip' or 'keep', got {mode!r}")
    kept: list[Sample] = []
    report: Counter = Counter()
    for s in samples:
        reason = gold_ambiguity(s)
        if reason is not None:
            report["ambiguous"] += 1
            report[f"ambiguous/{reason}"] += 1
            if mode == "skip":
                continue
        kept.append(s)
    if report:
        kinds = ", ".join(f"{k.split('/', 1)[1]}={v}" for k, v in sorted(report.items()) if "/" in k)
        logger.warning("%d rows have a gold answer the verifier reads wrongly (%s): %s (--on-ambiguous-gold %s)",
                       report["ambiguous"], kinds, "skipped" if mode == "skip" else "kept", mode)
    return kept, report
