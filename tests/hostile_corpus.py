"""A seeded corpus of hostile completions for proving the reward sandbox, and fault injection for its pool: test data
(tests/test_sandbox.py, bench/reward_sandbox.py), not part of the rewards. Import it with tests/ on sys.path:

    from hostile_corpus import corpus, sample
    items = corpus(10_000, seed=0, canary="/tmp/x/CANARY")   # the full corpus (bench/reward_sandbox.py)
    items = sample(per_family=2, seed=0, canary=...)         # every family, a few items each (the tests)

Each `Item` has a response, a gold answer, a domain ("math" or "choice"), its family, and what it must score:

* ``"hostile"``: by construction the answer is NOT the gold (a wrong value, a piece of a longer expression, a payload
  whose value exists only if it were executed, a macro that would have to be expanded, an astronomically large
  number, ...). No reward may pay accuracy for it, and the game rewards pay nothing at all.
* ``"right"``: a control, the gold itself in `\\boxed{}` or after "The final answer is $...$" (junk, control characters
  or payloads may stand in the thinking). Every reward that reads its domain must pay it: ``r1_math``,
  ``r1_math_answer`` and ``r1_auto`` for math; ``r1_choice`` and ``r1_auto`` (and the math rewards, for a boxed
  letter) for choice.
* ``"free"``: scored but not judged: mutations that are still right in value (``84/2`` for 42, thousands of brackets
  around the right value, zero-width characters inside it, the right answer after a megabyte of junk).

Families: tower, factorial, memory (exponents that need gigabytes), brackets, fractions (nested `\\frac` chains),
megabyte (about 1 MB), latex_commands (`\\input`, `\\include`, `\\def`, `\\write18`, ...), python (payloads inside
`\\boxed{}`), sympy (sympy calls inside `\\boxed{}`), control_chars (null bytes, lone surrogates, zero-width,
right-to-left, BOM), repeated_tags, mutation (wrong / right / equivalent forms of a gold), partial (the gold as a piece
of a longer expression), choice (option letters). Payloads that would run code all write the `canary` file: it
existing after scoring means code was executed.

The fault-injection helpers at the end (`flaky_setup`, `echo_or_crash`) are picklable functions for KillPool tests.
"""
from __future__ import annotations

import os
import random
import signal
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["Item", "FAMILIES", "corpus", "sample", "MATH_REWARDS", "CHOICE_REWARDS", "flaky_setup",
           "echo_or_crash"]

# Rewards that must pay a "right" item of each domain.
MATH_REWARDS = ("r1_math", "r1_math_answer", "r1_auto")
CHOICE_REWARDS = ("r1_math", "r1_math_answer", "r1_choice", "r1_auto")


@dataclass(frozen=True)
class Item:
    response: str
    gold: str
    expect: str  # "hostile" | "right" | "free"
    family: str
    domain: str = "math"

    @property
    def meta(self) -> dict:
        return {"domain": self.domain}


ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
BIDI = ("\u202e", "\u202b", "\u2067", "\u200f", "\u202d", "\u2066")
CONTROL = ("\x00", "\x07", "\x1b", "\r", "\x0b", "\x7f")
SURROGATES = ("\ud800", "\udfff", "\udbff", "\ud83d")
JUNK = ZERO_WIDTH + BIDI + CONTROL + SURROGATES


def _think(rng: random.Random) -> str:
    words = ["so", "then", "we", "get", "thus", "x", "compute", "check", "sum", "hence", "wait"]
    return " ".join(rng.choice(words) for _ in range(rng.randint(2, 12)))


def _wrap(answer: str, rng: random.Random, think: str | None = None) -> str:
    return f"<think>{_think(rng) if think is None else think}</think><answer>{answer}</answer>"


def _boxed(x: str) -> str:
    return f"\\boxed{{{x}}}"


# --------------------------------------------------------------------------- golds and their mutations

@dataclass(frozen=True)
class _Gold:
    latex: str
    value: Fraction | None  # exact value when rational; None for irrational golds
    wrong: tuple[str, ...]  # values that are certainly different
    equal: tuple[str, ...]  # other forms of the same value


