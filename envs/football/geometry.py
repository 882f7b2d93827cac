"""Small geometry helpers on pitch coordinates (metres), shared by the scenarios, the scripted players and the
simulation."""
from __future__ import annotations

import math
import zlib

from .state import DT, GOAL_Y, KEEPER_DEPTH, PITCH_LENGTH, PITCH_WIDTH, Player


def _unit(dx: float, dy: float) -> tuple[float, float]:
    n = math.hypot(dx, dy)
    return (dx / n, dy / n) if n > 1e-9 else (0.0, 0.0)


def _clamp(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v


def _in_pitch(x: float, y: float) -> bool:
    return 0.0 <= x <= PITCH_LENGTH and 0.0 <= y <= PITCH_WIDTH


def _keeper_spot(bx: float, by: float) -> tuple[float, float]:
    ux, uy = _unit(bx - PITCH_LENGTH, by - GOAL_Y)
    if ux >= 0.0:  # ball level with or behind the goal line
        ux, uy = -1.0, 0.0
    return PITCH_LENGTH + ux * KEEPER_DEPTH, GOAL_Y + uy * KEEPER_DEPTH


def _seg_closest(x0, y0, x1, y1, px, py) -> tuple[float, float]:
    """(t in [0, 1], distance) of the point of segment p0-p1 closest to p."""
    dx, dy = x1 - x0, y1 - y0
    n2 = dx * dx + dy * dy
    t = 0.0 if n2 < 1e-12 else _clamp(((px - x0) * dx + (py - y0) * dy) / n2, 0.0, 1.0)
    return t, math.hypot(x0 + t * dx - px, y0 + t * dy - py)


def _segment_exit(x0, y0, x1, y1) -> float | None:
    """Fraction of the segment at which it leaves the pitch (p0 inside), else None."""
    t = None
    for p0, p1, lim in ((x0, x1, 0.0), (x0, x1, PITCH_LENGTH), (y0, y1, 0.0), (y0, y1, PITCH_WIDTH)):
        if (p1 < lim <= p0) or (p1 > lim >= p0):
            if p1 != p0:
                s = (lim - p0) / (p1 - p0)
                t = s if t is None else min(t, s)
    return t


def _hash01(*parts) -> float:
    return zlib.crc32(":".join(map(str, parts)).encode()) / 2**32


def _toward(p: Player, tx: float, ty: float, speed: float) -> None:
    dx, dy = tx - p.x, ty - p.y
    dist = math.hypot(dx, dy)
    if dist < 1e-6:
        return
    step = min(speed * DT, dist)
    p.fx, p.fy = dx / dist, dy / dist
    p.x = _clamp(p.x + p.fx * step, 0.0, PITCH_LENGTH)
    p.y = _clamp(p.y + p.fy * step, 0.0, PITCH_WIDTH)
