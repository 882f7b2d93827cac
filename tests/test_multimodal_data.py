"""Stage-2 data: synthetic geometry generator, VerMulti / MathV360K loaders, filters, geometry detector."""
import json
import math
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
from math_verify import parse, verify
from PIL import Image

from data import load_dataset_by_name
from data.geo_detect import extract_geometry, is_geometry
from data.gold import extract_final_answer, gold_status, verifiability_filter
from data.images import load_image
from data.io import DataError
from data.loaders import GEO_FIXTURE, load_geo_fixture, load_message_jsonl
from data.mathv360k import load_mathv360k
from data.sample import R1_SYSTEM_PROMPT, Sample, make_messages
from data.synth import geometry as synth_geo
from data.vermulti import load_vermulti


def _gold(answer: str) -> list:
    return parse(f"${answer}$", parsing_timeout=None)


# --------------------------------------------------------------------------- re-measuring a figure


def _measure(geo: dict, spec: dict) -> tuple[float, bool]:
    """(value, in_units_of_pi) of a length / angle / area / circle target, measured on the pixels."""
    pts = {k: tuple(v) for k, v in geo["points"].items()}
    scale = geo["scale"]
    names = spec["points"]
    kind = spec["type"]
    if kind == "length":
        return math.dist(pts[names[0]], pts[names[1]]) / scale, False
    if kind == "angle":
        p, v, q = (pts[n] for n in names)
        a = math.atan2(p[1] - v[1], p[0] - v[0]) - math.atan2(q[1] - v[1], q[0] - v[0])
        deg = abs(math.degrees(a)) % 360
        return min(deg, 360 - deg), False
    if kind == "area":
        poly = [pts[n] for n in names]
        twice = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]))
        return abs(twice) / 2 / scale**2, False
    r = math.dist(pts[names[0]], pts[names[1]]) / scale
    if kind == "circle_circumference":
        return 2 * r, True
    if kind == "circle_area":
        return r * r, True
    raise AssertionError(f"unknown target type {kind}")


def _snap(value: float, degrees: bool) -> Fraction:
    exact = Fraction(round(value)) if degrees else Fraction(value).limit_denominator(12)
    assert abs(float(exact) - value) < (0.05 if degrees else 2e-3 * max(1.0, value)), (value, exact)
    return exact


def _latex(x: Fraction, pi: bool) -> str:
    body = str(x.numerator) if x.denominator == 1 else f"\\frac{{{x.numerator}}}{{{x.denominator}}}"
    return f"{body}\\pi" if pi else body


# --------------------------------------------------------------------------- generator


def test_generator_is_deterministic(tmp_path):
    a = synth_geo.generate(12, seed=5, out_dir=tmp_path / "a")
    b = synth_geo.generate(12, seed=5, out_dir=tmp_path / "b")
    assert a == b
    for row in a:
        name = f"{row['id']}.png"
        png_a, png_b = (tmp_path / d / "geo_images" / name for d in "ab")
        assert png_a.read_bytes() == png_b.read_bytes()
    assert synth_geo.generate(5, seed=5, out_dir=tmp_path / "c") == a[:5]  # prefix property
    other = synth_geo.generate(12, seed=6, out_dir=tmp_path / "d")
    assert [r["answer"] for r in other] != [r["answer"] for r in a]
    assert [r["kind"] for r in a] == list(synth_geo.KINDS)


def test_generated_answers_verify_and_match_the_drawing(tmp_path):
    rows = synth_geo.generate(48, seed=11, out_dir=tmp_path)  # 4 of each template
    for row in rows:
        gold = _gold(row["answer"])
        assert gold and verify(gold, gold), row["answer"]
        geo = row["geometry"]
        # every number written in the figure is what the figure measures
        for label in geo["labels"]:
            value, _ = _measure(geo, label)
            assert abs(value - float(Fraction(label["value"]))) < 2e-3 * max(1.0, value), (row["id"], label, value)
        # the answer recomputed from the drawn geometry
        value, pi = _measure(geo, geo["target"])
        recomputed = _latex(_snap(value, geo["target"]["type"] == "angle"), pi)
        assert verify(gold, _gold(recomputed)), (row["id"], row["answer"], recomputed)
        assert not verify(gold, _gold(_latex(_snap(value, geo["target"]["type"] == "angle") + 1, pi)))
        # the message is the LMM-R1 format with a path relative to the jsonl folder
        msg = json.loads(row["message"])
        image_ref = msg[0]["content"][0]["image"]
        assert image_ref == f"file://geo_images/{row['id']}.png"
        assert msg[0]["content"][1]["text"].strip()
        assert row["domain"] == "geo"


