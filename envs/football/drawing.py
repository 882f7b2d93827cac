"""Football rendering: a top-down PIL image of a state, without anti-aliasing (equal states, equal bytes)."""
from __future__ import annotations

from PIL import Image, ImageDraw

from .state import (
    BOX_DEPTH, BOX_HALF_WIDTH, CENTRE_RADIUS, GOAL_DEPTH, GOAL_HALF_WIDTH, GOAL_Y, PENALTY_SPOT, PITCH_LENGTH,
    PITCH_WIDTH, SIX_DEPTH, SIX_HALF_WIDTH, GameState, active_index,
)

GRASS_LIGHT = (58, 148, 64)
GRASS_DARK = (50, 134, 56)
SURROUND = (36, 100, 42)
LINE_COLOR = (240, 240, 240)
NET_COLOR = (190, 190, 190)
HOME_COLOR = (30, 90, 240)
AWAY_COLOR = (220, 30, 30)
KEEPER_COLOR = (255, 215, 0)
ACTIVE_COLOR = (255, 255, 255)
BALL_COLOR = (255, 255, 255)
OUTLINE_COLOR = (0, 0, 0)
_MARGIN_X, _MARGIN_Y = 6.0, 4.0  # metres of surround drawn around the pitch


def _frame(size: tuple[int, int]) -> tuple[float, float, float]:
    w, h = size
    scale = min(w / (PITCH_LENGTH + 2 * _MARGIN_X), h / (PITCH_WIDTH + 2 * _MARGIN_Y))
    return scale, (w - scale * PITCH_LENGTH) / 2, (h - scale * PITCH_WIDTH) / 2


def pitch_to_pixel(x: float, y: float, size: tuple[int, int] = (448, 288)) -> tuple[int, int]:
    """Pixel of pitch point (x, y) in an image of `size` made by `render`."""
    scale, ox, oy = _frame(size)
    return round(ox + x * scale), round(oy + y * scale)


def render(state: GameState, size: tuple[int, int] = (448, 288)) -> Image.Image:
    """Top-down RGB image of the state; equal states give equal bytes."""
    w, h = int(size[0]), int(size[1])
    scale, _, _ = _frame((w, h))
    img = Image.new("RGB", (w, h), SURROUND)
    dr = ImageDraw.Draw(img)

    def px(x, y):
        return pitch_to_pixel(x, y, (w, h))

    lw = max(1, round(scale * 0.25))
    # Stripes, then lines.
    for k in range(10):
        x0, _ = px(k * PITCH_LENGTH / 10, 0)
        x1, _ = px((k + 1) * PITCH_LENGTH / 10, 0)
        dr.rectangle([x0, px(0, 0)[1], x1, px(0, PITCH_WIDTH)[1]], fill=GRASS_LIGHT if k % 2 == 0 else GRASS_DARK)
    dr.rectangle([px(0, 0), px(PITCH_LENGTH, PITCH_WIDTH)], outline=LINE_COLOR, width=lw)
    dr.line([px(PITCH_LENGTH / 2, 0), px(PITCH_LENGTH / 2, PITCH_WIDTH)], fill=LINE_COLOR, width=lw)
    cx, cy = px(PITCH_LENGTH / 2, GOAL_Y)
    r = round(CENTRE_RADIUS * scale)
    dr.ellipse([cx - r, cy - r, cx + r, cy + r], outline=LINE_COLOR, width=lw)
    for gx, sgn in ((0.0, 1.0), (PITCH_LENGTH, -1.0)):
        for depth, half in ((BOX_DEPTH, BOX_HALF_WIDTH), (SIX_DEPTH, SIX_HALF_WIDTH)):
            a, b = px(gx, GOAL_Y - half), px(gx + sgn * depth, GOAL_Y + half)
            dr.rectangle([min(a[0], b[0]), a[1], max(a[0], b[0]), b[1]], outline=LINE_COLOR, width=lw)
        sx, sy = px(gx + sgn * PENALTY_SPOT, GOAL_Y)
        dr.ellipse([sx - lw, sy - lw, sx + lw, sy + lw], fill=LINE_COLOR)
        a, b = px(gx, GOAL_Y - GOAL_HALF_WIDTH), px(gx - sgn * GOAL_DEPTH, GOAL_Y + GOAL_HALF_WIDTH)
        dr.rectangle([min(a[0], b[0]), a[1], max(a[0], b[0]), b[1]], fill=NET_COLOR, outline=LINE_COLOR,
                     width=lw)
    dr.ellipse([cx - lw, cy - lw, cx + lw, cy + lw], fill=LINE_COLOR)
    # Direction of attack, in the bottom margin.
    ay = round(h - (h - px(0, PITCH_WIDTH)[1]) / 2)
    ax0, ax1 = px(PITCH_LENGTH / 2 - 6, 0)[0], px(PITCH_LENGTH / 2 + 6, 0)[0]
    dr.line([ax0, ay, ax1, ay], fill=HOME_COLOR, width=max(1, lw))
    head = max(2, round(scale))
    dr.polygon([(ax1 + head, ay), (ax1 - head, ay - head), (ax1 - head, ay + head)], fill=HOME_COLOR)

    pr = max(3, round(1.2 * scale))
    active = active_index(state)
    for p in state.away:
        x, y = px(p.x, p.y)
        dr.ellipse([x - pr, y - pr, x + pr, y + pr], fill=KEEPER_COLOR if p.keeper else AWAY_COLOR,
                   outline=OUTLINE_COLOR)
    for i, p in enumerate(state.home):
        x, y = px(p.x, p.y)
        if i == active:
            rr = pr + max(2, round(0.6 * scale))
            dr.ellipse([x - rr, y - rr, x + rr, y + rr], outline=ACTIVE_COLOR, width=max(1, lw))
            top = y - rr - 2
            dr.polygon([(x, top), (x - head, top - 2 * head), (x + head, top - 2 * head)], fill=ACTIVE_COLOR)
        dr.ellipse([x - pr, y - pr, x + pr, y + pr], fill=HOME_COLOR, outline=OUTLINE_COLOR)
    # Ball, with a line to where a rolling ball is heading (0.5 s ahead).
    bx, by = px(state.bx, state.by)
    if state.owner == "" and (state.bvx or state.bvy):
        ex, ey = px(state.bx + state.bvx * 0.5, state.by + state.bvy * 0.5)
        dr.line([bx, by, ex, ey], fill=BALL_COLOR, width=1)
    br = max(2, round(0.55 * scale))
    dr.ellipse([bx - br, by - br, bx + br, by + br], fill=BALL_COLOR, outline=OUTLINE_COLOR)
    return img
