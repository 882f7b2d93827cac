"""Football game state: pitch, time, ball and player constants, and the state dataclasses."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from .actions import KICKS

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

