"""Football for stage 2 (MGT): a compact, deterministic 2D game, its scenarios, renderer and the VLM prompt.

Our own small game in the spirit of Google Research Football's academy scenarios (no gfootball dependency):

* Pitch in metres, `PITCH_LENGTH` x `PITCH_WIDTH` (100 x 64), x to the right, y DOWN (y = 0 is the top
  touchline, as in the image). Goals (7.32 m between the posts) sit on the goal lines x = 0 and x = 100; the
  controlled ("home", blue) team attacks toward +x, the opponents ("away", red, with a keeper) defend x = 100.
* Fixed time step `DT` = 0.1 s. The ball moves, then its velocity decays by `BALL_DECAY` = exp(-BALL_DRAG * DT)
  (exponential friction). It bounces off nothing: leaving the pitch is a goal between the posts, else "out".
* Possession: a carried ball sits `BALL_OFFSET` in front of its carrier. A loose ball is controlled by the first
  player (along the ball's path during the frame) within `CONTROL_RADIUS` of it while it is no faster than
  `CONTROL_SPEED`; the keeper catches any ball passing within `KEEPER_REACH` while it is no faster than
  `KEEPER_CATCH_SPEED`, a faster one within `KEEPER_BODY_REACH` (so shots can only be stopped by the keeper).
  A lofted long pass cannot be controlled by outfield players during its first `LOFT_FRACTION` of the
  distance. A kicker cannot touch the ball again for `KICK_COOLDOWN` frames.
* Tackles: an opponent wins a carried ball after being within `TACKLE_RADIUS` of it for `TACKLE_FRAMES`
  frames in a row (`DRIBBLE_TACKLE_FRAMES` while the carrier uses "dribble"); `state.pressure` counts them.
* The active (controlled) player is the ball carrier, else the home player closest to the ball (lowest index on
  ties). Teammates run forward into space in their lane; the pass receiver runs to meet the ball. The opponent
  nearest the ball presses it, the others mark the nearest free attacker goal-side and never stand upfield of
  the ball (the defensive line); for a moving loose ball every opponent who can reach its path goes for it. The
  keeper stands `KEEPER_DEPTH` off the goal centre on the line to the ball, and goes for a moving ball's path at
  `KEEPER_REACT_SPEED` (reaction-limited), staying inside the penalty box.
* Passes: "short_pass" to the nearest open teammate (no opponent within `OPEN_RADIUS`) not more than
  `SHORT_PASS_BACK` m behind and within `SHORT_PASS_RANGE`; "long_pass" (lofted) to the open teammate furthest
  forward. Kick speed is chosen so the ball arrives with `*_ARRIVAL_SPEED` (capped). Interceptions follow from the
  geometry: any opponent who can reach a point of the ball's path before the ball does (the same prediction the
  scripted players use) runs there and controls it. "shot": toward the far post, `SHOT_AIM_INSET` inside it, with
  a deterministic error of up to `SHOT_ERROR_PER_M` per metre beyond `SHOT_ERROR_FREE_M` (sign and size from a
  hash of seed, frame and shooter).

`simulate(state, action)` applies the action to the active player and runs `FRAMES_PER_ACTION` frames (1 s); a
ball still rolling loose after that is followed until it is controlled, leaves the pitch or rests (at most
`MAX_EXTRA_FRAMES` more), so a pass or shot is always judged by its outcome. A goal or a lost possession ends the
episode (`state.done`); simulate on a finished state changes nothing.

Everything is plain Python floats with no global RNG, so the same state and action give the same result bit for
bit; `render` draws without anti-aliasing, so equal states give equal image bytes.
"""
from __future__ import annotations

import copy
import math
import random
import zlib
from dataclasses import dataclass

from PIL import Image, ImageDraw

