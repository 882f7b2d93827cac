"""Whole-answer scoring of juxtaposed answers (rewards/math.py): a number followed by a variable, a product of
letters, `=` or a word is not that number; a unit after it is. In-process checks (`rewards.math.check`), no pool."""
import logging

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import rewards.math as rmath

logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" notices: the checks run untimed here

READINGS = rmath.READINGS
OK = rmath.MathResult(1.0, "ok")
PIECE = rmath.MathResult(0.0, "ok", partial=True)


def _answer(body: str) -> str:
    return f"<think>t</think><answer>{body}</answer>"


# Bare answers (math-verify reads an unbracketed `\frac{a}{b}` in both readings, a plain number or `a/b` in the
# "answer" reading) followed by something that makes the number a piece of a longer expression.
JUXTAPOSED = [  # (answer, gold)
    (r"\frac{1}{2} bh", "1/2"),
    (r"\frac{1}{2} bh", r"\frac{1}{2}"),
    (r"\frac{1}{2}bh", "1/2"),
    (r"\frac{1}{2}\ bh", "1/2"),
    (r"\frac{1}{2}\,bh", "1/2"),
    (r"\frac{1}{2} b h", "1/2"),
    (r"\frac{1}{2} x", "1/2"),
    (r"\frac{1}{2} = x", "1/2"),
    (r"\frac{1}{2}= x", "1/2"),
    (r"x = \frac{1}{2} y", "1/2"),
    (r"\frac{1}{2} \pi", "1/2"),
    (r"\frac{1}{2} π", "1/2"),
    (r"\frac{1}{2} because it is half", "1/2"),
    ("3 x", "3"),
    ("3 xy", "3"),
    ("2 = x", "2"),
    ("42 or so", "42"),
    ("0.5 bh", "1/2"),
    ("1/2 bh", "1/2"),
    ("answer: 3 b", "3"),
    # a word math-verify does not drop as a unit: a boxed "5 dollars" (and such a gold, see data/gold.py) is letters
    ("5 dollars", "5"),
]
# The same kind of answers, whole: a unit (math-verify's unit words, a text command, a degree or percent sign),
# punctuation or the end of a line after the number. All paid.
WHOLE = [
    (r"\frac{1}{2}", "1/2"),
    (r"x = \frac{1}{2}", "1/2"),
    (r"\frac{1}{2} cm", "1/2"),
    (r"\frac{1}{2} cm.", "1/2"),
    (r"\frac{1}{2}\,\text{cm}", "1/2"),
    (r"\frac{1}{2}\text{ cm}", "1/2"),
    (r"\frac{1}{2}, so we are done", "1/2"),
    (r"\frac{1}{2}\%", "1/2"),
    ("0.5", r"\frac{1}{2}"),
    ("3", "3"),
    ("x = 3", "3"),
    ("3 cm", "3"),
    ("3 cm^2", "3"),
    ("3 meters of rope", "3"),
    ("3 apples", "3"),
    ("3 degrees", "3"),
    ("3 square units", "3"),
    (r"3 \text{cm}", "3"),
    (r"3\text{ cm}", "3"),
    (r"3\ \text{cm}", "3"),
    (r"3 \mathrm{cm}", "3"),
    (r"36^\circ", "36"),
    (r"36^{\circ}", "36"),
    (r"36 ^\circ", "36"),
    ("36°", "36"),
    (r"5\%", "5"),
    ("x = 3 cm", "3"),
    ("3.", "3"),
    ("3\nThat is all.", "3"),
    ("The answer is 3", "3"),
]


def _reads_bare(answer: str, reading: str) -> bool:
    """Whether the reading reads this bare answer at all: the released one reads only `\\frac{a}{b}` bare."""
    return reading == "answer" or answer.lstrip("x= ").startswith("\\frac")