def _int_gold(rng: random.Random) -> _Gold:
    n = rng.choice([rng.randint(2, 99), rng.randint(100, 99_999), -rng.randint(2, 999)])
    s = str(n)
    wrong = [str(n + d) for d in (1, -1, 10, rng.randint(2, 9))] + [str(-n), str(n * 10)]
    if s.lstrip("-")[::-1] != s.lstrip("-"):
        wrong.append(("-" if n < 0 else "") + s.lstrip("-")[::-1])
    equal = [f"{n}.0", f"\\frac{{{2 * n}}}{{2}}", f"{2 * n}/2", f" {n} ", f"\\displaystyle {n}", f"+{n}" if n > 0 else s]
    return _Gold(s, Fraction(n), tuple(wrong), tuple(equal))


def _frac_gold(rng: random.Random) -> _Gold:
    while True:
        p, q = rng.randint(1, 40), rng.randint(2, 40)
        f = Fraction(p, q)
        if f.denominator > 1:
            break
    p, q = f.numerator, f.denominator
    s = f"\\frac{{{p}}}{{{q}}}"
    wrong = [f"\\frac{{{p + 1}}}{{{q}}}", f"\\frac{{{p}}}{{{q + 1}}}", f"\\frac{{{q}}}{{{p}}}", f"-\\frac{{{p}}}{{{q}}}",
             f"\\frac{{{p}}}{{{q}}}^2"]
    wrong = [w for w in wrong if w != s]
    equal = [f"\\frac{{{2 * p}}}{{{2 * q}}}", f"{p}/{q}", f"\\dfrac{{{p}}}{{{q}}}", f"\\tfrac{{{p}}}{{{q}}}"]
    return _Gold(s, f, tuple(wrong), tuple(equal))


def _decimal_gold(rng: random.Random) -> _Gold:
    whole, cents = rng.randint(0, 999), rng.randint(1, 99)
    f = Fraction(whole * 100 + cents, 100)
    s = f"{whole}.{cents:02d}"
    wrong = [f"{float(f + Fraction(1, 100)):.2f}", f"{float(f * 10):.1f}", f"{whole + 1}.{cents:02d}"]
    equal = [f"{s}0", f"\\frac{{{f.numerator}}}{{{f.denominator}}}"]
    return _Gold(s, f, tuple(wrong), tuple(equal))


def _sqrt_gold(rng: random.Random) -> _Gold:
    a, b = rng.randint(1, 9), rng.choice([2, 3, 5, 6, 7, 10, 11, 13, 14, 15])
    s = f"{a}\\sqrt{{{b}}}" if a > 1 else f"\\sqrt{{{b}}}"
    wrong = [f"{a + 1}\\sqrt{{{b}}}", f"{a}\\sqrt{{{b + 1}}}", f"{a * b}", f"\\sqrt{{{a * b}}}" if a > 1 else f"{b}"]
    equal = [f"\\sqrt{{{a * a * b}}}", f"{a} \\cdot \\sqrt{{{b}}}"]
    return _Gold(s, None, tuple(wrong), tuple(equal))


def _pi_gold(rng: random.Random) -> _Gold:
    k, m = rng.randint(1, 9), rng.choice([2, 3, 4, 6, 12])
    f = Fraction(k, m)
    k, m = f.numerator, f.denominator
    num = "\\pi" if k == 1 else f"{k}\\pi"
    s = num if m == 1 else f"\\frac{{{num}}}{{{m}}}"
    wrong = [f"\\frac{{{k + 1}\\pi}}{{{m}}}", f"\\frac{{{k}}}{{{m}}}", f"{k + 1}\\pi"]
    equal = [f"\\frac{{{k}}}{{{m}}}\\pi", f"\\frac{{{2 * k}\\pi}}{{{2 * m}}}"]
    return _Gold(s, None, tuple(wrong), tuple(equal))


_GOLDS = (_int_gold, _int_gold, _frac_gold, _decimal_gold, _sqrt_gold, _pi_gold)


def _gold(rng: random.Random) -> _Gold:
    return rng.choice(_GOLDS)(rng)


def _small_gold(rng: random.Random) -> str:
    return str(rng.randint(2, 999))  # never 0 or 1, which a huge expression could still reduce to


# --------------------------------------------------------------------------- families
# Each family: (rng, canary) -> Item


def _tower(rng, canary):
    base, height = rng.randint(3, 99), rng.randint(4, 7)
    expr = str(base)
    for _ in range(height - 1):
        expr = f"{base}^{{{expr}}}"
    expr = rng.choice([expr, f"({expr})", f"{expr}+1", f"\\left({expr}\\right)^{{{base}}}"])
    return Item(_wrap(_boxed(expr), rng), _small_gold(rng), "hostile", "tower")