__all__ = [
    "ACTIONS", "DIRECTIONS", "SCENARIOS", "PROMPT", "Player", "GameState", "make_scenario", "simulate", "render",
    "active_index", "normalize_action", "pitch_to_pixel", "HOME_COLOR", "AWAY_COLOR", "KEEPER_COLOR",
    "ACTIVE_COLOR", "BALL_COLOR", "PITCH_LENGTH", "PITCH_WIDTH", "GOAL_Y", "GOAL_HALF_WIDTH", "DT",
    "FRAMES_PER_ACTION", "MAX_EXTRA_FRAMES",
]

# ---------------------------------------------------------------- pitch (metres)
PITCH_LENGTH = 100.0
PITCH_WIDTH = 64.0
GOAL_Y = PITCH_WIDTH / 2
GOAL_HALF_WIDTH = 3.66
GOAL_DEPTH = 2.0  # drawn only
BOX_DEPTH = 16.5
BOX_HALF_WIDTH = 20.16
SIX_DEPTH = 5.5
SIX_HALF_WIDTH = 9.16
PENALTY_SPOT = 11.0
CENTRE_RADIUS = 9.15

# ---------------------------------------------------------------- time and ball
DT = 0.1
FRAMES_PER_ACTION = 10
MAX_EXTRA_FRAMES = 30
BALL_DRAG = 0.5  # 1/s
BALL_DECAY = math.exp(-BALL_DRAG * DT)
_K_EFF = (1.0 - BALL_DECAY) / DT  # discrete drag: speed lost per metre travelled
BALL_REST_SPEED = 0.3  # a loose ball slower than this stops
BALL_OFFSET = 0.6  # carried ball, in front of the carrier
CONTROL_RADIUS = 1.0
CONTROL_SPEED = 16.0
KICK_COOLDOWN = 5  # frames
PREDICT_FRAMES = 30  # look-ahead of the interception prediction

# ---------------------------------------------------------------- players (m/s)
RUN_SPEED = 6.0
SPRINT_SPEED = 8.0
DRIBBLE_SPEED = 4.5
TEAMMATE_SPEED = 5.5
PRESS_SPEED = 6.5
MARK_SPEED = 5.5
TACKLE_RADIUS = 1.0
TACKLE_FRAMES = 2  # an opponent must stay within TACKLE_RADIUS of the carried ball this many frames in a row
DRIBBLE_TACKLE_FRAMES = 5  # ... while the carrier uses "dribble"
RUN_AHEAD = 10.0  # teammates run to this many metres ahead of the ball ...
RUN_MAX_X = 90.0  # ... but not beyond this x
SPACE_RADIUS = 4.0  # and move sideways off an opponent closer than this to their spot
MARK_DISTANCE = 2.0  # markers stand this far goal-side of their attacker
LINE_GAP = 2.0  # defenders other than the presser stay at least this far behind (higher x than) the ball
LINE_HOLD = 8.0  # unassigned defenders hold this far behind the ball ...
MAX_LINE_X = 94.0  # ... never deeper than this
KEEPER_DEPTH = 2.5
KEEPER_SPEED = 4.0
KEEPER_REACT_SPEED = 2.0
KEEPER_REACH = 0.9  # the keeper catches a ball no faster than KEEPER_CATCH_SPEED passing this close ...
KEEPER_CATCH_SPEED = 20.0
KEEPER_BODY_REACH = 0.5  # ... and stops a faster one only this close

# ---------------------------------------------------------------- kicks
OPEN_RADIUS = 3.0
SHORT_PASS_RANGE = 30.0
SHORT_PASS_BACK = 5.0
SHORT_ARRIVAL_SPEED = 8.0
SHORT_MAX_SPEED = 18.0
SHORT_LEAD = 1.0  # aim this far ahead (in x) of the receiver
LONG_ARRIVAL_SPEED = 9.0
LONG_MAX_SPEED = 26.0
LONG_LEAD = 3.0
LOFT_FRACTION = 0.75
BLIND_SHORT_PASS = 12.0  # no teammate: the ball is played this far ahead
BLIND_LONG_PASS = 25.0
SHOT_SPEED = 26.0
SHOT_AIM_INSET = 0.4
SHOT_ERROR_FREE_M = 10.0
SHOT_ERROR_PER_M = 0.06

