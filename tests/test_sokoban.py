"""Tests for envs/sokoban.py (levels, generator, solver, simulator, renderer) and rewards/sokoban.py.

Reward totals are computed by hand in the comments: total = env + 0.5 + action_bonus + thinking_bonus.
"""
import io
import json
import time

import numpy as np
import pytest

from envs.sokoban import (
    ACTIONS, DELTAS, PROMPT, Level, SokobanEnv, generate_level, generate_levels, render, solve,
)
from rewards.sokoban import (
    MAX_RESPONSE_CHARS, SokobanReward, action_bonus, has_repeated_ngram, sokoban_reward, thinking_bonus,
)

# Level A: one box, solved by pushing it right twice. Player (2,1), box (2,2), target (2,4).
LEVEL_A = Level.from_text(
    "######\n"
    "#    #\n"
    "#@$ .#\n"
    "#    #\n"
    "######")
# Level B: two boxes; box (2,2) can be pushed onto target (2,3) and then off it again.
LEVEL_B = Level.from_text(
    "########\n"
    "#      #\n"
    "#@$.   #\n"
    "#    $.#\n"
    "#      #\n"
    "########")

# Level C: box (3,2) starts on its target; box (3,3) goes to target (3,4), blocked by the first box.
LEVEL_C = Level.from_text(
    "#######\n"
    "#     #\n"
    "#     #\n"
    "#@*$. #\n"
    "#     #\n"
    "#######")

THINK = "I push it"  # words longer than one character: "push", "it" -> thinking bonus 2 * 0.001 = 0.002
# A 6-action walk in level A that returns the player to (2,1) without touching the box:
# up (1,1), right (1,2), left (1,1), down (2,1), down (3,1), up (2,1). Period 6, so no 1..5-gram repeats.
CYCLE = ["up", "right", "left", "down", "down", "up"]


def resp(actions, think=THINK) -> str:
    answer = actions if isinstance(actions, str) else ", ".join(actions)
    return f"<think>{think}</think><answer>{answer}</answer>"


def check(out, env, act, think, total, success=False):
    assert out["format"] == 0.5
    assert out["env"] == pytest.approx(env, abs=1e-9)
    assert out["action_bonus"] == pytest.approx(act, abs=1e-9)
    assert out["thinking_bonus"] == pytest.approx(think, abs=1e-9)
    assert out["total"] == pytest.approx(total, abs=1e-9)
    assert out["success"] is success


# ---------------------------------------------------------------- rewards for hand-written plans

def test_solving_plan():
    # right: box (2,2)->(2,3): -0.1, cumulative -0.1
    # right: box (2,3)->(2,4) on the target, all placed: -0.1 + 1 + 10 = 10.9, cumulative 10.8
    # env = best prefix = 10.8 (= 10 + 1 - 0.1 * 2); action bonus 2 * 0.05 = 0.1
    # total = 10.8 + 0.5 + 0.1 + 0.002 = 11.402
    check(sokoban_reward(resp(["right", "right"]), LEVEL_A), 10.8, 0.1, 0.002, 11.402, success=True)
    # The run stops when done: the two lefts are not played, but they count for the bonus (n = 4 -> 0.2).
    # total = 10.8 + 0.5 + 0.2 + 0.002 = 11.502
    check(sokoban_reward(resp(["right", "right", "left", "left"]), LEVEL_A.to_dict()),
          10.8, 0.2, 0.002, 11.502, success=True)


def test_push_on_and_off_target():
    # right: box onto target (2,3): -0.1 + 1 = 0.9, cumulative 0.9  <- best
    # right: box off the target to (2,4): -0.1 - 1 = -1.1, cumulative -0.2
    # left:  player walks back: -0.1, cumulative -0.3
    # env = 0.9; action bonus 3 * 0.05 = 0.15; total = 0.9 + 0.5 + 0.15 + 0.002 = 1.552
    check(sokoban_reward(resp(["right", "right", "left"]), LEVEL_B), 0.9, 0.15, 0.002, 1.552)


