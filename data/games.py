"""Prompts for the game domains of stage 2: a rendered Sokoban level or football scene plus the rules.

The gold answer is empty: the reward simulates the answer in the environment, whose state travels in `meta`.
"""

import random

from .sample import Sample, make_messages


def sokoban_samples(n: int, seed: int = 0, sizes=range(6, 11), boxes=(1, 2, 3), tile: int = 16) -> list[Sample]:
    """n generated levels (6x6 to 10x10, 1 to 3 boxes), each proven solvable; meta holds the level and its
    optimal solution length."""
    from envs.sokoban import PROMPT, generate_levels, render

    out = []
    for i, level in enumerate(generate_levels(n, seed=seed, sizes=sizes, boxes=boxes)):
        out.append(Sample(messages=make_messages(PROMPT, images=[render(level, tile=tile)]), answer="",
                          domain="sokoban", meta={"id": f"sokoban-{seed}-{i}", "level": level.to_dict()}))
    return out


def football_samples(n: int, seed: int = 0, scenarios=None) -> list[Sample]:
    """n scenes: scenarios in turn, each from its own seed, sometimes a few seconds into play (a scripted
    teammate run) so that the model sees varied situations; meta holds the game state."""
    from envs.football import PROMPT, SCENARIOS, make_scenario, render, simulate

    rng = random.Random(seed)
    scenarios = scenarios or SCENARIOS
    out = []
    for i in range(n):
        name = scenarios[i % len(scenarios)]
        state = make_scenario(name, seed * 100003 + i)
        for _ in range(rng.choice([0, 0, 1, 2])):
            nxt, _ = simulate(state, rng.choice(["right", "top_right", "bottom_right", "dribble"]))
            if nxt.done:
                break
            state = nxt
        out.append(Sample(messages=make_messages(PROMPT, images=[render(state)]), answer="", domain="football",
                          meta={"id": f"football-{name}-{seed}-{i}", "scenario": name, "state": state.to_dict()}))
    return out
