"""Football simulation: kicks, one frame of play (`_step`) and `simulate`, which plays one action."""
from __future__ import annotations

import math

from .actions import ACTIONS, DIRECTIONS, KICKS, normalize_action
from .geometry import _clamp, _hash01, _in_pitch, _seg_closest, _segment_exit, _toward, _unit
from .players import _plans
from .state import (
    _K_EFF, BALL_DECAY, BALL_OFFSET, BALL_REST_SPEED, BLIND_LONG_PASS, BLIND_SHORT_PASS, CONTROL_RADIUS,
    CONTROL_SPEED, DRIBBLE_SPEED, DRIBBLE_TACKLE_FRAMES, DT, FRAMES_PER_ACTION, GOAL_HALF_WIDTH, GOAL_Y,
    KEEPER_BODY_REACH, KEEPER_CATCH_SPEED, KEEPER_REACH, KICK_COOLDOWN, LOFT_FRACTION, LONG_ARRIVAL_SPEED, LONG_LEAD,
    LONG_MAX_SPEED, MAX_EXTRA_FRAMES, OPEN_RADIUS, PITCH_LENGTH, PITCH_WIDTH, RUN_SPEED, SHORT_ARRIVAL_SPEED,
    SHORT_LEAD, SHORT_MAX_SPEED, SHORT_PASS_BACK, SHORT_PASS_RANGE, SHOT_AIM_INSET, SHOT_ERROR_FREE_M,
    SHOT_ERROR_PER_M, SHOT_SPEED, SPRINT_SPEED, TACKLE_FRAMES, TACKLE_RADIUS, GameState, Player, active_index,
)


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


def _move_players(s: GameState, active: int, move: tuple[float, float, float]) -> None:
    """The active player moves by `move` (unit direction, speed); everyone else toward this frame's plan."""
    home_plan, away_plan = _plans(s, active)
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


def _carry(s: GameState, active: int, close_control: bool, ev: dict) -> None:
    """The home carrier's ball follows him (out of the pitch if he runs it out); opponents close to it tackle."""
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


def _touches(s: GameState, speed: float, x0: float, y0: float, x1: float, y1: float) -> list[tuple]:
    """(t along the path, distance, team 0 home / 1 away, index) of every player who can control the loose
    ball on its path p0-p1 this frame."""
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
    return cands


def _control(s: GameState, team: int, i: int, x: float, y: float, ev: dict) -> None:
    """Player i of `team` (0 home, 1 away) controls the loose ball, touched at (x, y)."""
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
        s.bx, s.by = x, y
        _lose(s, ev, "keeper" if p.keeper else "interception")


def _roll(s: GameState, ev: dict) -> None:
    """Loose ball: who touches it first along this frame's path, unless it leaves the pitch before that; else it
    rolls on and slows down."""
    speed = math.hypot(s.bvx, s.bvy)
    x0, y0 = s.bx, s.by
    x1, y1 = x0 + s.bvx * DT, y0 + s.bvy * DT
    cands = _touches(s, speed, x0, y0, x1, y1)
    exit_t = _segment_exit(x0, y0, x1, y1)
    cands = [c for c in cands if exit_t is None or c[0] <= exit_t]
    if cands:
        t, _, team, i = min(cands)
        _control(s, team, i, x0 + t * (x1 - x0), y0 + t * (y1 - y0), ev)
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


def _step(s: GameState, active: int, move: tuple[float, float, float], close_control: bool, ev: dict) -> None:
    """One frame: the players move, then the ball (carried by a home player, or loose)."""
    _move_players(s, active, move)
    if s.owner == "home":
        _carry(s, active, close_control, ev)
    elif not s.owner:
        _roll(s, ev)


def _new_events() -> dict:
    return {"goal": False, "possession_lost": False, "loss_reason": "", "pass_completed": False,
            "pass_forward": False, "pass_target": -1, "pass_receiver": -1, "shot": False,
            "shot_on_target": False, "opponents_passed": 0, "ball_progress": 0.0, "frames": 0}


def _start_action(s: GameState, act: str, active: int, ev: dict) -> tuple[tuple[float, float, float], bool]:
    """Kick now if `act` is a kick and the active player has the ball; returns the active player's move
    (unit direction, speed) for every frame and whether he keeps close control (dribble)."""
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
    return move, close_control


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
    move, close_control = _start_action(s, act, active, ev)
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
