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
from data.images import load_image, resolve_image_path
from data.io import FIXTURE_DIR, DataError
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


# --------------------------------------------------------------------------- bounded reading (--max-row-bytes)


def test_oversized_jsonl_row_is_skipped_unread(tmp_path):
    import tracemalloc

    from data.io import iter_jsonl, row_limit

    good = json.dumps({"problem": "1+1?", "answer": "2"})
    p = tmp_path / "big.jsonl"
    with open(p, "w", encoding="utf-8") as f:
        f.write(good + "\n")
        f.write(json.dumps({"problem": "x" * 8_000_000, "answer": "1"}) + "\n")  # an 8 MB row
        f.write(good + "\n")
    tracemalloc.start()
    rows = list(iter_jsonl(p, max_row_bytes=4096))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20  # read in bounded pieces, never the 8 MB line whole
    assert [n for n, _ in rows] == [1, 2, 3]
    err = rows[1][1]
    assert isinstance(err, DataError) and err.reason == "row_too_large"
    assert str(err) == f"{p}:2: row larger than --max-row-bytes 4096 bytes (not read)"
    with row_limit(4096):  # the limit --max-row-bytes sets for every loader
        with pytest.raises(DataError, match=r"big\.jsonl:2: row larger than --max-row-bytes 4096"):
            load_deepscaler(p)
        report = Counter()
        assert len(load_deepscaler(p, on_error="skip", report=report)) == 2
        assert report["skipped/row_too_large"] == 1
    assert len(load_deepscaler(p, on_error="skip")) == 2  # the default, 1 MiB, refuses the 8 MB row too
    with row_limit(16 * 2**20):  # --max-row-bytes raised: read
        assert len(list(iter_jsonl(p))) == 3 and len(load_deepscaler(p, on_error="skip")) == 3
    # a row exactly at the limit is read
    exact = tmp_path / "exact.jsonl"
    exact.write_text(good + "\n")
    assert isinstance(list(iter_jsonl(exact, max_row_bytes=len(good)))[0][1], dict)
    assert isinstance(list(iter_jsonl(exact, max_row_bytes=len(good) - 1))[0][1], DataError)


def test_binary_or_non_utf8_file_is_a_one_line_error(tmp_path):
    p = tmp_path / "mixed.jsonl"
    p.write_bytes(json.dumps({"problem": "a", "answer": "1"}).encode() + b"\n" + b'{"problem": "\xff\xfe"}\n')
    with pytest.raises(DataError) as err:
        load_deepscaler(p)
    assert str(err.value) == f"{p}:2: not UTF-8 text (byte 0xff at column 14); is this a binary file?"
    assert err.value.reason == "not_utf8"
    binary = tmp_path / "data.json"  # a JSON document name, bytes inside
    binary.write_bytes(b'[{"problem": "a",\n "answer": "\x89PNG\r\n\x1a\n\x00\x00"}]')
    with pytest.raises(DataError, match=r"data\.json:2: not UTF-8 text \(byte 0x89 at column 13\)"):
        load_deepscaler(binary)
    gz = tmp_path / "rows.jsonl"  # a compressed file named .jsonl
    import gzip
    gz.write_bytes(gzip.compress(b'{"problem": "a", "answer": "1"}\n' * 100))
    with pytest.raises(DataError, match=r"rows\.jsonl:1: not UTF-8 text"):
        load_deepscaler(gz)


def test_large_json_documents_are_streamed_row_by_row(tmp_path):
    from data.io import read_rows

    rows = [{"problem": f"P{i} " + "w" * 200, "answer": str(i)} for i in range(60)]
    for name, doc in (("list.json", rows), ("data.json", {"data": rows})):
        p = tmp_path / name
        p.write_text(json.dumps(doc, indent=1))
        assert p.stat().st_size > 4096
        _, line_based, it = read_rows(p, max_row_bytes=4096)
        got = list(it)
        assert not line_based and [n for n, _ in got] == list(range(1, 61))
        assert [r["answer"] for _, r in got] == [str(i) for i in range(60)]
    # one row over the limit inside a document stops the load, naming the row
    p = tmp_path / "one_big.json"
    p.write_text(json.dumps(rows[:2] + [{"problem": "x" * 10_000, "answer": "1"}] + rows[2:4]))
    _, _, it = read_rows(p, max_row_bytes=4096)
    with pytest.raises(DataError, match=r"one_big\.json:row 3: row larger than --max-row-bytes 4096"):
        list(it)
    # a single object larger than the limit is read as JSON lines: one oversized line, not read
    p = tmp_path / "object.json"
    p.write_text(json.dumps({"problem": "x" * 10_000, "answer": "1"}))
    _, line_based, it = read_rows(p, max_row_bytes=4096)
    got = list(it)
    assert line_based and len(got) == 1 and got[0][1].reason == "row_too_large"
    # broken JSON inside a streamed document names the row
    p = tmp_path / "broken.json"
    p.write_text(json.dumps(rows[:30])[:-40] + "}, {oops]")
    _, _, it = read_rows(p, max_row_bytes=4096)
    with pytest.raises(DataError, match=r"broken\.json:row \d+: invalid JSON"):
        list(it)


