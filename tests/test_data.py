"""Tests for data/: Sample, loaders, fixtures and the synthetic math generator (offline, fast)."""

import json
import logging
import sys
import types
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image

from data import load_dataset_by_name
from data.io import FIXTURE_DIR, DataError, load_image, resolve_image_path
from data.loaders import DEEPSCALER_ID, load_deepscaler, load_fixture, load_jsonl, load_message_jsonl
from data.sample import R1_SYSTEM_PROMPT, Sample, make_messages
from data.synth import math as synth_math


def write_lines(path, rows):
    """Write rows (dicts are JSON-encoded, strings are written verbatim) one per line."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def chat(image_ref, text="What is shown?", system=None):
    msgs = [{"role": "system", "content": system}] if system else []
    content = ([{"type": "image", "image": image_ref}] if image_ref else []) + [{"type": "text", "text": text}]
    msgs.append({"role": "user", "content": content})
    return json.dumps(msgs)


def assert_system_first(sample):
    first = sample.messages[0]
    assert first["role"] == "system"
    assert first["content"] == [{"type": "text", "text": R1_SYSTEM_PROMPT}]
    assert [m["role"] for m in sample.messages].count("system") == 1


@pytest.fixture
def png_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.new("RGB", (8, 6), "red").save(d / "a.png")
    Image.new("L", (5, 5), 128).save(d / "b.png")  # grayscale: load_image must give RGB
    return d


# --------------------------------------------------------------------------- Sample


def test_make_messages_and_images_property():
    msgs = make_messages("Q?", images=["x.png", "y.png"])
    assert msgs[0]["role"] == "system" and msgs[0]["content"][0]["text"] == R1_SYSTEM_PROMPT
    assert msgs[1] == {"role": "user", "content": [
        {"type": "image", "image": "x.png"}, {"type": "image", "image": "y.png"}, {"type": "text", "text": "Q?"}]}
    s = Sample(msgs, "1", "geo")
    assert s.images == ["x.png", "y.png"] and s.question == "Q?" and s.meta == {}
    assert make_messages("Q?", system=None) == [{"role": "user", "content": [{"type": "text", "text": "Q?"}]}]
    assert R1_SYSTEM_PROMPT.startswith("A conversation between User and Assistant.")
    assert R1_SYSTEM_PROMPT.endswith("<think> reasoning process here </think><answer> answer here </answer>")


# --------------------------------------------------------------------------- fixtures


def test_math_fixture_loads_and_matches_generator():
    samples = load_fixture("math")
    assert len(samples) == 64
    for i, s in enumerate(samples, 1):
        assert_system_first(s)
        assert s.domain == "math" and s.answer and s.images == []
        assert s.question and s.meta["line"] == i and s.meta["file"].endswith("math_fixture.jsonl")
    # the committed file is exactly what `python -m data.synth.math` writes
    rows = [json.loads(l) for l in (FIXTURE_DIR / "math_fixture.jsonl").read_text().splitlines()]
    assert rows == synth_math.generate(64, seed=0)
    assert load_dataset_by_name("fixture") == samples
    assert load_dataset_by_name("fixture:math", max_samples=5) == samples[:5]


def test_message_fixture_images_resolve_and_open():
    samples = load_fixture("message")
    assert len(samples) == 4
    assert {s.domain for s in samples} == {"geo", "choice"}
    assert [s.meta["id"] for s in samples] == ["tri_0_hyp", "tri_0_area", "rect_0_area", "rect_0_perim"]
    for s in samples:
        assert_system_first(s)
        assert s.answer and s.question
        (img_path,) = s.images
        assert Path(img_path).is_absolute() and Path(img_path).parent == FIXTURE_DIR / "images"
        assert Path(img_path).stat().st_size < 10_000
        img = load_image(img_path)
        assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size[0] > 0
    # relative file:// convention in the committed file
    raw = json.loads((FIXTURE_DIR / "message_fixture.jsonl").read_text().splitlines()[0])
    assert json.loads(raw["message"])[0]["content"][0]["image"] == "file://images/tri_0.png"
    assert load_dataset_by_name(FIXTURE_DIR / "message_fixture.jsonl") == samples
    assert load_dataset_by_name("fixture:message") == samples
    with pytest.raises(ValueError, match="unknown fixture"):
        load_fixture("nope")


# --------------------------------------------------------------------------- DeepScaleR


def test_deepscaler_local_jsonl(tmp_path):
    p = write_lines(tmp_path / "ds.jsonl", [
        {"problem": "What is 1+1?", "answer": "2", "solution": "1+1=2"},
        "",  # blank lines are ignored but still counted for line numbers
        {"problem": "Half of 3?", "answer": "\\frac{3}{2}", "id": "q-7"},
        {"problem": "Int answer", "answer": 5},
    ])
    samples = load_deepscaler(p)
    assert [s.answer for s in samples] == ["2", "\\frac{3}{2}", "5"]
    assert all(s.domain == "math" for s in samples)
    assert samples[0].question == "What is 1+1?"
    assert samples[0].meta == {"solution": "1+1=2", "file": str(p), "line": 1, "id": "ds:1"}
    assert samples[1].meta["line"] == 3 and samples[1].meta["id"] == "q-7"
    assert_system_first(samples[0])
    assert load_deepscaler(p, max_samples=2) == samples[:2]
    assert load_deepscaler(p, system=None)[0].messages[0]["role"] == "user"
    # dispatch: no `message` key -> plain loader, same prompts/answers
    assert [(s.question, s.answer) for s in load_dataset_by_name(p)] == [(s.question, s.answer) for s in samples]


def test_deepscaler_json_and_parquet(tmp_path):
    rows = [{"problem": "P1", "answer": "1"}, {"problem": "P2", "answer": "2"}]
    pj = tmp_path / "ds.json"
    pj.write_text(json.dumps(rows))
    assert [s.answer for s in load_deepscaler(pj)] == ["1", "2"]
    pj.write_text(json.dumps([rows[0], {"problem": "P2"}]))
    with pytest.raises(DataError, match=r"ds\.json:row 2: missing answer"):
        load_deepscaler(pj)
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pp = tmp_path / "ds.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pp)
    assert [s.question for s in load_dataset_by_name(pp)] == ["P1", "P2"]


def test_one_rows_reader_json_documents_and_lines(tmp_path):
    """A JSON document (a list, {"data": [...]}, one object) is read by row number, JSON lines by line number."""
    rows = [{"problem": "P1", "answer": "1"}, {"problem": "P2"}]
    (tmp_path / "d.json").write_text(json.dumps({"data": rows}))
    with pytest.raises(DataError, match=r"d\.json:row 2: missing answer"):
        load_deepscaler(tmp_path / "d.json")
    (tmp_path / "one.json").write_text(json.dumps(rows[0], indent=2))
    assert [(s.answer, s.meta["line"]) for s in load_deepscaler(tmp_path / "one.json")] == [("1", 1)]
    (tmp_path / "lines.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")  # JSON lines named .json
    with pytest.raises(DataError, match=r"lines\.json:2: missing answer"):
        load_deepscaler(tmp_path / "lines.json")
    (tmp_path / "list.jsonl").write_text(json.dumps(rows) + "\n")  # .jsonl is always JSON lines
    with pytest.raises(DataError, match=r"list\.jsonl:1: row must be a JSON object, got list"):
        load_deepscaler(tmp_path / "list.jsonl")


def test_deepscaler_hub_path_uses_datasets(monkeypatch):
    """The hub branch calls datasets.load_dataset(id, split=...); faked here (no network)."""
    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return [{"problem": "hub q", "answer": "3", "solution": "s"}, {"problem": "no answer"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load_dataset))
    report = Counter()
    samples = load_dataset_by_name("deepscaler", on_error="skip", report=report)
    assert calls == [(DEEPSCALER_ID, "train")]
    assert [s.answer for s in samples] == ["3"] and samples[0].meta["file"] == f"{DEEPSCALER_ID}[train]"
    assert report == Counter({"loaded": 1, "skipped/missing_answer": 1})
    load_deepscaler("org/other", split="test", on_error="skip")
    assert calls[-1] == ("org/other", "test")


# --------------------------------------------------------------------------- LMM-R1 message jsonl


def test_message_jsonl_resolves_paths(tmp_path, png_dir):
    p = write_lines(tmp_path / "mm.jsonl", [
        {"message": chat("file://imgs/a.png"), "answer": "\\frac{1}{2}", "source": "geo3k"},
        {"message": chat(f"file://{png_dir / 'b.png'}"), "answer": "7", "domain": "geo"},  # file:///abs
        {"message": chat("imgs/b.png", system="custom system"), "answer": "C"},  # bare relative, own system
        {"message": json.dumps([{"role": "user", "content": "text only"}]), "answer": "1"},
    ])
    samples = load_message_jsonl(p)
    assert len(samples) == 4
    assert samples[0].images == [str((png_dir / "a.png").resolve())]
    assert samples[1].images == [str((png_dir / "b.png").resolve())] and samples[1].domain == "geo"
    assert samples[0].domain == "math" and samples[0].meta["source"] == "geo3k" and samples[0].meta["line"] == 1
    for s in samples[:2]:
        assert_system_first(s)
        assert s.messages[1]["content"][-1] == {"type": "text", "text": "What is shown?"}
    # an existing system message is kept and not duplicated
    assert [m["role"] for m in samples[2].messages] == ["system", "user"]
    assert samples[2].messages[0]["content"] == [{"type": "text", "text": "custom system"}]
    assert samples[3].images == [] and samples[3].question == "text only"
    for s in samples[:3]:
        img = load_image(s.images[0])
        assert img.mode == "RGB"
    assert load_image("file://" + samples[0].images[0]).size == (8, 6)
    assert load_image(Image.new("L", (2, 2))).mode == "RGB"
    assert resolve_image_path("https://x/y.png", tmp_path) == "https://x/y.png"
    assert resolve_image_path("imgs/none.png", tmp_path) is None


def test_plain_jsonl_with_images(tmp_path, png_dir):
    p = write_lines(tmp_path / "plain.jsonl", [
        {"question": "Q1", "answer": "1", "images": ["imgs/a.png", "file://imgs/b.png"], "domain": "geo"},
        {"prompt": "Q2", "answer": "2"},
    ])
    s1, s2 = load_dataset_by_name(p)
    assert s1.images == [str((png_dir / n).resolve()) for n in ("a.png", "b.png")] and s1.domain == "geo"
    assert s1.messages[1]["content"][-1]["text"] == "Q1" and s2.question == "Q2"
    assert_system_first(s1)
    assert load_jsonl(p) == [s1, s2]


# --------------------------------------------------------------------------- errors


def test_missing_file_raises_file_not_found(tmp_path):
    missing = tmp_path / "nope.jsonl"
    for call in (load_deepscaler, load_message_jsonl, load_jsonl, load_dataset_by_name):
        with pytest.raises(FileNotFoundError, match="nope.jsonl"):
            call(missing)
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        load_dataset_by_name(tmp_path / "nope.parquet")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset_by_name("no-such-name")


def test_malformed_json_names_file_and_line(tmp_path):
    p = write_lines(tmp_path / "bad.jsonl", [
        {"problem": "a", "answer": "1"}, {"problem": "b", "answer": "2"}, '{"problem": "c", "answer": ',
    ])
    for loader in (load_deepscaler, load_jsonl):
        with pytest.raises(DataError) as ei:
            loader(p)
        msg = str(ei.value)
        assert f"{p}:3" in msg and "invalid JSON" in msg
        assert ei.value.line == 3 and ei.value.reason == "bad_json" and isinstance(ei.value, ValueError)
    p2 = write_lines(tmp_path / "badmsg.jsonl", [
        {"message": chat(None), "answer": "1"}, {"message": chat(None), "answer": "1"}, "not json at all",
    ])
    with pytest.raises(DataError, match=r"badmsg\.jsonl:3: invalid JSON"):
        load_dataset_by_name(p2)


@pytest.mark.parametrize("row, reason, text", [
    ({"message": chat(None)}, "missing_answer", "missing answer"),
    ({"message": chat(None), "answer": "  "}, "missing_answer", "empty answer"),
    ({"message": '{"role": "user"}', "answer": "1"}, "bad_message", "must be a non-empty JSON list"),
    ({"message": "[{oops", "answer": "1"}, "bad_message", "`message` is not valid JSON"),
    ({"answer": "1"}, "bad_message", "missing `message`"),
    ({"message": chat(None, text=""), "answer": "1"}, "missing_question", "no user text"),
    ([1, 2], "not_object", "JSON object"),
])
def test_message_row_errors(tmp_path, row, reason, text):
    p = write_lines(tmp_path / "m.jsonl", [{"message": chat(None), "answer": "0"}, row])
    with pytest.raises(DataError) as ei:
        load_message_jsonl(p)
    assert ei.value.reason == reason and text in str(ei.value) and str(ei.value).startswith(f"{p}:2: ")


@pytest.mark.parametrize("row, reason", [
    ('{"problem": "ok", "answer": "1"', "bad_json"),
    ('{"problem": "no answer"}', "missing_answer"),
    ('{"problem": "empty answer", "answer": "  "}', "missing_answer"),
    ('{"answer": "3"}', "missing_question"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, reason):
    path = write_lines(tmp_path / "bad.jsonl", [{"problem": "a", "answer": "1"}, {"problem": "b", "answer": "2"}, row])
    with pytest.raises(DataError) as e:
        load_jsonl(path)
    assert f"{path}:3" in str(e.value) and e.value.reason == reason
    report = Counter()
    kept = load_jsonl(path, on_error="skip", report=report)
    assert len(kept) == 2 and report == Counter({"loaded": 2, f"skipped/{reason}": 1})


def test_row_without_answer_or_question(tmp_path):
    p = write_lines(tmp_path / "q.jsonl", [{"problem": "x"}])
    with pytest.raises(DataError, match=r"q\.jsonl:1: missing answer"):
        load_deepscaler(p)
    p = write_lines(tmp_path / "q2.jsonl", [{"answer": "1", "text": "x"}])
    with pytest.raises(DataError, match=r"q2\.jsonl:1: missing question"):
        load_jsonl(p)


def test_missing_image_names_file_line_and_image(tmp_path, png_dir):
    p = write_lines(tmp_path / "mm.jsonl", [
        {"message": chat("file://imgs/a.png"), "answer": "1"}, {"message": chat("file://imgs/ghost.png"), "answer": "1"},
    ])
    with pytest.raises(DataError) as ei:
        load_message_jsonl(p)
    assert f"{p}:2" in str(ei.value) and "imgs/ghost.png" in str(ei.value) and ei.value.reason == "missing_image"
    p = write_lines(tmp_path / "plain.jsonl", [{"question": "q", "answer": "1", "images": ["imgs/ghost.png"]}])
    with pytest.raises(DataError, match=r"plain\.jsonl:1: image not found: imgs/ghost\.png"):
        load_jsonl(p)


def test_skip_mode_counts_and_logs(tmp_path, png_dir, caplog):
    p = write_lines(tmp_path / "mix.jsonl", [
        {"message": chat("imgs/a.png"), "answer": "1"},
        "{broken",
        {"message": chat("imgs/ghost.png"), "answer": "1"},
        {"message": chat(None)},
        {"message": chat(None), "answer": ""},
        {"message": chat(None), "answer": "2"},
    ])
    report = Counter()
    with caplog.at_level(logging.WARNING, logger="data.io"):
        samples = load_message_jsonl(p, on_error="skip", report=report)
    assert [s.meta["line"] for s in samples] == [1, 6]
    assert report == Counter({"loaded": 2, "skipped/bad_json": 1, "skipped/missing_image": 1,
                              "skipped/missing_answer": 2})
    summary = [r.getMessage() for r in caplog.records]
    assert summary == [f"skipped 4 rows of {p}: bad_json=1, missing_answer=2, missing_image=1"]
    # max_samples counts good samples only; reports accumulate across calls
    assert [s.meta["line"] for s in load_message_jsonl(p, on_error="skip", max_samples=1, report=report)] == [1]
    assert report["loaded"] == 3
    assert load_message_jsonl(p, on_error="skip", max_samples=0) == []
    with pytest.raises(ValueError, match="on_error"):
        load_message_jsonl(p, on_error="ignore")


# --------------------------------------------------------------------------- generator


def test_generator_deterministic_and_nonempty():
    a, b = synth_math.generate(40, seed=3), synth_math.generate(40, seed=3)
    assert a == b
    assert synth_math.generate(10, seed=3) == a[:10]
    assert synth_math.generate(40, seed=4) != a
    assert len({r["problem"] for r in a}) == 40
    for r in a:
        assert set(r) == {"problem", "answer"} and r["problem"].strip() and r["answer"].strip()
    assert synth_math.latex_number(Fraction(-7, 2)) == "-\\frac{7}{2}" and synth_math.latex_number(4) == "4"
    assert len(synth_math.TEMPLATES) >= 8


def test_generated_answers_are_math_verifiable():
    mv = pytest.importorskip("math_verify")
    for r in synth_math.generate(64, seed=0):
        gold = mv.parse(f"${r['answer']}$")
        assert gold, r
        assert mv.verify(gold, mv.parse(r["answer"])), r  # bare form parses to the same value
        assert mv.verify(gold, mv.parse(f"\\boxed{{{r['answer']}}}")), r


# --------------------------------------------------------------------------- game prompts (data/games.py)


def test_game_prompts_carry_their_state():
    (sok,) = load_dataset_by_name("sokoban:1", seed=5)
    (foot,) = load_dataset_by_name("football:1", seed=5)
    assert sok.domain == "sokoban" and sok.meta["level"]["solution"] and len(sok.images) == 1
    assert foot.domain == "football" and "state" in foot.meta and len(foot.images) == 1
    with pytest.raises(ValueError, match="sokoban:N"):
        load_dataset_by_name("sokoban:many")