def _factorial(rng, canary):
    k = rng.randint(6, 12)
    n = rng.randint(10 ** 5, 10 ** 7)
    expr = rng.choice([f"(10^{{{k}}})!", f"{n}!", f"(({n})!)!", f"\\Gamma(10^{{{k}}})", f"{n}!!",
                       f"\\binom{{10^{{{k}}}}}{{{n}}}", f"(10^{{{k}}})! - (10^{{{k}}}-1)!"])
    return Item(_wrap(_boxed(expr), rng), _small_gold(rng), "hostile", "factorial")


def _memory(rng, canary):
    k = rng.randint(30, 44)
    big = "9" * rng.randint(5_000, 50_000)
    expr = rng.choice([f"2^{{2^{{{k}}}}}", f"10^{{10^{{{rng.randint(9, 15)}}}}}", f"{big}^{{{big}}}",
                       f"{big} \\cdot {big} \\cdot {big}", f"\\underbrace{{{big}}}^{{{big}}}"])
    return Item(_wrap(_boxed(expr), rng), _small_gold(rng), "hostile", "memory")


_BRACKETS = (("(", ")"), ("[", "]"), ("{", "}"), ("\\{", "\\}"), ("\\left(", "\\right)"), ("\\left[", "\\right]"),
             ("|", "|"))


def _brackets(rng, canary):
    v = rng.randint(2, 999)
    depth = rng.randint(2, 8) if rng.random() < 0.75 else rng.choice([rng.randint(50, 500), rng.randint(500, 5_000)])
    left, right = rng.choice(_BRACKETS)
    closed = rng.random() < 0.8
    body = left * depth + str(v) + (right * depth if closed else "")
    where = rng.random()
    answer = _boxed(body) if where < 0.5 else (body if where < 0.8 else f"The final answer is ${body}$")
    if rng.random() < 0.5:  # the wrong value, however deeply wrapped
        return Item(_wrap(answer, rng), str(v + 1), "hostile", "brackets")
    return Item(_wrap(answer, rng), str(v), "free", "brackets")


def _fractions(rng, canary):
    x = rng.randint(2, 9)
    depth = rng.randint(2, 12) if rng.random() < 0.5 else rng.choice([200, rng.randint(60, 400), rng.randint(400, 3_000)])
    kind = rng.random()
    if kind < 0.6:  # 1/(1/(...x)): x at an even depth, 1/x at an odd one; the gold is the other of the two
        chain = "\\frac{1}{" * depth + str(x) + "}" * depth
        gold = f"\\frac{{1}}{{{x}}}" if depth % 2 == 0 else str(x)
    elif kind < 0.8:  # numerators nested: 1/x^depth, below 1; the gold is x
        chain = "\\frac{" * depth + "1" + f"}}{{{x}}}" * depth
        gold = str(x)
    else:  # square roots nested: x^(1/2^depth), strictly between 1 and x; the gold is x
        chain = "\\sqrt{" * depth + str(x) + "}" * depth
        gold = str(x)
    where = rng.random()
    answer = chain if where < 0.4 else (_boxed(chain) if where < 0.8 else f"The final answer is ${chain}$")
    return Item(_wrap(answer, rng), gold, "hostile", "fractions")


