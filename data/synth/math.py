"""Deterministic generator of small verifiable math problems (DeepScaleR fields ``problem`` / ``answer``).

Answers are exact LaTeX that ``math_verify.parse`` reads both bare and in ``$...$``: integers
(``"42"``, ``"-7"``) or reduced fractions (``"\\frac{3}{4}"``, ``"-\\frac{7}{2}"``).

    python -m data.synth.math            # rewrites data/fixtures/math_fixture.jsonl (64 rows, seed 0)
                                         # and data/fixtures/message_fixture.jsonl + images/
"""

from __future__ import annotations

import argparse
import json
import math
import random
from fractions import Fraction
from pathlib import Path
from typing import Callable

from ..io import FIXTURE_DIR, write_jsonl


def latex_number(x: int | Fraction) -> str:
    """Exact LaTeX for an integer or rational: ``7``, ``-3``, ``\\frac{3}{4}``, ``-\\frac{7}{2}``."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    sign = "-" if x < 0 else ""
    return f"{sign}\\frac{{{abs(x.numerator)}}}{{{x.denominator}}}"


def _frac(n: int, d: int) -> str:
    return f"\\frac{{{n}}}{{{d}}}"


# Each template: rng -> (problem, exact value or answer string)


def _arithmetic(rng: random.Random):
    a, b, c = rng.randint(2, 60), rng.randint(2, 30), rng.randint(2, 12)
    form = rng.randrange(3)
    if form == 0:
        return f"Compute $ {a} + {b} \\times {c} $.", a + b * c
    if form == 1:
        return f"Compute $ {a} \\times {c} - {b} $.", a * c - b
    return f"Compute $ ({a} + {b}) \\times {c} $.", (a + b) * c


def _fractions(rng: random.Random):
    b, d = rng.randint(2, 9), rng.randint(2, 9)
    a, c = rng.randint(1, b - 1), rng.randint(1, d - 1)
    if rng.random() < 0.5:
        return (f"What is $ {_frac(a, b)} + {_frac(c, d)} $? Express your answer as a fraction in lowest terms.",
                Fraction(a, b) + Fraction(c, d))
    return (f"What is $ {_frac(a, b)} - {_frac(c, d)} $? Express your answer as a fraction in lowest terms.",
            Fraction(a, b) - Fraction(c, d))


def _linear(rng: random.Random):
    a = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, -2, -3, -4, -5])
    b = rng.randint(-20, 20)
    if rng.random() < 0.6:  # integer solution
        x = Fraction(rng.randint(-12, 12))
        c = a * x + b
    else:  # often a fractional solution
        c = Fraction(rng.randint(-30, 30))
        x = (c - b) / a
    b_str = f"+ {b}" if b >= 0 else f"- {-b}"
    return f"Solve $ {a}x {b_str} = {c} $ for $ x $.", x


def _series_sum(rng: random.Random):
    lo = rng.randint(-10, 30)
    hi = lo + rng.randint(3, 40)
    return f"What is the sum of all integers from {lo} to {hi}, inclusive?", (lo + hi) * (hi - lo + 1) // 2


def _percent(rng: random.Random):
    pct = rng.choice([5, 10, 15, 20, 25, 30, 40, 50, 60, 75])
    base = 20 * rng.randint(2, 30)
    if rng.random() < 0.5:
        return f"What is {pct}% of {base}?", Fraction(pct * base, 100)
    return (f"A jacket costs {base} dollars and is on sale for {pct}% off. "
            f"What is the sale price, in dollars?", Fraction(base * (100 - pct), 100))


def _gcd_lcm(rng: random.Random):
    g = rng.randint(2, 15)
    a, b = g * rng.randint(2, 12), g * rng.randint(2, 12)
    if rng.random() < 0.5:
        return f"What is the greatest common divisor of {a} and {b}?", math.gcd(a, b)
    return f"What is the least common multiple of {a} and {b}?", math.lcm(a, b)


def _area(rng: random.Random):
    form = rng.randrange(3)
    if form == 0:
        w, h = rng.randint(2, 25), rng.randint(2, 25)
        return f"A rectangle has width {w} and length {h}. What is its area?", w * h
    if form == 1:
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        return f"A right triangle has legs of length {a} and {b}. What is its area?", Fraction(a * b, 2)
    p, q, h = rng.randint(2, 15), rng.randint(2, 15), rng.randint(2, 12)
    return (f"A trapezoid has parallel sides of length {p} and {q} and height {h}. What is its area?",
            Fraction((p + q) * h, 2))


_NAMES = ["Maya", "Liam", "Ava", "Noah", "Zoe", "Omar", "Ines", "Kenji"]
_ITEMS = ["notebooks", "pencils", "apples", "stickers", "tickets", "markers"]


def _word(rng: random.Random):
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    k, price = rng.randint(2, 12), rng.randint(1, 9)
    bill = next(v for v in (10, 20, 50, 100) if v >= k * price)
    if rng.random() < 0.5:
        return (f"{name} buys {k} {item} at {price} dollars each and pays with a {bill}-dollar bill. "
                f"How much change, in dollars, does {name} receive?", bill - k * price)
    per_box, boxes, used = rng.randint(3, 12), rng.randint(2, 9), rng.randint(1, 10)
    used = min(used, per_box * boxes)
    return (f"{name} has {boxes} boxes with {per_box} {item} in each box and gives away {used} {item}. "
            f"How many {item} are left?", per_box * boxes - used)


TEMPLATES: list[Callable[[random.Random], tuple[str, int | Fraction]]] = [
    _arithmetic, _fractions, _linear, _series_sum, _percent, _gcd_lcm, _area, _word,
]


def generate(n: int, seed: int = 0) -> list[dict]:
    """``n`` problems ``{"problem": str, "answer": latex}``, cycling through the templates.

    Deterministic in ``(n, seed)``: the same arguments always give the same list, and a shorter
    list is a prefix of a longer one. Problems within one list are distinct.
    """
    rng = random.Random(seed)
    out, seen = [], set()
    for i in range(n):
        template = TEMPLATES[i % len(TEMPLATES)]
        for _ in range(100):
            problem, value = template(rng)
            if problem not in seen:
                break
        seen.add(problem)
        out.append({"problem": problem, "answer": latex_number(value)})
    return out


# --------------------------------------------------------------------------- multimodal fixture


def _draw_images(image_dir: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    image_dir.mkdir(parents=True, exist_ok=True)
    font = ImageFont.load_default(size=18)

    # Right triangle, legs 6 (vertical) and 8 (horizontal), hypotenuse "x".
    img = Image.new("RGB", (220, 170), "white")
    d = ImageDraw.Draw(img)
    A, B, C = (40, 20), (40, 140), (200, 140)
    d.polygon([A, B, C], outline="black", width=2)
    d.rectangle([40, 128, 52, 140], outline="black")  # right-angle mark
    d.text((18, 70), "6", fill="black", font=font)
    d.text((115, 145), "8", fill="black", font=font)
    d.text((125, 60), "x", fill="black", font=font)
    img.save(image_dir / "tri_0.png", optimize=True)

    # Rectangle 9 x 4.
    img = Image.new("RGB", (220, 150), "white")
    d = ImageDraw.Draw(img)
    d.rectangle([30, 30, 190, 110], outline="black", width=2)
    d.text((104, 112), "9", fill="black", font=font)
    d.text((196, 60), "4", fill="black", font=font)
    img.save(image_dir / "rect_0.png", optimize=True)


def message_fixture_rows() -> list[dict]:
    """LMM-R1 format rows (``message`` is a JSON string) using ``file://`` paths relative to the jsonl."""

    def row(id_, image, text, answer, domain):
        message = [{"role": "user", "content": [{"type": "image", "image": f"file://images/{image}"},
                                                {"type": "text", "text": text}]}]
        return {"id": id_, "message": json.dumps(message), "answer": answer, "domain": domain}

    return [
        row("tri_0_hyp", "tri_0.png", "In the right triangle shown, what is the length of the side marked x?",
            "10", "geo"),
        row("tri_0_area", "tri_0.png", "What is the area of the right triangle shown?", "24", "geo"),
        row("rect_0_area", "rect_0.png", "What is the area of the rectangle shown?", "36", "geo"),
        row("rect_0_perim", "rect_0.png",
            "What is the perimeter of the rectangle shown?\nChoices:\nA. 13\nB. 26\nC. 36\nD. 18",
            "B", "choice"),
    ]


def write_message_fixture(folder: str | Path = FIXTURE_DIR) -> Path:
    folder = Path(folder)
    _draw_images(folder / "images")
    return write_jsonl(message_fixture_rows(), folder / "message_fixture.jsonl")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(FIXTURE_DIR / "math_fixture.jsonl"))
    ap.add_argument("--no-message-fixture", action="store_true",
                    help="only write the math jsonl, not message_fixture.jsonl + images")
    args = ap.parse_args(argv)
    print(f"wrote {args.n} rows to {write_jsonl(generate(args.n, args.seed), args.out)}")
    if not args.no_message_fixture:
        print(f"wrote {write_message_fixture()}")


if __name__ == "__main__":
    main()