def test_generated_rows_load_and_images_open(tmp_path):
    rows = synth_geo.generate(12, seed=1, out_dir=tmp_path)
    path = synth_geo.write_jsonl(rows, tmp_path / "geo.jsonl")
    samples = load_message_jsonl(path, domain="geo")
    assert len(samples) == 12
    for s, row in zip(samples, rows):
        assert s.answer == row["answer"] and s.domain == "geo"
        assert s.messages[0]["content"][0]["text"] == R1_SYSTEM_PROMPT
        (img,) = s.images
        assert Path(img).is_file()
        assert load_image(img).size == (336, 336)


def test_bundled_geo_fixture():
    samples = load_geo_fixture()
    assert len(samples) == 24
    assert {s.meta["kind"] for s in samples} == set(synth_geo.KINDS)
    for s in samples:
        (img,) = s.images
        assert Path(img).stat().st_size < 15_000
        with Image.open(img) as im:
            assert im.size == (336, 336)
    kept, report = verifiability_filter(samples)
    assert report["kept"] == 24 and len(kept) == 24



def test_bundled_geo_fixture_is_up_to_date(tmp_path):
    """The fixture is what `python -m data.synth.geometry` writes (seed 0, 24 rows)."""
    rows = [json.loads(line) for line in GEO_FIXTURE.read_text().splitlines()]
    fresh = synth_geo.generate(24, seed=0, out_dir=tmp_path)
    key = lambda r: (r["id"], r["message"], r["answer"], r["domain"])  # noqa: E731
    assert [key(r) for r in rows] == [key(r) for r in fresh], "run `python -m data.synth.geometry`"


# --------------------------------------------------------------------------- MathV360K


def _png(path: Path, color: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (color, color, color)).save(path)


def _record(i: int, image: str | None, question: str, answer: str | None) -> dict:
    convs = [{"from": "human", "value": f"<image>\n{question}"}]
    if answer is not None:
        convs.append({"from": "gpt", "value": answer})
    rec = {"id": f"identity_{i}", "conversations": convs}
    if image is not None:
        rec["image"] = image
    return rec


MC_Q = ("Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n"
        "Question: Which shape is in the picture?\nChoices:\n(A) cube\n(B) sphere\n(C) cone")


@pytest.fixture
def mathv360k_dir(tmp_path):
    root = tmp_path / "MathV360K"
    for i, folder in enumerate(["IconQA", "IconQA", "TabMWP", "Geometry3K", "FigureQA", "VQA-AS"]):
        _png(root / "data_images" / folder / "images" / f"{i}.png", 40 * i)
    records = [
        _record(0, "IconQA/images/0.png", MC_Q, "The answer is B"),
        _record(1, "IconQA/images/1.png", MC_Q, "cone"),  # the option's text
        _record(2, "TabMWP/images/2.png", "How many apples are there in total?", "The answer is 12"),
        _record(3, "Geometry3K/images/3.png", "Find the length of AB. AB = 2 BC and BC = 2.5.", "5 cm"),
        _record(4, "FigureQA/images/4.png", "Describe the trend of the line.", "The graph is increasing"),
        _record(5, "VQA-AS/images/5.png", "Is the dog bigger than the cat?", "Yes"),
    ]
    (root / "train_samples_all_tuning.json").write_text(json.dumps(records))
    return root


def test_mathv360k_loads_and_filters(mathv360k_dir):
    report = Counter()
    samples = load_mathv360k(mathv360k_dir, report=report)  # the folder
    assert report == Counter(loaded=6)
    assert [s.domain for s in samples] == ["choice", "choice", "math", "math", "math", "math"]
    assert [s.answer for s in samples] == ["B", "C", "12", "5", "The graph is increasing", "Yes"]
    s0 = samples[0]
    assert s0.messages[0]["content"][0]["text"] == R1_SYSTEM_PROMPT
    assert "<image>" not in s0.question and s0.question.startswith("Hint:")
    assert Path(s0.images[0]).is_file()
    assert s0.meta["id"] == "identity_0" and s0.meta["line"] == 1 and s0.meta["source"] == "IconQA"
    assert s0.meta["raw_answer"] == "The answer is B"

    kept, rep = verifiability_filter(samples)
    assert [s.meta["id"] for s in kept] == ["identity_0", "identity_1", "identity_2", "identity_3"]
    assert rep == Counter({"total": 6, "kept": 4, "dropped/free_text": 1, "dropped/yes_no": 1})

    kept, rep = verifiability_filter(samples, yes_no="choice")
    assert rep["kept"] == 5 and rep["converted/yes_no"] == 1
    yn = kept[-1]
    assert yn.answer == "A" and yn.domain == "choice" and yn.question.endswith("(A) Yes\n(B) No")
    assert samples[5].answer == "Yes"  # the input sample is untouched

    # the same file through the dispatcher: filtered by default
    rep2 = Counter()
    by_name = load_dataset_by_name("mathv360k", path=mathv360k_dir / "train_samples_all_tuning.json", report=rep2)
    assert len(by_name) == 4 and rep2["filter/dropped/free_text"] == 1


