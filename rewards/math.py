"""Math accuracy with math-verify, run in killable worker processes.

Two readings of a response, by name (`READINGS`):

* "released" (the default; `r1_math`): LMM-R1's released rule. The gold is wrapped in `$...$` and parsed with
  math-verify's default LaTeX extraction; the prediction is parsed from the WHOLE response with LaTeX extraction
  only (`\\boxed{}` first, no unanchored `$7$`, no bare numbers) and the normalisation of `RELEASED_PRED_CONFIG`; the
  first match of each; then `verify(prediction, gold)`, in that order (verify is not symmetric: an inequality
  answer matches an interval gold, an interval answer does not match an inequality gold).
* "answer" (`r1_math_answer`): this project's own reading. Only the last non-blank `<answer>` block (else the
  whole response) is parsed, boxed first, then any LaTeX or plain expression ("42"); `verify(gold, prediction)`;
  and golds that are prose ("see figure") or parse to no sympy object count as unparseable.

Both fail closed on a gold that does not parse (reward 0, status "gold_unparseable"); `fail_closed=False` pays it 1,
as the released code does ("to skip this example"), still counted.

Both score an answer whole or not at all (`whole=True`, the default): math-verify's unbracketed matches, a bare
`\\frac{a}{b}` and (in the "answer" reading) a bare number or `1/2`-style expression, can be a piece of a longer
expression (`2\\frac{1}{2}`, `\\frac{1}{2}\\pi`, `42+\\infty`, the innermost fraction of a nested chain). Such a
partial parse is not a match (reward 0, `MathResult.partial`, counted as `reward/partial_parse`); the extraction
itself (which match, in which order) is math-verify's, unchanged. `whole=False` pays partial parses as the released
code does.

Juxtaposition counts too: a bare number followed, across spaces or LaTeX spacing, by a letter, a product of letters, a
word, `=` or a math command (`\\frac{1}{2} bh`, `3 x`, `2 = x`, `\\frac{1}{2} \\pi`, `42 or so`) is a piece of that
expression, not the number. Only a unit makes the number whole (`unit_after`): a unit word of math-verify's own list
(what it drops after a number in a boxed answer and in a gold: "cm", "degrees", "apples", "square units"; its single
letters "h", "m", "s", ... and "ab", "bc" are variables here: write `\\text{m}`), a text command (`\\text{cm}`), a
degree or percent sign; what follows the unit is its own (`cm^2`, `meters of rope`). A full stop, a line break or a
comma before prose ends the answer (`\\frac{1}{2}, so`). Fractions that math-verify joins with "and", "or" or commas
are one answer (a set). Inside `\\boxed{}` or `$...$` math-verify parses the whole content, so the gold's own form
decides: `\\boxed{\\frac{1}{2} bh}` is b*h/2, which matches the gold `\\frac{1}{2}bh` and not 1/2.
"""
import itertools
import logging
import math
import re
import resource
import threading
from dataclasses import dataclass

from latex2sympy2_extended.math_normalization import units as _MV_UNITS
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException
from math_verify.parser import NormalizationConfig, extract_match, get_extraction_regexes
from math_verify.utils import timeout as _mv_timeout
from sympy import Basic, MatrixBase

from .pool import KillPool
from .text import MAX_RESPONSE_CHARS, PROSE_TEXT_CMD, TEXT_COMMANDS, answer_text

STATUSES = ("ok", "gold_unparseable", "timeout", "error")
READINGS = ("released", "answer")
DEFAULT_TIMEOUT = 5.0
DEFAULT_MEMORY_LIMIT_MB = 2048

# The released rule's configurations, value for value (math-verify's defaults elsewhere).
RELEASED_GOLD_CONFIG = (LatexExtractionConfig(),)
RELEASED_PRED_CONFIG = (LatexExtractionConfig(
    normalization_config=NormalizationConfig(nits=False, malformed_operators=False, basic_latex=True, boxed="all",
                                             units=True),
    boxed_match_priority=0,  # \boxed{} before "final answer is $...$"
    try_extract_without_anchor=False,  # no bare "$7$" without an anchor
),)
# The project's reading: boxed answers win over "final answer is ..." and bare expressions.
ANSWER_PRED_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
_LATEX_CMD = re.compile(r"\\[A-Za-z]+")
_ONLY_WORDS = re.compile(r"[A-Za-z\s.,;:!?'\"-]+")
_LONG_WORD = re.compile(r"[A-Za-z]{3}")


