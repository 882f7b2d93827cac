"""Football scenarios: randomised (but seeded) starting states in the spirit of GRF's academy."""
from __future__ import annotations

import random
import zlib

from .geometry import _keeper_spot
from .state import BALL_OFFSET, GOAL_Y, GameState, Player


def _rng(name: str, seed: int) -> random.Random:
    return random.Random(zlib.crc32(f"football:{name}:{seed}".encode()))


def _run_at_keeper(u):
    return [(u(60, 70), u(22, 42))], []


def _pass_and_shoot(u):
    cx, cy = u(66, 72), u(24, 40)
    side = 1.0 if cy < GOAL_Y else -1.0
    home = [(cx, cy), (cx + u(4, 10), GOAL_Y + side * u(7, 14))]
    away = [(cx + u(9, 13), cy + u(-2, 2))]
    return home, away


def _counter_attack_3v2(u):
    cx, cy = u(50, 56), u(28, 36)
    home = [(cx, cy), (cx + u(-2, 4), GOAL_Y - u(12, 18)), (cx + u(-2, 4), GOAL_Y + u(12, 18))]
    away = [(u(72, 78), GOAL_Y - u(4, 9)), (u(72, 78), GOAL_Y + u(4, 9))]
    return home, away


def _crowded_box(u):
    cx, cy = u(74, 78), u(26, 38)
    home = [(cx, cy), (u(84, 90), u(18, 25)), (u(86, 91), u(29, 35)), (u(84, 90), u(39, 46))]
    away = [(u(88, 93), u(20, 27)), (u(91, 95), u(30, 34)), (u(88, 93), u(37, 44)),
            (cx + u(5.5, 7.5), cy + u(-3, 3))]
    return home, away


def _build_up_5v5(u):
    cx, cy = u(36, 42), u(28, 36)
    home = [(cx, cy), (cx + u(2, 6), u(6, 12)), (cx + u(2, 6), u(52, 58)), (cx + u(12, 18), u(20, 28)),
            (cx + u(12, 18), u(36, 44))]
    away = [(u(58, 64), u(12, 20)), (u(60, 66), u(26, 31)), (u(60, 66), u(33, 38)), (u(58, 64), u(44, 52))]
    return home, away


_SCENARIO_BUILDERS = {
    "run_at_keeper": _run_at_keeper,  # 1 v keeper
    "pass_and_shoot": _pass_and_shoot,  # 2 v 1 + keeper
    "counter_attack_3v2": _counter_attack_3v2,  # 3 v 2 + keeper, from the halfway line
    "crowded_box": _crowded_box,  # 4 v 4 + keeper at the edge of the box
    "build_up_5v5": _build_up_5v5,  # 5 v 4 + keeper, from our half
}
SCENARIOS = tuple(_SCENARIO_BUILDERS)


def make_scenario(name: str, seed: int) -> GameState:
    """A scenario's start, randomised but fixed by (name, seed); home player 0 has the ball."""
    if name not in _SCENARIO_BUILDERS:
        raise KeyError(f"unknown football scenario {name!r}; known: {list(SCENARIOS)}")
    rng = _rng(name, int(seed))

    def u(a, b):
        return round(rng.uniform(a, b), 2)

    home_xy, away_xy = _SCENARIO_BUILDERS[name](u)
    home = [Player(x, y, lane=y) for x, y in home_xy]
    away = [Player(x, y, fx=-1.0) for x, y in away_xy]
    carrier = home[0]
    bx, by = carrier.x + BALL_OFFSET, carrier.y
    kx, ky = _keeper_spot(bx, by)
    away.insert(0, Player(kx, ky, fx=-1.0, keeper=True))
    return GameState(scenario=name, seed=int(seed), home=home, away=away, bx=bx, by=by)
