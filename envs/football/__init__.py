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

Layout: `state` (constants, `Player`, `GameState`, `active_index`), `actions` (action names, `PROMPT`,
`normalize_action`), `scenarios` (`make_scenario`), `geometry` (small pitch-geometry helpers), `players` (the
scripted teammates, opponents and keeper), `sim` (kicks and `simulate`), `drawing` (`render`, `pitch_to_pixel`).
"""
from .actions import ACTIONS, DIRECTIONS, PROMPT, normalize_action
from .drawing import ACTIVE_COLOR, AWAY_COLOR, BALL_COLOR, HOME_COLOR, KEEPER_COLOR, pitch_to_pixel, render
from .scenarios import SCENARIOS, make_scenario
from .sim import simulate
from .state import (
    DT, FRAMES_PER_ACTION, GOAL_HALF_WIDTH, GOAL_Y, MAX_EXTRA_FRAMES, PITCH_LENGTH, PITCH_WIDTH, GameState, Player,
    active_index,
)

__all__ = [
    "ACTIONS", "DIRECTIONS", "SCENARIOS", "PROMPT", "Player", "GameState", "make_scenario", "simulate", "render",
    "active_index", "normalize_action", "pitch_to_pixel", "HOME_COLOR", "AWAY_COLOR", "KEEPER_COLOR",
    "ACTIVE_COLOR", "BALL_COLOR", "PITCH_LENGTH", "PITCH_WIDTH", "GOAL_Y", "GOAL_HALF_WIDTH", "DT",
    "FRAMES_PER_ACTION", "MAX_EXTRA_FRAMES",
]
