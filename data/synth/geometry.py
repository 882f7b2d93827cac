"""Deterministic synthetic geometry problems with diagrams drawn by PIL (``--data synthetic-geo:N``).

Every problem is a 336x336 PNG (white background, black lines, labelled points, lengths and
angles) plus a question with an exact answer that math-verify checks: integers, ``\\frac{a}{b}``,
multiples of pi (``12\\pi``, ``\\frac{49\\pi}{4}``) and degrees as plain numbers (``65``).

The drawing is computed from the numbers, not decorative: each template builds the figure in
"units" (a right triangle with legs 6 and 8 has legs 6 and 8 units long), and one uniform
similarity (random rotation / reflection, scale, shift) maps it onto the canvas, so lengths keep
their ratios and angles their size (drawing primitives: :mod:`data.synth.geometry_draw`). Each row
keeps the pixel coordinates of the named points and the scale (``geometry``), which is enough to
re-measure every label and the answer from the picture (``tests/test_multimodal_data.py`` does
exactly that).

Templates (``KINDS``, cycled in this order): right-triangle hypotenuse / leg (Pythagorean triples),
triangle angle sum, isosceles base / apex angle, area of a triangle / rectangle / trapezoid,
circle circumference / area (in terms of pi), inscribed angle = half the central angle,
parallel lines cut by a transversal (corresponding, alternate interior / exterior, co-interior),
similar triangles (DE parallel to BC).

Rows use the LMM-R1 message format, image paths relative to the jsonl folder::

    {"id": "geo_0000_right_triangle_hyp",
     "message": "[{\\"role\\": \\"user\\", \\"content\\": [{\\"type\\": \\"image\\", \\"image\\": \\"file://geo_images/geo_0000_right_triangle_hyp.png\\"}, {\\"type\\": \\"text\\", \\"text\\": \\"...\\"}]}]",
     "answer": "10", "domain": "geo", "kind": "right_triangle_hyp", "geometry": {...}}

``geometry`` = ``{"scale": px per unit, "points": {name: [x, y]} (pixels, y down),
"labels": [{"type": "length"|"angle", "points": [...], "value": "6"}, ...] (the numbers written
in the figure), "target": {...} (what is asked)}``. Target types: ``length`` (points P, Q),
``angle`` (points P, V, Q; vertex in the middle, degrees), ``area`` (polygon points),
``circle_circumference`` / ``circle_area`` (``points``: center, point on the circle).

    python -m data.synth.geometry     # rewrites data/fixtures/geo_fixture.jsonl + geo_images/ (24 rows, seed 0)
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Callable

from ..io import DEFAULT_CACHE, FIXTURE_DIR, write_jsonl
from .geometry_draw import MARGIN, Canvas, Fit, add, centroid, lerp, mul, norm, polar, save_png, sub

__all__ = ["KINDS", "GENERATOR_VERSION", "generate", "write_jsonl", "write_fixture", "cached_jsonl", "latex_value",
           "FIXTURE_PATH", "IMAGE_SUBDIR"]

GENERATOR_VERSION = 1  # bump when the output changes (the cache folders of `cached_jsonl` use it)
FIXTURE_PATH = FIXTURE_DIR / "geo_fixture.jsonl"
IMAGE_SUBDIR = "geo_images"


# --------------------------------------------------------------------------- answers


def latex_value(x: int | Fraction, pi: bool = False) -> str:
    """Exact LaTeX: ``7``, ``\\frac{3}{4}``, ``12\\pi``, ``\\pi``, ``\\frac{49\\pi}{4}``."""
    x = Fraction(x)
    sign = "-" if x < 0 else ""
    n, d = abs(x.numerator), x.denominator
    if not pi:
        return f"{sign}{n}" if d == 1 else f"{sign}\\frac{{{n}}}{{{d}}}"
    if n == 0:
        return "0"
    num = "\\pi" if n == 1 else f"{n}\\pi"
    return f"{sign}{num}" if d == 1 else f"{sign}\\frac{{{num}}}{{{d}}}"


def _num(x: int | Fraction) -> str:
    """A number as written in the figure: ``6``, ``7.5``, ``49/4``."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    if (x * 10).denominator == 1:
        return f"{float(x):g}"
    return f"{x.numerator}/{x.denominator}"


