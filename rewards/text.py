"""Answer text: the one set of helpers that read an answer out of a response or a gold string.

The rewards, the data sets' gold checks (`data/gold.py`) and the benchmark rules (`rewards/benchmarks.py`) all read
answers with these. Standard library only, so importing it does not load math-verify.

* `answer_text` - the last non-blank `<answer>` block, else the response (what every reward reads);
  `final_text` - the same without think blocks and stray tags (what the benchmark scorers read).
* `BOXED` / `BOXED_FLAT`, `last_match`, `last_boxed` - the content of the last `\\boxed{...}`.
* `text_command` and the four text-command patterns - `\\text{...}` and its kin, unwrapped.
* `unwrap` - a short answer without `$`, `\\boxed{}`, `\\text{}` and a trailing period (gold answers).
* `normalize_text`, `numbers_in` - a free-form answer lower-cased and undecorated; the numbers in it.
* `with_digits`, `stated_number` - number words as digits; the number after "the answer is".

Where two readers differ (which braces `\\boxed{}` may hold, which commands count as text), each keeps its own, named
here: their verdicts depend on it.
"""
import bisect
import re

MAX_RESPONSE_CHARS = 10_000  # untrusted text is cut to its tail before any parsing


def answer_text(response: str, max_chars: int = MAX_RESPONSE_CHARS) -> str:
    """Content of the last non-blank `<answer>...</answer>` block, else the response.

    Only the last `max_chars` characters are considered. Uses rfind, not a regex,
    so it stays linear on inputs with many unclosed tags.
    """
    text = (response or "")[-max_chars:]
    end = text.rfind("</answer>")
    if end != -1:
        start = text.rfind("<answer>", 0, end)
        if start != -1:
            inner = text[start + len("<answer>"):end]
            if inner.strip():
                return inner
    return text


def final_text(response: str) -> str:
    """The answer block (as `answer_text` reads it), without think blocks and stray tags."""
    text = re.sub(r"(?s)<think>.*?</think>", " ", answer_text(response or ""))
    return re.sub(r"</?(?:think|answer)>", " ", text)


# --------------------------------------------------------------------------- \boxed{} and \text{}

# `\boxed{...}`, the content in group 1. BOXED (`last_boxed`'s default) stands for braces nested to any depth
# (`\boxed{\frac{\sqrt{3}}{6}}`), which `boxed_spans` matches; the pattern itself allows one level. BOXED_FLAT none: the
# choice reward's (an option letter needs no braces).
BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
BOXED_FLAT = re.compile(r"\\boxed\s*\{([^{}]*)\}")
_BOXED_OPEN = re.compile(r"\\boxed\s*\{")
_BRACE = re.compile(r"[{}]")


