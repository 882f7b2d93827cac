"""Math accuracy with math-verify, run in killable worker processes."""
import itertools
import logging
import math
import re
import resource
import threading
from dataclasses import dataclass

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException
from sympy import Basic, MatrixBase

from ._pool import KillPool
from .text import MAX_RESPONSE_CHARS, answer_text

STATUSES = ("ok", "gold_unparseable", "timeout", "error")
DEFAULT_TIMEOUT = 5.0
DEFAULT_MEMORY_LIMIT_MB = 2048

# Boxed answers win over "final answer is ..." and bare expressions.
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


def _verify(gold: list, pred: list, timeout: int | None) -> bool:
    # Same as verify(gold, pred) (any pair matches), but lets MemoryError through.
    for g, p in itertools.product(gold, pred):
        try:
            if verify(g, p, timeout_seconds=timeout, raise_on_error=True):
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
    """Parsed gold (math-verify list), or [] when it is empty, prose or not math."""
    gold = str(gold).strip()
    if not gold:
        return []
    wrapped = gold if "$" in gold or "\\boxed" in gold else f"${gold}$"
    parsed = _parse(wrapped, timeout)
    exprs = [x for x in parsed if isinstance(x, (Basic, MatrixBase))]
    if not exprs or _is_prose(gold, exprs):
        return []
    return parsed


def check(response: str, gold: str, max_chars: int = MAX_RESPONSE_CHARS,
          timeout: int | None = None) -> MathResult:
    """One accuracy check, in the current process. `timeout` is math-verify's own (signal based)."""
    gold_parsed = parse_gold(gold, timeout)
    if not gold_parsed:
        return MathResult(0.0, "gold_unparseable")  # fail closed: open-r1 scored this 1.0
    text = answer_text(response or "", max_chars)
    if not text.strip():
        return MathResult(0.0, "ok")
    pred = _parse(text, timeout, extraction_config=_PRED_CONFIG)
    if not pred:
        return MathResult(0.0, "ok")
    return MathResult(float(_verify(gold_parsed, pred, timeout)), "ok")


def math_accuracy(response: str, gold: str, timeout: float = DEFAULT_TIMEOUT) -> MathResult:
    """In-process check for trusted text and quick use.

    No memory limit, and the timeout is best effort: math-verify's signal.alarm,
    main thread only, and it cannot stop a long C call. Use MathVerifier for model output.
    """
    on_main = threading.current_thread() is threading.main_thread()
    try:
        return check(response, gold, timeout=math.ceil(timeout) if on_main else None)
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
    check(r"\boxed{\frac{1}{2}}", "0.5")
    check(r"\boxed{(1, 2]}", "(1,2]")
    check(r"\boxed{x=2}", "2")
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
    """

    def __init__(self, workers: int = 2, timeout: float = DEFAULT_TIMEOUT,
                 memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
                 max_chars: int = MAX_RESPONSE_CHARS, mp_context: str = "spawn"):
        self.max_chars = max_chars
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
        tasks = [((r or "")[-self.max_chars:], str(g), self.max_chars) for r, g in zip(responses, golds)]
        return [value if status == "ok" else _POOL_RESULTS[status]
                for status, value in self._pool.map(tasks)]

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> "MathVerifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
