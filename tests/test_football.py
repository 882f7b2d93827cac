"""Tests for envs/football/ (the game) and rewards/football.py (its reward)."""
import json
import time

import pytest

from envs.football import (
    ACTIONS, ACTIVE_COLOR, AWAY_COLOR, HOME_COLOR, KEEPER_COLOR, PROMPT, SCENARIOS, GameState, active_index,
    make_scenario, pitch_to_pixel, render, simulate,
)
from rewards.football import FootballReward, extract_action, football_reward


def answer(action: str) -> str:
    return f"<think>the carrier has space ahead</think><answer>{action}</answer>"


def run(state, actions):
    events = []
    for a in actions:
        state, ev = simulate(state, a)
        events.append(ev)
    return state, events


def place(state, home=None, away=None):
    """Move players (index -> (x, y)); home player 0 keeps the ball at his feet, facing +x."""
    for i, (x, y) in (home or {}).items():
        state.home[i].x, state.home[i].y, state.home[i].fx, state.home[i].fy = x, y, 1.0, 0.0
    for i, (x, y) in (away or {}).items():
        state.away[i].x, state.away[i].y = x, y
    c = state.home[state.owner_idx]
    state.bx, state.by = c.x + 0.6, c.y
    return state


# ---------------------------------------------------------------- scenarios and state

def test_scenarios_have_the_documented_sides():
    sizes = {name: (len(make_scenario(name, 0).home), len(make_scenario(name, 0).away)) for name in SCENARIOS}
    assert sizes["run_at_keeper"] == (1, 1)
    assert sizes["pass_and_shoot"] == (2, 2)
    assert sizes["counter_attack_3v2"] == (3, 3)
    assert sizes["crowded_box"] == (4, 5)
    for name in SCENARIOS:
        s = make_scenario(name, 3)
        assert s.owner == "home" and active_index(s) == 0 and not s.done
        assert sum(p.keeper for p in s.away) == 1 and s.away[0].keeper and s.away[0].x > 95
    with pytest.raises(KeyError):
        make_scenario("penalty_shootout", 0)


def test_scenarios_are_deterministic_per_seed():
    assert make_scenario("crowded_box", 7).to_dict() == make_scenario("crowded_box", 7).to_dict()
    assert make_scenario("crowded_box", 7).to_dict() != make_scenario("crowded_box", 8).to_dict()


def test_state_dict_round_trip_and_validation():
    s, _ = run(make_scenario("counter_attack_3v2", 2), ["right", "long_pass"])
    d = json.loads(json.dumps(s.to_dict()))
    assert GameState.from_dict(d) == s
    assert GameState.from_dict(d).to_dict() == s.to_dict()
    for bad in [None, [], {}, {**d, "bx": float("nan")}, {**d, "home": []}, {**d, "owner": "them"},
                {**d, "owner_idx": 9}, {**d, "away": [[1, 2, 3]]}, {**d, "frame": "3"}, {**d, "done": 1},
                {**d, "home": [[1.0, 2.0, 1.0, 0.0, 3.0]] * 12}]:
        with pytest.raises(ValueError):
            GameState.from_dict(bad)


def test_simulate_leaves_its_input_alone_and_finished_states_are_inert():
    s = make_scenario("pass_and_shoot", 0)
    before = s.to_dict()
    s2, _ = simulate(s, "short_pass")
    assert s.to_dict() == before and s2.to_dict() != before
    lost = place(make_scenario("pass_and_shoot", 0), {0: (60.0, 32.0), 1: (75.0, 32.0)}, {1: (67.0, 32.5)})
    lost, ev = simulate(lost, "short_pass")
    assert lost.done and lost.result == "possession_lost"
    again, ev2 = simulate(lost, "shot")
    assert again.to_dict() == lost.to_dict() and ev2["frames"] == 0 and not ev2["shot"]
    with pytest.raises(ValueError):
        simulate(s, "bicycle_kick")


# ---------------------------------------------------------------- scripted outcomes with rewards

