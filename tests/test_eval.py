"""eval.py: benchmark loaders on their fixtures, the judge-free scorer on hand-written answers, greedy decoding,
an end-to-end run on the tiny model, --compare, and one-line errors for bad input."""

import json
import shutil
from pathlib import Path

import pytest

import eval as eval_cli
from data import DataError, R1_SYSTEM_PROMPT
from data.benchmarks import BENCHMARKS, ENV_SEED, GROUPS, load_benchmark, resolve_benchmark_names
from evaluation import PAPER, Score, Scorer, compare_table, markdown_table, summarize
from rewards.benchmarks import (score_choice, score_football, score_mathvista, score_short, score_sokoban,
                                scorer_version)
from rewards.text import normalize_text, numbers_in

HUB_BENCHMARKS = [n for n, b in BENCHMARKS.items() if b.generate is None]
DOMAINS = {"math500": {"math"}, "gpqa_diamond": {"choice"}, "olympiadbench": {"math"},
           "mathverse": {"choice", "math"}, "mathvision_test": {"choice", "math"},
           "mathvision_testmini": {"choice", "math"}, "mathvista": {"choice", "mathvista"}, "mmstar": {"choice"},
           "realworldqa": {"choice", "short"}, "blink": {"choice"}}


# --------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("name", HUB_BENCHMARKS)
def test_each_loader_reads_its_fixture(name):
    samples, origin = load_benchmark(name, "fixture")
    assert origin == "fixture" and len(samples) >= 2
    assert {s.domain for s in samples} == DOMAINS[name]
    assert len({s.meta["id"] for s in samples}) == len(samples)
    for s in samples:
        assert s.messages[0]["content"][0]["text"] == R1_SYSTEM_PROMPT and s.question.strip() and s.answer
        assert s.meta["benchmark"] == name
        if s.domain == "choice":
            assert s.answer in "ABCDEFGHIJ" and len(s.answer) == 1
            assert ord(s.answer) - 65 < len(s.meta["options"])  # the gold option exists
        for image in s.images:
            assert isinstance(image, str) and image.endswith(".png")
        assert bool(s.images) == (BENCHMARKS[name].modality == "image")


def test_loader_details():
    gpqa = load_benchmark("gpqa_diamond", "fixture")[0][0]
    assert gpqa.meta["options"][ord(gpqa.answer) - 65] == "20 m"  # the correct answer, at its shuffled place
    assert load_benchmark("gpqa_diamond", "fixture")[0][0].meta["options"] == gpqa.meta["options"]  # fixed order
    vista = {s.meta["id"]: s for s in load_benchmark("mathvista", "fixture")[0]}
    assert vista["1"].answer == "D" and vista["3"].meta["precision"] == 2.0 and vista["3"].meta["unit"] == "cm^2"
    rwqa = load_benchmark("realworldqa", "fixture")[0]
    assert "Please answer directly" not in rwqa[0].question  # contradicts the R1 prompt's reasoning
    blink = load_benchmark("blink", "fixture")[0]
    assert blink[0].answer == "B" and len(blink[1].images) == 3
    assert load_benchmark("mathvision_test", "fixture")[0][0].question.startswith("Which bar")  # <image1> removed
    assert len(load_benchmark("math500", "fixture", limit=1)[0]) == 1


def test_game_benchmarks_are_fixed_seeded_sets():
    a, origin = load_benchmark("sokoban", env_samples=3)
    b, _ = load_benchmark("sokoban", "hub", env_samples=3)
    assert str(ENV_SEED) in origin and [s.meta["level"] for s in a] == [s.meta["level"] for s in b]
    assert len(load_benchmark("football", limit=2, env_samples=5)[0]) == 2


def test_hub_unreachable_falls_back_to_fixture_only_in_auto(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_benchmark("mmstar", "auto", limit=1)[1] == "fixture"
    with pytest.raises(ConnectionError, match="Lin-Chen/MMStar"):
        load_benchmark("mmstar", "hub", limit=1)


def test_offline_is_known_once_without_asking_the_hub(monkeypatch, caplog):
    """No network and no HF_HUB_OFFLINE: one probe (a port nothing listens on stands for the hub), no hub call, and
    one warning line for the whole run, not one per benchmark."""
    import data.benchmarks as benchmarks
    from data.io import hub_unreachable

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(benchmarks, "_hub_rows", lambda *a: pytest.fail("the hub was asked"))
    monkeypatch.setattr(benchmarks, "_NOTED", [])
    hub_unreachable.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="data.benchmarks"):
            assert [load_benchmark(name, "auto", limit=1)[1] for name in ("mmstar", "math500")] == ["fixture"] * 2
        assert hub_unreachable().startswith("127.0.0.1: ")
    finally:
        hub_unreachable.cache_clear()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "the hub is not reachable (127.0.0.1: " in warnings[0]


