"""Tests for rewards/: format, math (worker pool), choice and the registry."""
import os

import pytest

import rewards.math as rmath
from rewards import (
    REWARDS, MathResult, RewardOutput, answer_text, choice_reward, extract_choice, format_reward,
    get_reward, math_accuracy,
)
from rewards.pool import KillPool
from rewards.text import BOXED_FLAT, final_text, last_boxed, unwrap

POOL_TIMEOUT = 2.0  # short, so the timeout test is quick; real checks here take ~50 ms


@pytest.fixture(scope="module")
def math_reward():
    # One pool per reward for the module: spawning workers (sympy import) costs ~1 s.
    fn = get_reward("r1_math", workers=2, timeout=POOL_TIMEOUT)
    yield fn
    fn.close()


@pytest.fixture(scope="module")
def answer_reward():
    fn = get_reward("r1_math_answer", workers=2, timeout=POOL_TIMEOUT)
    yield fn
    fn.close()


def _gone(pid: int) -> bool:
    """True when the process no longer exists: reaped, not a zombie."""
    return not os.path.exists(f"/proc/{pid}")


# ---------------------------------------------------------------- format

@pytest.mark.parametrize("response, expected", [
    ("<think>a</think><answer>b</answer>", 0.5),
    ("<think>\nstep 1\n\nstep 2\n</think><answer>\n42\n</answer>", 0.5),
    ("  \n<think>a</think><answer>b</answer>\n\t ", 0.5),  # whole response is stripped
    ("<think></think><answer></answer>", 0.5),
    ("<think>a<answer>b</answer>", 0.0),  # missing </think>
    ("<think>a</think>b</answer>", 0.0),  # missing <answer>
    ("<think>a</think><think>b</think><answer>c</answer>", 0.0),
    ("<think>a</think><answer>b</answer><answer>c</answer>", 0.0),
    ("<think>a</think> <answer>b</answer>", 0.0),  # whitespace between the blocks
    ("<think>a</think>\n<answer>b</answer>", 0.0),
    ("x<think>a</think><answer>b</answer>", 0.0),  # text before
    ("<think>a</think><answer>b</answer>x", 0.0),  # text after
    ("<answer>b</answer><think>a</think>", 0.0),  # wrong order
    ("", 0.0),
    # The released rule counts the opening tags only; a block may hold the OTHER block's closing tag.
    ("<think>a</answer></think><answer>b</answer>", 0.5),  # `</answer>` inside the thinking
    ("<think>a</think><answer>b</think></answer>", 0.5),  # `</think>` inside the answer
    ("<think>a</think></think><answer>b</answer>", 0.0),  # the thinking ends at the first `</think>`
    ("<think>a</think><answer>b</answer></answer>", 0.0),  # text after the first `</answer>`
    ("<think>a<think></think><answer>b</answer>", 0.0),  # two `<think>`
])
def test_format_reward(response, expected):
    assert format_reward(response) == expected