def test_box_starting_on_a_target():
    # Hand-written only (the generator never makes such a level): the on-target count starts at 1, so no reward
    # until a box changes status: no +1 on the first step. (Neither stock gym-sokoban, whose reset starts the count
    # at 0, nor the released verifier, which loses a covered target, does this; see rewards/sokoban.py.)
    # down -0.1 (-0.1); right -0.1 (-0.2); up: box (3,2) off its target to (2,2): -0.1 - 1 = -1.1 (-1.3);
    # right: box (3,3) onto (3,4): -0.1 + 1 = 0.9 (-0.4); up, up, left: -0.1 each (-0.7);
    # down: box (2,2) back onto (3,2), all placed: -0.1 + 1 + 10 = 10.9 (10.2).
    # env = 10.2 = 10 + (1 + 1 - 1) - 0.1 * 8; bonus 8 * 0.05 = 0.4; total = 10.2 + 0.5 + 0.4 + 0.002 = 11.102
    plan = ["down", "right", "up", "right", "up", "up", "left", "down"]
    check(sokoban_reward(resp(plan), LEVEL_C), 10.2, 0.4, 0.002, 11.102, success=True)


# Level D: box (2,2) starts on its target; box (2,5) next to target (2,6).
LEVEL_D = Level.from_text(
    "########\n"
    "#      #\n"
    "#@*  $.#\n"
    "#      #\n"
    "########")


def test_pre_placed_box_counts_as_placed_from_the_start():
    env = SokobanEnv(LEVEL_D)
    assert env.boxes_on_target == 1
    assert env.step("up") == (pytest.approx(-0.1), False)  # first step, nothing changes: -0.1, no spurious +1
    env = SokobanEnv(LEVEL_D)
    # right: the pre-placed box off its target to (2,3): -0.1 - 1 = -1.1; up, right, right, down: -0.1 each,
    # player at (2,4); left: the box back onto (2,2): -0.1 + 1 = 0.9 (one of two boxes placed: not done).
    got = [env.step(a) for a in ("right", "up", "right", "right", "down", "left")]
    assert [r for r, _ in got] == pytest.approx([-1.1, -0.1, -0.1, -0.1, -0.1, 0.9])
    assert not any(done for _, done in got) and env.boxes_on_target == 1
    # Through the reward: cumulative -1.1, -1.2, -1.3, -1.4, -1.5, -0.6, so env = 0 (the empty prefix);
    # bonus 6 * 0.05 = 0.3; total = 0 + 0.5 + 0.3 + 0.002 = 0.802
    check(sokoban_reward(resp(["right", "up", "right", "right", "down", "left"]), LEVEL_D), 0.0, 0.3, 0.002, 0.802)


def test_walking_into_a_wall():
    # up: (2,1)->(1,1) -0.1; up: wall at (0,1), no move, -0.1; up: again -0.1. Cumulative -0.1, -0.2, -0.3.
    # env = best prefix = 0 (the empty prefix); bonus 3 * 0.05 = 0.15; total = 0 + 0.5 + 0.15 + 0.002 = 0.652
    check(sokoban_reward(resp(["up", "up", "up"]), LEVEL_A), 0.0, 0.15, 0.002, 0.652)


def test_more_than_50_actions_are_cut():
    # 50 actions: 8 cycles (48 steps, -0.1 each, cumulative -4.8), right pushes the box to (2,3) (-4.9),
    # right puts it on the target (+10.9): cumulative 6.0 = 10 + 1 - 0.1 * 50.
    # n = 50: bonus 1 - 0.2 * ((50 - 20) / 30) ** 2 = 0.8; total = 6.0 + 0.5 + 0.8 + 0.002 = 7.302
    plan50 = CYCLE * 8 + ["right", "right"]
    assert len(plan50) == 50
    check(sokoban_reward(resp(plan50), LEVEL_A), 6.0, 0.8, 0.002, 7.302, success=True)
    # 52 actions: the two solving pushes are actions 51 and 52, never played. 50 steps of -0.1: env = 0.
    # n = 52: bonus 1 - 0.2 * (32 / 30) ** 2 = 1 - 0.2275555... = 0.7724444...
    # total = 0 + 0.5 + 0.7724444... + 0.002 = 1.2744444...
    plan52 = CYCLE * 8 + ["down", "up", "right", "right"]
    check(sokoban_reward(resp(plan52), LEVEL_A), 0.0, 1 - 0.2 * (32 / 30) ** 2, 0.002,
          0.5 + 1 - 0.2 * (32 / 30) ** 2 + 0.002)
    assert 1 - 0.2 * (32 / 30) ** 2 == pytest.approx(0.772444444)