@dataclass(frozen=True)
class MathResult:
    reward: float
    status: str  # one of STATUSES
    partial: bool = False  # the prediction parsed to only a piece of the expression around it (scored 0)


def _parse(text: str, timeout: int | None, **kw) -> list:
    """math-verify parse; ordinary failures mean "nothing parsed", MemoryError and timeouts propagate."""
    try:
        return parse(text, parsing_timeout=timeout, raise_on_error=True, **kw)
    except MemoryError:
        raise
    except Exception:
        return []


def _extract(text: str, configs, mode: str) -> tuple[list, tuple | None]:
    """`math_verify.parser.extract_target_from_pred` step for step (the same matches, the same order, the same
    result, fallback string included), also returning the regex match and target type that gave the parsed value,
    so that where it sits in the text can be checked."""
    patterns = sorted(((pattern, target, priority) for regexes, target in get_extraction_regexes(configs)
                       for pattern, priority in regexes), key=lambda x: x[2])
    extracted, fallbacks, chosen, found = [], [], None, False
    for _, group in itertools.groupby(patterns, key=lambda x: x[2]):
        matches = sorted(((m, m.start(), m.end(), target) for pattern, target, _ in group
                          for m in pattern.finditer(text)), key=lambda x: (x[2], -x[1]), reverse=True)
        for m, _, _, target in matches:
            value, fallback = extract_match(m, target)
            found = True
            if fallback:
                fallbacks.append(fallback)
            if value is not None:
                extracted.append(value)
                chosen = (m, target)
                break
            if mode == "first_match":
                break
        if extracted or (found and mode == "first_match"):
            break
    if fallbacks:  # parse()'s default fallback_mode="first_match"
        extracted.append(fallbacks[0])
    return extracted, chosen


# What may stand next to an unbracketed match without making it a piece of a longer expression.
_LATEX_SPACE = r"\\[,;:! ]|\\q?quad\b|~"  # \, \; \: \! "\ " \quad \qquad ~
_HSPACE = re.compile(rf"(?:[ \t]|{_LATEX_SPACE})*")
_HSPACE_BEFORE = re.compile(rf"(?:[ \t]|{_LATEX_SPACE})*\Z")
_TEXT_CMDS = TEXT_COMMANDS + ("quad", "qquad")
_CMD_AFTER = re.compile(r"\\([A-Za-z]+)")
_CMD_BEFORE = re.compile(r"\\([A-Za-z]+)\Z")
_OPERATORS = set("+-*/^_<>=×÷·≤≥±∓")
_OPEN = {"(": ")", "[": "]"}
_TAG_BEFORE = re.compile(r"</?[A-Za-z][A-Za-z0-9_-]{0,20}>\Z")
_TAG_AFTER = re.compile(r"</?[A-Za-z][A-Za-z0-9_-]{0,20}>")
# A unit after a number: a sign (percent, degrees), a text command (`\\text{cm}`, `\\mathrm{m}`), or, after a space, a
# unit word of math-verify's own list (the words it drops after a number in a boxed answer and in a gold: "cm",
# "degrees", "apples", "square units"), plural or not, except its single letters ("h", "m", "s", "t": after a bare
# number they are variables, as in `\\frac{1}{2} h`; `\\text{m}` is a unit) and its "ab", "bc" (products of side names).
_UNIT_SIGN = re.compile(r"\\?%|°|\^\s*(?:\\circ\b|\{\s*\\circ\s*\})|\\circ\b|\\degree\b|\\(?:"
                        + "|".join(TEXT_COMMANDS) + r")\b")
# math-verify's units that are as often variables: its single letters and the products "ab", "bc" (see also
# `dropped_letters`); the others are unit words.
_LETTER_UNITS = sorted({u.strip() for u in _MV_UNITS if len(u.strip()) == 1} | {"ab", "bc"}, key=len, reverse=True)
_UNIT_WORDS = sorted({u.strip() for u in [*_MV_UNITS, "percent", "percentage", "pct"] if u.strip()}
                     - set(_LETTER_UNITS), key=len, reverse=True)
_UNIT_WORD = re.compile(r"(?:" + "|".join(map(re.escape, _UNIT_WORDS)) + r")(?:s|es)?(?![^\W\d_])", re.IGNORECASE)


