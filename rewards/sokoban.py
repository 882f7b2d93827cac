"""Sokoban reward, as LMM-R1's Sokoban verifier (openrlhf/models/remote_rm/sokoban_verifier.py) computes it.

    total = env + 0.5 (format) + action_bonus + thinking_bonus,   or 0 when the format gate fails

* format gate: each of `<think>`, `</think>`, `<answer>`, `</answer>` occurs exactly once, in this order, and the
  answer is a comma-separated list whose items, stripped and lowercased, are all in left/right/up/down.
* env: the first 50 actions run in the simulator (gym-sokoban rewards, at most 120 steps), stopping when done or
  when one step's reward exceeds 3; env is the best cumulative reward over all prefixes, starting from 0 (>= 0).
* action_bonus, n = number of actions (all of them, not only the first 50): 0.05 * n for n < 20, else
  1 - 0.2 * ((n - 20) / 30) ** 2; when an action 1- to 5-gram repeats back to back more than 7 times, the bonus
  becomes min(0, bonus - 0.2).
* thinking_bonus: 0.001 per word longer than one character in the stripped `<think>` text, words being the pieces
  of a split on single spaces (as the verifier does: a newline does not separate words), at most 0.2.

Levels that start with a box or the player on a target: never trained or evaluated on, since the generator
(envs/sokoban.py) rejects them, as gym-sokoban's generator (the source of the released levels) never makes them.
On a hand-written one our simulator counts a box that starts on a target as placed (no reward until one moves;
pushing it off costs 1, pushing it back earns 1). The released verifier differs there: its DirectLoadSokobanEnv
rebuilds the level from the saved room_state (floor under boxes and the player, num_boxes = boxes off targets),
so every target that starts covered is lost. Measured with gym-sokoban 0.0.6:
* a box that starts on a target is not counted: pushing it off costs only the step (-0.1); when the player leaves
  the cell a box on target reappears there (a "ghost" that blocks the real box's way back and can itself be
  pushed, creating a box); the level is won once the other boxes cover the remaining targets. The 8-move plan of
  tests/test_sokoban.py's LEVEL_C: env 10.2 here, 10.6 there (a "win" after 4 moves, the box still off);
* a player that starts on a target loses it: the first step earns a spurious +1, and placing the other boxes
  wins. Two boxes, one placed in 4 moves: env 0.6 here, 11.6 there.
(Stock gym-sokoban's reset, which starts the on-target count at 0, would pay a spurious +1 on the first step of
a level with a pre-placed box instead.) On levels with every target uncovered, the two agree step for step.
One deliberate difference from the verifier, only on inputs it handles by accident: tag ORDER is checked (the
verifier only counts the tags; its slicing then reads the wrong spans).
Responses longer than MAX_RESPONSE_CHARS fail the gate (bounded work on untrusted text; no regex is used).
"""
from __future__ import annotations

from envs.sokoban import DELTAS, Level, SokobanEnv
from .base import RewardOutput, _NoPool

__all__ = ["sokoban_reward", "parse_sokoban_response", "action_bonus", "thinking_bonus", "has_repeated_ngram",
           "SokobanReward", "MAX_RESPONSE_CHARS", "MAX_ACTIONS", "MAX_STEPS", "FORMAT_SCORE"]

MAX_RESPONSE_CHARS = 100_000  # longer responses fail the format gate (a 4096-token response is far shorter)
MAX_ACTIONS = 50              # actions executed
MAX_STEPS = 120               # the simulator's step limit (never reached with 50 actions)
STOP_STEP_REWARD = 3.0        # a single step rewarded above this (finishing) stops the run
FORMAT_SCORE = 0.5
THINK_WORD_BONUS, THINK_MAX_WORDS = 0.001, 200
REPEAT_MAX_TIMES, REPEAT_MAX_N, REPEAT_PENALTY = 7, 5, 0.2
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def parse_sokoban_response(response: str | None) -> tuple[str, list[str]] | None:
    """(think text, lowercased actions) when the format gate passes, else None."""
    text = response or ""
    if len(text) > MAX_RESPONSE_CHARS or any(text.count(tag) != 1 for tag in _TAGS):
        return None
    starts = [text.find(tag) for tag in _TAGS]
    if not starts[0] < starts[1] < starts[2] < starts[3]:
        return None
    think = text[starts[0] + len(_TAGS[0]):starts[1]]
    answer = text[starts[2] + len(_TAGS[2]):starts[3]]
    actions = [a.strip().lower() for a in answer.split(",")]
    if not all(a in DELTAS for a in actions):
        return None
    return think, actions