def test_mathv360k_bad_rows_name_file_and_row(tmp_path):
    _png(tmp_path / "data_images" / "A" / "0.png")
    path = tmp_path / "train_samples_all_tuning.json"
    path.write_text(json.dumps([
        _record(0, "A/0.png", "What is 2 + 3?", "5"),
        _record(1, "A/missing.png", "What is 1 + 1?", "2"),
        _record(2, "A/0.png", "What is 3 + 3?", None),
        _record(3, None, "What is 4 + 4?", "8"),
    ]))
    with pytest.raises(DataError) as e:
        load_mathv360k(path)
    assert str(e.value).startswith(f"{path}:row 2:") and "A/missing.png" in str(e.value)
    assert e.value.reason == "missing_image"

    report = Counter()
    samples = load_mathv360k(path, on_error="skip", report=report)
    assert [s.answer for s in samples] == ["5"]
    assert report == Counter({"loaded": 1, "skipped/missing_image": 1, "skipped/missing_answer": 1,
                              "skipped/bad_images": 1})
    with pytest.raises(FileNotFoundError):
        load_mathv360k(tmp_path / "nope.json")


def test_mathv360k_json_lines_name_file_and_line(tmp_path):
    """Records as JSON lines go through the same reader as every loader: errors name FILE:LINE."""
    _png(tmp_path / "data_images" / "A" / "0.png")
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join([json.dumps(_record(0, "A/0.png", "What is 2 + 3?", "The answer is 5")), "",
                                json.dumps(_record(1, "A/missing.png", "What is 1 + 1?", "2")), "[1]"]) + "\n")
    with pytest.raises(DataError) as e:
        load_mathv360k(path)
    assert str(e.value).startswith(f"{path}:3:") and e.value.reason == "missing_image"
    report = Counter()
    samples = load_mathv360k(path, on_error="skip", report=report)
    assert [(s.answer, s.meta["line"]) for s in samples] == [("5", 1)]
    assert report == Counter({"loaded": 1, "skipped/missing_image": 1, "skipped/not_object": 1})


# --------------------------------------------------------------------------- VerMulti


def _message_row(image: str, text: str, answer: str, **extra) -> str:
    msg = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]
    return json.dumps({"message": json.dumps(msg), "answer": answer, **extra})


def test_vermulti_loads_and_rebases_author_paths(tmp_path):
    root = tmp_path / "VerMulti"
    for name in ("a", "b", "c"):
        _png(root / "mathv_geo_img" / f"{name}.png")
    lines = [
        _message_row("file://mathv_geo_img/a.png", "In triangle ABC, find the angle x.", "$\\boxed{40}$", id="g1"),
        _message_row("data/mathv_geo/mathv_geo_img/b.png",  # the released relative prefix
                     "AB is a diameter of circle O. Find angle C.\nChoices:\nA:30°\nB:60°\nC:90°\nD:120°",
                     "$\\boxed{C}$", id="g2"),
        _message_row("/apdcephfs_gy2/share_1/zgr/data/mathv_geo/mathv_geo_img/c.png",  # an absolute cluster path
                     "Find the radius of the circle.", "3\\sqrt{2}", id="g3"),
    ]
    (root / "mathv_geo_message.jsonl").write_text("\n".join(lines) + "\n")

    for where in (root, root / "mathv_geo_message.jsonl"):
        samples = load_vermulti(where, subset="geo")
        assert [s.meta["id"] for s in samples] == ["g1", "g2", "g3"]
        assert [s.domain for s in samples] == ["geo", "choice", "geo"]
        assert [s.answer for s in samples] == ["$\\boxed{40}$", "C", "3\\sqrt{2}"]
        assert samples[1].meta["raw_answer"] == "$\\boxed{C}$"
        for s, name in zip(samples, "abc"):
            assert Path(s.images[0]) == (root / "mathv_geo_img" / f"{name}.png").resolve()
            assert s.meta["file"] == str(root / "mathv_geo_message.jsonl")
            assert s.meta["subset"] == "geo"
    kept, rep = verifiability_filter(samples)
    assert rep["kept"] == 3

    assert len(load_dataset_by_name("vermulti-geo", path=root)) == 3
    assert len(load_dataset_by_name(f"vermulti-geo:{root}")) == 3
    with pytest.raises(FileNotFoundError):
        load_vermulti(root, subset="mathv60k")  # no mathv60k_message.jsonl in the folder