@pytest.mark.parametrize("response", [
    "<think>I push it</think>right, right",                                   # missing <answer>, </answer>
    "<think>I push it<answer>right, right</answer>",                          # missing </think>
    "I push it</think><answer>right, right</answer>",                         # missing <think>
    "<think>I push it</think><answer>right</answer><answer>right</answer>",   # two answer blocks
    "<think>a</think><think>b</think><answer>right, right</answer>",          # two think blocks
    "<think>I push it</think><answer>right, jump</answer>",                   # invalid action word
    "<think>I push it</think><answer>right right</answer>",                   # not comma-separated
    "<think>I push it</think><answer>right, right,</answer>",                 # trailing comma: empty item
    "<think>I push it</think><answer></answer>",                              # empty answer
    "<think>I push it</think><answer>R</answer>",                             # abbreviations are not actions
    "<answer>right, right</answer><think>I push it</think>",                  # tags out of order
    "",
    None,
])
def test_format_failures_score_zero(response):
    # The gate fails: total 0 and no other term, even though "right, right" would solve the level.
    out = sokoban_reward(response, LEVEL_A)
    assert out == {"format": 0.0, "env": 0.0, "action_bonus": 0.0, "thinking_bonus": 0.0, "total": 0.0,
                   "success": False, "num_actions": 0}


def test_format_accepts_case_spacing_and_surrounding_text():
    # Items are stripped and lowercased; text around the tags is allowed (the verifier only counts tags).
    out = sokoban_reward("Sure. <think>I push it</think>\n<answer> Right ,\nRIGHT </answer> done", LEVEL_A)
    check(out, 10.8, 0.1, 0.002, 11.402, success=True)


def test_overlong_response_fails_the_gate():
    padding = "x" * MAX_RESPONSE_CHARS
    assert sokoban_reward(resp(["right", "right"], think=padding), LEVEL_A)["total"] == 0.0


def test_length_bonus_branches():
    # n = 20, no repeats: 20 * 0.05 - 0.2 * 0 = 1.0. Walk: 3 cycles + up (1,1), right (1,2); never a push.
    # env: 20 steps of -0.1 -> 0. total = 0 + 0.5 + 1.0 + 0.002 = 1.502
    plan20 = CYCLE * 3 + ["up", "right"]
    check(sokoban_reward(resp(plan20), LEVEL_A), 0.0, 1.0, 0.002, 1.502)
    # n = 100, period 6 (k <= 5 grams never repeat back to back): 1 - 0.2 * (80 / 30) ** 2 = -0.4222...
    # env: the first 50 steps all -0.1 -> 0. total = 0 + 0.5 - 0.42222 + 0.002 = 0.07977...
    plan100 = CYCLE * 16 + ["up", "right", "left", "down"]
    bonus100 = 1 - 0.2 * (80 / 30) ** 2
    assert bonus100 == pytest.approx(-0.422222222)
    check(sokoban_reward(resp(plan100), LEVEL_A), 0.0, bonus100, 0.002, 0.5 + bonus100 + 0.002)