# ---------------------------------------------------------------- actions
_D = math.sqrt(0.5)
DIRECTIONS = {
    "left": (-1.0, 0.0), "top_left": (-_D, -_D), "top": (0.0, -1.0), "top_right": (_D, -_D),
    "right": (1.0, 0.0), "bottom_right": (_D, _D), "bottom": (0.0, 1.0), "bottom_left": (-_D, _D),
}
KICKS = ("short_pass", "long_pass", "shot")
ACTIONS = tuple(DIRECTIONS) + KICKS + ("sprint", "dribble", "idle")

PROMPT = (
    "The image is a top-down view of a football (soccer) pitch. You control the BLUE team, which attacks the goal "
    "on the RIGHT side of the image. Blue circles are your players; the blue player with the white ring (and the "
    "white marker above it) is the one you control: the ball carrier, or the blue player closest to the ball. Red "
    "circles are opponents and the yellow circle is the opponent goalkeeper. The small white dot is the ball; a "
    "white line from a rolling ball shows where it is going.\n"
    "Choose the action of the controlled player for the next second of play. Carrying the ball toward the goal, "
    "getting past opponents, clean forward passes, shots on target and goals are good; losing the ball (tackle, "
    "interception, ball out of play, goalkeeper save) is bad.\n"
    "Allowed actions:\n"
    "- left, top_left, top, top_right, right, bottom_right, bottom, bottom_left: run in that direction of the "
    "image (with the ball if you have it)\n"
    "- short_pass: ground pass to the nearest open teammate ahead\n"
    "- long_pass: lofted pass to the open teammate furthest forward\n"
    "- shot: shoot at the far corner of the goal (less accurate from far away)\n"
    "- sprint: run faster in the current direction\n"
    "- dribble: run slower in the current direction, keeping the ball close (harder to tackle)\n"
    "- idle: stand still\n"
    "Think about the situation inside <think></think>, then give exactly one action name inside "
    "<answer></answer>, e.g. <think>...</think><answer>right</answer>."
)