@pytest.mark.parametrize("reading", READINGS)
def test_a_juxtaposed_number_is_a_piece(reading):
    for answer, gold in JUXTAPOSED:
        got = rmath.check(_answer(answer), gold, reading=reading)
        if _reads_bare(answer, reading):
            assert got == PIECE, (answer, gold, got)
            # as released (whole=False) the piece is paid: that is what the rule takes away, and counts
            assert rmath.check(_answer(answer), gold, reading=reading, whole=False).reward == 1.0, answer
        else:
            assert got.reward == 0.0, (answer, gold, got)


@pytest.mark.parametrize("reading", READINGS)
def test_a_number_with_a_unit_is_whole(reading):
    for answer, gold in WHOLE:
        got = rmath.check(_answer(answer), gold, reading=reading)
        if _reads_bare(answer, reading):
            assert got == OK, (answer, gold, got)


@pytest.mark.parametrize("reading", READINGS)
def test_delimited_answers_are_read_whole_by_math_verify(reading):
    """Inside `\\boxed{}` or `$...$` math-verify parses the whole content: a juxtaposed answer is that expression
    (wrong for the bare number, not a piece of it) and matches the gold that is that expression."""
    for body, gold, same in [(r"\frac{1}{2} bh", "1/2", r"\frac{1}{2}bh"), (r"\frac{1}{2}bh", "1/2", r"\frac{1}{2} bh"),
                             ("3 x", "3", "3x"), ("3x", "3", "3 x"), ("2 = x", "2", "2=x"),
                             (r"\frac{1}{2} \pi", "1/2", r"\frac{\pi}{2}"), (r"\sqrt{2} a", r"\sqrt{2}", r"a\sqrt{2}"),
                             (r"x = \frac{1}{2} y", "1/2", r"x=\frac{y}{2}"), ("0.5 bh", "1/2", r"\frac{bh}{2}")]:
        for wrapped in (_answer(rf"\boxed{{{body}}}"), f"The final answer is ${body}$"):
            assert rmath.check(wrapped, gold, reading=reading) == rmath.MathResult(0.0, "ok"), (wrapped, gold)
            assert rmath.check(wrapped, same, reading=reading) == OK, (wrapped, same)
    for body, gold in [(r"\frac{1}{2}", "1/2"), (r"x = \frac{1}{2}", "1/2"), ("0.5", "1/2"), ("3 cm", "3"),
                       (r"3 \text{cm}", "3"), (r"36^\circ", "36"), (r"5\%", "5")]:
        assert rmath.check(rf"\boxed{{{body}}}", gold, reading=reading) == OK, body
    assert rmath.check(r"\boxed{\frac12}", "1/2", reading="answer") == OK  # the released normalisation lacks this


@pytest.mark.parametrize("reading", READINGS)
def test_a_list_math_verify_joins_is_one_answer(reading):
    """Fractions joined by "and", "or" or a comma are one match (a set) for math-verify: whole, not pieces."""
    for joined in (r"\frac{1}{2} or \frac{1}{3}", r"\frac{1}{2}, \frac{1}{3}", r"\frac{1}{2} and \frac{1}{3}"):
        assert rmath.check(_answer(joined), r"\frac12, \frac13", reading=reading) == OK, joined
        assert rmath.check(_answer(joined), "1/2", reading=reading) == rmath.MathResult(0.0, "ok"), joined
        assert rmath.check(_answer(joined + " x"), r"\frac12, \frac13", reading=reading) == PIECE, joined


# ---------------------------------------------------------------- property-based: generated juxtapositions

def _fraction(cmd):
    return st.tuples(st.integers(1, 30), st.integers(2, 30)).filter(lambda pq: pq[0] % pq[1]).map(
        lambda pq: (f"\\{cmd}{{{pq[0]}}}{{{pq[1]}}}", f"{pq[0]}/{pq[1]}"))