def test_repeated_ngram_penalty():
    # "left" x 7 (into the wall, env 0): the 1-gram runs 7 times, not more than 7 -> bonus 7 * 0.05 = 0.35.
    # total = 0 + 0.5 + 0.35 + 0.002 = 0.852
    check(sokoban_reward(resp(["left"] * 7), LEVEL_A), 0.0, 0.35, 0.002, 0.852)
    # "left" x 8: runs 8 > 7 times -> min(0, 0.4 - 0.2) = 0. total = 0 + 0.5 + 0 + 0.002 = 0.502
    check(sokoban_reward(resp(["left"] * 8), LEVEL_A), 0.0, 0.0, 0.002, 0.502)
    # ("up", "down") x 7: the 2-gram runs 7 times -> 14 * 0.05 = 0.7. total = 0.5 + 0.7 + 0.002 = 1.202
    check(sokoban_reward(resp(["up", "down"] * 7), LEVEL_A), 0.0, 0.7, 0.002, 1.202)
    # ("up", "down") x 8: runs 8 times -> min(0, 0.8 - 0.2) = 0. total = 0.502
    check(sokoban_reward(resp(["up", "down"] * 8), LEVEL_A), 0.0, 0.0, 0.002, 0.502)
    # n >= 20 with a repeat: "left" x 25: 1 - 0.2 * (5 / 30) ** 2 = 0.99444 -> min(0, 0.79444) = 0
    check(sokoban_reward(resp(["left"] * 25), LEVEL_A), 0.0, 0.0, 0.002, 0.502)
    # A negative bonus gets 0.2 more negative: "left" x 100: -0.42222 - 0.2 = -0.62222.
    # total = 0 + 0.5 - 0.62222 + 0.002 = -0.12022 (the total can be negative)
    bonus = 1 - 0.2 * (80 / 30) ** 2 - 0.2
    check(sokoban_reward(resp(["left"] * 100), LEVEL_A), 0.0, bonus, 0.002, 0.5 + bonus + 0.002)
    assert 0.5 + bonus + 0.002 == pytest.approx(-0.120222222)
    # The verifier's run rule: a k-gram run continues only when the previous occurrence started k words before.
    assert has_repeated_ngram(["a", "b", "c", "d", "e"] * 8)           # 5-gram x 8
    assert not has_repeated_ngram(["a", "b", "c", "d", "e"] * 7)
    assert not has_repeated_ngram(["a", "b", "c", "d", "e", "f"] * 20)  # 6-grams are not checked
    assert action_bonus(["up"] * 19) == pytest.approx(min(0.0, 19 * 0.05 - 0.2))


def test_thinking_bonus():
    assert thinking_bonus("a b c") == 0.0                      # one-character words do not count
    assert thinking_bonus("two\nwords") == pytest.approx(0.001)  # split on spaces only: one word
    assert thinking_bonus(" ".join(["word"] * 199)) == pytest.approx(0.199)
    # 250 words -> capped at 200 * 0.001 = 0.2. Plan "right, right": total = 10.8 + 0.5 + 0.1 + 0.2 = 11.6
    out = sokoban_reward(resp(["right", "right"], think=" ".join(["word"] * 250)), LEVEL_A)
    check(out, 10.8, 0.1, 0.2, 11.6, success=True)


def test_reward_class():
    from rewards import RewardOutput

    fn = SokobanReward(workers=2, timeout=5.0)  # pool options are accepted and ignored
    level = LEVEL_A.to_dict()
    responses = [resp(["right", "right"]), resp(["up", "up", "up"]), "no tags"]
    out = fn(responses, ["", "", ""], [{"level": level}] * 3)
    fn.close()
    assert isinstance(out, RewardOutput)
    assert out.components["total"] == pytest.approx([11.402, 0.652, 0.0])
    assert out.components["env"] == pytest.approx([10.8, 0.0, 0.0])
    assert out.components["format"] == [0.5, 0.5, 0.0]
    assert out.components["solved"] == [1.0, 0.0, 0.0]
    assert out.counts == {"sokoban/solved": 1, "sokoban/format_fail": 1}
    with pytest.raises(ValueError):
        fn(responses, ["", "", ""], None)


# ---------------------------------------------------------------- simulator

def test_env_dynamics_and_rewards():
    # Boxes (1,2), (1,3); targets (1,4), (2,3).
    level = Level.from_text(
        "######\n"
        "#@$$.#\n"
        "#  . #\n"
        "######")
    env = SokobanEnv(level)
    assert env.step("right") == (pytest.approx(-0.1), False)  # box into a box: nothing moves
    assert env.player == (1, 1) and env.boxes == {(1, 2), (1, 3)}
    for a in ("down", "right", "right"):  # (2,1), (2,2), (2,3) = player on target
        env.step(a)
    assert env.state.to_text().split("\n")[2] == "#  + #"
    assert env.step("up") == (pytest.approx(-0.1), False)  # box (1,3) into the wall: nothing moves
    assert env.player == (2, 3) and env.boxes == {(1, 2), (1, 3)}
    assert env.step("down") == (pytest.approx(-0.1), False)  # walking into a wall
    assert env.player == (2, 3)
    env.reset()
    assert env.state == level and env.num_steps == 0
    with pytest.raises(ValueError):
        env.step("jump")
    # max_steps ends the episode.
    env = SokobanEnv(LEVEL_A, max_steps=2)
    assert env.step("up")[1] is False and env.step("up")[1] is True


# ---------------------------------------------------------------- level text / dict