def unit_after(text: str, i: int) -> int | None:
    """Where the unit that starts at `text[i]` ends, or None when none does (a sign or text command right there or
    after spaces, a unit word after spaces: see `_UNIT_SIGN`, `_UNIT_WORD`)."""
    b = _HSPACE.match(text, i).end()
    m = _UNIT_SIGN.match(text, b) or (b > i and _UNIT_WORD.match(text, b))
    return m.end() if m else None


def _skip_left(text: str, i: int) -> int:
    """Index just after the last non-space character before `i` (LaTeX spacing commands count as space)."""
    m = _HSPACE_BEFORE.search(text, max(0, i - 64), i)
    return m.start() if m else i


def _embedded(text: str, start: int, end: int) -> bool:
    """True when text[start:end] is a piece of a longer expression: math stands right before or after it (a digit
    or a math command across spaces; a letter, brace or bracket right beside it; after it, also a letter, a word or
    `=` across spaces, unless a unit comes first). Brackets that enclose exactly the span (`(\\frac12)`,
    `\\left(\\frac12\\right)`) are part of it."""
    while True:
        a = _skip_left(text, start)
        b = _HSPACE.match(text, end).end()
        left, right = text[a - 1:a], text[b:b + 1]
        if left in _OPEN:
            if right == _OPEN[left]:
                start, end = a - 1, b + 1
                continue
            lm = _CMD_BEFORE.search(text, max(0, a - 33), a - 1)
            if lm and lm.group(1) == "left" and text.startswith("\\right" + _OPEN[left], b):
                start, end = lm.start(), b + 7  # \left( ... \right) encloses the span: look around it
                continue
        break
    lcmd = _CMD_BEFORE.search(text, max(0, a - 32), a)
    # left side (an `<answer>` tag is a boundary, not a comparison)
    if _TAG_BEFORE.search(text, max(0, a - 24), a):
        left = ""
    if _TAG_BEFORE.search(text, max(0, start - 24), start):
        before = ""
    else:
        before = text[start - 1:start]
    if before and (before.isalnum() or before in "{}()[]^_.!|'\\"):
        return True  # "2\frac12", "x\frac12", "{\frac12}", "(\frac12, 3)"
    if left and (left.isdigit() or left in _OPERATORS - {"="} or left in "{^_"):
        return True  # "2 \frac12", "x - \frac12"
    if lcmd and lcmd.group(1) not in _TEXT_CMDS:
        return True  # "\pi \frac12", "\leq \frac12"
    # right side: a unit ends the answer (what follows is the unit's: "cm^2", "m/s", "meters of rope")
    if _TAG_AFTER.match(text, b):
        right = ""
    if unit_after(text, end) is not None:
        return False  # "\frac12 cm", "36^\circ", "5\%", "3\,\text{cm}"
    after = "" if b > end or _TAG_AFTER.match(text, end) else text[end:end + 1]  # a spacing command is a space
    if after and (after.isalnum() or after in "\\{}()[]^_!|'" or (after == "." and text[end + 1:end + 2].isdigit())):
        return True  # "\frac12x", "\frac12\pi", "\frac{1}{2}}" (inside braces)
    if right and (right.isdigit() or right in _OPERATORS or right in "{^_("):
        return True  # "\frac12 + 1", "2 = x"; "42 \infty" is caught below
    if right.isalpha():
        return True  # a variable, a product or a word that is not a unit: "\frac12 bh", "3 x", "42 or so"
    rcmd = _CMD_AFTER.match(text, b)
    if rcmd and rcmd.group(1) not in _TEXT_CMDS:
        return True  # "\frac12 \pi", "42 \cdot 3"
    if right in (",", ";"):  # a list goes on: "\frac12, 3"; prose does not: "\frac12, so"
        c = _HSPACE.match(text, b + 1).end()
        nxt = text[c:c + 2]
        if nxt[:1].isdigit() or (nxt[:1] == "-" and nxt[1:].isdigit()) or \
                ((m := _CMD_AFTER.match(text, c)) and m.group(1) not in _TEXT_CMDS):
            return True
    return False