def normalize_action(text: str) -> str | None:
    """The action named by `text` (case-insensitive, surrounding whitespace allowed), else None."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    name = text.strip().lower()
    return name if name in ACTIONS else None


# ---------------------------------------------------------------- state
@dataclass
class Player:
    x: float
    y: float
    fx: float = 1.0  # facing, a unit vector
    fy: float = 0.0
    lane: float = GOAL_Y  # home players: the y of their forward runs
    keeper: bool = False


@dataclass
class GameState:
    """Everything the game needs; `to_dict` / `from_dict` give a JSON-safe form for a Sample's metadata."""

    scenario: str
    seed: int
    home: list[Player]
    away: list[Player]
    bx: float
    by: float
    bvx: float = 0.0
    bvy: float = 0.0
    owner: str = "home"  # "home", "away" or "" (loose)
    owner_idx: int = 0
    frame: int = 0
    kick: str = ""  # kind of the last kick while the ball is loose: short_pass, long_pass, shot
    kicker: int = -1
    kick_x: float = 0.0
    kick_frame: int = 0
    target: int = -1  # pass receiver
    air: float = 0.0  # metres of lofted flight left
    pressure: int = 0  # frames in a row with an opponent within TACKLE_RADIUS of the carried ball
    done: bool = False
    result: str = ""  # "", "goal", "possession_lost"

    _FLOATS = ("bx", "by", "bvx", "bvy", "kick_x", "air")
    _INTS = ("seed", "owner_idx", "frame", "kicker", "kick_frame", "target", "pressure")

    def to_dict(self) -> dict:
        d = {"scenario": self.scenario, "owner": self.owner, "kick": self.kick, "done": self.done,
             "result": self.result}
        d.update({k: float(getattr(self, k)) for k in self._FLOATS})
        d.update({k: int(getattr(self, k)) for k in self._INTS})
        d["home"] = [[p.x, p.y, p.fx, p.fy, p.lane] for p in self.home]
        d["away"] = [[p.x, p.y, p.fx, p.fy, 1.0 if p.keeper else 0.0] for p in self.away]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GameState":
        """Inverse of to_dict; raises ValueError on anything malformed (metadata is checked, not trusted)."""
        if not isinstance(d, dict):
            raise ValueError("state must be a dict")
        try:
            kw = {k: _finite(d[k]) for k in cls._FLOATS}
            kw.update({k: _int(d[k]) for k in cls._INTS})
            home = [_row(r) for r in _rows(d["home"])]
            away = [_row(r) for r in _rows(d["away"])]
            scenario, owner, kick, result = (str(d[k])[:64] for k in ("scenario", "owner", "kick", "result"))
            done = d["done"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"bad football state: {e!r}") from None
        if not isinstance(done, bool):
            raise ValueError("done must be a bool")
        if not home or not away:
            raise ValueError("each team needs at least one player")
        if owner not in ("home", "away", "") or kick not in ("",) + KICKS or result not in ("", "goal",
                                                                                          "possession_lost"):
            raise ValueError("bad owner, kick or result")
        if owner and not 0 <= kw["owner_idx"] < len(home if owner == "home" else away):
            raise ValueError("owner_idx out of range")
        if owner == "away" and not done:
            raise ValueError("the opponents only have the ball in a finished state")
        if kick and kick != "shot" and kw["target"] >= len(home):
            raise ValueError("target out of range")
        state = cls(scenario=scenario, owner=owner, kick=kick, done=done, result=result,
                    home=[Player(x, y, fx, fy, lane) for x, y, fx, fy, lane in home],
                    away=[Player(x, y, fx, fy, keeper=flag > 0.5) for x, y, fx, fy, flag in away], **kw)
        return state

    def copy(self) -> "GameState":
        return copy.deepcopy(self)