def test_text_and_dict_round_trip():
    text = LEVEL_B.to_text()
    assert Level.from_text(text) == LEVEL_B and Level.from_text(text).to_text() == text
    all_tiles = "#######\n#@$*. #\n#######"
    assert Level.from_text(all_tiles).to_text() == all_tiles
    on_target = "#####\n#+$ #\n#####"
    lv = Level.from_text(on_target)
    assert lv.player == (1, 1) and lv.targets == {(1, 1)} and lv.to_text() == on_target
    # Trailing floor survives the dict (rows keep their width).
    lv = Level.from_text("#@$. \n#####")
    d = json.loads(json.dumps(lv.to_dict()))
    assert Level.from_dict(d) == lv and Level.from_dict(d).width == 5
    for bad in ("#@$$.#", "#@@$.#", "#$.#", "#@$.x#", ""):
        with pytest.raises(ValueError):
            Level.from_text(bad)


# ---------------------------------------------------------------- solver

def bfs_optimum(level: Level) -> int | None:
    """Reference: plain BFS over (player, boxes) without pruning; the number of moves of a shortest plan."""
    start = (level.player, level.boxes)
    seen, frontier, depth = {start}, [start], 0
    while frontier:
        if any(boxes == level.targets for _, boxes in frontier):
            return depth
        depth += 1
        nxt = []
        for p, boxes in frontier:
            for dr, dc in DELTAS.values():
                q = (p[0] + dr, p[1] + dc)
                if not level.is_free(q):
                    continue
                if q in boxes:
                    b = (q[0] + dr, q[1] + dc)
                    if not level.is_free(b) or b in boxes:
                        continue
                    boxes_next = (boxes - {q}) | {b}
                else:
                    boxes_next = boxes
                if (q, boxes_next) not in seen:
                    seen.add((q, boxes_next))
                    nxt.append((q, boxes_next))
        frontier = nxt
    return None


def test_solver_hand_levels():
    assert solve(LEVEL_A) == ["right", "right"]
    assert len(solve(LEVEL_B)) == bfs_optimum(LEVEL_B)
    plan = solve(LEVEL_C)  # a box starts on a target and has to leave it
    assert plan is not None and len(plan) == bfs_optimum(LEVEL_C) == 8
    assert solve(Level.from_text("####\n#@*#\n####")) == []  # already solved
    corner = Level.from_text("#####\n#$  #\n# @.#\n#####")  # box in a non-target corner
    assert solve(corner) is None and bfs_optimum(corner) is None
    assert solve(LEVEL_B, max_states=5) is None
    assert solve(LEVEL_B, max_depth=2) is None


def _grid_levels():
    # 30 levels: sizes 6..10 (square, border included) x 1..3 boxes x 2 seeds.
    return [generate_level(seed, size, size, boxes) for size in range(6, 11) for boxes in (1, 2, 3)
            for seed in (0, 1)]


def test_generated_levels_are_solved_by_their_optimal_solution():
    levels = _grid_levels()
    for level in levels:
        plan = level.solution
        assert plan and all(a in ACTIONS for a in plan)
        env = SokobanEnv(level)
        assert not level.solved and not env.solved
        for i, action in enumerate(plan):
            _, done = env.step(action)
            assert done == (i == len(plan) - 1)  # an optimal plan cannot finish early
        assert env.solved
        assert len(plan) == bfs_optimum(level)
        assert len(solve(level)) == len(plan)
        # Room shape: walls on the border, the requested size and box count.
        assert level.num_boxes == len(level.targets)
        assert all((r, c) in level.walls for r in range(level.height) for c in range(level.width)
                   if r in (0, level.height - 1) or c in (0, level.width - 1))
        # JSON round trip keeps the solution.
        back = Level.from_dict(json.loads(json.dumps(level.to_dict())))
        assert back == level and back.solution == level.solution
        # gym-sokoban's generator leaves no box (and not the player) on a target. Then the stored plan earns
        # env = 10 + num_boxes - 0.1 * len(plan): +1 per net box placed, and the last step (+10.9) is the best prefix.
        assert not level.boxes & level.targets and level.player not in level.targets
        out = sokoban_reward(resp(list(plan)), level.to_dict())
        assert out["success"] and out["env"] == pytest.approx(10 + level.num_boxes - 0.1 * len(plan))
    assert {(lv.width, lv.num_boxes) for lv in levels} == {(s, b) for s in range(6, 11) for b in (1, 2, 3)}