def test_run_at_keeper_and_score_from_close_range():
    s = make_scenario("run_at_keeper", 1)
    s, events = run(s, ["right", "right", "right"])
    assert not any(e["possession_lost"] for e in events)
    assert s.owner == "home" and 86.0 < s.bx < 88.0  # 3 s at 6 m/s from x = 68.6
    x_shot = s.bx
    end, ev = simulate(s, "shot")
    assert ev["goal"] and ev["shot"] and ev["shot_on_target"] and not ev["possession_lost"]
    assert end.done and end.result == "goal" and end.bx > 100
    assert ev["ball_progress"] == pytest.approx((100.0 - x_shot) / 100.0)
    r = football_reward(answer("shot"), s.to_dict())
    # format 0.5 + progress 0.8 x (100 - x) / 100 + goal 2.0 + shot on target 0.5; no outfield opponents.
    expected = 0.5 + 0.8 * (100.0 - x_shot) / 100.0 + 2.0 + 0.5
    assert r["total"] == pytest.approx(expected, abs=1e-12)
    assert r == pytest.approx({"format": 0.5, "progress": 0.8 * (100.0 - x_shot) / 100.0, "opponents_passed": 0.0,
                               "goal": 2.0, "possession": 0.0, "pass": 0.0, "shot": 0.5, "total": expected})


def test_long_range_shot_is_saved_by_the_keeper():
    s = place(make_scenario("run_at_keeper", 1), {0: (68.0, 32.0)})
    _, ev = simulate(s, "shot")
    assert ev["shot"] and ev["possession_lost"] and ev["loss_reason"] == "keeper" and not ev["goal"]
    r = football_reward(answer("shot"), s.to_dict())
    expected = 0.5 + 0.8 * ev["ball_progress"] - 1.0 + (0.5 if ev["shot_on_target"] else 0.0)
    assert r["total"] == pytest.approx(expected, abs=1e-12) and r["total"] < 0.5


def test_pass_into_an_opponent_is_intercepted():
    # The only teammate is straight ahead with a defender on the line between them.
    s = place(make_scenario("pass_and_shoot", 0), {0: (60.0, 32.0), 1: (75.0, 32.0)}, {1: (67.0, 32.5)})
    end, ev = simulate(s, "short_pass")
    assert ev["pass_target"] == 1 and not ev["pass_completed"]
    assert ev["possession_lost"] and ev["loss_reason"] == "interception"
    assert end.owner == "away" and end.owner_idx == 1 and 64.0 < end.bx < 68.0
    r = football_reward(answer("short_pass"), s.to_dict())
    expected = 0.5 + 0.8 * ev["ball_progress"] - 1.0
    assert r["total"] == pytest.approx(expected, abs=1e-12) and r["total"] < 0
    assert r["possession"] == -1.0 and r["pass"] == 0.0 and r["opponents_passed"] == 0.0


def test_clean_forward_pass_is_credited():
    s = make_scenario("pass_and_shoot", 0)
    end, ev = simulate(s, "short_pass")
    assert ev["pass_completed"] and ev["pass_forward"] and ev["pass_receiver"] == 1 and not ev["possession_lost"]
    assert end.owner == "home" and active_index(end) == 1
    r = football_reward(answer("short_pass"), s.to_dict())
    expected = 0.5 + 0.8 * ev["ball_progress"] + 1.0 * ev["opponents_passed"] + 0.3
    assert r["pass"] == 0.3 and r["total"] == pytest.approx(expected, abs=1e-12)
    # ... and the receiver can go on and score.
    end, events = run(end, ["right", "right", "shot"])
    assert events[-1]["goal"]