def _finite(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > 1e6:
        raise ValueError(f"not a finite number: {v!r}")
    return float(v)


def _int(v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or abs(v) > 2**62:
        raise ValueError(f"not an int: {v!r}")
    return v


def _rows(v) -> list:
    if not isinstance(v, list) or len(v) > 11:
        raise ValueError("a team is a list of at most 11 players")
    return v


def _row(r) -> list[float]:
    if not isinstance(r, list) or len(r) != 5:
        raise ValueError("a player is [x, y, fx, fy, extra]")
    return [_finite(v) for v in r]


def active_index(state: GameState) -> int:
    """Index (in state.home) of the controlled player: the carrier, else the home player closest to the ball."""
    if state.owner == "home":
        return state.owner_idx
    return min(range(len(state.home)),
               key=lambda i: (math.hypot(state.home[i].x - state.bx, state.home[i].y - state.by), i))


# ---------------------------------------------------------------- scenarios
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


# ---------------------------------------------------------------- geometry helpers
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


# ---------------------------------------------------------------- scripted players
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
    home, away = {}, {}
    loose = s.owner == ""
    moving = loose and math.hypot(s.bvx, s.bvy) > BALL_REST_SPEED
    for i, p in enumerate(s.home):
        if i == active:
            continue
        if moving and s.kick in ("short_pass", "long_pass") and i == s.target:
            spot = _intercept(s, p.x, p.y, RUN_SPEED, CONTROL_RADIUS, False) or _rest_point(s)
            home[i] = (*spot, RUN_SPEED)
        else:
            home[i] = (*_run_spot(s, p), TEAMMATE_SPEED)

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
    # Markers: each free defender (by index) takes the nearest unmarked attacker, goal-side; the rest hold a line.
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
    return home, away


def _in_box(x: float, y: float) -> bool:
    return x >= PITCH_LENGTH - BOX_DEPTH and abs(y - GOAL_Y) <= BOX_HALF_WIDTH


# ---------------------------------------------------------------- kicks
def _is_open(s: GameState, p: Player) -> bool:
    return all(math.hypot(o.x - p.x, o.y - p.y) > OPEN_RADIUS for o in s.away)


def _pass_receiver(s: GameState, kicker: int, kind: str) -> int | None:
    me = s.home[kicker]
    mates = [i for i in range(len(s.home)) if i != kicker]
    if not mates:
        return None

    def dist(i):
        return math.hypot(s.home[i].x - me.x, s.home[i].y - me.y)

    if kind == "short_pass":
        cands = [i for i in mates if s.home[i].x >= me.x - SHORT_PASS_BACK and dist(i) <= SHORT_PASS_RANGE]
        pool = [i for i in cands if _is_open(s, s.home[i])] or cands or mates
        return min(pool, key=lambda i: (dist(i), i))
    cands = [i for i in mates if s.home[i].x > me.x]
    pool = [i for i in cands if _is_open(s, s.home[i])] or cands or mates
    return max(pool, key=lambda i: (s.home[i].x, -i))


def _kick(s: GameState, kicker: int, kind: str, ev: dict) -> None:
    me = s.home[kicker]
    if kind == "shot":
        side = 1.0 if me.y < GOAL_Y else -1.0  # far post
        dist = math.hypot(PITCH_LENGTH - s.bx, GOAL_Y - s.by)
        err = SHOT_ERROR_PER_M * max(0.0, dist - SHOT_ERROR_FREE_M) * (2.0 * _hash01(s.seed, s.frame, kicker) - 1.0)
        ax, ay = PITCH_LENGTH, GOAL_Y + side * (GOAL_HALF_WIDTH - SHOT_AIM_INSET + err)
        speed, air, target = SHOT_SPEED, 0.0, -1
        reach = speed * DT / (1.0 - BALL_DECAY)
        ev["shot"] = True
        ev["shot_on_target"] = (abs(ay - GOAL_Y) < GOAL_HALF_WIDTH and s.bx < PITCH_LENGTH
                                and math.hypot(ax - s.bx, ay - s.by) < reach)
    else:
        long = kind == "long_pass"
        recv = _pass_receiver(s, kicker, kind)
        if recv is None:
            d = BLIND_LONG_PASS if long else BLIND_SHORT_PASS
            ax, ay, target = s.bx + me.fx * d, s.by + me.fy * d, -1
        else:
            r = s.home[recv]
            ax = min(r.x + (LONG_LEAD if long else SHORT_LEAD), PITCH_LENGTH - 1.0)
            ay, target = r.y, recv
        d = math.hypot(ax - s.bx, ay - s.by)
        arrive, cap = (LONG_ARRIVAL_SPEED, LONG_MAX_SPEED) if long else (SHORT_ARRIVAL_SPEED, SHORT_MAX_SPEED)
        speed = min(arrive + _K_EFF * d, cap)
        air = LOFT_FRACTION * d if long else 0.0
        ev["pass_target"] = target
    ux, uy = _unit(ax - s.bx, ay - s.by)
    if ux == 0.0 and uy == 0.0:
        ux, uy = me.fx, me.fy
    me.fx, me.fy = ux, uy
    s.bvx, s.bvy = ux * speed, uy * speed
    s.owner, s.owner_idx = "", -1
    s.kick, s.kicker, s.kick_x, s.kick_frame, s.target, s.air = kind, kicker, s.bx, s.frame, target, air
    s.pressure = 0


# ---------------------------------------------------------------- simulation
def _lose(s: GameState, ev: dict, reason: str) -> None:
    s.done, s.result = True, "possession_lost"
    ev["possession_lost"], ev["loss_reason"] = True, reason


def _leave_pitch(s: GameState, x: float, y: float, ev: dict) -> None:
    """The ball crossed the pitch boundary at (x, y): goal between the posts, else out."""
    s.bvx = s.bvy = 0.0
    s.owner, s.owner_idx, s.air = "", -1, 0.0
    if x >= PITCH_LENGTH - 1e-9 and abs(y - GOAL_Y) < GOAL_HALF_WIDTH:
        s.bx, s.by = PITCH_LENGTH + 1.0, y  # in the net
        s.done, s.result = True, "goal"
        ev["goal"] = True
    else:
        s.bx, s.by = _clamp(x, 0.0, PITCH_LENGTH), _clamp(y, 0.0, PITCH_WIDTH)
        _lose(s, ev, "out")


def _step(s: GameState, active: int, move: tuple[float, float, float], close_control: bool, ev: dict) -> None:
    home_plan, away_plan = _plans(s, active)
    # Players move.
    for i, p in enumerate(s.home):
        if i == active:
            vx, vy, speed = move
            if speed > 0.0:
                p.fx, p.fy = vx, vy
                p.x = _clamp(p.x + vx * speed * DT, 0.0, PITCH_LENGTH)
                p.y = _clamp(p.y + vy * speed * DT, 0.0, PITCH_WIDTH)
        else:
            _toward(p, *home_plan[i])
    for i, p in enumerate(s.away):
        _toward(p, *away_plan[i])

    if s.owner == "home":
        c = s.home[s.owner_idx]
        x, y = c.x + c.fx * BALL_OFFSET, c.y + c.fy * BALL_OFFSET
        s.bvx = s.bvy = 0.0
        if not _in_pitch(x, y):
            t = _segment_exit(s.bx, s.by, x, y)
            t = 1.0 if t is None else t
            _leave_pitch(s, s.bx + t * (x - s.bx), s.by + t * (y - s.by), ev)
            return
        s.bx, s.by = x, y
        need = DRIBBLE_TACKLE_FRAMES if close_control and s.owner_idx == active else TACKLE_FRAMES
        takers = [(math.hypot(o.x - x, o.y - y), i) for i, o in enumerate(s.away)]
        takers = [t for t in takers if t[0] <= TACKLE_RADIUS]
        s.pressure = s.pressure + 1 if takers else 0
        if s.pressure >= need:
            i = min(takers)[1]
            s.owner, s.owner_idx, s.bvx, s.bvy = "away", i, 0.0, 0.0
            _lose(s, ev, "keeper" if s.away[i].keeper else "tackle")
        return
    if s.owner:
        return

    # Loose ball: who touches it first along this frame's path, unless it leaves the pitch before that.
    speed = math.hypot(s.bvx, s.bvy)
    x0, y0 = s.bx, s.by
    x1, y1 = x0 + s.bvx * DT, y0 + s.bvy * DT
    in_air = s.air > 0.0
    cooling = s.kick != "" and s.frame - s.kick_frame < KICK_COOLDOWN
    cands = []
    for team, players in ((0, s.home), (1, s.away)):
        for i, p in enumerate(players):
            if team == 0 and cooling and i == s.kicker:
                continue
            if team == 1 and p.keeper:
                reach, vmax = (KEEPER_REACH if speed <= KEEPER_CATCH_SPEED else KEEPER_BODY_REACH), math.inf
            elif in_air:
                continue
            else:
                reach, vmax = CONTROL_RADIUS, CONTROL_SPEED
            if speed > vmax:
                continue
            t, d = _seg_closest(x0, y0, x1, y1, p.x, p.y)
            if d <= reach:
                cands.append((t, d, team, i))
    exit_t = _segment_exit(x0, y0, x1, y1)
    cands = [c for c in cands if exit_t is None or c[0] <= exit_t]
    if cands:
        t, _, team, i = min(cands)
        p = (s.home if team == 0 else s.away)[i]
        s.bvx = s.bvy = 0.0
        s.air = 0.0
        if team == 0:
            s.owner, s.owner_idx, s.pressure = "home", i, 0
            s.bx, s.by = p.x + p.fx * BALL_OFFSET, p.y + p.fy * BALL_OFFSET
            if not _in_pitch(s.bx, s.by):
                s.bx, s.by = _clamp(s.bx, 0.0, PITCH_LENGTH), _clamp(s.by, 0.0, PITCH_WIDTH)
            if s.kick in ("short_pass", "long_pass") and i != s.kicker:
                ev["pass_completed"] = True
                ev["pass_receiver"] = i
                ev["pass_forward"] = s.bx > s.kick_x
            s.kick, s.kicker, s.target = "", -1, -1
        else:
            s.owner, s.owner_idx = "away", i
            s.bx, s.by = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            _lose(s, ev, "keeper" if p.keeper else "interception")
        return
    if exit_t is not None:
        _leave_pitch(s, x0 + exit_t * (x1 - x0), y0 + exit_t * (y1 - y0), ev)
        return
    s.bx, s.by = x1, y1
    s.air = max(0.0, s.air - speed * DT)
    s.bvx, s.bvy = s.bvx * BALL_DECAY, s.bvy * BALL_DECAY
    if math.hypot(s.bvx, s.bvy) < BALL_REST_SPEED:
        s.bvx = s.bvy = 0.0
        s.air = 0.0


def _new_events() -> dict:
    return {"goal": False, "possession_lost": False, "loss_reason": "", "pass_completed": False,
            "pass_forward": False, "pass_target": -1, "pass_receiver": -1, "shot": False,
            "shot_on_target": False, "opponents_passed": 0, "ball_progress": 0.0, "frames": 0}


def simulate(state: GameState, action: str, frames: int = FRAMES_PER_ACTION,
             max_extra: int = MAX_EXTRA_FRAMES) -> tuple[GameState, dict]:
    """Apply `action` to the active player and advance `frames` frames; returns (new state, events).

    The input state is not changed. A kick ("short_pass", "long_pass", "shot") needs the active player to have
    the ball, else it is "idle"; after kicking, the kicker stands. A ball still loose and rolling after `frames`
    is followed for up to `max_extra` more frames. Events:

    goal, possession_lost (bool); loss_reason: "interception", "tackle", "out" or "keeper" (a catch or a
    tackle by the keeper); pass_completed (a teammate other than the passer controls a pass), pass_forward
    (he controls it at a higher x than it was kicked from), pass_target / pass_receiver (indices or -1);
    shot, shot_on_target (at the kick: the aimed line crosses the goal line between the posts and the ball
    rolls that far); opponents_passed: outfield opponents with x greater than the ball's at the start and less
    at the end, 0 when possession was lost; ball_progress: (end x - start x) / PITCH_LENGTH, x clamped to the
    pitch; frames: frames simulated.
    """
    act = normalize_action(action)
    if act is None:
        raise ValueError(f"unknown football action {action!r}; known: {list(ACTIONS)}")
    s = state.copy()
    ev = _new_events()
    if s.done:
        return s, ev
    x_start = _clamp(s.bx, 0.0, PITCH_LENGTH)
    ahead = [i for i, o in enumerate(s.away) if not o.keeper and o.x > s.bx]
    active = active_index(s)
    me = s.home[active]
    close_control = False
    move = (0.0, 0.0, 0.0)
    if act in KICKS:
        if s.owner == "home" and s.owner_idx == active:
            _kick(s, active, act, ev)
    elif act in DIRECTIONS:
        move = (*DIRECTIONS[act], RUN_SPEED)
    elif act == "sprint":
        move = (me.fx, me.fy, SPRINT_SPEED)
    elif act == "dribble":
        move, close_control = (me.fx, me.fy, DRIBBLE_SPEED), True
    n = 0
    while not s.done and n < frames + max_extra:
        if n >= frames and not (s.owner == "" and (s.bvx or s.bvy)):
            break
        _step(s, active, move, close_control, ev)
        s.frame += 1
        n += 1
    ev["frames"] = n
    ev["ball_progress"] = (_clamp(s.bx, 0.0, PITCH_LENGTH) - x_start) / PITCH_LENGTH
    if not ev["possession_lost"]:
        ev["opponents_passed"] = sum(s.away[i].x < s.bx for i in ahead)
    return s, ev


# ---------------------------------------------------------------- rendering
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
