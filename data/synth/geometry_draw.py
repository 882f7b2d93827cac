"""Drawing primitives of the synthetic geometry generator (:mod:`data.synth.geometry`).

Figures are built in "units" (y up) with the vector helpers, mapped onto the 336x336 canvas by a :class:`Fit`
(one uniform similarity, so lengths keep their ratios and angles their size) and drawn on a :class:`Canvas`
(pixels, y down): lines, circles, right-angle marks, angle arcs, tick marks and labels placed clear of the lines.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["SIZE", "MARGIN", "FONT_SIZE", "Fit", "Canvas", "save_png",
           "polar", "add", "sub", "mul", "lerp", "norm", "centroid"]

SIZE = 336
MARGIN = 46
FONT_SIZE = 18
INK = 0
PAPER = 255


# --------------------------------------------------------------------------- plane helpers (unit coordinates, y up)


def polar(r: float, deg: float) -> tuple[float, float]:
    t = math.radians(deg)
    return (r * math.cos(t), r * math.sin(t))


def add(p, q):
    return (p[0] + q[0], p[1] + q[1])


def sub(p, q):
    return (p[0] - q[0], p[1] - q[1])


def mul(p, k):
    return (p[0] * k, p[1] * k)


def lerp(p, q, t):
    return (p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t)


def norm(v):
    n = math.hypot(v[0], v[1]) or 1.0
    return (v[0] / n, v[1] / n)


def centroid(pts):
    return (sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts))


class Fit:
    """A similarity unit plane -> canvas: random rotation, optional reflection, uniform scale, y flipped."""

    def __init__(self, pts: list, rng: random.Random, rotate: float = 180.0, circles=(), margin: int = MARGIN):
        self.theta = math.radians(rng.uniform(-rotate, rotate))
        self.flip = rng.random() < 0.5
        rot = [self._rot(p) for p in pts]
        for c, r in circles:
            cr = self._rot(c)
            rot += [(cr[0] - r, cr[1] - r), (cr[0] + r, cr[1] + r)]
        xs, ys = [p[0] for p in rot], [p[1] for p in rot]
        w, h = max(xs) - min(xs), max(ys) - min(ys)
        self.scale = min((SIZE - 2 * margin) / max(w, 1e-9), (SIZE - 2 * margin) / max(h, 1e-9))
        self.cx, self.cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2

    def _rot(self, p):
        x, y = p
        if self.flip:
            x = -x
        c, s = math.cos(self.theta), math.sin(self.theta)
        return (c * x - s * y, s * x + c * y)

    def __call__(self, p) -> tuple[float, float]:
        x, y = self._rot(p)
        return (SIZE / 2 + (x - self.cx) * self.scale, SIZE / 2 - (y - self.cy) * self.scale)


# --------------------------------------------------------------------------- drawing (pixel coordinates, y down)


class Canvas:
    def __init__(self):
        self.img = Image.new("L", (SIZE, SIZE), PAPER)
        self.draw = ImageDraw.Draw(self.img)
        self.font = ImageFont.load_default(size=FONT_SIZE)  # Pillow's bundled font: same pixels everywhere
        self._texts: list[tuple] = []  # drawn last, so lines never cross a label

    def line(self, p, q, width: int = 2, dashed: bool = False) -> None:
        if not dashed:
            self.draw.line([p, q], fill=INK, width=width)
            return
        length = math.dist(p, q)
        on, off = 7.0, 5.0
        t = 0.0
        while t < length:
            a, b = lerp(p, q, t / length), lerp(p, q, min(t + on, length) / length)
            self.draw.line([a, b], fill=INK, width=width)
            t += on + off

    def polygon(self, pts, width: int = 2) -> None:
        for i in range(len(pts)):
            self.line(pts[i], pts[(i + 1) % len(pts)], width)

    def circle(self, c, r: float, width: int = 2) -> None:
        self.draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], outline=INK, width=width)

    def dot(self, p, r: float = 3.0) -> None:
        self.draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=INK)

    def right_angle(self, v, p, q, size: float = 11.0) -> None:
        u, w = norm(sub(p, v)), norm(sub(q, v))
        a, c = add(v, mul(u, size)), add(v, mul(w, size))
        b = add(a, mul(w, size))
        self.draw.line([a, b, c], fill=INK, width=1)

    def arc(self, v, p, q, r: float = 18.0, count: int = 1) -> None:
        """Arc(s) inside the angle p-v-q (the one below 180 degrees)."""
        a1 = math.degrees(math.atan2(p[1] - v[1], p[0] - v[0]))
        a2 = math.degrees(math.atan2(q[1] - v[1], q[0] - v[0]))
        if (a2 - a1) % 360 > 180:
            a1, a2 = a2, a1
        for k in range(count):
            rr = r + 4 * k
            self.draw.arc([v[0] - rr, v[1] - rr, v[0] + rr, v[1] + rr], a1, a2, fill=INK, width=1)

    def ticks(self, p, q, count: int = 1, size: float = 6.0) -> None:
        m = lerp(p, q, 0.5)
        d = norm(sub(q, p))
        n = (-d[1], d[0])
        for k in range(count):
            c = add(m, mul(d, (k - (count - 1) / 2) * 5))
            self.draw.line([add(c, mul(n, size)), sub(c, mul(n, size))], fill=INK, width=2)

    def text_size(self, s: str) -> tuple[float, float]:
        l, t, r, b = self.draw.textbbox((0, 0), s, font=self.font)
        return (r - l, b - t)

    def text(self, center, s: str) -> None:
        self._texts.append((center, s))

    # -- label placement
    def vertex_label(self, v, s: str, away_from, dist: float = 15.0) -> None:
        d = norm(sub(v, away_from))
        w, h = self.text_size(s)
        self.text(add(v, mul(d, dist + 0.5 * abs(d[0]) * w + 0.5 * abs(d[1]) * h - 4)), s)

    def side_label(self, p, q, s: str, away_from, gap: float = 7.0, at: float = 0.5) -> None:
        """Label at fraction `at` of p-q (the middle), pushed off the line on the side away from `away_from`."""
        m = lerp(p, q, at)
        d = norm(sub(q, p))
        n = (-d[1], d[0])
        if (away_from[0] - m[0]) * n[0] + (away_from[1] - m[1]) * n[1] > 0:
            n = (-n[0], -n[1])
        w, h = self.text_size(s)
        self.text(add(m, mul(n, gap + 0.5 * abs(n[0]) * w + 0.5 * abs(n[1]) * h)), s)

    def angle_label(self, v, p, q, s: str, arcs: int = 1, r: float = 17.0) -> None:
        """Arc inside the angle p-v-q and the label on its bisector, clear of both rays."""
        self.arc(v, p, q, r, arcs)
        u1, u2 = norm(sub(p, v)), norm(sub(q, v))
        bis = norm(add(u1, u2))
        half = math.acos(max(-1.0, min(1.0, u1[0] * u2[0] + u1[1] * u2[1]))) / 2
        w, h = self.text_size(s)
        radius = 0.5 * math.hypot(w, h) + 3
        dist = max(r + 4 * (arcs - 1) + radius + 2, radius / max(math.sin(half), 0.05))
        self.text(add(v, mul(bis, min(dist, 80.0))), s)

    def finish(self) -> Image.Image:
        for (cx, cy), s in self._texts:
            l, t, r, b = self.draw.textbbox((0, 0), s, font=self.font)
            w, h = r - l, b - t
            # the ink box [x, x+w] x [y, y+h] is centred on (cx, cy) and kept on the canvas
            x = min(max(cx - w / 2, 3), SIZE - 3 - w)
            y = min(max(cy - h / 2, 3), SIZE - 3 - h)
            self.draw.rectangle([x - 2, y - 2, x + w + 2, y + h + 2], fill=PAPER)
            self.draw.text((x - l, y - t), s, fill=INK, font=self.font)
        return self.img


def save_png(img: Image.Image, path: Path) -> None:
    # 8 grey levels in a palette image: sharp lines, smooth enough text, a few KB per figure.
    small = img.quantize(colors=8, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, format="PNG", optimize=True)