def test_vermulti_hub_id_downloads_and_extracts(tmp_path, monkeypatch):
    """The hub path, with snapshot_download faked (no network): archive extracted, refs rebased."""
    import tarfile

    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, repo_type=None, allow_patterns=None, local_dir=None, **kw):
        calls.append((repo_id, repo_type, sorted(allow_patterns)))
        local = Path(local_dir)
        local.mkdir(parents=True, exist_ok=True)
        src = tmp_path / "src" / "mathv_geo_img" / "a.png"
        _png(src)
        with tarfile.open(local / "mathv_geo_img.tar.gz", "w:gz") as tf:
            tf.add(src, arcname="mathv_geo_img/a.png")
        (local / "mathv_geo_message.jsonl").write_text(
            _message_row("data/mathv_geo/mathv_geo_img/a.png", "Find the radius of circle O.", "5") + "\n")
        return str(local)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    samples = load_vermulti("VLM-Reasoner/VerMulti", subset="geo", cache_dir=tmp_path / "cache")
    assert calls == [("VLM-Reasoner/VerMulti", "dataset", ["mathv_geo_img.tar.gz", "mathv_geo_message.jsonl"])]
    local = tmp_path / "cache" / "VLM-Reasoner__VerMulti"
    assert Path(samples[0].images[0]) == (local / "mathv_geo_img" / "a.png").resolve()
    assert (local / ".extracted_mathv_geo_img.tar.gz").exists()


def test_vermulti_bad_rows_name_file_and_line(tmp_path, caplog):
    _png(tmp_path / "mathv60k_img" / "a.png")
    path = tmp_path / "mathv60k_message.jsonl"
    path.write_text("\n".join([
        _message_row("/cluster/x/mathv60k/mathv60k_img/a.png", "What is 2 + 3?", "5"),
        _message_row("/cluster/x/mathv60k/mathv60k_img/gone.png", "What is 1 + 1?", "2"),
        json.dumps({"message": json.dumps([{"role": "user", "content": "What is 4 + 4?"}])}),
    ]) + "\n")
    with pytest.raises(DataError) as e:
        load_vermulti(path)
    assert str(e.value).startswith(f"{path}:2:") and e.value.reason == "missing_image"
    assert "gone.png" in str(e.value)
    report = Counter()
    with caplog.at_level("WARNING", logger="data.io"):
        samples = load_vermulti(path, on_error="skip", report=report)
    assert f"skipped 2 rows of {path}:" in caplog.text  # the original file, not the rebased copy
    assert [s.answer for s in samples] == ["5"] and samples[0].domain == "math"
    assert report == Counter({"loaded": 1, "skipped/missing_image": 1, "skipped/missing_answer": 1})


# --------------------------------------------------------------------------- filter and geometry


def _sample(answer: str, question: str = "What is it?", domain: str = "math") -> Sample:
    return Sample(make_messages(question, ["img.png"]), answer, domain, {})


def test_verifiability_filter_reasons():
    cases = [
        ("\\frac{1}{2}", "math"), ("12\\pi", "math"), ("\\{1, 2\\}", "math"), ("x^2 + 1", "math"),
        ("0.75", "math"), ("$\\boxed{B}$", "choice"), ("(D)", "choice"),
        ("", "math"), ("9" * 250, "math"), ("The graph is increasing", "math"), ("No", "math"),
        ("increasing", "math"), ("F", "choice"), ("cat", "choice"),
    ]
    samples = [_sample(a, "Pick one.\nChoices:\n(A) 1\n(B) 2\n(C) 3\n(D) 4" if d == "choice" else "Find x.", d)
               for a, d in cases]
    kept, report = verifiability_filter(samples)
    assert [s.answer for s in kept] == [a for a, _ in cases[:7]]
    assert report == Counter({"total": 14, "kept": 7, "dropped/empty": 1, "dropped/too_long": 1,
                              "dropped/free_text": 2, "dropped/yes_no": 1, "dropped/bad_choice": 2})
    # a letter outside the listed options
    _, rep = verifiability_filter([_sample("E", "Choices:\n(A) 1\n(B) 2", "choice")])
    assert rep["dropped/bad_choice"] == 1