# --------------------------------------------------------------------------- templates
# Each takes (rng, canvas) and returns (question, answer_latex, geometry) with geometry in pixels.


def _geometry(fit: Fit, pts: dict, labels: list, target: dict, **extra) -> dict:
    return {"scale": round(fit.scale, 6), "points": {k: [round(v[0], 3), round(v[1], 3)] for k, v in pts.items()},
            "labels": labels, "target": target, **extra}


_TRIPLES = [(3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29)]


def _right_triangle(rng: random.Random, cv: Canvas, ask_hyp: bool):
    base = rng.choice(_TRIPLES)
    k = rng.randint(1, max(1, 45 // base[2]))
    a, b, c = (k * t for t in base)
    if rng.random() < 0.5:
        a, b = b, a
    u = {"C": (0.0, 0.0), "B": (a, 0.0), "A": (0.0, b)}
    fit = Fit(list(u.values()), rng)
    P = {n: fit(p) for n, p in u.items()}
    A, B, C = P["A"], P["B"], P["C"]
    g = centroid([A, B, C])
    cv.polygon([A, B, C])
    cv.right_angle(C, A, B)
    for n in "ABC":
        cv.vertex_label(P[n], n, g)
    if ask_hyp:
        cv.side_label(B, C, str(a), g)
        cv.side_label(A, C, str(b), g)
        cv.side_label(A, B, "x", g)
        labels = [{"type": "length", "points": ["B", "C"], "value": str(a)},
                  {"type": "length", "points": ["A", "C"], "value": str(b)}]
        target, answer = {"type": "length", "points": ["A", "B"]}, c
        q = "In the figure, triangle ABC has a right angle at C. Find the length x of the hypotenuse AB."
    else:
        cv.side_label(B, C, str(a), g)
        cv.side_label(A, B, str(c), g)
        cv.side_label(A, C, "x", g)
        labels = [{"type": "length", "points": ["B", "C"], "value": str(a)},
                  {"type": "length", "points": ["A", "B"], "value": str(c)}]
        target, answer = {"type": "length", "points": ["A", "C"]}, b
        q = "In the figure, triangle ABC has a right angle at C. Find the length x of the leg AC."
    return q, latex_value(answer), _geometry(fit, P, labels, target)


def _right_triangle_hyp(rng, cv):
    return _right_triangle(rng, cv, True)


def _right_triangle_leg(rng, cv):
    return _right_triangle(rng, cv, False)


def _triangle_from_angles(alpha: float, beta: float, base: float = 1.0):
    """A=(0,0), B=(base,0), C above with angle alpha at A and beta at B."""
    gamma = 180.0 - alpha - beta
    ac = base * math.sin(math.radians(beta)) / math.sin(math.radians(gamma))
    return (0.0, 0.0), (base, 0.0), polar(ac, alpha)


def _angle_sum(rng: random.Random, cv: Canvas):
    while True:
        alpha, beta = rng.randint(30, 100), rng.randint(30, 100)
        gamma = 180 - alpha - beta
        if gamma >= 30:
            break
    a, b, c = _triangle_from_angles(alpha, beta)
    fit = Fit([a, b, c], rng)
    P = {"A": fit(a), "B": fit(b), "C": fit(c)}
    A, B, C = P["A"], P["B"], P["C"]
    g = centroid([A, B, C])
    cv.polygon([A, B, C])
    for n in "ABC":
        cv.vertex_label(P[n], n, g)
    cv.angle_label(A, B, C, f"{alpha}°")
    cv.angle_label(B, A, C, f"{beta}°")
    cv.angle_label(C, A, B, "x°")
    labels = [{"type": "angle", "points": ["B", "A", "C"], "value": str(alpha)},
              {"type": "angle", "points": ["A", "B", "C"], "value": str(beta)}]
    q = "In triangle ABC shown in the figure, find x (the measure of angle C in degrees)."
    return q, str(gamma), _geometry(fit, P, labels, {"type": "angle", "points": ["A", "C", "B"]})


def _isosceles(rng: random.Random, cv: Canvas):
    ask_base = rng.random() < 0.5
    if ask_base:
        apex = 2 * rng.randint(15, 70)  # even, so the base angles are integers
        base_angle = (180 - apex) // 2
    else:
        base_angle = rng.randint(25, 75)
        apex = 180 - 2 * base_angle
    b, c, a = _triangle_from_angles(base_angle, base_angle)  # B, C at the base, A the apex
    fit = Fit([a, b, c], rng)
    P = {"A": fit(a), "B": fit(b), "C": fit(c)}
    A, B, C = P["A"], P["B"], P["C"]
    g = centroid([A, B, C])
    cv.polygon([A, B, C])
    cv.ticks(A, B)
    cv.ticks(A, C)
    for n in "ABC":
        cv.vertex_label(P[n], n, g)
    if ask_base:
        cv.angle_label(A, B, C, f"{apex}°")
        cv.angle_label(B, A, C, "x°")
        labels = [{"type": "angle", "points": ["B", "A", "C"], "value": str(apex)}]
        target, answer = {"type": "angle", "points": ["A", "B", "C"]}, base_angle
        q = "In triangle ABC, AB = AC as marked in the figure. Find x (the measure of angle B in degrees)."
    else:
        cv.angle_label(B, A, C, f"{base_angle}°")
        cv.angle_label(A, B, C, "x°")
        labels = [{"type": "angle", "points": ["A", "B", "C"], "value": str(base_angle)}]
        target, answer = {"type": "angle", "points": ["B", "A", "C"]}, apex
        q = "In triangle ABC, AB = AC as marked in the figure. Find x (the measure of angle A in degrees)."
    return q, str(answer), _geometry(fit, P, labels, target)


def _area_triangle(rng: random.Random, cv: Canvas):
    b, h = rng.randint(4, 20), rng.randint(3, 16)
    while not 0.45 <= h / b <= 1.6:
        b, h = rng.randint(4, 20), rng.randint(3, 16)
    foot = b * rng.uniform(0.2, 0.8)
    u = {"A": (0.0, 0.0), "B": (float(b), 0.0), "C": (foot, float(h)), "H": (foot, 0.0)}
    fit = Fit(list(u.values()), rng)
    P = {n: fit(p) for n, p in u.items()}
    A, B, C, H = P["A"], P["B"], P["C"], P["H"]
    g = centroid([A, B, C])
    cv.polygon([A, B, C])
    cv.line(C, H, dashed=True)
    cv.right_angle(H, C, B)
    for n in "ABC":
        cv.vertex_label(P[n], n, g)
    cv.side_label(A, B, str(b), C)
    # the height label goes into the wider part of the triangle, beside the dashed segment
    cv.side_label(C, H, str(h), A if foot > b / 2 else B, gap=6)
    labels = [{"type": "length", "points": ["A", "B"], "value": str(b)},
              {"type": "length", "points": ["C", "H"], "value": str(h)}]
    q = ("In the figure, the dashed segment is the height of triangle ABC from C to side AB. "
         "Find the area of triangle ABC.")
    return q, latex_value(Fraction(b * h, 2)), _geometry(fit, P, labels, {"type": "area", "points": ["A", "B", "C"]})


def _area_rectangle(rng: random.Random, cv: Canvas):
    w, h = rng.randint(3, 20), rng.randint(3, 20)
    while w == h or not 0.35 <= h / w <= 2.8:
        w, h = rng.randint(3, 20), rng.randint(3, 20)
    u = {"A": (0.0, 0.0), "B": (float(w), 0.0), "C": (float(w), float(h)), "D": (0.0, float(h))}
    fit = Fit(list(u.values()), rng)
    P = {n: fit(p) for n, p in u.items()}
    g = centroid(list(P.values()))
    cv.polygon([P[n] for n in "ABCD"])
    cv.right_angle(P["A"], P["B"], P["D"])
    for n in "ABCD":
        cv.vertex_label(P[n], n, g)
    cv.side_label(P["A"], P["B"], str(w), g)
    cv.side_label(P["B"], P["C"], str(h), g)
    labels = [{"type": "length", "points": ["A", "B"], "value": str(w)},
              {"type": "length", "points": ["B", "C"], "value": str(h)}]
    q = "ABCD in the figure is a rectangle. Find its area."
    return q, str(w * h), _geometry(fit, P, labels, {"type": "area", "points": ["A", "B", "C", "D"]})


def _area_trapezoid(rng: random.Random, cv: Canvas):
    while True:
        a, h = rng.randint(8, 20), rng.randint(3, 12)
        b = rng.randint(3, a - 3)
        if 0.3 <= h / a <= 1.0:
            break
    off = rng.uniform(0.15, 0.85) * (a - b)
    hx = off + b * rng.uniform(0.35, 0.65)  # the dashed height hangs from inside the top base
    u = {"A": (0.0, 0.0), "B": (float(a), 0.0), "C": (off + b, float(h)), "D": (off, float(h)),
         "H": (hx, 0.0), "K": (hx, float(h))}
    fit = Fit(list(u.values()), rng)
    P = {n: fit(p) for n, p in u.items()}
    g = centroid([P[n] for n in "ABCD"])
    cv.polygon([P[n] for n in "ABCD"])
    cv.line(P["K"], P["H"], dashed=True)
    cv.right_angle(P["H"], P["K"], P["B"])
    for n in "ABCD":
        cv.vertex_label(P[n], n, g)
    # keep the base labels clear of the dashed height's feet
    at_ab = 0.5 if abs(hx - a / 2) > 0.18 * a else (0.22 if hx > a / 2 else 0.78)
    at_dc = 0.5 if abs(hx - off - b / 2) > 0.18 * b else (0.2 if hx > off + b / 2 else 0.8)
    cv.side_label(P["A"], P["B"], str(a), g, at=at_ab)
    cv.side_label(P["D"], P["C"], str(b), g, at=at_dc)
    cv.side_label(P["K"], P["H"], str(h), P["A"], gap=6)
    labels = [{"type": "length", "points": ["A", "B"], "value": str(a)},
              {"type": "length", "points": ["D", "C"], "value": str(b)},
              {"type": "length", "points": ["K", "H"], "value": str(h)}]
    q = ("ABCD in the figure is a trapezoid with AB parallel to DC; the dashed segment is its height. "
         "Find the area of ABCD.")
    return q, latex_value(Fraction((a + b) * h, 2)), _geometry(fit, P, labels,
                                                               {"type": "area", "points": ["A", "B", "C", "D"]})


def _circle(rng: random.Random, cv: Canvas, area: bool):
    use_diameter = rng.random() < 0.4
    if use_diameter:
        d = rng.randint(3, 24)
        r = Fraction(d, 2)
    else:
        r = Fraction(rng.randint(2, 15))
    phi = rng.uniform(0, 360)
    u = {"O": (0.0, 0.0), "P": polar(float(r), phi), "Q": polar(float(r), phi + 180)}
    fit = Fit([u["O"]], rng, circles=[(u["O"], float(r))], margin=MARGIN - 14)
    P = {n: fit(p) for n, p in u.items()}
    O = P["O"]
    cv.circle(O, float(r) * fit.scale)
    cv.dot(O)
    if use_diameter:
        cv.line(P["P"], P["Q"])
        cv.dot(P["P"])
        cv.dot(P["Q"])
        # "O" sits off the diameter, the length on the other side
        side = norm((-(P["P"][1] - O[1]), P["P"][0] - O[0]))
        cv.vertex_label(O, "O", sub(O, side), dist=12)
        cv.side_label(lerp(O, P["P"], 0.2), P["P"], _num(2 * r), add(O, side))
        labels = [{"type": "length", "points": ["P", "Q"], "value": _num(2 * r)}]
        given = "the diameter shown"
    else:
        cv.line(O, P["P"])
        cv.dot(P["P"])
        cv.vertex_label(O, "O", P["P"], dist=12)
        side = norm((-(P["P"][1] - O[1]), P["P"][0] - O[0]))
        cv.side_label(O, P["P"], _num(r), add(O, side))
        labels = [{"type": "length", "points": ["O", "P"], "value": _num(r)}]
        given = "the radius shown"
    if area:
        q = (f"O is the center of the circle, with {given}. Find the area of the circle. "
             "Express your answer in terms of $\\pi$.")
        ans, target = latex_value(r * r, pi=True), {"type": "circle_area", "points": ["O", "P"]}
    else:
        q = (f"O is the center of the circle, with {given}. Find the circumference of the circle. "
             "Express your answer in terms of $\\pi$.")
        ans, target = latex_value(2 * r, pi=True), {"type": "circle_circumference", "points": ["O", "P"]}
    return q, ans, _geometry(fit, P, labels, target, circles=[{"center": "O", "through": "P"}])


def _circle_circumference(rng, cv):
    return _circle(rng, cv, False)


def _circle_area(rng, cv):
    return _circle(rng, cv, True)


def _inscribed_angle(rng: random.Random, cv: Canvas):
    theta = rng.randint(20, 75)  # inscribed; the central angle is 2*theta < 180
    phi = rng.uniform(0, 360)
    # C on the major arc, kept >= 20 degrees from the antipodes of A and B so chords CA, CB stay clear of O
    major = 360 - 2 * theta
    for _ in range(50):
        d = major * rng.uniform(0.25, 0.75)
        if abs(d - 180) >= 20 and abs(d - (180 - 2 * theta)) >= 20:
            break
    else:
        d = major / 2  # theta >= 20 away from both
    c_at = phi + 2 * theta + d
    u = {"O": (0.0, 0.0), "A": polar(1.0, phi), "B": polar(1.0, phi + 2 * theta), "C": polar(1.0, c_at)}
    fit = Fit([u["O"]], rng, circles=[(u["O"], 1.0)], margin=MARGIN - 12)
    P = {n: fit(p) for n, p in u.items()}
    O, A, B, C = P["O"], P["A"], P["B"], P["C"]
    cv.circle(O, fit.scale)
    cv.line(O, A)
    cv.line(O, B)
    cv.line(C, A)
    cv.line(C, B)
    for n in "OABC":
        cv.dot(P[n])
    for n in "ABC":
        cv.vertex_label(P[n], n, O, dist=13)
    # "O" goes on the far side from the central angle
    cv.vertex_label(O, "O", lerp(A, B, 0.5), dist=12)
    ask_inscribed = rng.random() < 0.5
    if ask_inscribed:
        cv.angle_label(O, A, B, f"{2 * theta}°", r=14)
        cv.angle_label(C, A, B, "x°", r=20)
        labels = [{"type": "angle", "points": ["A", "O", "B"], "value": str(2 * theta)}]
        target, answer = {"type": "angle", "points": ["A", "C", "B"]}, theta
        q = "Points A, B and C lie on the circle with center O. Find x (the measure of angle ACB in degrees)."
    else:
        cv.angle_label(C, A, B, f"{theta}°", r=20)
        cv.angle_label(O, A, B, "x°", r=14)
        labels = [{"type": "angle", "points": ["A", "C", "B"], "value": str(theta)}]
        target, answer = {"type": "angle", "points": ["A", "O", "B"]}, 2 * theta
        q = "Points A, B and C lie on the circle with center O. Find x (the measure of angle AOB in degrees)."
    return q, str(answer), _geometry(fit, P, labels, target, circles=[{"center": "O", "through": "A"}])


# Regions around the crossings P (line m) and Q (line n): rays +L (line direction), -L, and the
# transversal towards the other line (+T at P, -T at Q) or away from it.
_PAR_RELATIONS = {
    # name: (region at P, region at Q, supplementary?)
    "corresponding": [(("M2", "T2"), ("N2", "T3"), False), (("M1", "T1"), ("N1", "P"), False)],
    "alternate interior": [(("M2", "T2"), ("N1", "P"), False), (("M1", "T2"), ("N2", "P"), False)],
    "alternate exterior": [(("M2", "T1"), ("N1", "T3"), False), (("M1", "T1"), ("N2", "T3"), False)],
    "co-interior": [(("M2", "T2"), ("N2", "P"), True), (("M1", "T2"), ("N1", "P"), True)],
}


def _angle_deg(v, p, q) -> float:
    a, b = sub(p, v), sub(q, v)
    c = (a[0] * b[0] + a[1] * b[1]) / (math.hypot(*a) * math.hypot(*b))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def _parallel_lines(rng: random.Random, cv: Canvas):
    t = rng.choice([x for x in range(35, 146) if not 80 <= x <= 100])
    cot = 1 / math.tan(math.radians(t))
    p, qx = -cot / 2, cot / 2
    tdir = polar(1.0, t)
    u = {"M1": (-1.7, 0.0), "M2": (1.7, 0.0), "N1": (-1.7, 1.0), "N2": (1.7, 1.0),
         "P": (p, 0.0), "Q": (qx, 1.0)}
    u["T1"] = sub(u["P"], mul(tdir, 0.75))  # transversal beyond P (away from n)
    u["T3"] = add(u["Q"], mul(tdir, 0.75))  # transversal beyond Q (away from m)
    u["T2"] = u["Q"]  # at P the ray towards n passes through Q
    fit = Fit(list(u.values()), rng, rotate=30.0, margin=MARGIN - 16)
    P = {n: fit(pt) for n, pt in u.items()}
    cv.line(P["M1"], P["M2"])
    cv.line(P["N1"], P["N2"])
    cv.line(P["T1"], P["T3"])
    # line names beyond the right ends, away from the other line
    cv.vertex_label(P["M2"], "m", P["N2"], dist=10)
    cv.vertex_label(P["N2"], "n", P["M2"], dist=10)
    relation = rng.choice(sorted(_PAR_RELATIONS))
    (pa, pb), (qa, qb), supplementary = rng.choice(_PAR_RELATIONS[relation])
    if rng.random() < 0.5:  # the given angle may sit at either crossing
        given, unknown = ("Q", qa, qb), ("P", pa, pb)
    else:
        given, unknown = ("P", pa, pb), ("Q", qa, qb)
    g_val = round(_angle_deg(P[given[0]], P[given[1]], P[given[2]]))
    x_val = 180 - g_val if supplementary else g_val
    assert abs(_angle_deg(P[unknown[0]], P[unknown[1]], P[unknown[2]]) - x_val) < 1e-6
    cv.angle_label(P[given[0]], P[given[1]], P[given[2]], f"{g_val}°", r=16)
    cv.angle_label(P[unknown[0]], P[unknown[1]], P[unknown[2]], "x°", r=16)
    labels = [{"type": "angle", "points": [given[1], given[0], given[2]], "value": str(g_val)}]
    target = {"type": "angle", "points": [unknown[1], unknown[0], unknown[2]]}
    q = "In the figure, line m is parallel to line n, and a transversal crosses both. Find x (in degrees)."
    return q, str(x_val), _geometry(fit, P, labels, target, relation=relation)


def _similar_triangles(rng: random.Random, cv: Canvas):
    ask_bc = rng.random() < 0.5
    while True:
        ad, db = rng.randint(2, 9), rng.randint(2, 9)
        k = Fraction(ad, ad + db)
        if ask_bc:
            de = Fraction(rng.randint(3, 14))
            bc = de / k
        else:
            bc = Fraction(rng.randint(4, 20))
            de = bc * k
        if 0.6 <= bc / (ad + db) <= 1.7 and max(bc.denominator, de.denominator) <= 6:
            break
    beta = rng.uniform(50, 72)
    ab = ad + db
    u = {"B": (0.0, 0.0), "C": (float(bc), 0.0), "A": polar(float(ab), beta)}
    u["D"] = lerp(u["A"], u["B"], float(k))
    u["E"] = lerp(u["A"], u["C"], float(k))
    fit = Fit(list(u.values()), rng)
    P = {n: fit(p) for n, p in u.items()}
    A, B, C, D, E = (P[n] for n in "ABCDE")
    g = centroid([A, B, C])
    cv.polygon([A, B, C])
    cv.line(D, E)
    for n in "ABC":
        cv.vertex_label(P[n], n, g)
    for n in "DE":  # outside the big triangle, perpendicular to the side they lie on
        other = B if n == "D" else C
        d = norm(sub(other, A))
        out = (-d[1], d[0])
        if (g[0] - P[n][0]) * out[0] + (g[1] - P[n][1]) * out[1] > 0:
            out = (-out[0], -out[1])
        cv.vertex_label(P[n], n, sub(P[n], out))
    cv.side_label(A, D, str(ad), g)
    cv.side_label(D, B, str(db), g)
    if ask_bc:
        cv.side_label(D, E, _num(de), B)
        cv.side_label(B, C, "x", A)
        labels = [{"type": "length", "points": ["D", "E"], "value": _num(de)}]
        target, answer = {"type": "length", "points": ["B", "C"]}, bc
        what = "BC"
    else:
        cv.side_label(D, E, "x", B)
        cv.side_label(B, C, _num(bc), A)
        labels = [{"type": "length", "points": ["B", "C"], "value": _num(bc)}]
        target, answer = {"type": "length", "points": ["D", "E"]}, de
        what = "DE"
    labels = [{"type": "length", "points": ["A", "D"], "value": str(ad)},
              {"type": "length", "points": ["D", "B"], "value": str(db)}] + labels
    q = (f"In triangle ABC, D lies on AB, E lies on AC, and DE is parallel to BC. "
         f"Using the lengths in the figure, find x (the length of {what}).")
    return q, latex_value(answer), _geometry(fit, P, labels, target)


TEMPLATES: dict[str, Callable[[random.Random, Canvas], tuple[str, str, dict]]] = {
    "right_triangle_hyp": _right_triangle_hyp,
    "right_triangle_leg": _right_triangle_leg,
    "angle_sum": _angle_sum,
    "isosceles": _isosceles,
    "area_triangle": _area_triangle,
    "area_rectangle": _area_rectangle,
    "area_trapezoid": _area_trapezoid,
    "circle_circumference": _circle_circumference,
    "circle_area": _circle_area,
    "inscribed_angle": _inscribed_angle,
    "parallel_lines": _parallel_lines,
    "similar_triangles": _similar_triangles,
}
KINDS = tuple(TEMPLATES)


# --------------------------------------------------------------------------- generation


def generate(n: int, seed: int = 0, out_dir: str | Path = FIXTURE_DIR, image_subdir: str = IMAGE_SUBDIR) -> list[dict]:
    """Draw ``n`` problems into ``out_dir/image_subdir/`` and return their rows (not written to a jsonl).

    Row ``i`` uses template ``KINDS[i % len(KINDS)]`` and its own ``random.Random`` seeded from
    ``(seed, i)``, so the output (rows and PNG bytes) is a function of ``(n, seed)`` and a shorter
    run is a prefix of a longer one. Image references are ``file://<image_subdir>/<id>.png``,
    relative to ``out_dir`` (where the jsonl belongs: see :func:`write_jsonl`).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out_dir = Path(out_dir)
    image_dir = out_dir / image_subdir
    image_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        rng = random.Random(seed * 1_000_003 + i)
        canvas = Canvas()
        question, answer, geometry = TEMPLATES[kind](rng, canvas)
        row_id = f"geo_{i:04d}_{kind}"
        save_png(canvas.finish(), image_dir / f"{row_id}.png")
        message = [{"role": "user", "content": [
            {"type": "image", "image": f"file://{image_subdir}/{row_id}.png"},
            {"type": "text", "text": question},
        ]}]
        rows.append({"id": row_id, "message": json.dumps(message, ensure_ascii=False), "answer": answer,
                     "domain": "geo", "kind": kind, "geometry": geometry})
    return rows


def write_fixture(n: int = 24, seed: int = 0, path: str | Path = FIXTURE_PATH) -> Path:
    """(Re)write a geo jsonl and its images; stale ``geo_*.png`` files in the image folder are removed."""
    path = Path(path)
    image_dir = path.parent / IMAGE_SUBDIR
    if image_dir.is_dir():
        for old in image_dir.glob("geo_*.png"):
            old.unlink()
    return write_jsonl(generate(n, seed, path.parent), path)


def cached_jsonl(n: int, seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """``<cache_dir>/synthetic_geo/v<GENERATOR_VERSION>_seed<seed>_n<n>/geo.jsonl`` (default cache ``$LMM_R1_CACHE``
    or ``~/.cache/lmm_r1``), generated with its images on first use."""
    folder = Path(cache_dir or DEFAULT_CACHE) / "synthetic_geo" / f"v{GENERATOR_VERSION}_seed{seed}_n{n}"
    path = folder / "geo.jsonl"
    if not path.is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=folder.parent))
        try:
            write_jsonl(generate(n, seed, tmp), tmp / "geo.jsonl")
            try:
                tmp.rename(folder)  # atomic: a half-written folder is never used
            except OSError:
                if not path.is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(FIXTURE_PATH), help="jsonl path; images go to <its folder>/geo_images/")
    args = ap.parse_args(argv)
    path = write_fixture(args.n, args.seed, args.out)
    sizes = sorted((p.stat().st_size for p in (path.parent / IMAGE_SUBDIR).glob("geo_*.png")))
    print(f"wrote {args.n} rows to {path}; images {sizes[0]}-{sizes[-1]} bytes, total {sum(sizes)}")


if __name__ == "__main__":
    main()
