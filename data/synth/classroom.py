"""The classroom task family: small verifiable problems with a text form and an image form (``--data classroom-*``).

The same problem exists twice: as text ("What is 3 + 5?") and drawn ("What is the value of the expression in the
image?" under a picture of ``3 + 5``), so that a tiny model can show the paper's findings in miniature: RL on the
text form (FRE-Text) against RL on the image form (FRE-Multi), and a second-stage domain (geometry with labelled
lengths, MGT) reached from either.

* ``text`` / ``image``: sums of two or three digits, differences, the larger of two numbers, a missing addend
  (``x + 3 = 8``). Images are strips of 28 x 28 cells, one character per cell, so that each image token of
  Qwen2.5-VL (a 2 x 2 merge of 14-pixel patches) sees exactly one character.
* ``geo``: a rectangle (perimeter from its two labelled sides) or a triangle (perimeter from its three), drawn on
  a 112 x 112 canvas with the labels in cells of their own.

Every problem belongs to one split by a hash of what it asks: the evaluation sets (``split="test"``) and the
validation sets that the classroom recipe was chosen on (``split="val"``) never hold a problem the training sets
(``split="train"``) do, nor each other's. Generation is deterministic
for a seed and fast (problems and images are made in memory, nothing is cached).

The prompts carry no R1 system prompt (the chat template's default system line stands): a model this small cannot
read an instruction, and the 70-token prompt would make every sequence 2.5 times longer; the R1 format is learned
from the warm-up's examples and then from the format reward.

Each :class:`~data.sample.Sample` carries ``meta["target"]``: the worked answer in the R1 format, which the
warm-up of the classroom model (rl/classroom_model.py) imitates.
"""

from __future__ import annotations

import hashlib
import random

from PIL import Image, ImageDraw, ImageFont

from ..sample import Sample, make_messages

FORMS = ("text", "image", "geo")
CELL = 28  # pixels per character: one Qwen2.5-VL image token (14-pixel patches merged 2 x 2)
STRIP_CELLS = 8  # foundation images: one row of 8 cells (224 x 28 pixels, 8 image tokens)
GEO_CELLS = 4  # geometry images: 4 x 4 cells (112 x 112 pixels, 16 image tokens)
HELD_OUT = 5  # one problem in 5 (by hash) is held out for evaluation ("test"), another one in 5 for choosing the
# classroom recipe ("val"), the other three train
_FONT_SIZE = 22


SPLITS = ("train", "val", "test")


def _split_of(key: str) -> str:
    return {0: "test", 1: "val"}.get(int(hashlib.sha256(key.encode()).hexdigest(), 16) % HELD_OUT, "train")


def _format(steps: str, answer: int) -> str:
    return f"<think> {steps} </think><answer> \\boxed{{{answer}}} </answer>"


# Each kind: rng -> (key, expression as drawn, text question, image question, worked steps, answer)


def _sum2(rng):
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    expr = f"{a} + {b}"
    return f"sum2:{a},{b}", expr, f"What is {expr}?", "What is the value of the expression in the image?", \
        f"{expr} = {a + b}", a + b


def _sum3(rng):
    a, b, c = rng.randint(0, 9), rng.randint(0, 9), rng.randint(0, 9)
    expr = f"{a} + {b} + {c}"
    return f"sum3:{a},{b},{c}", expr, f"What is {expr}?", "What is the value of the expression in the image?", \
        f"{a} + {b} = {a + b}, {a + b} + {c} = {a + b + c}", a + b + c


def _diff(rng):
    a = rng.randint(0, 18)
    b = rng.randint(0, min(a, 9))
    expr = f"{a} - {b}"
    return f"diff:{a},{b}", expr, f"What is {expr}?", "What is the value of the expression in the image?", \
        f"{expr} = {a - b}", a - b


def _larger(rng):
    a, b = rng.sample(range(0, 20), 2)
    return f"larger:{a},{b}", f"{a} {b}", f"Which is larger, {a} or {b}?", \
        "Which of the two numbers in the image is larger?", f"{max(a, b)} > {min(a, b)}", max(a, b)


def _missing(rng):
    a, x = rng.randint(0, 9), rng.randint(0, 9)
    expr = f"x + {a} = {a + x}"
    return f"missing:{a},{x}", expr, f"Find x if {expr}.", "Find x in the equation shown in the image.", \
        f"x = {a + x} - {a} = {x}", x


def _rectangle(rng):
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return f"rect:{a},{b}", ("rect", a, b), f"A rectangle has sides {a} and {b}. What is its perimeter?", \
        "What is the perimeter of the rectangle in the image?", f"{a} + {b} + {a} + {b} = {2 * (a + b)}", 2 * (a + b)


