"""Scripted players: where the teammates, the opponents and the keeper run in each frame."""
from __future__ import annotations

import math

from .geometry import _clamp, _in_pitch, _keeper_spot, _unit
from .state import (
    BALL_DECAY, BALL_REST_SPEED, BOX_DEPTH, BOX_HALF_WIDTH, CONTROL_RADIUS, DT, GOAL_Y, KEEPER_REACH,
    KEEPER_REACT_SPEED, KEEPER_SPEED, LINE_GAP, LINE_HOLD, MARK_DISTANCE, MARK_SPEED, MAX_LINE_X, PITCH_LENGTH,
    PITCH_WIDTH, PREDICT_FRAMES, PRESS_SPEED, RUN_AHEAD, RUN_MAX_X, RUN_SPEED, SPACE_RADIUS, TEAMMATE_SPEED,
    GameState, Player,
)


def _intercept(s: GameState, px: float, py: float, speed: float, reach: float, in_air: bool):
    """First predicted ball position that a player at p can reach in time, or None."""
    x, y, vx, vy, air = s.bx, s.by, s.bvx, s.bvy, s.air
    for n in range(1, PREDICT_FRAMES + 1):
        air -= math.hypot(vx, vy) * DT
        x, y = x + vx * DT, y + vy * DT
        vx, vy = vx * BALL_DECAY, vy * BALL_DECAY
        if not _in_pitch(x, y):
            return None
        if air > 0.0 and not in_air:
            continue
        if math.hypot(x - px, y - py) - reach <= speed * n * DT:
            return x, y
    return None


def _rest_point(s: GameState) -> tuple[float, float]:
    f = DT / (1.0 - BALL_DECAY)
    return (_clamp(s.bx + s.bvx * f, 0.0, PITCH_LENGTH), _clamp(s.by + s.bvy * f, 0.0, PITCH_WIDTH))


def _run_spot(s: GameState, p: Player) -> tuple[float, float]:
    tx = min(s.bx + RUN_AHEAD, RUN_MAX_X)
    ty = p.lane
    near = min(s.away, key=lambda o: math.hypot(o.x - tx, o.y - ty), default=None)
    if near is not None and not near.keeper and math.hypot(near.x - tx, near.y - ty) < SPACE_RADIUS:
        ty += SPACE_RADIUS if ty >= near.y else -SPACE_RADIUS
    return tx, _clamp(ty, 3.0, PITCH_WIDTH - 3.0)


_HOLD_OFFSETS = (0.0, -6.0, 6.0, -12.0, 12.0)


def _plans(s: GameState, active: int) -> tuple[dict, dict]:
    """Targets {index: (x, y, speed)} of the scripted home players and of the opponents for one frame."""
    loose = s.owner == ""
    moving = loose and math.hypot(s.bvx, s.bvy) > BALL_REST_SPEED
    home = _home_plans(s, active, moving)
    away = {}
    free = _chase_plans(s, moving, away)
    _mark_plans(s, free, away)
    _keeper_plans(s, loose, moving, away)
    return home, away


def _home_plans(s: GameState, active: int, moving: bool) -> dict:
    """The pass receiver runs to meet a moving pass; the other teammates run forward into space."""
    home = {}
    for i, p in enumerate(s.home):
        if i == active:
            continue
        if moving and s.kick in ("short_pass", "long_pass") and i == s.target:
            spot = _intercept(s, p.x, p.y, RUN_SPEED, CONTROL_RADIUS, False) or _rest_point(s)
            home[i] = (*spot, RUN_SPEED)
        else:
            home[i] = (*_run_spot(s, p), TEAMMATE_SPEED)
    return home


def _chase_plans(s: GameState, moving: bool, away: dict) -> list[int]:
    """Outfield opponents go for the ball: all who can reach a moving ball's path, else the nearest presses it.
    Fills `away`; returns the outfield opponents left free (by index)."""
    outfield = [i for i, p in enumerate(s.away) if not p.keeper]
    free = list(outfield)
    if moving:
        for i in outfield:
            spot = _intercept(s, s.away[i].x, s.away[i].y, PRESS_SPEED, CONTROL_RADIUS, False)
            if spot is not None:
                away[i] = (*spot, PRESS_SPEED)
                free.remove(i)
    elif outfield:
        presser = min(outfield, key=lambda i: (math.hypot(s.away[i].x - s.bx, s.away[i].y - s.by), i))
        away[presser] = (s.bx, s.by, PRESS_SPEED)
        free.remove(presser)
    return free


def _mark_plans(s: GameState, free: list[int], away: dict) -> None:
    """Markers: each free defender (by index) takes the nearest unmarked attacker, goal-side; the rest hold a
    line; both stay at least LINE_GAP behind the ball (the defensive line). Fills `away`."""
    attackers = [j for j in range(len(s.home)) if not (s.owner == "home" and j == s.owner_idx)]
    line_min = min(s.bx + LINE_GAP, MAX_LINE_X)
    holders = 0
    for i in free:
        d = s.away[i]
        if attackers:
            j = min(attackers, key=lambda j: (math.hypot(s.home[j].x - d.x, s.home[j].y - d.y), j))
            attackers.remove(j)
            a = s.home[j]
            ux, uy = _unit(PITCH_LENGTH - a.x, GOAL_Y - a.y)
            tx, ty = a.x + ux * MARK_DISTANCE, a.y + uy * MARK_DISTANCE
        else:
            tx = min(s.bx + LINE_HOLD, MAX_LINE_X)
            ty = (s.by + GOAL_Y) / 2 + _HOLD_OFFSETS[holders % len(_HOLD_OFFSETS)]
            holders += 1
        away[i] = (_clamp(max(tx, line_min), 0.0, PITCH_LENGTH - 1.0), _clamp(ty, 1.0, PITCH_WIDTH - 1.0),
                   MARK_SPEED)


def _keeper_plans(s: GameState, loose: bool, moving: bool, away: dict) -> None:
    """The keeper goes for a moving ball's path (reaction-limited) or a loose ball in the box, else takes his
    spot on the line to the ball; always inside the penalty box. Fills `away`."""
    for i, k in enumerate(s.away):
        if not k.keeper:
            continue
        spot = None
        if moving:
            spot = _intercept(s, k.x, k.y, KEEPER_REACT_SPEED, KEEPER_REACH, True)
            speed = KEEPER_REACT_SPEED
        elif loose and _in_box(s.bx, s.by):
            spot, speed = (s.bx, s.by), KEEPER_SPEED
        if spot is None:
            spot, speed = _keeper_spot(s.bx, s.by), (KEEPER_REACT_SPEED if moving else KEEPER_SPEED)
        tx = _clamp(spot[0], PITCH_LENGTH - BOX_DEPTH, PITCH_LENGTH)
        ty = _clamp(spot[1], GOAL_Y - BOX_HALF_WIDTH, GOAL_Y + BOX_HALF_WIDTH)
        away[i] = (tx, ty, speed)


def _in_box(x: float, y: float) -> bool:
    return x >= PITCH_LENGTH - BOX_DEPTH and abs(y - GOAL_Y) <= BOX_HALF_WIDTH