def test_choice_golds_are_read_by_the_choice_reward():
    """Option letters are read by the reward's own parser (rewards.choice.gold_letter): a choice row is kept
    exactly when the reward can read its gold, and golds extracted from replies are the letter it reads."""
    from rewards.choice import gold_letter

    q = "Pick one.\nChoices:\n(A) 1\n(B) 2\n(C) 3\n(D) 4"
    golds = ["B", "(b)", "b", "(B", "B.", "B: 2", "(B) 2", "$\\boxed{B}$", "The answer is B", "\\boxed{B}, 2", "**B**",
             "B.\n2", "F", "E", "cat", "A triangle"]
    for g in golds:
        want = "ok" if gold_letter(g) in ("A", "B", "C", "D") else "bad_choice"
        assert gold_status(_sample(g, q, "choice")) == want, g
    # where the reward's parser differs from the one data/ had before: lower case and phrases are read, a letter
    # line followed by more text is not
    assert [gold_status(_sample(g, q, "choice")) for g in ("b", "The answer is B", "B.\n2")] == ["ok", "ok", "bad_choice"]
    assert extract_final_answer("Answer: b", q) == "B" and extract_final_answer("I pick (C) here", q) == "C"
    assert extract_final_answer("The answer is B", MC_Q) == "B" and extract_final_answer("cone", MC_Q) == "C"


GEOMETRY = [
    "As shown in the figure, in △ABC, ∠A = 50°, ∠B = 60°. Find ∠C.",
    "AB is the diameter of ⊙O and point C lies on the circle. If ∠ABC = 35°, find ∠BAC.",
    "In the figure, AB ∥ CD and ∠1 = 40°. What is the measure of ∠2?",
    "Find the area of the shaded sector if the radius is 6.",
    "What is the perimeter of the rectangle?",
    "In quadrilateral ABCD, the diagonals bisect each other. Is ABCD a parallelogram?",
    "If AB = 6 and BC = 8, find AC.",
    "Find $m \\angle 2$ if $m \\angle 1 = 3x + 5$.",
    "The two triangles are similar. Find the length of the missing side.",
    "Chord AB is 8 cm long and is 3 cm from the center. Find the radius.",
    "Find x. Round to the nearest tenth. Angle measures are 35^\\circ and 72^\\circ.",
]
NOT_GEOMETRY = [
    "Subtract all red cylinders. Subtract all small cubes. How many objects are left?",
    "What is the value of the largest bar?",
    "Which year had the highest sales according to the line graph?",
    "How much more does a red sweater cost than a blue scarf? (Unit: $)",
    "Is Dark Orange the high median?",
    "The thermometer shows 25°C in the morning and 31°C at noon. How much warmer is it at noon?",
    "What time is shown? Answer by typing a time word, not a number.",
    "Is the color of the flower similar to the color of the leaves?",
    "In what year did the US GDP first exceed 20 trillion dollars?",
    "How many people in the image were born after the end of World War II?",
]


@pytest.mark.parametrize("question", GEOMETRY)
def test_is_geometry_positive(question):
    assert is_geometry(question)


@pytest.mark.parametrize("question", NOT_GEOMETRY)
def test_is_geometry_negative(question):
    assert not is_geometry(question)


def test_extract_geometry_on_samples():
    samples = [_sample("1", q) for q in GEOMETRY[:3] + NOT_GEOMETRY[:3]]
    assert [s.question for s in extract_geometry(samples)] == GEOMETRY[:3]


# --------------------------------------------------------------------------- dispatch


def test_load_dataset_by_name(tmp_path):
    assert len(load_dataset_by_name("geo-fixture")) == 24
    first = load_dataset_by_name("synthetic-geo:5", cache_dir=tmp_path)
    again = load_dataset_by_name("synthetic-geo:5", cache_dir=tmp_path)  # reuses the cached folder
    assert [s.answer for s in first] == [s.answer for s in again]
    assert len(first) == 5 and all(s.domain == "geo" and Path(s.images[0]).is_file() for s in first)
    assert len(list((tmp_path / "synthetic_geo").iterdir())) == 1
    seeded = load_dataset_by_name("synthetic-geo:5:3", cache_dir=tmp_path)
    assert [s.answer for s in seeded] != [s.answer for s in first]
    assert len(load_dataset_by_name("synthetic-geo:3", cache_dir=tmp_path, max_samples=2)) == 2
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset_by_name("nope")
    with pytest.raises(ValueError, match="synthetic-geo:N"):
        load_dataset_by_name("synthetic-geo:lots", cache_dir=tmp_path)