@pytest.mark.parametrize("action, metres", [("right", 6.0), ("dribble", 4.5), ("sprint", 8.0)])
def test_running_right_with_the_ball_makes_progress(action, metres):
    s = make_scenario("counter_attack_3v2", 0)  # carrier faces +x at the start
    end, ev = simulate(s, action)
    assert end.owner == "home" and end.owner_idx == 0 and not ev["possession_lost"]
    assert ev["ball_progress"] == pytest.approx(metres / 100.0)
    r = football_reward(answer(action), s.to_dict())
    assert r["total"] == pytest.approx(0.5 + 0.8 * metres / 100.0, abs=1e-12)
    _, back = simulate(s, "left")  # 6 m back, and the ball moves to his other side (2 x 0.6 m)
    assert back["ball_progress"] == pytest.approx(-0.072)
    assert football_reward(answer("left"), s.to_dict())["total"] == pytest.approx(0.5 - 0.8 * 0.072)


def test_running_into_a_defender_loses_the_ball_and_dribbling_protects_it():
    def state():
        return place(make_scenario("pass_and_shoot", 0), {0: (60.0, 32.0), 1: (62.0, 50.0)}, {1: (66.5, 32.0)})

    _, ev = simulate(state(), "right")
    assert ev["possession_lost"] and ev["loss_reason"] == "tackle"
    assert football_reward(answer("right"), state().to_dict())["possession"] == -1.0
    _, ev = simulate(state(), "top")  # away from the defender
    assert not ev["possession_lost"]


def test_running_off_the_pitch_is_out():
    s = place(make_scenario("run_at_keeper", 0), {0: (60.0, 1.0)})
    _, ev = simulate(s, "top")
    assert ev["possession_lost"] and ev["loss_reason"] == "out"


def test_opponents_passed_when_carrying_the_ball_past_a_defender():
    s, _ = run(make_scenario("pass_and_shoot", 0), ["short_pass"])  # receiver 1 now has the ball
    defender = s.away[1]
    assert s.bx < defender.x  # the defender is ahead of the ball ...
    end, ev = simulate(s, "right")
    assert end.owner == "home" and end.away[1].x < end.bx  # ... and behind it a second later
    assert ev["opponents_passed"] == 1 and not ev["possession_lost"]
    r = football_reward(answer("right"), s.to_dict())
    assert r["opponents_passed"] == 1.0
    assert r["total"] == pytest.approx(0.5 + 0.8 * ev["ball_progress"] + 1.0, abs=1e-12)


# ---------------------------------------------------------------- format gate and parsing

@pytest.mark.parametrize("response", [
    "shot",
    "<answer>shot</answer>",  # no think
    "<think>x</think>shot",  # no answer tags
    "<think>x</think><answer>shot</answer> extra",
    "<think>x</think><answer>shot</answer><answer>shot</answer>",
    "<think>x</think><answer>jump</answer>",  # not an action
    "<think>x</think><answer>shot right</answer>",  # two actions
    "<think>x</think><answer>short pass</answer>",
    "<think>x</think><answer>The answer is shot</answer>",
    "<think>x</think><answer></answer>",
    "<think>x</think><answer>" + " " * 100 + "shot</answer>",  # longer than 64 characters
    "",
])
def test_bad_format_or_answer_scores_zero(response):
    s = make_scenario("run_at_keeper", 1).to_dict()
    r = football_reward(response, s)
    assert r["total"] == 0.0 and all(v == 0.0 for v in r.values())


@pytest.mark.parametrize("inner, action", [("shot", "shot"), ("  Shot\n", "shot"), ("TOP_RIGHT", "top_right"),
                                           ("idle", "idle")])
def test_valid_answers(inner, action):
    assert extract_action(f"<think>x</think><answer>{inner}</answer>") == action
    assert football_reward(f"<think>x</think><answer>{inner}</answer>",
                           make_scenario("counter_attack_3v2", 0).to_dict())["format"] == 0.5


