"""Data loaders: one Sample schema from every source, and bad rows named by file and line (or counted skips)."""

import json
from collections import Counter

import pytest
from PIL import Image

from data.loaders import DataError, load_dataset_by_name, load_deepscaler, load_fixture, load_image, load_jsonl, \
    load_message_jsonl
from data.sample import R1_SYSTEM_PROMPT
from data.synth_math import generate


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_bundled_fixtures_have_system_prompt_and_answers():
    math, message = load_fixture("math"), load_fixture("message")
    assert len(math) == 64 and len(message) >= 4
    for s in math + message:
        assert s.messages[0]["role"] == "system" and s.messages[0]["content"][0]["text"] == R1_SYSTEM_PROMPT
        assert s.answer
    assert all(s.images for s in message) and all(not s.images for s in math)
    assert all(load_image(im).mode == "RGB" for s in message for im in s.images)
    assert {s.domain for s in message} == {"geo", "choice"}


def test_deepscaler_fields_from_a_local_file(tmp_path):
    path = _write(tmp_path / "ds.jsonl", [{"problem": "What is 1+1?", "answer": "2", "solution": "..."}])
    (s,) = load_deepscaler(path)
    assert s.question == "What is 1+1?" and s.answer == "2" and s.domain == "math"
    assert s.meta["solution"] == "..." and s.meta["line"] == 1
    assert load_dataset_by_name(str(path))[0].answer == "2"


def test_message_jsonl_resolves_relative_images(tmp_path):
    Image.new("RGB", (30, 20), "red").save(tmp_path / "a.png")
    chat = [{"role": "user", "content": [{"type": "image", "image": "file://a.png"},
                                         {"type": "text", "text": "Area?"}]}]
    path = _write(tmp_path / "m.jsonl", [{"message": json.dumps(chat), "answer": "\\frac{1}{2}"}])
    (s,) = load_dataset_by_name(str(path))
    assert s.images == [str(tmp_path / "a.png")] and s.answer == "\\frac{1}{2}"
    assert s.messages[0]["role"] == "system" and load_image(s.images[0]).size == (30, 20)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_dataset_by_name(str(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize("row, reason", [
    ('{"problem": "ok", "answer": "1"', "bad_json"),
    ('{"problem": "no answer"}', "missing_answer"),
    ('{"problem": "empty answer", "answer": "  "}', "missing_answer"),
    ('{"answer": "3"}', "missing_question"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, reason):
    path = _write(tmp_path / "bad.jsonl", [{"problem": "a", "answer": "1"}, {"problem": "b", "answer": "2"}, row])
    with pytest.raises(DataError) as e:
        load_jsonl(path)
    assert f"{path}:3" in str(e.value) and e.value.reason == reason
    report = Counter()
    kept = load_jsonl(path, on_error="skip", report=report)
    assert len(kept) == 2 and report == Counter({"loaded": 2, f"skipped/{reason}": 1})


def test_missing_image_is_named(tmp_path):
    chat = [{"role": "user", "content": [{"type": "image", "image": "file://gone.png"},
                                         {"type": "text", "text": "?"}]}]
    path = _write(tmp_path / "m.jsonl", [{"message": json.dumps(chat), "answer": "1"}])
    with pytest.raises(DataError, match="gone.png") as e:
        load_message_jsonl(path)
    assert f"{path}:1" in str(e.value)


def test_math_generator_is_deterministic():
    a, b = generate(20, seed=3), generate(20, seed=3)
    assert a == b and a != generate(20, seed=4)
    assert all(r["problem"] and r["answer"] for r in a)


def test_game_prompts_carry_their_state():
    (sok,) = load_dataset_by_name("sokoban:1", seed=5)
    (foot,) = load_dataset_by_name("football:1", seed=5)
    assert sok.domain == "sokoban" and sok.meta["level"]["solution"] and len(sok.images) == 1
    assert foot.domain == "football" and "state" in foot.meta and len(foot.images) == 1
    with pytest.raises(ValueError, match="sokoban:N"):
        load_dataset_by_name("sokoban:many")