NUMBERS = st.one_of(  # (how the answer writes the number, the bare gold)
    st.integers(2, 999).map(lambda n: (str(n), str(n))),
    st.tuples(st.integers(0, 99), st.integers(1, 99)).map(lambda d: (f"{d[0]}.{d[1]:02d}", f"{d[0]}.{d[1]:02d}")),
    _fraction("frac"), _fraction("dfrac"),
    _fraction("frac").map(lambda f: (f[1], f[1])),
)
SEPARATORS = st.sampled_from(["", " ", "  ", r"\,", r"\ ", r"\;", "~"])
# h, m, s, t too: math-verify's unit list has them, but after a bare number they are variables (rewards/math.py)
_LETTERS = "abchkmnrstxyz"
# No gold is 0 or a whole number written as a fraction, so a number in a tail is never the gold.
TAILS = st.one_of(
    st.sampled_from(_LETTERS),
    st.text(st.sampled_from(_LETTERS), min_size=2, max_size=3),  # products: bh, xy, abc
    st.sampled_from(["because", "or 0", "and 0", "dollars", "is the answer", "then", "bananas"]),
    st.sampled_from(["= x", "=x", "= 0", r"\pi", r"\sqrt{3}", r"\cdot 2", r"\times y", "π", "+ 1", r"\approx 0"]),
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(number=NUMBERS, sep=SEPARATORS, tail=TAILS, anchor=st.sampled_from(["", "answer: ", "x = "]))
def test_generated_juxtapositions_are_never_paid(number, sep, tail, anchor):
    written, gold = number
    assume(rmath.unit_after(f" {tail}", 0) is None)  # a generated product that spells a unit ("by") is one
    response = _answer(f"{anchor}{written}{sep}{tail}")
    for reading in READINGS:
        got = rmath.check(response, gold, reading=reading)
        assert got.reward == 0.0, (response, gold, reading, got)
        # what the whole-answer rule takes away is counted
        if rmath.check(response, gold, reading=reading, whole=False).reward:
            assert got.partial, (response, gold, reading, got)


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(number=NUMBERS, sep=SEPARATORS.filter(lambda s: s != "~"), tail=TAILS)  # math-verify reads "$2~x$" as 2
def test_generated_juxtapositions_match_themselves(number, sep, tail):
    """The gold's own form decides: the juxtaposed expression, boxed, matches a gold that is that expression."""
    written, gold = number
    body = f"{written}{sep}{tail}"
    assume(rmath.parse_gold(body))  # a gold the verifier reads
    for reading in READINGS:
        assert rmath.check(rf"\boxed{{{body}}}", body, reading=reading) == OK, (body, reading)


# Letters math-verify drops as units at the end of an answer though they are as often variables ("h", "m", "s",
# "ab", ...): inside `\boxed{}` or `$...$` too, the gold's own form decides.
LETTER_UNITS = ["c", "d", "g", "h", "l", "m", "o", "s", "t", "ab", "bc"]


@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(number=NUMBERS, sep=SEPARATORS.filter(lambda s: s not in ("", "~")), letter=st.sampled_from(LETTER_UNITS),
       wrap=st.sampled_from([r"\boxed{{{}}}", "The answer is ${}$.", r"\[ {} \]"]))
def test_letters_dropped_as_units_are_not_paid_unless_the_gold_has_them(number, sep, letter, wrap):
    written, gold = number
    response = wrap.format(f"{written}{sep}{letter}")
    for reading in READINGS:
        got = rmath.check(response, gold, reading=reading)
        assert got.reward == 0.0, (response, gold, reading, got)
        if rmath.check(response, gold, reading=reading, whole=False).reward:  # math-verify dropped the letters
            assert got.partial, (response, gold, reading, got)
            assert rmath.check(response, f"{gold} {letter}", reading=reading).reward == 1.0, (response, reading)


@pytest.mark.parametrize("reading", READINGS)
def test_a_unit_written_as_text_or_in_the_gold_is_paid(reading):
    for response, gold in [(r"\boxed{5 \text{ m}}", "5"), (r"\boxed{5\,\mathrm{s}}", "5"), (r"\boxed{5 m}", "5 m"),
                           (r"\boxed{\frac{1}{2} h}", r"\frac{1}{2} h"), (r"\boxed{5}", "5 m"), ("The answer is $5 cm$.", "5"),
                           (r"\boxed{5 m}", "$5 m$")]:
        assert rmath.check(response, gold, reading=reading) == OK, (response, gold)