def boxed_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the content of every outermost `\boxed{...}` whose braces close, nesting to any depth, in
    order; one pass over the braces (linear in the text, whatever it holds)."""
    opens = {m.end() - 1 for m in _BOXED_OPEN.finditer(text)}
    stack, spans = [], []
    for m in _BRACE.finditer(text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            start = stack.pop()
            if start in opens:
                spans.append((start + 1, m.start()))
    spans.sort()
    outer = []
    for start, end in spans:
        if not outer or start > outer[-1][1]:
            outer.append((start, end))
    return outer


def last_match(pattern: re.Pattern, text: str) -> str | None:
    """Group 1 of the last match of `pattern` in `text`, else None."""
    m = None
    for m in pattern.finditer(text):
        pass
    return m.group(1) if m else None


def last_boxed(text: str, pattern: re.Pattern = BOXED) -> str | None:
    """Content of the last `\\boxed{...}` (may be ""), else None; braces nest to any depth unless `pattern` says
    otherwise (BOXED_FLAT)."""
    if pattern is not BOXED:
        return last_match(pattern, text)
    spans = boxed_spans(text)
    return text[spans[-1][0]:spans[-1][1]] if spans else None


def text_command(*names: str) -> re.Pattern:
    """`\\name{...}` for the given LaTeX command names, the content (no braces inside) in group 1."""
    return re.compile(r"\\(?:" + "|".join(names) + r")\s*\{([^{}]*)\}")


# Which commands count as text, by reader:
# the math reward's prose check (rewards.math: "\text{see figure}" is prose); with \quad and \qquad, also what may
# stand beside an answer without making it a piece of a longer expression.
TEXT_COMMANDS = ("text", "textbf", "textit", "textrm", "mathrm", "mbox")
PROSE_TEXT_CMD = text_command(*TEXT_COMMANDS)
# the choice reward's (rewards.choice: `\mathbf{B}` is the letter B; \textit is not unwrapped).
CHOICE_TEXT_CMD = text_command("text", "textbf", "textrm", "mathrm", "mathbf", "mbox")
# `unwrap`'s, for gold answers (data/gold.py: neither \textit nor \mathbf).
UNWRAP_TEXT_CMD = text_command("text", "textbf", "textrm", "mathrm", "mbox")
# `normalize_text`'s, for benchmark answers (rewards/benchmarks.py: also \mathbf and \operatorname).
NORMALIZE_TEXT_CMD = text_command("text", "textbf", "textit", "textrm", "mathrm", "mathbf", "mbox", "operatorname")


# --------------------------------------------------------------------------- short answers

PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")  # "42", "-3.5", "2.", ".5"


def unwrap(text: str) -> str:
    """Drop ``$``, ``\\boxed{}``, ``\\text{}`` and trailing periods around a short answer."""
    t = str(text).strip()
    for _ in range(3):
        before = t
        t = t.strip().strip("$").strip()
        spans = boxed_spans(t) if t.startswith("\\boxed") else []
        if spans and _BOXED_OPEN.match(t).end() == spans[0][0] and spans[0][1] == len(t) - 1:
            t = t[spans[0][0]:spans[0][1]]
        t = UNWRAP_TEXT_CMD.sub(r"\1", t).strip()
        if len(t) > 1 and t.endswith(".") and not PLAIN_NUMBER.fullmatch(t):
            t = t[:-1].rstrip()
        if t == before:
            break
    return t


def normalize_text(text: str) -> str:
    """Lower case, without $, LaTeX text commands, \\boxed, degree signs, a trailing period and extra spaces."""
    t = NORMALIZE_TEXT_CMD.sub(r"\1", str(text))
    boxed = last_boxed(t)
    t = boxed if boxed is not None else t
    t = t.replace("$", "").replace("^\\circ", "").replace("^{\\circ}", "").replace("°", "").replace("\\%", "%")
    t = t.replace("\\left", "").replace("\\right", "").replace("\\,", " ").replace("**", "")
    return re.sub(r"\s+", " ", t).strip().rstrip(".").strip().lower()


_FRAC = re.compile(r"(-?)\\[dt]?frac\s*\{\s*(-?\d+(?:\.\d+)?)\s*\}\s*\{\s*(-?\d+(?:\.\d+)?)\s*\}")
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")
_SLASH = re.compile(r"(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")


def numbers_in(text: str) -> list[float]:
    """Numbers in reading order: \\frac{a}{b} and a/b as their value, "1,000" as 1000. Linear-logarithmic in the
    number of matches (a span taken by an earlier pattern is found by bisection)."""
    spans, taken = [], []  # taken: sorted, non-overlapping (start, end)
    for pat, value in ((_FRAC, lambda m: (-1 if m.group(1) else 1) * float(m.group(2)) / float(m.group(3))),
                       (_SLASH, lambda m: float(m.group(1)) / float(m.group(2))),
                       (_NUMBER, lambda m: float(m.group(0).replace(",", "")))):
        for m in pat.finditer(text):
            i = bisect.bisect_left(taken, (m.start(),))
            if (i < len(taken) and taken[i][0] < m.end()) or (i and taken[i - 1][1] > m.start()):
                continue
            try:
                spans.append((m.start(), m.end(), value(m)))
            except (ZeroDivisionError, ValueError, OverflowError):
                continue
            taken.insert(i, (m.start(), m.end()))
    return [v for _, _, v in sorted(spans)]


_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                 "sixteen seventeen eighteen nineteen twenty").split()
NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_STATED_NUMBER = re.compile(r"(?i:answer\s*(?:is|:|=)|答案\s*(?:是|为)?\s*[:：]?)\s*\$?\s*(?:\\boxed\{)?\s*"
                            r"(-?[\d.,]+(?:\s*/\s*\d+)?)")


def with_digits(text: str) -> str:
    """Number words zero to twenty written as digits ("three apples" -> "3 apples")."""
    return NUMBER_WORD.sub(lambda m: str(_NUMBER_WORDS.index(m.group(1).lower())), text)


def stated_number(text: str) -> float | None:
    """The number after the last "the answer is" / "answer:" / 答案是, else None: it wins over the last number."""
    stated = last_match(_STATED_NUMBER, text)
    values = numbers_in(stated.rstrip(".,")) if stated else []
    return values[0] if values else None
