"""eval.py --export vlmevalkit: our responses as VLMEvalKit prediction tables (its own dataset table, image dropped,
prediction added), rows found by index or by question with the gold answers agreeing."""

import csv
import json

import pytest

import eval as eval_cli
from data.benchmarks import load_benchmark
from evaluation.export import export_vlmevalkit

IMAGE = "iVBORw0KGgo" * 20_000  # a base64 image cell longer than csv's default field limit (131,072)


def _write_table(path, columns, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, columns, delimiter="\t")
        w.writeheader()
        w.writerows(rows)


def _read(path):
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture
def eval_dir(tmp_path):
    """An eval folder as eval.py writes it: MMStar (2 samples per question), MathVista, Sokoban."""
    out = tmp_path / "eval"
    out.mkdir()
    lines, benchmarks = [], {}
    for name, k in (("mmstar", 2), ("mathvista", 1)):
        samples, _ = load_benchmark(name, "fixture", None, 10)
        benchmarks[name] = {"source": "fixture", "k": k, "n": len(samples)}
        for s in samples:
            for j in range(k):
                lines.append({"benchmark": name, "id": s.meta["id"], "sample": j, "question": s.question,
                              "options": s.meta.get("options", []), "gold": s.answer,
                              "response": f"<think>a\tb \"q\"\nline</think><answer>{name} {s.meta['id']} #{j}</answer>"})
    benchmarks["sokoban"] = {"source": "generated", "k": 1, "n": 1}
    lines.append({"benchmark": "sokoban", "id": "0", "sample": 0, "question": "push", "gold": "", "response": "R"})
    (out / "results.json").write_text(json.dumps({"model": "runs/fre_text/final", "benchmarks": benchmarks}))
    (out / "responses.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return out


@pytest.fixture
def lmu(tmp_path):
    """VLMEvalKit's tables: MMStar indexed by our ids (one row we never answered); MathVista with its own indexes, so
    rows are found by question (one row's question is ours but its answer is not: never matched)."""
    d = tmp_path / "LMUData"
    d.mkdir()
    mm = ["index", "question", "A", "B", "C", "D", "answer", "category", "l2-category", "image"]
    _write_table(d / "MMStar.tsv", mm, [
        {"index": 0, "question": "Which shape is drawn in the image?", "A": "a triangle", "B": "a square",
         "C": "a circle", "D": "a star", "answer": "B", "category": "cp", "l2-category": "scene", "image": IMAGE},
        {"index": 1, "question": "How many red dots are in the image?", "A": "1", "B": "2", "C": "3", "D": "4",
         "answer": "C", "category": "fp", "l2-category": "count", "image": IMAGE},
        {"index": 7, "question": "Not one of ours", "A": "x", "B": "y", "C": "", "D": "", "answer": "A",
         "category": "cp", "l2-category": "scene", "image": IMAGE}])
    mv = ["index", "image", "question", "answer", "question_type", "answer_type", "choices", "precision", "task"]
    _write_table(d / "MathVista_MINI.tsv", mv, [
        {"index": 902, "image": IMAGE, "question": "How many red dots are there?", "answer": "4",
         "question_type": "free_form", "answer_type": "integer", "choices": "None", "precision": "", "task": "x"},
        {"index": 900, "image": IMAGE, "question": "Which bar is the tallest?", "answer": "fourth",
         "question_type": "multi_choice", "answer_type": "text", "choices": "['first', 'second', 'third', 'fourth']",
         "precision": "", "task": "figure QA"},
        {"index": 901, "image": IMAGE, "question": "How many red dots are there?", "answer": "3",
         "question_type": "free_form", "answer_type": "integer", "choices": "None", "precision": "", "task": "x"}])
    return d


def test_export_writes_the_kits_own_rows_with_our_predictions(eval_dir, lmu):
    logged = []
    paths = export_vlmevalkit(eval_dir, lmu, log=logged.append)
    assert [p.name for p in paths] == ["runs-fre-text-final_MMStar.tsv", "runs-fre-text-final_MathVista_MINI.tsv"]
    folder = paths[0].parent
    assert folder.parent == eval_dir / "vlmevalkit" / "runs-fre-text-final"
    assert folder.name.startswith("T") and len(folder.name) == len("T20261207-231120")  # run.py's run folder name

    mmstar = _read(paths[0])
    assert list(mmstar[0]) == ["index", "question", "A", "B", "C", "D", "answer", "category", "l2-category",
                               "prediction"]  # the kit's columns in its order, image dropped
    assert [r["index"] for r in mmstar] == ["0", "1"]  # row 7 has no response: left out
    assert mmstar[1]["prediction"] == "<think>a\tb \"q\"\nline</think><answer>mmstar 1 #0</answer>"  # sample 0, intact
    assert mmstar[0]["category"] == "cp" and mmstar[0]["answer"] == "B"

    mathvista = _read(paths[1])  # by question: the kit's question inside our prompt, gold answers agreeing
    by_index = {r["index"]: r["prediction"] for r in mathvista}
    assert by_index == {"900": "<think>a\tb \"q\"\nline</think><answer>mathvista 1 #0</answer>",
                        "901": "<think>a\tb \"q\"\nline</think><answer>mathvista 2 #0</answer>"}
    assert [r["index"] for r in mathvista] == ["900", "901"]  # the table's order; 902's answer is not our gold

    text = "\n".join(logged)
    assert "2 of 3 rows of MMStar (a part: 1 of its rows have no response)" in text
    assert "1 of our items matched no row" in text  # MathVista's third item is not in this table
    assert "not exported (no VLMEvalKit dataset): sokoban" in text


def test_the_tables_read_back_as_vlmevalkit_reads_them(eval_dir, lmu):
    pd = pytest.importorskip("pandas")  # VLMEvalKit's load(): pd.read_csv(path, sep="\t")
    path = export_vlmevalkit(eval_dir, lmu, log=lambda m: None)[0]
    frame = pd.read_csv(path, sep="\t")
    assert list(frame["index"]) == [0, 1]
    assert frame["prediction"][0] == "<think>a\tb \"q\"\nline</think><answer>mmstar 0 #0</answer>"


def test_export_needs_the_kits_table(eval_dir, tmp_path):
    with pytest.raises(SystemExit, match=r"MMStar.tsv is missing.*--lmu-data"):
        export_vlmevalkit(eval_dir, tmp_path / "empty", log=lambda m: None)
    bad = tmp_path / "bad"
    bad.mkdir()
    _write_table(bad / "MMStar.tsv", ["id", "question"], [{"id": 0, "question": "q"}])
    with pytest.raises(Exception, match=r"MMStar.tsv.*no 'index' column"):
        export_vlmevalkit(eval_dir, bad, log=lambda m: None)


def test_eval_cli_exports_an_eval_folder(eval_dir, lmu, capsys):
    eval_cli.main(["--export", "vlmevalkit", "--out", str(eval_dir), "--lmu-data", str(lmu)])
    assert "vlmutil eval" in capsys.readouterr().err
    assert len(list((eval_dir / "vlmevalkit").rglob("*.tsv"))) == 2
    with pytest.raises(SystemExit, match="--out DIR"):
        eval_cli.main(["--export", "vlmevalkit"])
