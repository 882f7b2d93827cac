"""Football reward: play the answered action in the game and score what happens.

In the spirit of MageBench's football rules: a shaped reward for one action from a given game state
(`envs.football`). The sample's metadata holds the state (`meta["state"]`, a `GameState.to_dict()`).

1. Format gate, the same as the other domains (`rewards.format.format_reward`): the stripped response is exactly
   `<think>...</think><answer>...</answer>` with one `<think>` and one `<answer>`. The answer must be exactly one
   action name from `envs.football.ACTIONS`, case-insensitive, surrounding whitespace allowed (at most 64
   characters).
   If either check fails, or the state is missing or malformed (fail closed, counted as
   `data/football_bad_state`), every component and the total are 0.
2. Otherwise `simulate(state, action, frames=FRAMES_PER_ACTION)` (1 s of play, a kicked ball followed to its
   outcome) and the total is the sum of:

   | component          | value                                                                           |
   |--------------------|---------------------------------------------------------------------------------|
   | `format`           | +0.5                                                                            |
   | `progress`         | 0.8 x ball_progress = 0.8 x (end x - start x) / 100 (x clamped to the pitch;    |
   |                    | may be negative; counted also when the ball is then lost)                       |
   | `opponents_passed` | +1.0 per outfield opponent that was ahead of the ball (higher x) at the start   |
   |                    | and is behind it at the end; 0 when possession was lost; the keeper does not   |
   |                    | count (beating him is the goal)                                                 |
   | `goal`             | +2.0                                                                            |
   | `possession`       | -1.0 when possession is lost: interception, tackle, ball out, keeper catch      |
   | `pass`             | +0.3 when a pass is completed to a teammate who receives it further forward     |
   |                    | (higher x) than it was kicked from                                              |
   | `shot`             | +0.5 for a shot on target (aimed between the posts, strong enough to get there: |
   |                    | the keeper must deal with it); a goal from a shot gets it too                   |

   The weights of progress (0.8), opponents passed (1.0), goal (2.0) and lost possession (-1.0) are MageBench's.

Worked examples: a goal with a shot from x = 88 is 0.5 + 0.8 x 0.12 + 2.0 + 0.5 = 3.096; a short pass cut out
5 m ahead is 0.5 + 0.8 x 0.05 - 1.0 = -0.46; one second running "right" with the ball, nobody passed,
0.5 + 0.8 x 0.06 = 0.548.

Parsing is linear in the response length (tag counts, one regex with a single place to stop, two finds).
"""
from __future__ import annotations

import json

from envs.football import ACTIONS, FRAMES_PER_ACTION, GameState, normalize_action, simulate

from .base import RewardOutput, _NoPool
from .format import FORMAT_SCORE, format_reward

__all__ = ["football_reward", "FootballReward", "extract_action", "COMPONENTS", "PROGRESS_WEIGHT",
           "OPPONENT_PASSED_REWARD", "GOAL_REWARD", "POSSESSION_LOST_PENALTY", "PASS_FORWARD_REWARD",
           "SHOT_ON_TARGET_REWARD", "FORMAT_SCORE", "ACTIONS"]

PROGRESS_WEIGHT = 0.8
OPPONENT_PASSED_REWARD = 1.0
GOAL_REWARD = 2.0
POSSESSION_LOST_PENALTY = -1.0
PASS_FORWARD_REWARD = 0.3
SHOT_ON_TARGET_REWARD = 0.5
MAX_ANSWER_CHARS = 64

COMPONENTS = ("format", "progress", "opponents_passed", "goal", "possession", "pass", "shot", "total")


def extract_action(response: str) -> str | None:
    """The action in a well-formatted response, else None (format gate failed or not one valid action)."""
    if not isinstance(response, str) or format_reward(response) != FORMAT_SCORE:
        return None
    text = response.strip()
    start = text.find("<answer>") + len("<answer>")
    end = text.find("</answer>", start)
    if end - start > MAX_ANSWER_CHARS:
        return None
    return normalize_action(text[start:end])