_DELIMITERS = {"latexDisplayDollar": ("$$", "$$"), "latexDisplayBracket": ("\\[", "\\]"),  # math-verify's groups
               "latexInlineDollar": ("$", "$"), "latexInlineParenthesis": ("\\(", "\\)"),
               "latexInlineBracket": ("[", "]"), "latexFraction": ("", "")}


def _match_spans(m: re.Match, target) -> list[tuple[int, int]]:
    """Where the unbracketed parts of a match sit: bare `\\frac{a}{b}` groups of a LaTeX match, the number or
    expression of a plain-expression match. Delimited LaTeX (`$...$`, `\\[...\\]`, `\\boxed{}`) has none: its whole
    content is what gets parsed. A LaTeX match that joins several groups (`\\frac12, \\frac13 and $x$`: math-verify
    reads them as one set) is one span, from the first group to the last, delimiters included."""
    groups = m.groupdict()
    if isinstance(target, LatexExtractionConfig):  # a "%" after a group belongs to it
        names = sorted((n for n, v in groups.items() if v and n.split("_")[-1] in _DELIMITERS), key=m.start)
        if not any(n.endswith("latexFraction") for n in names):
            return []
        first, last = names[0], names[-1]
        return [(m.start(first) - len(_DELIMITERS[first.split("_")[-1]][0]),
                 max(m.end(last) + len(_DELIMITERS[last.split("_")[-1]][1]), m.end(last.split("_")[0] + "_percent")))]
    if isinstance(target, ExprExtractionConfig):
        names = [n for n, v in groups.items() if v is not None and n.startswith(("expr", "integer", "decimal",
                                                                                 "percent"))]
        if names:
            return [(min(m.start(n) for n in names), max(m.end(n) for n in names))]
    return []


def is_partial(text: str, chosen: tuple | None) -> bool:
    """True when the match math-verify parsed is a piece of a longer expression of `text` (see `_embedded`)."""
    if chosen is None:
        return False
    return any(_embedded(text, a, b) for a, b in _match_spans(*chosen))


# math-verify drops `_LETTER_UNITS` as units at the end of an answer too (its units regex: after a digit, `}` or a
# space): `\boxed{\frac{1}{2} h}` parses to 1/2. The gold's own form decides: such letters in a prediction make it a
# piece unless the gold ends with them too (`5 m` against the gold `5 m`).
_LETTER_UNIT_END = re.compile(r"(?<=[\d}\s])\s*(" + "|".join(_LETTER_UNITS) + r")(?:s|es)?\s*\Z")
_BOXED = re.compile(r"\A\s*\\(?:boxed|fbox)\s*\{(.*)\}\s*\Z", re.DOTALL)


def dropped_letters(text: str) -> set[str]:
    """The letters at the end of `text` that math-verify would drop as units (`_LETTER_UNITS`)."""
    found = set()
    text = re.sub(_LATEX_SPACE, " ", _BOXED.sub(r"\1", text.strip().strip("$")))
    while m := _LETTER_UNIT_END.search(text):
        found.add(m.group(1))
        text = text[:m.start()]
    return found


def _content(chosen: tuple | None) -> str:
    """The text of the match math-verify parsed (a LaTeX match: its groups' content, `\\boxed{}` unwrapped)."""
    return "" if chosen is None else " ".join(v for v in chosen[0].groupdict().values() if v)


def parse_prediction(text: str, timeout: int | None, configs, mode: str, gold: str = "") -> tuple[list, bool]:
    """math-verify's parse of a prediction (the same list `parse` returns) and whether it is partial: a piece of a
    longer expression (`is_partial`), or letters dropped as units that the `gold` does not end with
    (`dropped_letters`). Ordinary failures mean "nothing parsed"; MemoryError and timeouts propagate."""
    try:
        pred, chosen = _mv_timeout(timeout_seconds=timeout)(_extract)(text, configs, mode)
        return pred, is_partial(text, chosen) or bool(dropped_letters(_content(chosen)) - dropped_letters(gold))
    except MemoryError:
        raise
    except Exception:
        return [], False


def _verify(first: list, second: list, timeout: int | None) -> bool:
    # Same as verify(first, second) (any pair matches), but lets MemoryError through. verify's first argument is its
    # "gold": the order matters (relations against sets, equations against numbers).
    for a, b in itertools.product(first, second):
        try:
            if verify(a, b, timeout_seconds=timeout, raise_on_error=True):
                return True
        except MemoryError:
            raise
        except Exception:
            continue
    return False