# --------------------------------------------------------------------------- ambiguous golds (--on-ambiguous-gold)


@pytest.mark.parametrize("gold, reason", [
    ("0.\\overline{3}", "repeating_decimal"), ("0.333...", "repeating_decimal"), ("0.3\\dot{3}", "repeating_decimal"),
    ("12:30", "clock_time"), ("3:45 PM", "clock_time"), ("5 dollars", "number_words"), ("2 pi", "number_words"),
    ("B", "letter"), ("x", "letter"),
    # read as written: units math-verify strips, ratios, algebra, prose
    ("5 cm", None), ("12 square units", None), ("5\\text{ dollars}", None), ("1:2", None), ("2ab", None),
    ("\\sqrt{abc}", None), ("42", None), ("\\frac{1}{2}", None), ("(1, 2]", None), ("x=5", None),
])
def test_gold_ambiguity(gold, reason):
    from data.gold import gold_ambiguity

    assert gold_ambiguity(Sample([], gold, "math")) == reason
    assert gold_ambiguity(Sample([], gold, "choice")) is None  # option letters are read as letters


def test_ambiguous_golds_skipped_or_kept_and_counted(tmp_path, caplog):
    from data.check import check_samples, format_report
    from data.gold import ambiguous_gold_filter

    p = write_lines(tmp_path / "d.jsonl", [{"problem": "q", "answer": a} for a in
                                          ["2", "0.\\overline{3}", "12:30", "0.333...", "5 dollars", "B", "7"]])
    samples = load_deepscaler(p)
    with caplog.at_level(logging.WARNING, logger="data.gold"):
        kept, report = ambiguous_gold_filter(samples, "skip")
    assert [s.answer for s in kept] == ["2", "7"]
    assert report == Counter({"ambiguous": 5, "ambiguous/repeating_decimal": 2, "ambiguous/clock_time": 1,
                              "ambiguous/number_words": 1, "ambiguous/letter": 1})
    assert "5 rows have a gold answer the verifier reads wrongly" in caplog.text and "skipped" in caplog.text
    kept, report = ambiguous_gold_filter(samples, "keep")
    assert len(kept) == 7 and report["ambiguous"] == 5
    # --check-data lists them with file, line and why
    text = format_report(check_samples(samples))
    assert "gold_ambiguous: 5" in text
    assert f"{p}:2: '0.\\\\overline{{3}}' (a repeating decimal" in text
    assert f"{p}:3: '12:30' (a time or a ratio" in text
    assert "7 rows, 5 with problems" in text


# --------------------------------------------------------------------------- inputs the trainer measures and writes


def test_oversized_prompt_is_measured_once(monkeypatch):
    """A prompt over --max-prompt-len is tokenized the first time it is drawn, then skipped unmeasured."""
    from types import SimpleNamespace

    import torch

    import rl.trainer as trainer

    calls = []

    def encode(processor, samples, max_prompt_len=None):
        calls.append(len(samples))
        return [{"prompt_ids": torch.zeros(10)} for _ in samples]

    monkeypatch.setattr(trainer, "encode_prompts", encode)
    stub = SimpleNamespace(cfg=SimpleNamespace(max_prompt_len=5), counts=Counter(), unusable={}, processor=None,
                           step=0)
    samples = [Sample([], "1"), Sample([], "2"), Sample([], "3")]
    for _ in range(3):
        with pytest.raises(RuntimeError, match="no prompt of step 1 can be used .longer than --max-prompt-len 5"):
            trainer.Trainer.encode(stub, samples)
    assert calls == [1, 1, 1] and stub.counts["data/prompt_too_long"] == 9


def test_metrics_lines_are_strict_json():
    from rl.monitor import json_line

    line, bad = json_line({"step": 1, "reward/mean": float("nan"), "kl": float("inf"), "loss": -float("inf"),
                           "ok": 0.5, "flag": True})
    assert bad == 3
    assert line == '{"step": 1, "reward/mean": null, "kl": null, "loss": null, "ok": 0.5, "flag": true}'
    assert json.loads(line)["reward/mean"] is None


def test_input_flags():
    from rl.config import parse_config

    cfg = parse_config(["--preset", "debug"])
    flags = lambda c: (c.on_ambiguous_gold, c.max_row_bytes, c.whole_answer, c.fail_closed_gold, c.empty_response)
    assert flags(cfg) == ("skip", 2**20, True, True, "zero")
    cfg = parse_config(["--preset", "debug", "--on-ambiguous-gold", "keep", "--max-row-bytes", "1000",
                        "--no-whole-answer", "--no-fail-closed-gold", "--empty-response", "prompt"])
    assert flags(cfg) == ("keep", 1000, False, False, "prompt")
    with pytest.raises(SystemExit, match="--max-row-bytes 0: must be at least 1"):
        parse_config(["--preset", "debug", "--max-row-bytes", "0"])