def test_parsing_is_fast_on_adversarial_input():
    s = make_scenario("run_at_keeper", 1).to_dict()
    n = 200_000
    cases = ["<think>" + "a" * n, "<think>" * (n // 7), "<think>a</think><answer>" + "</answer" * (n // 8),
             "<think>" + "a" * n + "</think><answer>" + "b" * n + "</answer>",
             "<think>a</think><answer>" + " " * n + "shot</answer>"]
    t = time.perf_counter()
    for c in cases:
        assert football_reward(c, s)["total"] == 0.0
    assert time.perf_counter() - t < 1.0


# ---------------------------------------------------------------- reward class

def test_reward_class_interface_and_counts():
    goal_state = run(make_scenario("run_at_keeper", 1), ["right", "right", "right"])[0].to_dict()
    lose_state = place(make_scenario("pass_and_shoot", 0), {0: (60.0, 32.0), 1: (75.0, 32.0)},
                       {1: (67.0, 32.5)}).to_dict()
    fn = FootballReward(workers=2, timeout=5.0)  # pool options are ignored
    responses = [answer("shot"), answer("shot"), answer("short_pass"), "no tags", answer("fly"), answer("idle")]
    metas = [{"state": goal_state}, {"state": goal_state}, {"state": lose_state}, {"state": goal_state},
             {"state": goal_state}, {"state": {"bad": 1}}]
    out = fn(responses, [""] * 6, metas)
    fn.close()
    assert set(out.components) == {"format", "progress", "opponents_passed", "goal", "possession", "pass", "shot",
                                   "total"}
    total = out.components["total"]
    assert total[0] == total[1] == pytest.approx(football_reward(answer("shot"), goal_state)["total"])
    assert total[0] > 3.0
    assert total[2] < 0 and total[3:] == [0.0, 0.0, 0.0]
    assert out.counts == {"football/checked": 3, "football/format_fail": 1, "football/invalid_action": 1,
                          "data/football_bad_state": 1, "football/goal": 2, "football/possession_lost": 1,
                          "football/pass_completed": 0, "football/shot_on_target": 2}
    with pytest.raises(ValueError):
        fn([answer("shot")], [], [{"state": goal_state}])


# ---------------------------------------------------------------- determinism and rendering

def test_same_seed_and_actions_give_identical_states_and_images():
    actions = ["right", "short_pass", "top_right", "sprint", "dribble", "shot"]
    for name in SCENARIOS:
        a, ev_a = run(make_scenario(name, 5), actions)
        b, ev_b = run(make_scenario(name, 5), actions)
        assert a.to_dict() == b.to_dict() and ev_a == ev_b
        assert render(a).tobytes() == render(b).tobytes()
        assert render(make_scenario(name, 5)).tobytes() == render(make_scenario(name, 5)).tobytes()
    assert render(make_scenario("crowded_box", 5)).tobytes() != render(make_scenario("crowded_box", 6)).tobytes()


def test_render_distinguishes_the_teams():
    s = make_scenario("counter_attack_3v2", 0)
    img = render(s)
    assert img.size == (448, 288) and img.mode == "RGB"

    def at(x, y):
        return img.getpixel(pitch_to_pixel(x, y))

    assert at(s.home[1].x, s.home[1].y) == HOME_COLOR
    assert at(s.home[2].x, s.home[2].y) == HOME_COLOR
    assert at(s.away[1].x, s.away[1].y) == AWAY_COLOR
    assert at(s.away[2].x, s.away[2].y) == AWAY_COLOR
    assert at(s.away[0].x, s.away[0].y) == KEEPER_COLOR
    assert len({HOME_COLOR, AWAY_COLOR, KEEPER_COLOR, ACTIVE_COLOR}) == 4
    # The active player (0) has a ring around him: ring pixels just outside his disc.
    x, y = pitch_to_pixel(s.home[0].x, s.home[0].y)
    ring = [img.getpixel((x + dx, y)) for dx in range(-10, -4)]
    assert ACTIVE_COLOR in ring
    colors = {c for _, c in img.getcolors(maxcolors=1 << 16)}
    assert {HOME_COLOR, AWAY_COLOR, KEEPER_COLOR} <= colors
    # Other sizes work too.
    assert render(s, size=(224, 144)).size == (224, 144)


def test_prompt_lists_every_action_and_the_tags():
    for a in ACTIONS:
        assert a in PROMPT
    assert "<think></think>" in PROMPT and "<answer></answer>" in PROMPT