def _is_prose(gold: str, exprs: list) -> bool:
    """True for word-only golds that parse to symbols: "see figure" -> e**3*f*g*i*r*s*u.

    Such a gold would "match" any anagram, so it is refused. Golds with math
    syntax ("\\sqrt{abc}") or no free symbols ("infinity") are kept.
    """
    text = _LATEX_CMD.sub("", PROSE_TEXT_CMD.sub(r"\1", gold)).replace("$", "").strip()
    if not (_ONLY_WORDS.fullmatch(text) and _LONG_WORD.search(text)):
        return False
    return any(getattr(e, "free_symbols", None) for e in exprs)


def parse_gold(gold: str, timeout: int | None = None) -> list:
    """The "answer" reading's gold (math-verify list), or [] when it is empty, prose or not math (strict: also the
    verifiability filter of the data loaders)."""
    gold = str(gold).strip()
    if not gold:
        return []
    wrapped = gold if "$" in gold or "\\boxed" in gold else f"${gold}$"
    parsed = _parse(wrapped, timeout)
    exprs = [x for x in parsed if isinstance(x, (Basic, MatrixBase))]
    if not exprs or _is_prose(gold, exprs):
        return []
    return parsed


def parse_gold_released(gold: str, timeout: int | None = None) -> list:
    """The released rule's gold: stripped, wrapped in `$...$` unless it starts with `$`, default LaTeX extraction,
    first match; [] = unparseable."""
    gold = str(gold).strip()
    return _parse(gold if gold.startswith("$") else f"${gold}$", timeout, extraction_config=RELEASED_GOLD_CONFIG,
                  extraction_mode="first_match")


def read_answer(response: str, max_chars: int = MAX_RESPONSE_CHARS, timeout: int | None = None) -> str | None:
    """The answer text math-verify reads in the "answer" reading (the last answer block, boxed first, then LaTeX or a
    plain expression: `ANSWER_PRED_CONFIG`), else None. Timeouts and MemoryError propagate."""
    pred = _parse(answer_text(response or "", max_chars), timeout, extraction_config=ANSWER_PRED_CONFIG)
    return next((p for p in pred if isinstance(p, str)), None) if pred else None


def check(response: str, gold: str, max_chars: int | None = None, timeout: int | None = None,
          reading: str = "released", whole: bool = True, fail_closed: bool = True) -> MathResult:
    """One accuracy check, in the current process. `timeout` is math-verify's own (signal based). `max_chars`: only
    the response's last max_chars characters are read (None: the released reading reads all of it, the answer
    reading its last MAX_RESPONSE_CHARS). `whole`: a partial parse scores 0 (else it is verified, as released).
    `fail_closed`: an unparseable gold scores 0 (else 1, as released); its status is "gold_unparseable" either way."""
    if reading == "released":
        gold_parsed = parse_gold_released(gold, timeout)
    elif reading == "answer":
        gold_parsed = parse_gold(gold, timeout)
    else:
        raise ValueError(f"unknown reading {reading!r}; expected one of {READINGS}")
    if not gold_parsed:
        return MathResult(0.0 if fail_closed else 1.0, "gold_unparseable")  # released (and open-r1): 1.0
    text = response or ""
    if max_chars is not None:
        text = text[-max_chars:]
    if not text.strip():
        return MathResult(0.0, "ok")  # the released code read the prompt instead: --empty-response prompt
    if reading == "released":
        pred, partial = parse_prediction(text, timeout, RELEASED_PRED_CONFIG, "first_match", gold)
        first, second = pred, gold_parsed
    else:
        pred, partial = parse_prediction(answer_text(text, max_chars or MAX_RESPONSE_CHARS), timeout,
                                         ANSWER_PRED_CONFIG, "any_match", gold)
        first, second = gold_parsed, pred
    if partial and whole:
        return MathResult(0.0, "ok", partial=True)
    return MathResult(float(bool(pred) and _verify(first, second, timeout)), "ok", partial=partial)