def test_format_reward_on_adversarial_input():
    # Speed on these inputs (linear, not backtracking) is measured by bench/reward_adversarial.py.
    n = 200_000
    cases = [
        "<think>" + "a" * n,
        "<think>" + "</think><answer>" * (n // 16) + "x",
        "<think>" * (n // 7),
        "<think>a</think><answer>" + "</answer" * (n // 8),
        "<think>" + "a" * n + "</think><answer>" + "b" * n + "</answer>",
    ]
    got = [format_reward(c) for c in cases]
    assert got == [0.0, 0.0, 0.0, 0.0, 0.5]


# ---------------------------------------------------------------- text

def test_answer_text():
    assert answer_text("<think>1</think><answer>2</answer>") == "2"
    assert answer_text("<answer>1</answer> then <answer>3</answer>") == "3"
    assert answer_text("no block 7") == "no block 7"
    assert answer_text("<answer>  </answer> 5") == "<answer>  </answer> 5"  # blank block: whole text
    assert answer_text("<answer>1</answer>" + "x" * 50, max_chars=20) == "x" * 20


def test_text_helpers_keep_each_readers_reading():
    """rewards.text serves every reader of answer text; where two readers differ, each keeps its own pattern."""
    assert last_boxed(r"\boxed{1} and \boxed{\frac{1}{2}}") == r"\frac{1}{2}"  # one level of nested braces
    assert last_boxed(r"\boxed{1} and \boxed{\frac{1}{2}}", BOXED_FLAT) == "1"  # the choice reward's: none
    assert last_boxed(r"\boxed{}") == "" and last_boxed("no box") is None
    assert unwrap(r"$\boxed{\text{5 cm}}$.") == "5 cm" and unwrap(r"\mathbf{B}") == r"\mathbf{B}"
    assert extract_choice(r"\mathbf{B}") == "B"  # the choice reward unwraps \mathbf, gold answers do not
    assert final_text("<think>a</think><answer>x <think>b</think></answer>") == "x  "


# ---------------------------------------------------------------- math

# The released rule (r1_math, reading "released"): `$gold$`; the whole response, LaTeX only, anchored, boxed first.
RELEASED_CASES = [  # (response, gold, reward, status)
    (r"\boxed{42}", "42", 1.0, "ok"),
    ("42", "42", 0.0, "ok"),  # a bare number: no `$` and no `\boxed`
    ("$42$", "42", 0.0, "ok"),  # LaTeX without an anchor ("final answer is") is not read
    ("The answer is 42", "42", 0.0, "ok"),
    ("The final answer is $42$", "42", 1.0, "ok"),
    # the whole response is read: a boxed answer inside the thinking counts
    (r"<think>so it is \boxed{7}</think><answer>seven</answer>", "7", 1.0, "ok"),
    # the first match: the rightmost boxed answer, boxed before an anchored one
    (r"<think>maybe \boxed{3}</think><answer>\boxed{4}</answer>", "4", 1.0, "ok"),
    (r"<think>maybe \boxed{4}</think><answer>\boxed{3}</answer>", "4", 0.0, "ok"),
    (r"\boxed{2} and then \boxed{3}", "2", 0.0, "ok"),
    (r"\boxed{5}. The final answer is $7$", "5", 1.0, "ok"),
    # verify(prediction, gold), in that order: an inequality answer matches an interval gold, not the reverse
    (r"\boxed{x>1}", r"(1,\infty)", 1.0, "ok"),
    (r"\boxed{x \geq 2}", r"[2,\infty)", 1.0, "ok"),
    (r"\boxed{(1,\infty)}", "x>1", 0.0, "ok"),
    (r"\boxed{\frac{1}{2}}", "0.5", 1.0, "ok"),
    (r"\boxed{x=2}", "2", 1.0, "ok"),
    (r"\boxed{2}", "x=2", 1.0, "ok"),
    (r"\boxed{\{2, 1\}}", r"\{1,2\}", 1.0, "ok"),
    (r"\boxed{(1, 2]}", "(1,2]", 1.0, "ok"),
    (r"\boxed{(1, 2)}", "[1,2]", 0.0, "ok"),
    (r"\boxed{3\sqrt{2}}", r"\sqrt{18}", 1.0, "ok"),
    (r"\boxed{36}", r"36^\circ", 1.0, "ok"),
    (r"\boxed{B}", "B", 1.0, "ok"),  # option letters go through the same rule
    ("<answer>B</answer>", "B", 0.0, "ok"),
    (r"\boxed{1}", "$1$", 1.0, "ok"),  # `$$1$$` parses too
    # the gold is read as the released code reads it: "see figure" parses (to symbols) and is verified
    (r"\boxed{see figure}", "see figure", 1.0, "ok"),
    (r"\boxed{1}", "see figure", 0.0, "ok"),
    ("", "1", 0.0, "ok"),
    ("   ", "1", 0.0, "ok"),
    # fail closed: an unparseable gold scores 0 (the released code scored 1: --no-fail-closed-gold)
    (r"\boxed{1}", "", 0.0, "gold_unparseable"),
    (r"\boxed{1}", "   ", 0.0, "gold_unparseable"),
    # the gold is stripped and wrapped in $...$ unless it starts with "$": "$3" is parsed as written, and does not
    (r"\boxed{7}", " 7 ", 1.0, "ok"),
    (r"\boxed{3}", "$3", 0.0, "gold_unparseable"),
    # the whole response is read, however long
    ("junk " * 4000 + r"\boxed{2}", "2", 1.0, "ok"),
    (r"\boxed{2}" + " junk" * 4000, "2", 1.0, "ok"),
]

# This project's reading (r1_math_answer, reading "answer"): the last answer block, bare expressions, verify(gold, pred).
ANSWER_CASES = [  # (response, gold, reward, status)
    (r"\frac{1}{2}", "0.5", 1.0, "ok"),
    ("0.5", r"\frac{1}{2}", 1.0, "ok"),
    ("42", "42", 1.0, "ok"),
    ("$42$", "42", 1.0, "ok"),
    (r"So we get \boxed{\frac{3}{4}}.", r"\frac34", 1.0, "ok"),
    (r"\boxed{x=2}", "2", 1.0, "ok"),
    ("x = 2", "2", 1.0, "ok"),
    (r"\boxed{2}", "x=2", 1.0, "ok"),
    (r"\boxed{\{2, 1\}}", r"\{1,2\}", 1.0, "ok"),
    (r"\boxed{(1, 2]}", "(1,2]", 1.0, "ok"),
    (r"\boxed{(1, 2)}", "[1,2]", 0.0, "ok"),
    (r"\boxed{(1,\infty)}", "x>1", 1.0, "ok"),  # verify(gold, prediction): the reverse of the released order
    (r"\boxed{x>1}", r"(1,\infty)", 0.0, "ok"),
    (r"\boxed{3\sqrt{2}}", r"\sqrt{18}", 1.0, "ok"),
    (r"\boxed{36}", r"36^\circ", 1.0, "ok"),
    (r"The answer is \boxed{4}", "3", 0.0, "ok"),
    # boxed answers win over later bare numbers
    (r"\boxed{5} and then 7 more words 8", "5", 1.0, "ok"),
    # the last answer block is parsed, not the thinking
    (r"<think>maybe \boxed{3}</think><answer>\boxed{4}</answer>", "4", 1.0, "ok"),
    (r"<think>maybe \boxed{4}</think><answer>\boxed{3}</answer>", "4", 0.0, "ok"),
    (r"<think>so it is \boxed{7}</think><answer>seven</answer>", "7", 0.0, "ok"),
    ("", "1", 0.0, "ok"),
    ("   ", "1", 0.0, "ok"),
    ("no numbers here", "1", 0.0, "ok"),
    (r"\boxed{1}", "", 0.0, "gold_unparseable"),
    (r"\boxed{1}", "see figure", 0.0, "gold_unparseable"),
    ("see figure", "see figure", 0.0, "gold_unparseable"),
    (r"\boxed{1}", "Yes", 0.0, "gold_unparseable"),
    (r"\boxed{1}", r"\text{see figure}", 0.0, "gold_unparseable"),
    # word-like golds that are math are kept
    (r"\boxed{\sqrt{abc}}", r"\sqrt{abc}", 1.0, "ok"),
    (r"\boxed{\infty}", "infinity", 1.0, "ok"),
    (r"\boxed{x = 2, y = 3}", "x = 2 and y = 3", 1.0, "ok"),
    # only the tail is parsed: an answer pushed out of the last 10k chars is lost
    ("junk " * 4000 + r"\boxed{2}", "2", 1.0, "ok"),
    (r"\boxed{2}" + " junk" * 4000, "2", 0.0, "ok"),
]


def test_released_math_cases_through_pool(math_reward):
    responses, golds, rewards_, statuses = map(list, zip(*RELEASED_CASES))
    results = math_reward.verifier.score(responses, golds)
    assert [(r.reward, r.status) for r in results] == list(zip(rewards_, statuses))


def test_answer_math_cases_through_pool(answer_reward):
    responses, golds, rewards_, statuses = map(list, zip(*ANSWER_CASES))
    results = answer_reward.verifier.score(responses, golds)
    assert [(r.reward, r.status) for r in results] == list(zip(rewards_, statuses))


# An answer is scored whole or not at all: a parse of only a piece of what the model wrote is not a match.
_CHAIN_2 = "\\frac{1}{" * 200 + "2" + "}" * 200  # 200 nested fractions: the value is 2
PARTIAL_CASES = [  # (response, gold): paid by math-verify's parse of a piece of the answer, before the check
    (r"<answer>2\frac{1}{2}</answer>", "1/2"),
    (r"<answer>\frac{1}{2}\pi</answer>", "1/2"),
    (r"<answer>\frac{1}{2}x^2</answer>", "1/2"),
    (r"<answer>3 - \frac{1}{2}</answer>", "1/2"),
    (r"<answer>\sqrt{\frac{1}{2}}</answer>", "1/2"),
    ("<answer>" + _CHAIN_2 + "</answer>", "1/2"),
    ("<answer>42+\\infty</answer>", "42"),
    ("<answer>\\pi \\cdot 42</answer>", "42"),
]
WHOLE_CASES = [  # the same kind of match, standing alone: paid
    (r"<answer>\frac{1}{2}</answer>", "1/2"),
    (r"<answer>(\frac{1}{2})</answer>", "1/2"),
    (r"<answer>\left(\frac{1}{2}\right)</answer>", "1/2"),
    (r"<answer>x = \frac{1}{2}</answer>", "1/2"),
    (r"<answer>\frac{1}{2} cm.</answer>", "1/2"),
    (r"<answer>\frac{1}{2}, so we are done</answer>", "1/2"),
]


@pytest.mark.parametrize("reading", ["released", "answer"])
def test_partial_parse_is_not_a_match(reading):
    for response, gold in PARTIAL_CASES:
        with_check = rmath.check(response, gold, reading=reading)
        assert with_check.reward == 0.0, (response[:60], gold)
        if reading == "answer" or "\\frac{1}{2}" in response[:30]:  # the released reading has no bare numbers
            assert with_check.partial, (response[:60], gold)
            # as released (whole=False) the piece is verified and paid
            assert rmath.check(response, gold, reading=reading, whole=False) == rmath.MathResult(1.0, "ok", True)
    for response, gold in WHOLE_CASES:
        assert rmath.check(response, gold, reading=reading) == rmath.MathResult(1.0, "ok"), response
    # delimited answers are parsed whole by math-verify itself: a mixed number is 5/2, not 1/2
    assert rmath.check(r"\boxed{2\frac{1}{2}}", "1/2", reading=reading) == rmath.MathResult(0.0, "ok")
    assert rmath.check(r"\boxed{2\frac{1}{2}}", "5/2", reading=reading) == rmath.MathResult(1.0, "ok")


def test_extraction_is_math_verify_s(math_reward):
    """parse_prediction returns exactly what math_verify.parse returns; it only adds where the match sits."""
    from math_verify import parse
    texts = [r for r, _, _, _ in RELEASED_CASES + ANSWER_CASES] + [r for r, _ in PARTIAL_CASES[:5] + WHOLE_CASES]
    for text in texts:
        for configs, mode in ((rmath.RELEASED_PRED_CONFIG, "first_match"), (rmath.ANSWER_PRED_CONFIG, "any_match")):
            want = parse(text, extraction_config=configs, extraction_mode=mode, parsing_timeout=None)
            got, _ = rmath.parse_prediction(text, None, configs, mode)
            assert [str(x) for x in got] == [str(x) for x in want], text


def test_partial_parses_counted_by_the_reward(answer_reward):
    out = answer_reward(["<think>t</think><answer>42+\\infty</answer>", "<think>t</think><answer>42</answer>",
                         "<think>t</think><answer>\\frac{1}{2} bh</answer>", "<think>t</think><answer>3 cm</answer>"],
                        ["42", "42", "1/2", "3"])  # juxtaposed: tests/test_whole_answer.py
    assert out.components["accuracy"] == [0.0, 1.0, 0.0, 1.0]
    assert out.counts["reward/partial_parse"] == 2


def test_math_in_process_matches_pool():
    for response, gold, reward, status in RELEASED_CASES[:12] + RELEASED_CASES[-6:]:
        assert math_accuracy(response, gold) == MathResult(reward, status), (response, gold)
    for response, gold, reward, status in ANSWER_CASES[:6] + ANSWER_CASES[-6:]:
        assert math_accuracy(response, gold, reading="answer") == MathResult(reward, status), (response, gold)
    with pytest.raises(ValueError):
        math_accuracy("1", "1", reading="nope")


def test_r1_math_components_and_counts(math_reward):
    good = r"<think>1+1</think><answer>\boxed{2}</answer>"
    stray = r"<think>1+1 is </answer> two</think><answer>\boxed{2}</answer>"  # format 0.5: opening tags counted
    out = math_reward(
        [good, good, r"<think>x</think> <answer>\boxed{2}</answer>", "<think>1+1</think><answer>2</answer>", stray],
        ["2", "", "2", "2", "2"],
        [{}, {}, {}, {}, {}],
    )
    assert isinstance(out, RewardOutput)
    assert out.components == {
        "format": [0.5, 0.5, 0.0, 0.5, 0.5],
        "accuracy": [1.0, 0.0, 1.0, 0.0, 1.0],  # an answer "2" with no `\boxed` scores 0
        "total": [1.5, 0.5, 1.0, 0.5, 1.5],
    }
    assert out.counts == {"reward/checked": 4, "data/gold_unparseable": 1, "reward/timeout": 0, "reward/error": 0,
                          "reward/partial_parse": 0, "reward/worker_restarts": 0, "reward/worker_start_failures": 0}


def test_r1_math_answer_components_and_counts(answer_reward):
    good = r"<think>1+1</think><answer>\boxed{2}</answer>"
    out = answer_reward(
        [good, good, r"<think>x</think> <answer>2</answer>", "3"],
        ["2", "see figure", "2", "2"],
        [{}, {}, {}, {}],
    )
    assert out.components == {
        "format": [0.5, 0.5, 0.0, 0.0],
        "accuracy": [1.0, 0.0, 1.0, 0.0],
        "total": [1.5, 0.5, 1.0, 0.0],
    }
    assert out.counts == {"reward/checked": 3, "data/gold_unparseable": 1, "reward/timeout": 0, "reward/error": 0,
                          "reward/partial_parse": 0, "reward/worker_restarts": 0, "reward/worker_start_failures": 0}


def test_r1_auto_letters_for_choice_released_rule_for_the_rest():
    with get_reward("r1_auto", workers=1, timeout=POOL_TIMEOUT) as fn:
        out = fn(["<think>t</think><answer>(B)</answer>", "<think>t</think><answer>2</answer>",
                  r"<think>t</think><answer>\boxed{2}</answer>"],
                 ["B", "2", "2"], [{"domain": "choice"}, {"domain": "math"}, {}])
    assert out.components == {"format": [0.5, 0.5, 0.5], "accuracy": [1.0, 0.0, 1.0], "total": [1.5, 0.5, 1.5]}
    assert out.counts == {"reward/checked": 3, "data/gold_unparseable": 0, "reward/timeout": 0, "reward/error": 0,
                          "reward/partial_parse": 0, "reward/worker_restarts": 0, "reward/worker_start_failures": 0}


def test_timeout_kills_worker_and_rest_of_batch_is_scored(math_reward):
    verifier = math_reward.verifier
    verifier.score(["1"], ["1"])  # workers are warm
    before = set(verifier.pids)
    results = verifier.score(
        [r"\boxed{9^{9^{9^{9^{9}}}}}", r"\boxed{2}", r"\boxed{(10^{10})!}", r"\boxed{7}"],
        ["1", "2", "1", "8"],
    )
    assert [(r.reward, r.status) for r in results] == [
        (0.0, "timeout"), (1.0, "ok"), (0.0, "timeout"), (0.0, "ok")]
    killed = before - set(verifier.pids)
    assert len(killed) == 2 and all(_gone(pid) for pid in killed)
    # The replacement workers score normally.
    assert verifier.score([r"\boxed{2}"] * 3, ["2"] * 3) == [MathResult(1.0, "ok")] * 3


def test_memory_error_in_process_is_error(monkeypatch):
    def boom(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(rmath, "verify", boom)
    assert math_accuracy(r"\boxed{1}", "1") == MathResult(0.0, "error")


def test_worker_address_space_limit_and_cleanup():
    # bytearray(1 GiB) succeeds without a limit; under RLIMIT_AS of start-up size + 64 MiB it cannot.
    pool = KillPool(bytearray, workers=1, timeout=10.0,
                    setup=rmath.worker_setup, setup_args=(64,))
    try:
        first_pid = pool.pids[0]
        assert pool.map([(1 << 30,), (3,)]) == [("error", "MemoryError"), ("ok", bytearray(3))]
        pid = pool.pids[0]
        assert pid != first_pid and _gone(first_pid)  # the failed worker was replaced and reaped
        with open(f"/proc/{pid}/limits") as f:
            limit = next(line.split()[3] for line in f if line.startswith("Max address space"))
        assert 64 << 20 < int(limit) < 1 << 30
    finally:
        pool.close()
    assert _gone(pid)
    with pytest.raises(RuntimeError):
        pool.map([(1,)])


# ---------------------------------------------------------------- choice

@pytest.mark.parametrize("response, letter", [
    ("(B)", "B"),
    ("B.", "B"),
    ("B) 36°", "B"),
    ("(B) 36°", "B"),
    (r"\boxed{B}", "B"),
    (r"The answer is \boxed{\text{(D)}}.", "D"),
    ("The answer is B", "B"),
    ("The answer is: **C**", "C"),
    ("B", "B"),
    ("<think>Maybe (A)? No.</think><answer>E</answer>", "E"),
    ("Option A is wrong, so the answer is C.", "C"),
    ("The correct option is D because the angle is obtuse.", "D"),
    ("Angles add up.\nC. 40°", "C"),
    # no letter from inside ordinary words, articles or lowercase text
    ("BAD CAB", None),
    ("A triangle has three sides.", None),
    ("Because of this, it follows.", None),
    ("the answer is b", None),
    (r"\boxed{36}", None),
    ("", None),
])
def test_extract_choice(response, letter):
    assert extract_choice(response) == letter


def test_extract_choice_on_adversarial_input():
    # Speed on these inputs is measured by bench/reward_adversarial.py.
    cases = ["answer" + " " * 9_990, "option" + " " * 9_990 + "is" + " " * 9_990,
             r"\boxed{" * 1_200, "(" * 10_000, "<answer>" * 1_250, "a" * 200_000]
    assert [extract_choice(c) for c in cases] == [None] * len(cases)


@pytest.mark.parametrize("response, gold, expected", [
    ("<answer>(B)</answer>", "B", 1.0),
    ("<answer>B</answer>", "(B)", 1.0),
    ("<answer>B. 36°</answer>", "b", 1.0),
    ("<answer>C</answer>", "B", 0.0),
    ("A triangle", "A", 0.0),
    ("<answer>B</answer>", "36", 0.0),  # gold is not a letter
])
def test_choice_reward(response, gold, expected):
    assert choice_reward(response, gold) == expected


# ---------------------------------------------------------------- registry

def test_registry_choice_and_format():
    good = "<think>t</think><answer>(B)</answer>"
    with get_reward("r1_choice", workers=2, timeout=5.0) as fn:  # pool options are ignored
        out = fn([good, "B", good], ["B", "B", "12"], [{}, {}, {}])
    assert out.components == {"format": [0.5, 0.0, 0.5], "accuracy": [1.0, 1.0, 0.0],
                              "total": [1.5, 1.0, 0.5]}
    assert out.counts == {"reward/checked": 2, "data/gold_unparseable": 1}

    out = get_reward("format")([good, "B"], ["B", "B"], None)
    assert out.components == {"format": [0.5, 0.0], "total": [0.5, 0.0]}
    assert set(REWARDS) >= {"r1_math", "r1_math_answer", "r1_choice", "r1_auto", "format"}

    with pytest.raises(KeyError):
        get_reward("nope")
    with pytest.raises(ValueError):
        get_reward("format")(["a"], ["a", "b"], None)