def _zeros() -> dict:
    return {k: 0.0 for k in COMPONENTS}


def _components(events: dict) -> dict:
    c = _zeros()
    c["format"] = FORMAT_SCORE
    c["progress"] = PROGRESS_WEIGHT * events["ball_progress"]
    c["opponents_passed"] = OPPONENT_PASSED_REWARD * events["opponents_passed"]
    c["goal"] = GOAL_REWARD if events["goal"] else 0.0
    c["possession"] = POSSESSION_LOST_PENALTY if events["possession_lost"] else 0.0
    c["pass"] = PASS_FORWARD_REWARD if events["pass_completed"] and events["pass_forward"] else 0.0
    c["shot"] = SHOT_ON_TARGET_REWARD if events["shot_on_target"] else 0.0
    c["total"] = sum(c[k] for k in COMPONENTS if k != "total")
    return c


def _state_of(state_dict) -> GameState | None:
    try:
        return GameState.from_dict(state_dict)
    except (ValueError, TypeError):
        return None


def _score(response: str, state_dict, frames: int, cache: dict | None = None) -> tuple[dict, str, dict | None]:
    """(components, status, events); status is "ok", "format_fail", "invalid_action" or "bad_state"."""
    if not isinstance(response, str) or format_reward(response) != FORMAT_SCORE:
        return _zeros(), "format_fail", None
    action = extract_action(response)
    if action is None:
        return _zeros(), "invalid_action", None
    key = None
    if cache is not None:
        try:
            key = (json.dumps(state_dict, sort_keys=True), action)
        except (TypeError, ValueError):
            key = None
        if key is not None and key in cache:
            return cache[key]
    state = _state_of(state_dict)
    if state is None:
        out = (_zeros(), "bad_state", None)
    else:
        _, events = simulate(state, action, frames=frames)
        out = (_components(events), "ok", events)
    if key is not None:
        cache[key] = out
    return out


def football_reward(response: str, state_dict: dict, frames: int = FRAMES_PER_ACTION) -> dict:
    """Reward components of one response (see the module docstring), including "total"."""
    return dict(_score(response, state_dict, frames)[0])


class FootballReward(_NoPool):
    """Name "football": format gate, then the simulated outcome of the answered action (module docstring).

    metas[i]["state"] is the game state dict; golds are not used. `counts` has football/checked,
    football/format_fail, football/invalid_action, data/football_bad_state and, among the checked samples,
    football/goal, football/possession_lost, football/pass_completed, football/shot_on_target.
    """

    def __init__(self, frames: int = FRAMES_PER_ACTION, **_ignored_pool_options):
        self.frames = int(frames)

    def __call__(self, responses: list[str], golds: list[str], metas: list[dict] | None = None):
        if len(responses) != len(golds) or (metas is not None and len(metas) != len(responses)):
            raise ValueError("responses, golds and metas must have the same length")
        components = {k: [] for k in COMPONENTS}
        counts = {"football/checked": 0, "football/format_fail": 0, "football/invalid_action": 0,
                  "data/football_bad_state": 0, "football/goal": 0, "football/possession_lost": 0,
                  "football/pass_completed": 0, "football/shot_on_target": 0}
        cache: dict = {}  # a group's samples share one state: simulate each (state, action) once
        for i, response in enumerate(responses):
            meta = metas[i] if metas is not None else None
            state = meta.get("state") if isinstance(meta, dict) else None
            comps, status, events = _score(response, state, self.frames, cache)
            for k in COMPONENTS:
                components[k].append(comps[k])
            counts["football/checked" if status == "ok" else
                   "data/football_bad_state" if status == "bad_state" else f"football/{status}"] += 1
            if events is not None:
                counts["football/goal"] += events["goal"]
                counts["football/possession_lost"] += events["possession_lost"]
                counts["football/pass_completed"] += events["pass_completed"]
                counts["football/shot_on_target"] += events["shot_on_target"]
        return RewardOutput(components, counts)