def has_repeated_ngram(words: list[str], max_times: int = REPEAT_MAX_TIMES, max_n: int = REPEAT_MAX_N) -> bool:
    """True when some k-gram (k <= max_n) occurs more than max_times times back to back.

    The verifier's check_repeated_substrings, step for step: for each k it remembers, per k-gram, where it last
    started and its run count; the run grows only when the previous occurrence started exactly k words earlier.
    (Its word regex on the answer text yields exactly the action list once the gate has passed.) O(len * max_n).
    """
    last: list[dict] = [{} for _ in range(max_n + 1)]
    for i in range(len(words)):
        for k in range(1, max_n + 1):
            s = i - k + 1
            if s < 0:
                continue
            gram = tuple(words[s:i + 1])
            prev = last[k].get(gram)
            count = prev[1] + 1 if prev is not None and prev[0] == s - k else 1
            last[k][gram] = (s, count)
            if count > max_times:
                return True
    return False


def action_bonus(actions: list[str]) -> float:
    n = len(actions)
    bonus = 0.0
    if n < 20:
        bonus += n * 0.05
    else:
        bonus += 20 * 0.05 - ((n - 20) / 30) ** 2 * 0.2
    if has_repeated_ngram(actions):
        bonus = min(0.0, bonus - REPEAT_PENALTY)
    return bonus


def thinking_bonus(think: str) -> float:
    words = [w for w in think.strip().split(" ") if len(w) > 1]
    return min(len(words), THINK_MAX_WORDS) * THINK_WORD_BONUS


def _run(level: Level, actions: list[str]) -> tuple[float, bool]:
    """(best cumulative reward over prefixes, from 0; all boxes placed at the end)."""
    env = SokobanEnv(level, max_steps=MAX_STEPS)
    total = best = 0.0
    for action in actions[:MAX_ACTIONS]:
        reward, done = env.step(action)
        total += reward
        if total > best:
            best = total
        if done or reward > STOP_STEP_REWARD:
            break
    return best, env.solved


def sokoban_reward(response: str, level: Level | dict) -> dict:
    """{"format", "env", "action_bonus", "thinking_bonus", "total"} (floats), "success" (bool: all boxes placed)
    and "num_actions" (int, 0 when the gate fails). Everything is 0 when the format gate fails."""
    if not isinstance(level, Level):
        level = Level.from_dict(level)
    parsed = parse_sokoban_response(response)
    if parsed is None:
        return {"format": 0.0, "env": 0.0, "action_bonus": 0.0, "thinking_bonus": 0.0, "total": 0.0,
                "success": False, "num_actions": 0}
    think, actions = parsed
    env, success = _run(level, actions)
    act, thk = action_bonus(actions), thinking_bonus(think)
    return {"format": FORMAT_SCORE, "env": env, "action_bonus": act, "thinking_bonus": thk,
            "total": env + FORMAT_SCORE + act + thk,  # the verifier's order of additions
            "success": success, "num_actions": len(actions)}


class SokobanReward(_NoPool):
    """Name to register: "sokoban". metas[i]["level"] is the level (a Level.to_dict() dict, or a Level).

    components: format, env, action_bonus, thinking_bonus, solved (0/1, so reward/solved is the success rate),
    total. counts: sokoban/solved, sokoban/format_fail. Pool options (workers, timeout, ...) are ignored: the work
    per response is bounded and small (at most 50 simulator steps).
    """

    COMPONENTS = ("format", "env", "action_bonus", "thinking_bonus", "solved", "total")

    def __init__(self, **_pool_options):
        pass

    def __call__(self, responses: list[str], golds: list[str], metas: list[dict] | None = None):
        if metas is None or len(responses) != len(golds) or len(metas) != len(responses):
            raise ValueError("responses, golds and metas must have the same length (metas carry the levels)")
        levels: dict[int, Level] = {}  # a level dict is usually shared by a group of samples
        comps: dict[str, list[float]] = {k: [] for k in self.COMPONENTS}
        counts = {"sokoban/solved": 0, "sokoban/format_fail": 0}
        for response, meta in zip(responses, metas):
            raw = meta["level"]
            level = levels.get(id(raw))
            if level is None:
                level = levels[id(raw)] = raw if isinstance(raw, Level) else Level.from_dict(raw)
            out = sokoban_reward(response, level)
            for k in ("format", "env", "action_bonus", "thinking_bonus", "total"):
                comps[k].append(float(out[k]))
            comps["solved"].append(float(out["success"]))
            counts["sokoban/solved"] += out["success"]
            counts["sokoban/format_fail"] += out["format"] == 0.0
        return RewardOutput(comps, counts)