def math_accuracy(response: str, gold: str, timeout: float = DEFAULT_TIMEOUT,
                  reading: str = "released", whole: bool = True, fail_closed: bool = True) -> MathResult:
    """In-process check for trusted text and quick use.

    No memory limit, and the timeout is best effort: math-verify's signal.alarm,
    main thread only, and it cannot stop a long C call. Use MathVerifier for model output.
    """
    on_main = threading.current_thread() is threading.main_thread()
    try:
        return check(response, gold, timeout=math.ceil(timeout) if on_main else None, reading=reading, whole=whole,
                     fail_closed=fail_closed)
    except TimeoutException:
        return MathResult(0.0, "timeout")
    except MemoryError:
        return MathResult(0.0, "error")


def _address_space_kb() -> int | None:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return None


def worker_setup(memory_limit_mb: int) -> None:
    """Start-up of a math-verify worker process: warm math-verify up, then cap the address space's growth at
    `memory_limit_mb` (the `setup` of a KillPool whose function calls `check`)."""
    # Time limits are enforced from outside, so silence math-verify's "timeout disabled" notice.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    # Load sympy's lazily imported parts before any check's clock starts.
    for reading in READINGS:
        check(r"\boxed{\frac{1}{2}}", "0.5", reading=reading)
        check(r"\boxed{(1, 2]}", "(1,2]", reading=reading)
        check(r"\boxed{x=2}", "2", reading=reading)
    # The cap is on top of the worker's size after start-up: spawn re-imports the
    # caller's __main__, which may pull in torch and hundreds of MB of address space.
    base_kb = _address_space_kb() or 0
    limit = base_kb * 1024 + memory_limit_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


_POOL_RESULTS = {"timeout": MathResult(0.0, "timeout"), "error": MathResult(0.0, "error")}


class MathVerifier:
    """Pool of math-verify worker processes with a hard time limit per check.

    A check over `timeout` seconds gets its worker killed and replaced and scores
    0 with status "timeout". Each worker may grow its address space by at most
    `memory_limit_mb` (RLIMIT_AS); a MemoryError scores 0 with status "error".
    Workers use the 'spawn' start method: they re-import the caller's script, so
    it needs an `if __name__ == "__main__":` guard. Start-up takes ~1 s; the first
    score() waits for it. Calls from several threads are serialized.

    `reading` is one of READINGS; `max_chars` (None: the whole response for "released", its last
    MAX_RESPONSE_CHARS characters for "answer") bounds what is read of each response. `whole_answer`: a partial
    parse scores 0 (False: paid as the released code pays it). `fail_closed`: an unparseable gold scores 0 (False:
    1, as released). A worker that fails to start is restarted;
    `max_start_failures` failures in a row stop the pool with the cause (see KillPool). `setup`: the worker's
    start-up function (default: math-verify warm-up and the memory cap), for fault injection.
    """

    def __init__(self, workers: int = 2, timeout: float = DEFAULT_TIMEOUT,
                 memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
                 max_chars: int | None = None, mp_context: str = "spawn", reading: str = "released",
                 whole_answer: bool = True, fail_closed: bool = True, max_start_failures: int = 3, setup=None,
                 setup_args: tuple = ()):
        if reading not in READINGS:
            raise ValueError(f"unknown reading {reading!r}; expected one of {READINGS}")
        self.reading = reading
        self.whole_answer = whole_answer
        self.fail_closed = fail_closed
        self.max_chars = max_chars if max_chars is not None or reading == "released" else MAX_RESPONSE_CHARS
        if setup is None:
            setup, setup_args = worker_setup, (memory_limit_mb,)
        self._pool = KillPool(check, workers=workers, timeout=timeout, setup=setup, setup_args=setup_args,
                              mp_context=mp_context, max_start_failures=max_start_failures)

    @property
    def stats(self):
        """Running totals of the pool: restarts (after a time-out, an error or a crash), start_failures."""
        return self._pool.stats

    @property
    def pool(self) -> KillPool:
        return self._pool

    @property
    def pids(self) -> list[int]:
        """Current worker process ids."""
        return self._pool.pids

    def score(self, responses: list[str], golds: list[str]) -> list[MathResult]:
        if len(responses) != len(golds):
            raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
        # Cut before sending: no point piping megabytes the worker will drop.
        cut = self.max_chars
        tasks = [((r or "") if cut is None else (r or "")[-cut:], str(g), cut, None, self.reading, self.whole_answer,
                  self.fail_closed) for r, g in zip(responses, golds)]
        return [value if status == "ok" else _POOL_RESULTS[status]
                for status, value in self._pool.map(tasks)]

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> "MathVerifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
