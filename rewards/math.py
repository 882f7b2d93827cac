"""Math accuracy with math-verify, run in killable worker processes.

Two readings of a response, by name (`READINGS`):

* "released" (the default; `r1_math`): LMM-R1's released rule. The gold is wrapped in `$...$` and parsed with
  math-verify's default LaTeX extraction; the prediction is parsed from the WHOLE response with LaTeX extraction
  only (`\\boxed{}` first, no unanchored `$7$`, no bare numbers) and the normalisation of `_RELEASED_PRED`; the
  first match of each; then `verify(prediction, gold)`, in that order (verify is not symmetric: an inequality
  answer matches an interval gold, an interval answer does not match an inequality gold).
* "answer" (`r1_math_answer`): this project's own reading. Only the last non-blank `<answer>` block (else the
  whole response) is parsed, boxed first, then any LaTeX or plain expression ("42"); `verify(gold, prediction)`;
  and golds that are prose ("see figure") or parse to no sympy object count as unparseable.

Both fail closed on a gold that does not parse (reward 0, status "gold_unparseable"; the released code scored 1).
"""
import itertools
import logging
import math
import re
import resource
import threading
from dataclasses import dataclass

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException
from math_verify.parser import NormalizationConfig
from sympy import Basic, MatrixBase

from ._pool import KillPool
from .text import MAX_RESPONSE_CHARS, answer_text

STATUSES = ("ok", "gold_unparseable", "timeout", "error")
READINGS = ("released", "answer")
DEFAULT_TIMEOUT = 5.0
DEFAULT_MEMORY_LIMIT_MB = 2048

# The released rule's configurations, value for value (math-verify's defaults elsewhere).
_RELEASED_GOLD = (LatexExtractionConfig(),)
_RELEASED_PRED = (LatexExtractionConfig(
    normalization_config=NormalizationConfig(nits=False, malformed_operators=False, basic_latex=True, boxed="all",
                                             units=True),
    boxed_match_priority=0,  # \boxed{} before "final answer is $...$"
    try_extract_without_anchor=False,  # no bare "$7$" without an anchor
),)
# The project's reading: boxed answers win over "final answer is ..." and bare expressions.
_PRED_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
_LATEX_CMD = re.compile(r"\\[A-Za-z]+")
_ONLY_WORDS = re.compile(r"[A-Za-z\s.,;:!?'\"-]+")
_LONG_WORD = re.compile(r"[A-Za-z]{3}")


@dataclass(frozen=True)
class MathResult:
    reward: float
    status: str  # one of STATUSES


def _parse(text: str, timeout: int | None, **kw) -> list:
    """math-verify parse; ordinary failures mean "nothing parsed", MemoryError and timeouts propagate."""
    try:
        return parse(text, parsing_timeout=timeout, raise_on_error=True, **kw)
    except MemoryError:
        raise
    except Exception:
        return []


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
    text = _LATEX_CMD.sub("", _TEXT_CMD.sub(r"\1", gold)).replace("$", "").strip()
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
    """The released rule's gold: `$gold$`, default LaTeX extraction, first match; [] = unparseable."""
    return _parse(f"${gold}$", timeout, extraction_config=_RELEASED_GOLD, extraction_mode="first_match")


def check(response: str, gold: str, max_chars: int | None = None, timeout: int | None = None,
          reading: str = "released") -> MathResult:
    """One accuracy check, in the current process. `timeout` is math-verify's own (signal based). `max_chars`: only
    the response's last max_chars characters are read (None: the released reading reads all of it, the answer
    reading its last MAX_RESPONSE_CHARS)."""
    if reading == "released":
        gold_parsed = parse_gold_released(gold, timeout)
    elif reading == "answer":
        gold_parsed = parse_gold(gold, timeout)
    else:
        raise ValueError(f"unknown reading {reading!r}; expected one of {READINGS}")
    if not gold_parsed:
        return MathResult(0.0, "gold_unparseable")  # fail closed: the released code (and open-r1) scored this 1.0
    text = response or ""
    if max_chars is not None:
        text = text[-max_chars:]
    if not text.strip():
        return MathResult(0.0, "ok")  # the released code read the prompt instead of an empty response
    if reading == "released":
        pred = _parse(text, timeout, extraction_config=_RELEASED_PRED, extraction_mode="first_match")
        return MathResult(float(bool(pred) and _verify(pred, gold_parsed, timeout)), "ok")
    pred = _parse(answer_text(text, max_chars or MAX_RESPONSE_CHARS), timeout, extraction_config=_PRED_CONFIG)
    return MathResult(float(bool(pred) and _verify(gold_parsed, pred, timeout)), "ok")


def math_accuracy(response: str, gold: str, timeout: float = DEFAULT_TIMEOUT,
                  reading: str = "released") -> MathResult:
    """In-process check for trusted text and quick use.

    No memory limit, and the timeout is best effort: math-verify's signal.alarm,
    main thread only, and it cannot stop a long C call. Use MathVerifier for model output.
    """
    on_main = threading.current_thread() is threading.main_thread()
    try:
        return check(response, gold, timeout=math.ceil(timeout) if on_main else None, reading=reading)
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


def _worker_setup(memory_limit_mb: int) -> None:
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
    MAX_RESPONSE_CHARS characters for "answer") bounds what is read of each response.
    """

    def __init__(self, workers: int = 2, timeout: float = DEFAULT_TIMEOUT,
                 memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
                 max_chars: int | None = None, mp_context: str = "spawn", reading: str = "released"):
        if reading not in READINGS:
            raise ValueError(f"unknown reading {reading!r}; expected one of {READINGS}")
        self.reading = reading
        self.max_chars = max_chars if max_chars is not None or reading == "released" else MAX_RESPONSE_CHARS
        self._pool = KillPool(check, workers=workers, timeout=timeout, setup=_worker_setup,
                              setup_args=(memory_limit_mb,), mp_context=mp_context)

    @property
    def pids(self) -> list[int]:
        """Current worker process ids."""
        return self._pool.pids

    def score(self, responses: list[str], golds: list[str]) -> list[MathResult]:
        if len(responses) != len(golds):
            raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
        # Cut before sending: no point piping megabytes the worker will drop.
        cut = self.max_chars
        tasks = [((r or "") if cut is None else (r or "")[-cut:], str(g), cut, None, self.reading)
                 for r, g in zip(responses, golds)]
        return [value if status == "ok" else _POOL_RESULTS[status]
                for status, value in self._pool.map(tasks)]

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> "MathVerifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