def _megabyte(rng, canary):
    size = 1_000_000
    g = _gold(rng)
    kind = rng.randrange(4)
    if kind == 0:
        return Item(_wrap("1" * size, rng), "1", "hostile", "megabyte")
    if kind == 1:
        return Item(_wrap("x " * (size // 2) + _boxed(rng.choice(g.wrong)), rng), g.latex, "hostile", "megabyte")
    if kind == 2:
        return Item(_wrap(_boxed("1+" * (size // 2) + "1"), rng), "1", "hostile", "megabyte")
    return Item(_wrap(_boxed(g.latex), rng, think="a " * (size // 2)), g.latex, "free", "megabyte")


def _latex_commands(rng, canary):
    g = _gold(rng)
    w = rng.choice(g.wrong)
    templates = [
        f"\\def\\ans{{{g.latex}}}" + _boxed("\\ans"),
        f"\\newcommand{{\\ans}}{{{g.latex}}}" + _boxed("\\ans"),
        f"\\renewcommand{{\\boxed}}[1]{{{g.latex}}}" + _boxed(w),
        f"\\let\\x={g.latex}" + _boxed("\\x"),
        _boxed(f"\\input{{{canary}}}"),
        _boxed(f"\\include{{{canary}}}"),
        _boxed("\\input{/etc/passwd}"),
        f"\\immediate\\write18{{touch {canary}}}" + _boxed(w),
        _boxed(f"\\write18{{touch {canary}}}"),
        f"\\openout1={canary}\\write1{{x}}\\closeout1" + _boxed(w),
        "\\usepackage{shellesc}\\ShellEscape{touch " + canary + "}" + _boxed(w),
        "\\catcode`\\$=11 " + _boxed(w),
        _boxed(f"\\csname ans\\endcsname"),
        _boxed(f"\\expandafter\\ans\\x"),
        f"\\begin{{filecontents}}{{{canary}}}x\\end{{filecontents}}" + _boxed(w),
    ]
    gold = g.latex
    if rng.random() < 0.3:
        gold = "0"  # what \input of a missing file or a shell escape would "return"
    return Item(_wrap(rng.choice(templates), rng), gold, "hostile", "latex_commands")


def _python(rng, canary):
    # (payload, the gold it would produce if it were executed)
    payloads = [
        (f"__import__('os').system('touch {canary}')", "0"),
        (f"__import__('subprocess').call(['touch', '{canary}'])", "0"),
        (f"open('{canary}', 'w').write('x')", "1"),
        (f"__import__('pathlib').Path('{canary}').write_text('xy')", "2"),
        (f"exec(\"open('{canary}','w')\")", "0"),
        (f"eval(\"__import__('os').system('touch {canary}')\")", "0"),
        ("eval('6*7')", "42"),
        ("(lambda: 42)()", "42"),
        ("getattr(__builtins__, 'eval')('6*7')", "42"),
        ("[c for c in ().__class__.__base__.__subclasses__()][0]", "0"),
        ("globals()['__builtins__']", "0"),
        ("compile('42', 'x', 'eval')", "42"),
        ("__import__('sys').exit(42)", "42"),
        (f"import os; os.system('touch {canary}')", "0"),
        ("len('x' * 42)", "42"),
        ("int('42')", "42"),
    ]
    payload, gold = rng.choice(payloads)
    answer = rng.choice([_boxed(payload), payload, f"The final answer is ${payload}$", f"answer: {payload}"])
    return Item(_wrap(answer, rng), gold, "hostile", "python")


def _sympy(rng, canary):
    payloads = [
        ("sympify('6*7')", "42"),
        (f"sympify(\"__import__('os').system('touch {canary}')\")", "0"),
        (f"parse_expr(\"__import__('os').system('touch {canary}')\")", "0"),
        ("parse_expr('6*7')", "42"),
        ("S(42)", "42"),
        ("Integer(42)", "42"),
        ("Rational(1, 2)", "\\frac{1}{2}"),
        ("Symbol('x').subs('x', 42)", "42"),
        ("lambdify(x, 6*x)(7)", "42"),
        ("srepr(42)", "42"),
        ("N(42)", "42"),
        ("Float('42')", "42"),
        ("nsimplify('42')", "42"),
        (f"Function('f')(__import__('os').system('touch {canary}'))", "0"),
        ("simplify(84/2)", "42"),
    ]
    payload, gold = rng.choice(payloads)
    answer = rng.choice([_boxed(payload), f"The final answer is ${payload}$", payload])
    return Item(_wrap(answer, rng), gold, "hostile", "sympy")


def _sprinkle(text: str, rng: random.Random, chars=JUNK, k: int | None = None) -> str:
    out = list(text)
    for _ in range(k or rng.randint(1, 6)):
        out.insert(rng.randint(0, len(out)), rng.choice(chars))
    return "".join(out)


def _control_chars(rng, canary):
    kind = rng.randrange(5)
    if kind == 0:  # a wrong answer with control characters in and around it; the gold's digits are not in it
        gold = "".join(rng.choice("1234") for _ in range(rng.randint(2, 4)))
        wrong = "".join(rng.choice("6789") for _ in range(rng.randint(1, 4)))
        return Item(_sprinkle(_wrap(_boxed(_sprinkle(wrong, rng)), rng), rng), gold, "hostile", "control_chars")
    if kind == 1:  # right-to-left override: "21" shown as "12"
        gold = "".join(rng.choice("123456789") for _ in range(rng.randint(2, 5)))
        if gold == gold[::-1]:
            gold += "1" if gold[-1] != "1" else "2"
        bidi = rng.choice(("\u202e", "\u2067", "\u202b"))
        return Item(_wrap(_boxed(bidi + gold[::-1] + "\u202c"), rng), gold, "hostile", "control_chars")
    g = _gold(rng)
    if kind == 2:  # the right answer, junk only in the thinking: a control
        return Item(_wrap(_boxed(g.latex), rng, think=_sprinkle(_think(rng), rng, k=8)), g.latex, "right",
                    "control_chars")
    if kind == 3:  # zero-width or bidi characters inside the right answer: not judged
        return Item(_wrap(_boxed(_sprinkle(g.latex, rng, ZERO_WIDTH + BIDI, 2)), rng), g.latex, "free",
                    "control_chars")
    # null bytes / surrogates as the whole answer
    return Item(_wrap(rng.choice(SURROGATES + ("\x00",)) * rng.randint(1, 5000), rng), g.latex, "hostile",
                "control_chars")


def _repeated_tags(rng, canary):
    g = _gold(rng)
    w = rng.choice(g.wrong)
    k = rng.randint(2, 3_000)
    templates = [
        "<answer>" * k + _boxed(w),
        "<think>" * k + "</think>" * k + f"<answer>{_boxed(w)}</answer>",
        f"<think>t</think>" + f"<answer>{_boxed(w)}</answer>" * k,
        f"<think>{_boxed(g.latex)}</think><answer>{_boxed(w)}</answer>" + "</answer>" * k,
        _boxed(g.latex) + _boxed(w) * k,
        f"<answer>{g.latex}" + "</answer><answer>" * k + f"{_boxed(w)}</answer>",
        "\\boxed{" * k + w + "}" * k,
    ]
    return Item(rng.choice(templates), g.latex, "hostile", "repeated_tags")


def _mutation(rng, canary):
    g = _gold(rng)
    r = rng.random()
    if r < 0.25:  # controls: the gold, boxed or after "The final answer is"
        form = rng.choice([_boxed(g.latex), f"The final answer is ${g.latex}$", f"So {_boxed(g.latex)}."])
        return Item(_wrap(form, rng), g.latex, "right", "mutation")
    if r < 0.4:  # other forms of the same value
        form = rng.choice(g.equal)
        return Item(_wrap(_boxed(form), rng), g.latex, "free", "mutation")
    w = rng.choice(g.wrong)
    form = rng.choice([
        _wrap(_boxed(w), rng),
        _wrap(f"The final answer is ${w}$", rng),
        _wrap(_boxed(w), rng, think=f"maybe {_boxed(g.latex)}? no"),  # the gold in the thinking, a wrong answer
        _wrap(f"{_boxed(g.latex)} is wrong, so {_boxed(w)}", rng),
        _wrap(f"I am not sure", rng, think=f"{g.latex}"),  # the gold unboxed in the thinking only
        _wrap(_boxed(f"{g.latex} \\neq {w}") if rng.random() < 0.5 else _boxed(f"{g.latex} \\text{{ or }} {w}"), rng),
        _wrap(_boxed(f"{g.latex}, {w}"), rng),
    ])
    return Item(form, g.latex, "hostile", "mutation")


def _partial(rng, canary):
    """The gold as a piece of a longer expression (written bare, where math-verify reads unbracketed matches)."""
    if rng.random() < 0.6:
        while True:
            p, q = rng.randint(1, 30), rng.randint(2, 30)
            if Fraction(p, q).denominator > 1:
                f = Fraction(p, q)
                break
        frac = f"\\frac{{{f.numerator}}}{{{f.denominator}}}"
        k = rng.randint(1, 9)
        forms = [f"{k}{frac}", f"{k} {frac}", f"{frac}\\pi", f"{frac} \\pi", f"{frac}x^2", f"{frac}x",
                 f"{frac}+1", f"{frac} + {k}", f"{k} - {frac}", f"\\sqrt{{{frac}}}", f"{frac}^{{{k + 1}}}",
                 f"x = {frac}y", f"{frac}\\sqrt{{2}}", f"{frac} \\cdot {k + 1}", f"({frac}, {k})"]
        gold = rng.choice([frac, f"{f.numerator}/{f.denominator}"])
    else:
        n = rng.randint(2, 999)
        forms = [f"{n}+\\infty", f"{n} + \\infty", f"{n}x", f"{n}\\pi", f"{n} \\cdot \\pi", f"\\pi \\cdot {n}",
                 f"{n}^2", f"{n}\\sqrt{{2}}", f"{n}!", f"-{n}", f"{n} - 1", f"{n}, {n + 1}", f"\\sqrt{{{n}}}"]
        gold = str(n)
    body = rng.choice(forms)
    answer = rng.choice([body, body, f"answer: {body}"])
    return Item(_wrap(answer, rng), gold, "hostile", "partial")


def _choice(rng, canary):
    letters = "ABCDE"
    gold = rng.choice(letters)
    wrong = rng.choice([x for x in letters if x != gold])
    if rng.random() < 0.25:
        return Item(_wrap(_boxed(gold), rng, think=_sprinkle(_think(rng), rng)), gold, "right", "choice", "choice")
    forms = [f"({wrong})", f"{wrong}.", _boxed(wrong), f"The answer is {wrong}", f"{wrong}) 36",
             f"The answer is not {gold}", f"({gold.lower()}) is wrong; {_boxed(wrong)}",
             _sprinkle(f"({wrong})", rng, ZERO_WIDTH + BIDI), f"\u202e({wrong})", f"{gold}{wrong}{gold}",
             f"{gold.lower()}", f"answer: {gold}{gold}", "<answer>" * rng.randint(2, 500) + f"({wrong})",
             f"__import__('os').system('touch {canary}') or '{gold}'"]
    return Item(_wrap(rng.choice(forms), rng), gold, "hostile", "choice", "choice")


FAMILIES = {
    "tower": _tower, "factorial": _factorial, "memory": _memory, "brackets": _brackets, "fractions": _fractions,
    "megabyte": _megabyte, "latex_commands": _latex_commands, "python": _python, "sympy": _sympy,
    "control_chars": _control_chars, "repeated_tags": _repeated_tags, "mutation": _mutation, "partial": _partial,
    "choice": _choice,
}
# Items per 1,000 of the corpus. The slow families (every check runs into the time limit) and the megabyte answers
# are kept rare so that the full corpus scores in minutes.
WEIGHTS = {"tower": 3, "factorial": 3, "memory": 3, "brackets": 15, "fractions": 15, "megabyte": 1,
           "latex_commands": 70, "python": 70, "sympy": 60, "control_chars": 100, "repeated_tags": 50,
           "mutation": 420, "partial": 120, "choice": 70}
assert sum(WEIGHTS.values()) == 1000


def _default_canary() -> str:
    import tempfile

    return os.path.join(tempfile.gettempdir(), "reward-sandbox-canary")


def corpus(n: int = 10_000, seed: int = 0, canary: str | None = None) -> list[Item]:
    """n items, families in the proportions of WEIGHTS (interleaved, so any slice mixes them), seeded."""
    canary = canary or _default_canary()
    schedule = [f for f, w in WEIGHTS.items() for _ in range(w)]
    random.Random(seed).shuffle(schedule)
    rng = random.Random(seed + 1)
    return [FAMILIES[schedule[i % len(schedule)]](rng, canary) for i in range(n)]


def sample(per_family: int = 2, seed: int = 0, canary: str | None = None,
           families: tuple[str, ...] | None = None) -> list[Item]:
    """`per_family` items of each family (all of them unless `families` says), seeded: a small slice for tests."""
    canary = canary or _default_canary()
    rng = random.Random(seed)
    return [FAMILIES[f](rng, canary) for f in (families or FAMILIES) for _ in range(per_family)]


# --------------------------------------------------------------------------- fault injection for KillPool


def flaky_setup(counter_path: str, fail_starts, how: str = "raise", then=None, then_args: tuple = ()) -> None:
    """A worker start-up that fails on the given start ordinals (1-based, counted across processes in the file
    `counter_path`). `fail_starts`: ordinals (failing as `how` says) or {ordinal: how}; `how` is "raise" (an
    exception), "exit" (exit code 3) or "kill" (SIGKILL itself). Other starts call `then(*then_args)` (the real
    set-up)."""
    fd = os.open(counter_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, b".")  # one byte per start: O_APPEND makes the count exact across processes
    finally:
        os.close(fd)
    ordinal = os.path.getsize(counter_path)
    if ordinal in fail_starts:
        how = fail_starts[ordinal] if isinstance(fail_starts, dict) else how
        if how == "exit":
            os._exit(3)
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"injected start failure #{ordinal}")
    if then is not None:
        then(*then_args)


def echo_or_crash(x):
    """A task function for pool tests: "crash" kills the worker, "hang" never returns, anything else comes back."""
    if x == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if x == "hang":
        import time

        while True:
            time.sleep(1)
    return x