def _triangle(rng):
    a, b, c = sorted(rng.randint(2, 9) for _ in range(3))
    if a + b <= c:  # a real triangle
        return _triangle(rng)
    order = rng.sample([a, b, c], 3)
    return f"tri:{','.join(map(str, order))}", ("tri", *order), \
        f"A triangle has sides {order[0]}, {order[1]} and {order[2]}. What is its perimeter?", \
        "What is the perimeter of the triangle in the image?", \
        f"{order[0]} + {order[1]} = {order[0] + order[1]}, {order[0] + order[1]} + {order[2]} = {sum(order)}", \
        sum(order)


FOUNDATION = (_sum2, _sum3, _diff, _larger, _missing)
GEOMETRY = (_rectangle, _triangle)


# --------------------------------------------------------------------------- drawing


def _font():
    return ImageFont.load_default(size=_FONT_SIZE)  # Pillow's bundled font: the same pixels everywhere


def _glyph(draw, font, ch: str, col: int, row: int) -> None:
    l, t, r, b = draw.textbbox((0, 0), ch, font=font)
    x = col * CELL + (CELL - (r - l)) / 2 - l
    y = row * CELL + (CELL - (b - t)) / 2 - t
    draw.text((x, y), ch, fill=0, font=font)


def draw_expression(expr: str) -> Image.Image:
    """One character per 28 x 28 cell on a strip of STRIP_CELLS cells (spaces take no cell, except between two
    numbers)."""
    cells = []
    for token in expr.split(" "):
        if cells and token.isdigit() and cells[-1].isdigit():
            cells.append(" ")
        cells.extend(token)
    if len(cells) > STRIP_CELLS:
        raise ValueError(f"expression {expr!r} needs {len(cells)} cells, more than {STRIP_CELLS}")
    img = Image.new("L", (STRIP_CELLS * CELL, CELL), 255)
    draw, font = ImageDraw.Draw(img), _font()
    for i, ch in enumerate(cells):
        if ch != " ":
            _glyph(draw, font, ch, i, 0)
    return img.convert("RGB")


def draw_shape(shape: tuple) -> Image.Image:
    """A rectangle or triangle on a 4 x 4 grid of cells, each side's length written in a cell beside it."""
    img = Image.new("L", (GEO_CELLS * CELL, GEO_CELLS * CELL), 255)
    draw, font = ImageDraw.Draw(img), _font()
    c = CELL
    if shape[0] == "rect":
        _, a, b = shape
        draw.rectangle([c, c, 3 * c, 3 * c], outline=0, width=2)
        _glyph(draw, font, str(a), 1, 3)  # below the bottom side
        _glyph(draw, font, str(b), 3, 1)  # right of the right side
    else:
        _, a, b, d = shape
        draw.polygon([(2 * c, c // 2), (c // 2 + c, 3 * c), (3 * c - c // 2, 3 * c)], outline=0, width=2)
        _glyph(draw, font, str(a), 0, 1)  # left side
        _glyph(draw, font, str(b), 3, 1)  # right side
        _glyph(draw, font, str(d), 2, 3)  # bottom side
    return img.convert("RGB")


# --------------------------------------------------------------------------- samples


def make_problem(kind, rng: random.Random, form: str) -> Sample:
    key, drawn, text_q, image_q, steps, answer = kind(rng)
    if form == "text":
        messages, target = make_messages(text_q, system=None), _format(steps, answer)
    else:
        image = draw_shape(drawn) if form == "geo" else draw_expression(drawn)
        seen = (f"sides {', '.join(map(str, drawn[1:]))}" if form == "geo" else drawn)
        messages = make_messages(image_q, [image], system=None)
        target = _format(f"The image shows {seen}. {steps}", answer)
    meta = {"id": key, "kind": key.split(":")[0], "form": form, "target": target, "source": "classroom"}
    if form != "text":
        meta["shows"] = seen  # what the image shows, as text (the reading the warm-up teaches and the probe checks)
    return Sample(messages=messages, answer=str(answer), domain="math", meta=meta)


def classroom_samples(form: str, n: int, seed: int = 0, split: str = "train") -> list[Sample]:
    """`n` problems of one form ('text', 'image' or 'geo') from one split ('train' or 'test'), the kinds in turn,
    deterministic for a seed; the text and image forms of a seed are the same problems."""
    if form not in FORMS:
        raise ValueError(f"unknown classroom form {form!r}; expected one of {', '.join(FORMS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    kinds = GEOMETRY if form == "geo" else FOUNDATION
    rng = random.Random(f"classroom/{'geo' if form == 'geo' else 'foundation'}/{split}/{seed}")  # text = image
    out = []
    while len(out) < n:
        kind = kinds[len(out) % len(kinds)]
        state = rng.getstate()
        key = kind(rng)[0]
        if _split_of(key) != split:
            continue
        rng.setstate(state)  # draw the same problem again, this time with its image
        out.append(make_problem(kind, rng, form))
    return out