def test_generated_levels_never_start_with_a_covered_target():
    # The released verifier loses a target that starts under a box or the player (rewards/sokoban.py), so the
    # generator must never emit one: a few hundred levels of the default mix, plus the small rooms, where covered
    # configurations are likeliest.
    levels = generate_levels(300, seed=0) + generate_levels(100, seed=1, sizes=[5, 6], boxes=[2, 3])
    for level in levels:
        assert not level.boxes & level.targets, level.to_text()
        assert level.player not in level.targets, level.to_text()


def test_generator_rejects_a_covered_target_from_reverse_play(monkeypatch):
    # The explicit check in generate_level's attempt loop, independent of _reverse_play's own scoring rule.
    import envs.sokoban as sokoban
    real = sokoban._reverse_play

    def covered(kind):
        def fake(rng, floor, targets, player, walks, steps):
            score, p, boxes = real(rng, floor, targets, player, walks, steps)
            if score > 0:  # then no target is covered; cover one
                if kind == "box":  # the first box back on its target
                    boxes = (targets[0],) + tuple(boxes[1:])
                else:  # the player on a target
                    p = targets[0]
            return score, p, boxes
        return fake

    for kind in ("box", "player"):
        monkeypatch.setattr(sokoban, "_reverse_play", covered(kind))
        with pytest.raises(RuntimeError):
            generate_level(0, 8, 8, 2, max_attempts=5)
    monkeypatch.setattr(sokoban, "_reverse_play", real)
    assert generate_level(0, 8, 8, 2).to_dict() == generate_level(0, 8, 8, 2).to_dict()


def test_generator_is_deterministic_and_fast():
    t = time.perf_counter()
    a = generate_levels(20, seed=7)
    elapsed = time.perf_counter() - t
    b = generate_levels(20, seed=7)
    assert [lv.to_dict() for lv in a] == [lv.to_dict() for lv in b]
    assert elapsed < 10
    short = generate_levels(10, seed=3, sizes=[(7, 9)], boxes=[2], max_solution_len=6)
    assert all(lv.width == 7 and lv.height == 9 and lv.num_boxes == 2 and len(lv.solution) <= 6 for lv in short)


# ---------------------------------------------------------------- renderer and prompt

def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_render_is_deterministic():
    for seed in range(3):
        img1 = render(generate_level(seed, 9, 9, 2))
        img2 = render(generate_level(seed, 9, 9, 2))
        assert img1.size == (9 * 16, 9 * 16) and img1.mode == "RGB"
        assert img1.tobytes() == img2.tobytes() and _png(img1) == _png(img2)
    assert render(generate_level(0, 9, 9, 2)).tobytes() != render(generate_level(1, 9, 9, 2)).tobytes()
    env = SokobanEnv(LEVEL_A)
    env.step("right")
    assert render(env).tobytes() == render(env.state).tobytes() != render(LEVEL_A).tobytes()
    assert render(LEVEL_A, tile=28).size == (6 * 28, 5 * 28)


def test_render_tiles_are_distinct():
    tile = 16
    # Row 1: @ $ * . (space); a second level gives the player-on-target tile.
    img = np.asarray(render(Level.from_text("#######\n#@$*. #\n#######"), tile=tile))
    img2 = np.asarray(render(Level.from_text("#####\n#+$ #\n#####"), tile=tile))

    def cell(a, r, c):
        return a[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile].astype(int)

    tiles = {"wall": cell(img, 0, 0), "player": cell(img, 1, 1), "box": cell(img, 1, 2),
             "box_on_target": cell(img, 1, 3), "target": cell(img, 1, 4), "floor": cell(img, 1, 5),
             "player_on_target": cell(img2, 1, 1)}
    names = list(tiles)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            # Clearly different pictures: many pixels differ, not a few.
            assert (np.abs(tiles[a] - tiles[b]).sum(axis=2) > 60).sum() >= tile * 2, (a, b)
    means = {k: v.reshape(-1, 3).mean(axis=0) for k, v in tiles.items()}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(means[a] - means[b]).sum() > 10, (a, b)  # distinct average colours too


def test_prompt_mentions_tiles_actions_and_format():
    for word in ("wall", "floor", "target", "box", "up", "down", "left", "right", "<think>", "</think>",
                 "<answer>", "</answer>", "comma-separated"):
        assert word in PROMPT