def test_local_copy_and_bad_rows(tmp_path):
    good = tmp_path / "math500.jsonl"
    shutil.copy(BENCHMARKS["math500"].fixture, good)
    samples, origin = load_benchmark("math500", str(good))
    assert origin == str(good) and [s.answer for s in samples] == ["25", "\\frac{5}{2}", "9\\pi"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1?", "answer": "2"}\n{"question": "2+2?"}\n')
    with pytest.raises(DataError, match=f"{bad}:2: not a MATH-500 row"):
        load_benchmark("math500", str(bad))
    with pytest.raises(FileNotFoundError):
        load_benchmark("math500", str(tmp_path / "missing.jsonl"))


def test_benchmark_names():
    assert resolve_benchmark_names("all") == [n for n in BENCHMARKS if not n.startswith("classroom")]
    assert resolve_benchmark_names("classroom") == ["classroom-text", "classroom-image", "classroom-geo"]
    assert resolve_benchmark_names("classroom-val") == ["classroom-text-val", "classroom-image-val",
                                                        "classroom-geo-val"]
    assert resolve_benchmark_names("text,math500, MMStar") == GROUPS["text"] + ["mmstar"]
    with pytest.raises(ValueError, match="unknown benchmark 'mathvistaa'.*mathvista"):
        resolve_benchmark_names("mathvistaa")
    with pytest.raises(ValueError, match="not supported.*judge"):
        resolve_benchmark_names("mm-vet")


# --------------------------------------------------------------------------- scoring

OPTIONS = ["12", "36^\\circ", "48", "60"]


@pytest.mark.parametrize("response, letter", [
    ("(B)", "B"), ("B.", "B"), ("B) 36", "B"), ("\\boxed{B}", "B"), ("<think>..</think><answer>B</answer>", "B"),
    ("<think>so 36</think><answer>The answer is (B)</answer>", "B"),
    ("<answer>36°</answer>", "B"),  # equal to an option's text
    ("<answer>$36^{\\circ}$</answer>", "B"),
    ("<answer>48</answer>", "C"),  # another option's text: extracted, wrong
    ("<answer>(D)</answer>", "D"),
    ("<answer>I cannot tell</answer>", None), ("", None),
])
def test_choice_scoring(response, letter):
    score = score_choice(response, "B", OPTIONS)
    assert score.extracted == letter and score.correct == (letter == "B")


@pytest.mark.parametrize("response, gold, kind, precision, unit, correct, extracted", [
    ("<answer>3</answer>", "3", "integer", None, "", True, "3"),
    ("<answer>3.0</answer>", "3", "integer", None, "", True, "3"),
    ("<answer>3.2</answer>", "3", "integer", None, "", False, "3.2"),
    ("<answer>1,000 people</answer>", "1000", "integer", None, "", True, "1000"),
    ("<answer>28.274 cm^2</answer>", "28.27", "float", 2.0, "cm^2", True, "28.274"),  # rounded to 2 places
    ("<answer>\\boxed{28.3}</answer>", "28.27", "float", 2.0, "cm^2", False, "28.3"),  # too coarse for 2 places
    ("<answer>28.3 cm^2</answer>", "28.3", "float", 1.0, "cm^2", True, "28.3"),  # the unit's 2 is not the answer
    ("<answer>\\frac{1}{2}</answer>", "0.5", "float", 1.0, "", True, "0.5"),
    ("<answer>[2007, 2008]</answer>", "[2007, 2008]", "list", None, "", True, "[2007.0, 2008.0]"),
    ("<answer>no idea</answer>", "2.5", "float", 1.0, "", False, None),
])
def test_mathvista_precision_and_unit(response, gold, kind, precision, unit, correct, extracted):
    score = score_mathvista(response, gold, kind, precision, unit)
    assert (score.correct, score.extracted) == (correct, extracted)


def test_short_answers_and_helpers():
    assert score_short("<answer>Three.</answer>", "three").correct
    assert score_short("<answer>3</answer>", "3.0").correct
    assert not score_short("<answer>4</answer>", "3").correct
    assert score_short("<answer> </answer>", "3").extracted is None
    assert normalize_text("$\\text{Yes}$.") == "yes" and numbers_in("x = \\frac{3}{4}, or 1,200") == [0.75, 1200.0]


def test_game_scoring():
    from envs.sokoban import Level, solve

    level = load_benchmark("sokoban", env_samples=1)[0][0].meta["level"]
    plan = solve(Level.from_dict(level))
    solved = score_sokoban(f"<think>push</think><answer>{', '.join(plan)}</answer>", level)
    assert solved.correct and solved.extracted == ", ".join(plan)
    assert not score_sokoban("<think>x</think><answer>up</answer>", level).correct or len(plan) == 1
    assert score_sokoban("no tags", level).extracted is None
    state = load_benchmark("football", env_samples=1)[0][0].meta["state"]
    played = score_football("<think>go</think><answer>shot</answer>", state)
    assert played.extracted == "shot" and played.correct == (played.reward > 0.5)
    assert score_football("<think>go</think><answer>fly</answer>", state).extracted is None


def test_math_scoring_uses_the_reward_verifier():
    from data.sample import Sample

    samples = [Sample([], "\\frac{5}{2}", "math"), Sample([], "25", "math"), Sample([], "25", "math"),
               Sample([], "B", "choice", {"options": OPTIONS})]
    responses = ["<answer>\\boxed{\\frac{10}{4}}</answer>", "<answer>\\boxed{24}</answer>",
                 "<answer>no number here</answer>", "<answer>(B)</answer>"]
    with Scorer(workers=0) as scorer:  # in this process (eval.py's end-to-end test uses the worker pool)
        scores = scorer.score(samples, responses)
    assert [s.correct for s in scores] == [True, False, False, True]
    assert scores[1].extracted == "24" and scores[2].extracted is None


def test_pass_at_k_and_mean_at_k():
    from data.sample import Sample

    samples = [Sample([], "1", "math"), Sample([], "2", "math")]
    flags = [True, False, False, False]  # item 1: one of two right; item 2: none
    scores = [Score(f, "x" if i != 3 else None) for i, f in enumerate(flags)]
    out = summarize(samples, scores, [10, 20, 30, 40], [True, True, True, False], k=2)
    assert out["accuracy"] == 0.25 and out["pass@2"] == 0.5 and out["unextractable"] == 0.25
    assert out["response_len"] == 25 and out["truncated"] == 0.25 and out["n"] == 2


# --------------------------------------------------------------------------- decoding


def test_greedy_decoding_is_deterministic(tiny_checkpoint):
    from data.sample import Sample, make_messages
    from rl.batch import encode_prompts
    from rl.policy import load_policy
    from rl.rollout import generate

    model, processor = load_policy(tiny_checkpoint)
    rows = encode_prompts(processor, [Sample(make_messages("What is 2 + 2?"), "4")])
    a = generate(model, processor, rows, 1, temperature=0.0, max_new_tokens=6)
    b = generate(model, processor, rows, 1, temperature=0.0, max_new_tokens=6)
    assert a.responses[0].tolist() == b.responses[0].tolist()


# --------------------------------------------------------------------------- eval.py


def _main(*argv):
    eval_cli.main([str(a) for a in argv])


def test_eval_end_to_end_and_compare(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "ev"
    _main("--model", tiny_checkpoint, "--benchmarks", "all", "--limit", 2, "--max-new-tokens", 6, "--env-samples", 2,
          "--workers", 1, "--quiet", "--out", out)
    results = json.loads((out / "results.json").read_text())
    assert list(results["benchmarks"]) == GROUPS["all"] and "mmvet" in results["not_supported"]
    assert results["settings"]["temperature"] == 0.0 and results["settings"]["max_new_tokens"] == 6
    for name, b in results["benchmarks"].items():
        assert b["n"] == 2 and b["k"] == 1 and 0 <= b["accuracy"] <= 1 and 0 <= b["unextractable"] <= 1
        assert 0 < b["response_len"] <= 6
        assert b["source"] == "fixture" or name in ("sokoban", "football")
    lines = [json.loads(x) for x in (out / "responses.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * len(GROUPS["all"])
    assert {"benchmark", "id", "question", "gold", "response", "extracted", "correct", "tokens"} <= set(lines[0])
    table = (out / "results.md").read_text()
    assert "| MathVerse testmini | fixture | 2 |" in table and f"{PAPER['mathverse']:.1f}" in table
    assert table in capsys.readouterr().out
    assert results["scorer"] == scorer_version() and results["benchmarks"]["math500"]["data_sha256"]
    assert "ambiguous" in results["benchmarks"]["mmstar"]
    page = (out / "samples.html").read_text()  # the first items of each benchmark, images inline
    assert page.count("<h2>") == len(GROUPS["all"]) and 'src="data:image/png;base64,' in page

    # --rescore: the saved responses scored again without generating reproduce the table exactly
    _main("--rescore", out, "--workers", 0)  # in this process: trusted text
    assert (out / "results.md").read_text() == table
    assert [json.loads(x) for x in (out / "responses.jsonl").read_text().splitlines()] == lines

    better = json.loads(json.dumps(results))
    better["model"] = "better"
    better["benchmarks"]["math500"]["accuracy"] = results["benchmarks"]["math500"]["accuracy"] + 0.5
    (tmp_path / "b.json").write_text(json.dumps(better))
    _main("--compare", out, tmp_path / "b.json", "--out", tmp_path / "cmp")
    text = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| MATH-500 | 2 / 2 |" in text and "| +50.0 |" in text and "| +0.0 |" in text
    assert compare_table(results, better).count("\n| ") == len(GROUPS["all"]) + 1


def test_sampling_reports_pass_at_k(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _main("--model", tiny_checkpoint, "--benchmarks", "gpqa_diamond", "--samples", 2, "--max-new-tokens", 4,
          "--quiet", "--out", tmp_path)
    b = json.loads((tmp_path / "results.json").read_text())["benchmarks"]["gpqa_diamond"]
    assert b["k"] == 2 and "pass@2" in b
    assert "pass@2 %" in markdown_table(json.loads((tmp_path / "results.json").read_text()))


@pytest.mark.parametrize("argv, message", [
    (["--benchmarks", "nope"], "unknown benchmark 'nope'"),
    (["--benchmarks", "mmvet"], "not supported"),
    (["--samples", "2", "--temperature", "0"], "greedy"),
    (["--data", "math500"], "NAME=PATH"),
])
def test_bad_flags_give_one_line(tiny_checkpoint, argv, message):
    with pytest.raises(SystemExit) as e:
        _main("--model", tiny_checkpoint, *argv)
    assert str(e.value.code).startswith("error:") and message in str(e.value.code) and "\n" not in e.value.code


def test_bad_model_and_missing_fixture_give_one_line(tmp_path, tiny_checkpoint, monkeypatch):
    for model, message in [(tmp_path, "not a checkpoint folder"), (tmp_path / "nope", "model not found")]:
        with pytest.raises(SystemExit) as e:
            _main("--model", model, "--benchmarks", "math500")
        assert message in e.value.code and "\n" not in e.value.code
    monkeypatch.setattr("data.benchmarks.BENCHMARK_FIXTURE_DIR", tmp_path)
    with pytest.raises(SystemExit) as e:
        _main("--model", tiny_checkpoint, "--benchmarks", "math500", "--source", "fixture", "--out", tmp_path / "o")
    assert "math500.jsonl" in e.value.code and "\n" not in e.value.code
    with pytest.raises(SystemExit) as e:
        _main("--compare", tmp_path / "x", tmp_path / "y")
    assert "no results.json" in e.value.code


# the cases published responses showed (issue: judge-free scores that agree with the official verdicts)
SIX = ["3 cm", "6 cm", "9 cm", "12 cm", "15 cm", "18 cm"]


@pytest.mark.parametrize("response, options, gold, letter, correct", [
    ("<answer>The length is 6 cm.</answer>", SIX, "B", "B", True),  # the option's text in a sentence
    ("<answer>So the side is 18 cm, twice 9 cm.</answer>", SIX, "F", None, False),  # two options stated: ambiguous
    ("The answer is F", SIX, "F", "F", True),  # letters after E, up to the number of options
    ("The answer is F", ["1", "2", "3", "4"], "A", None, False),  # F is no option here
    ("答案是C", SIX, "C", "C", True), ("所以选C。", SIX, "C", "C", True), ("答案：D", SIX, "D", "D", True),
    ("<answer>8:5</answer>", ["$3: 2$", "$8: 5$", "$5: 8$"], "B", "B", True),  # the value written another way
    ("<answer>\\frac{1}{3}</answer>", ["1:2", "1:3", "2:3"], "B", "B", True),
    ("<answer>\\boxed{\\frac{\\sqrt{3}}{6}}</answer>", ["\\frac{\\sqrt{3}}{3}", "\\frac{\\sqrt{3}}{6}"], "B", "B",
     True),
    ("A: 9 cm", SIX, "C", "C", True),  # "A:" as "Answer:" before another option's text
    ("A. 3 cm", SIX, "A", "A", True),  # ... and before its own
    ("Yes, the two lines are parallel.", ["Yes", "No"], "A", "A", True),
    ("<answer>(B)</answer>", ["7", "7", "9"], "A", "B", True),  # one text under two letters: either is right
    ("<answer>B</answer>", ["x", "y"], "False", "B", False),  # a gold that is no letter
    ("<answer>B</answer>", ["x", "y"], "(b)", "B", True),  # a gold letter written another way
])
def test_choice_reading_of_published_answer_forms(response, options, gold, letter, correct):
    score = score_choice(response, gold, options)
    assert (score.extracted, score.correct) == (letter, correct)
    assert score.status == ("gold_not_a_letter" if gold == "False" else
                            "ambiguous" if letter is None and "twice" in response else "ok")


@pytest.mark.parametrize("response, gold, kind, extracted", [
    ("<answer>The answer is 12. Check: 3 x 4 = 12 and 15 - 3 = 12, so 15 is wrong.</answer>", "12", "integer", "12"),
    ("the answer is 12, then we check 15", "12", "integer", "12"),  # "answer is" wins over the last number
    ("<answer>three</answer>", "3", "integer", "3"),  # number words
    ("<answer>There are twenty birds.</answer>", "20", "integer", "20"),
])
def test_free_form_numbers(response, gold, kind, extracted):
    score = score_mathvista(response, gold, kind)
    assert score.correct and score.extracted == extracted


@pytest.mark.parametrize("response, gold", [
    ("<think>x</think><answer>18</answer>", "18"),  # no LaTeX: the answer reading (training keeps the released one)
    ("The answer is 12. So 3*4=12.", "12"), ("<answer>0.5</answer>", "\\frac{1}{2}"),
    ("<answer>\\boxed{\\frac{\\sqrt{3}}{6}}</answer>", "\\frac{\\sqrt{3}}{6}"), ("<answer>three</answer>", "3"),
])
def test_math_is_read_as_an_answer_and_extracted_from_the_same_reading(response, gold):
    from rewards.benchmarks import math_check
    reward, status, extracted = math_check(response, gold, timeout=5)
    assert reward == 1.0 and status == "ok" and extracted is not None
    from rewards.math import check
    assert check("<answer>18</answer>", "18").reward == 0.0  # the released reading, as training reads it


def test_mathvista_in_its_published_layout(tmp_path, caplog):
    """testmini.json as MathVista publishes it: one JSON object of rows keyed by pid, images in images/; a row
    without `query` loads with one warning (its prompt lacks the answer-form hint)."""
    from PIL import Image

    (tmp_path / "images").mkdir()
    rows = {}
    for pid in ("1", "2", "3"):
        Image.new("RGB", (8, 8), (int(pid) * 60, 0, 0)).save(tmp_path / "images" / f"{pid}.jpg", "PNG")
        rows[pid] = {"question": f"How many? ({pid})", "image": f"images/{pid}.jpg", "choices": None, "unit": None,
                     "precision": None, "answer": pid, "question_type": "free_form", "answer_type": "integer",
                     "pid": pid, "metadata": {"source": "x"},
                     "query": f"Hint: Please answer the question requiring an integer answer.\\nHow many? ({pid})"}
    rows["3"].update(question_type="multi_choice", answer_type="text", choices=["red", "blue"], answer="blue")
    del rows["2"]["query"]
    path = tmp_path / "testmini.json"
    path.write_text(json.dumps(rows, indent=4))
    with caplog.at_level("WARNING"):
        samples, origin = load_benchmark("mathvista", str(path))
    assert origin == str(path) and [s.meta["id"] for s in samples] == ["1", "2", "3"]
    assert samples[0].question.startswith("Hint:") and samples[1].question == "How many? (2)"
    assert samples[2].answer == "B" and samples[2].domain == "choice"
    assert Path(samples[0].images[0]) == tmp_path / "images" / "1.jpg"  # beside the file, as published
    assert sum("rows without 'query'" in r.message for r in caplog.records) == 1
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(DataError, match="bad.json"):
        load_benchmark("mathvista", str(bad))


def test_the_scorer_version_changes_when_a_rule_changes(tmp_path):
    from rewards.benchmarks import RULE_FILES

    copies = []
    for f in RULE_FILES:
        copies.append(tmp_path / f"{len(copies)}.py")
        copies[-1].write_bytes(f.read_bytes())
    assert scorer_version(copies) == scorer_version()
    names = [f.name for f in RULE_FILES]
    assert {"benchmarks.py", "choice.py", "math.py", "text.py", "sokoban.py"} <= set(names)
    rule = copies[names.index("choice.py")]
    rule.write_text(rule.read_text().replace('LETTERS = "ABCDEFGHIJ"', 'LETTERS = "ABCDEFGH"', 1))
    assert scorer_version(copies) != scorer_version()
