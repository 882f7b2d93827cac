"""The reward sandbox: hostile completions through every reward (a slice of tests/hostile_corpus.py's corpus; the full
corpus is bench/reward_sandbox.py), random text (hypothesis), and a worker pool that survives crashes and failed
starts."""
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rewards.math as rmath
from hostile_corpus import (CHOICE_REWARDS, FAMILIES, MATH_REWARDS, WEIGHTS, corpus, echo_or_crash, flaky_setup,
                            sample)
from rewards import REWARDS, get_reward
from rewards.pool import KillPool

SLOW = ("tower", "factorial", "memory", "megabyte", "brackets", "fractions")  # checks that may reach the time limit
POOL_REWARDS = ("r1_math", "r1_math_answer", "r1_auto")


@pytest.fixture(scope="module")
def game_metas():
    from data.games import football_samples, sokoban_samples
    return {"sokoban": sokoban_samples(1, seed=0)[0].meta, "football": football_samples(1, seed=0)[0].meta}


@pytest.fixture(scope="module")
def pools():
    fns = {name: get_reward(name, workers=2, timeout=2.0) for name in POOL_REWARDS}
    yield fns
    for fn in fns.values():
        fn.close()


def _score_everywhere(items, pools, game_metas):
    """{reward name: (totals, accuracies, counts)} for every registered reward."""
    out = {}
    for name in REWARDS:
        fn = pools.get(name) or get_reward(name)
        metas = [{**it.meta, **game_metas.get(name, {})} for it in items]
        res = fn([it.response for it in items], [it.gold for it in items], metas)
        assert all(len(v) == len(items) for v in res.components.values()), name
        out[name] = (res.components["total"], res.components.get("accuracy", [0.0] * len(items)), res.counts)
    return out


def _judge(items, scored):
    """(hostile items paid, controls not paid) as (reward, family, response head) lists."""
    paid, unpaid = [], []
    for name, (total, acc, _) in scored.items():
        games = name in ("sokoban", "football")
        for it, t, a in zip(items, total, acc):
            assert math.isfinite(t), (name, it.family)
            got = t > 0 if games else a > 0
            if it.expect == "hostile" and got and name != "format":
                paid.append((name, it.family, it.response[:80]))
            payers = MATH_REWARDS if it.domain == "math" else CHOICE_REWARDS
            if it.expect == "right" and name in payers and not got:
                unpaid.append((name, it.family, it.response[:80]))
    return paid, unpaid


def test_corpus_is_seeded_large_and_covers_every_family(tmp_path):
    items = corpus(10_000, seed=0, canary=str(tmp_path / "CANARY"))
    assert len(items) == 10_000 and set(WEIGHTS) == set(FAMILIES)
    assert {it.family for it in items} == set(FAMILIES)
    kinds = {it.expect for it in items}
    assert kinds == {"hostile", "right", "free"}
    assert max(len(it.response) for it in items) >= 1_000_000  # the megabyte answers
    text = "".join(it.response[:2000] for it in items)
    for needle in ("\\input", "\\include", "\\def", "__import__", "sympify", "\x00", "\ud800", "\u200b", "\u202e",
                   "<answer><answer>", "\\frac{1}{\\frac{1}{"):
        assert needle in text, needle
    again = corpus(300, seed=0, canary=str(tmp_path / "CANARY"))
    assert again == items[:300]  # seeded, and a prefix of the full corpus
    assert corpus(300, seed=1, canary=str(tmp_path / "CANARY")) != again


def test_hostile_slice_through_every_reward(tmp_path, pools, game_metas):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    fast = tuple(f for f in FAMILIES if f not in SLOW)
    items = sample(per_family=3, seed=1, canary=str(sandbox / "CANARY"), families=fast)
    items += [it for it in corpus(200, seed=3, canary=str(sandbox / "CANARY")) if it.family not in SLOW][:70]
    scored = _score_everywhere(items, pools, game_metas)
    paid, unpaid = _judge(items, scored)
    assert paid == [] and unpaid == []
    assert list(sandbox.iterdir()) == []  # no payload ran: the canary (or any other file) was never written
    for name in POOL_REWARDS:
        counts = scored[name][2]
        assert counts["reward/checked"] + counts["data/gold_unparseable"] + counts["reward/timeout"] + \
            counts["reward/error"] == len(items)  # every sample has one status (r1_auto: choice ones too)


def test_slow_and_huge_answers_hit_the_limits_not_the_reward(tmp_path):
    """Exponent towers, huge factorials, exponents that need gigabytes, a megabyte answer, thousands of nested
    brackets and fractions: each check ends within its limit (time-out or memory error), the workers are replaced,
    and the controls around them are scored."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    slow = sample(per_family=1, seed=5, canary=str(sandbox / "CANARY"), families=("tower", "factorial", "memory"))
    chain = "\\frac{1}{" * 2000 + "2" + "}" * 2000
    slow.append(type(slow[0])(f"<think>t</think><answer>\\boxed{{{'(' * 3000}7{')' * 3000}}}</answer>", "8",
                              "hostile", "brackets"))
    slow.append(type(slow[0])(f"<think>t</think><answer>{chain}</answer>", "\\frac{1}{2}", "hostile", "fractions"))
    slow.append(type(slow[0])("<think>t</think><answer>" + "1" * 1_000_000 + "</answer>", "1", "hostile",
                              "megabyte"))
    controls = [type(slow[0])(f"<think>t</think><answer>\\boxed{{{k}}}</answer>", str(k), "right", "mutation")
                for k in range(len(slow))]
    items = [x for pair in zip(slow, controls) for x in pair]
    with get_reward("r1_math", workers=2, timeout=1.0, memory_limit_mb=512) as fn:
        before = set(fn.verifier.pids)
        out = fn([it.response for it in items], [it.gold for it in items])
        assert out.components["accuracy"] == [0.0, 1.0] * len(slow)
        assert out.counts["reward/timeout"] + out.counts["reward/error"] >= 3
        assert out.counts["reward/worker_restarts"] >= 3 and set(fn.verifier.pids) != before
    assert list(sandbox.iterdir()) == []


# ---------------------------------------------------------------- random text (hypothesis)

_TOKENS = ["\\boxed{", "}", "{", "\\frac{", "\\sqrt{", "^", "_", "(", ")", "[", "]", "$", "$$", "\\(", "\\)",
           "<think>", "</think>", "<answer>", "</answer>", "\\left(", "\\right)", "\\infty", "\\pi", " ", "\n",
           "0", "00", ".", ",", "=", "+", "-", "/", "\\cdot", "\\text{", "\\input{x}", "\\def\\x{0}",
           "__import__('os')", "\x00", "\ud800", "\udfff", "\u200b", "\u202e", "\ufeff", "final answer is ",
           "answer: ", "(A)", "B.", "\\boxed{C}", "x", "y"]
# No digit 1-9 and no E or e anywhere: the golds below can never be matched.
_NO_GOLD = st.characters(exclude_categories=(), exclude_characters="123456789Ee")
random_text = st.lists(st.one_of(st.sampled_from(_TOKENS), st.text(_NO_GOLD, max_size=12)), max_size=40).map(
    "".join)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
          database=None)
@given(texts=st.lists(random_text, min_size=1, max_size=6), choice=st.booleans())
def test_random_text_through_every_reward(pools, game_metas, texts, choice):
    golds = ["D" if choice else "123456789"] * len(texts)  # D: the tokens' letters are A, B, C only
    for name in REWARDS:
        fn = pools.get(name) or get_reward(name)
        metas = [{"domain": "choice" if choice else "math", **game_metas.get(name, {})} for _ in texts]
        out = fn(texts, golds, metas)
        assert set(out.components) >= {"total"} and all(len(v) == len(texts) for v in out.components.values())
        assert all(math.isfinite(t) for t in out.components["total"]), name
        assert all(isinstance(v, int) and v >= 0 for v in out.counts.values()), name
        if name in ("sokoban", "football"):
            assert all(t <= 0 for t in out.components["total"]), name  # no action list, no reward
        elif name != "format":
            assert out.components["accuracy"] == [0.0] * len(texts), (name, texts)
            assert all(0 <= t <= 0.5 for t in out.components["total"]), name
        if name in POOL_REWARDS:
            c = out.counts
            assert c["reward/checked"] + c["data/gold_unparseable"] + c["reward/timeout"] + c["reward/error"] == \
                len(texts)


# ---------------------------------------------------------------- the worker pool: crashes and failed starts

def test_a_crashed_worker_is_replaced_and_the_batch_stays_aligned():
    pool = KillPool(echo_or_crash, workers=2, timeout=30.0)
    try:
        tasks = [(0,), (1,), ("crash",), (3,), (4,), ("crash",), (6,), (7,)]
        got = pool.map(tasks)
        assert got == [("ok", 0), ("ok", 1), ("error", "worker died"), ("ok", 3), ("ok", 4),
                       ("error", "worker died"), ("ok", 6), ("ok", 7)]
        assert pool.stats["restarts"] >= 2
        assert pool.map([(i,) for i in range(5)]) == [("ok", i) for i in range(5)]
    finally:
        pool.close()


def test_failed_starts_are_retried_and_counted(tmp_path):
    """A worker that raises, exits or is killed while starting is started again, and counted."""
    counter = str(tmp_path / "starts")
    pool = KillPool(echo_or_crash, workers=1, timeout=30.0, setup=flaky_setup,
                    setup_args=(counter, {1: "raise", 2: "exit", 3: "kill"}), max_start_failures=4)
    try:
        assert pool.map([(i,) for i in range(4)]) == [("ok", i) for i in range(4)]
        assert pool.stats["start_failures"] == 3
    finally:
        pool.close()


def test_repeated_failed_starts_stop_with_the_cause(tmp_path):
    for how, cause in [("raise", "RuntimeError: injected start failure"), ("exit", "exit code 3"),
                       ("kill", "killed by SIGKILL")]:
        counter = str(tmp_path / f"starts_{how}")
        pool = KillPool(echo_or_crash, workers=1, timeout=30.0, setup=flaky_setup,
                        setup_args=(counter, tuple(range(1, 100)), how), max_start_failures=1)
        try:
            with pytest.raises(RuntimeError, match="reward worker failed to start 1 time ") as err:
                pool.map([(1,)])
            assert cause in str(err.value)
            with pytest.raises(RuntimeError, match="failed to start"):  # it stays stopped, with the same message
                pool.map([(1,)])
        finally:
            pool.close()
    counter = str(tmp_path / "starts")
    pool = KillPool(echo_or_crash, workers=1, timeout=30.0, setup=flaky_setup, setup_args=(counter, (1, 2, 3)),
                    max_start_failures=2)
    try:
        with pytest.raises(RuntimeError, match=r"failed to start 2 times in a row \(last cause: RuntimeError: "
                                               r"injected start failure #2\)"):
            pool.map([(1,)])
        assert pool.stats["start_failures"] == 2
    finally:
        pool.close()


def test_a_failed_restart_after_a_time_out_is_retried(tmp_path):
    """Workers restart after every time-out; a replacement that dies while starting is started again."""
    counter = str(tmp_path / "starts")
    pool = KillPool(echo_or_crash, workers=1, timeout=0.5, setup=flaky_setup, setup_args=(counter, (2,), "exit"))
    try:
        assert pool.map([("hang",), (5,), (6,)]) == [("timeout", None), ("ok", 5), ("ok", 6)]
        assert pool.stats["restarts"] == 1 and pool.stats["start_failures"] == 1
    finally:
        pool.close()


def test_the_reward_counts_failed_starts(tmp_path):
    counter = str(tmp_path / "starts")
    with get_reward("r1_math", workers=1, timeout=5.0, setup=flaky_setup,
                    setup_args=(counter, (1,), "exit", rmath.worker_setup, (2048,))) as fn:
        out = fn(["<think>t</think><answer>\\boxed{2}</answer>"], ["2"])
        assert out.components["accuracy"] == [1.0]
        assert out.counts["reward/worker_start_failures"] == 1
        assert fn(["\\boxed{2}"], ["2"]).counts["reward/worker_start_failures"] == 0  # per call, not a total
