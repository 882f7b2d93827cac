"""Hand an evaluation's responses to VLMEvalKit, so that its own scorer and LLM judges can score them too.

    python eval.py --export vlmevalkit --out runs/fre-text/final/eval           # an existing eval folder
    vlmutil eval runs/fre-text/final/eval/vlmevalkit/<model>/T<time>/<model>_MathVista_MINI.tsv --judge gpt-4o-mini

VLMEvalKit's `evaluate()` reads a prediction file that is its own dataset table (`$LMUData/<Dataset>.tsv`, which it
downloads on first use) with the `image` column dropped and a `prediction` column added - what its inference writes.
The exporter builds exactly that: it reads the kit's table, finds our response for each of its rows, and writes
`<Dataset>.tsv` files under `<eval>/vlmevalkit/<model>/T<time>/`, the layout `run.py --mode eval` reuses.

A row is ours by its index when that index is our item's id and the gold answers agree; else by its question (the
kit's question text inside ours, or ours inside its) with the gold answers agreeing, when exactly one unused item fits.
Rows without a response are left out and counted (a `--limit` run covers a part: `vlmutil eval` scores a part;
`run.py --mode eval` wants every row). With several samples per question the first is exported.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

from data import DataError
from rewards.choice import LETTERS, letter_of
from rewards.text import normalize_text, numbers_in

__all__ = ["VLMEVALKIT", "export_vlmevalkit", "lmu_data_root"]

# Our benchmark -> VLMEvalKit's dataset. OlympiadBench is left out: the kit's set mixes image problems into ours
# (text-only English) and its evaluate() expects every one of its ten sources.
VLMEVALKIT = {"mathvista": "MathVista_MINI", "mathverse": "MathVerse_MINI", "mathvision_test": "MathVision",
              "mathvision_testmini": "MathVision_MINI", "mmstar": "MMStar", "realworldqa": "RealWorldQA",
              "blink": "BLINK"}
_IMAGE_TAG = re.compile(r"<image\s*\d*>")


def lmu_data_root() -> Path:
    """Where VLMEvalKit keeps its dataset tables: $LMUData, else ~/LMUData (the kit's own rule)."""
    return Path(os.environ.get("LMUData") or Path.home() / "LMUData")


def _read_table(path: Path) -> tuple[list[str], list[dict]]:
    csv.field_size_limit(sys.maxsize)  # the image column holds base64 images
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        rows = list(reader)
        columns = list(reader.fieldnames or [])
    if "index" not in columns:
        raise DataError(str(path), None, "bad_file", f"not a VLMEvalKit dataset table: it has no 'index' column "
                                                     f"(columns: {', '.join(columns[:8])})")
    return columns, rows


def _words(text) -> str:
    return re.sub(r"\s+", " ", _IMAGE_TAG.sub(" ", str(text or ""))).strip().lower()


def _answers(line: dict) -> set:
    """Our gold written every way the kit may write it: the letter, the option's text, its number."""
    gold = str(line.get("gold", ""))
    forms = {normalize_text(gold)}
    letter = letter_of(gold)
    options = line.get("options") or []
    if letter and LETTERS.index(letter) < len(options):
        forms.add(normalize_text(options[LETTERS.index(letter)]))
    return {f for f in forms if f}


def _agrees(line: dict, row: dict) -> bool:
    """Whether the kit's answer for a row is our item's gold (letter, option text or equal number); a row without
    an answer column cannot disagree."""
    theirs = row.get("answer")
    if theirs is None or str(theirs).strip() == "":
        return True
    ours = _answers(line)
    if normalize_text(theirs) in ours:
        return True
    a, b = numbers_in(str(theirs)), [numbers_in(x) for x in ours]
    return bool(a) and a in b


def match_rows(lines: list[dict], rows: list[dict]) -> tuple[dict[int, dict], int]:
    """(row position -> our response line, how many of our items matched no row): by index, else by question."""
    by_id = {str(x["id"]): x for x in lines}
    matched, used = {}, set()
    for i, row in enumerate(rows):
        line = by_id.get(str(row["index"]).strip())
        if line is not None and _agrees(line, row) and id(line) not in used:
            matched[i] = line
            used.add(id(line))
    by_question = defaultdict(list)
    for x in lines:
        by_question[_words(x.get("question"))].append(x)
    for i, row in enumerate(rows):
        theirs = _words(row.get("question"))
        if i in matched or len(theirs) < 8:
            continue
        fits = [x for q, group in by_question.items() if theirs in q or (len(q) >= 8 and q in theirs)
                for x in group if id(x) not in used and _agrees(x, row)]
        if len(fits) == 1:
            matched[i] = fits[0]
            used.add(id(fits[0]))
    return matched, len(lines) - len(used)


def export_vlmevalkit(eval_dir: str | Path, lmu_data: str | Path | None = None, model_name: str = "",
                      log=print) -> list[Path]:
    """Write VLMEvalKit prediction tables for the benchmarks of an eval folder (results.json + responses.jsonl) that
    the kit knows; returns their paths. `lmu_data` holds the kit's dataset tables (default: `lmu_data_root()`)."""
    eval_dir = Path(eval_dir)
    results = json.loads((eval_dir / "results.json").read_text())
    lmu = Path(lmu_data) if lmu_data else lmu_data_root()
    model = re.sub(r"[^A-Za-z0-9.-]+", "-", model_name or str(results.get("model") or "model")).strip("-")
    out = eval_dir / "vlmevalkit" / (model or "model") / time.strftime("T%Y%m%d-%H%M%S")
    names = [n for n in results["benchmarks"] if n in VLMEVALKIT]
    skipped = [n for n in results["benchmarks"] if n not in VLMEVALKIT]
    if not names:
        raise SystemExit(f"error: none of this evaluation's benchmarks ({', '.join(results['benchmarks'])}) is a "
                         f"VLMEvalKit dataset; it knows {', '.join(VLMEVALKIT)}")
    lines = defaultdict(list)
    with open(eval_dir / "responses.jsonl", encoding="utf-8") as f:
        for raw in f:
            x = json.loads(raw) if raw.strip() else None
            if x and x["benchmark"] in names and x.get("sample", 0) == 0:
                lines[x["benchmark"]].append(x)
    written = []
    for name in names:
        dataset = VLMEVALKIT[name]
        table = lmu / f"{dataset}.tsv"
        if not table.is_file():
            raise SystemExit(f"error: VLMEvalKit's table {table} is missing: its evaluate() reads the dataset's own "
                             f"columns. Run VLMEvalKit once on {dataset} (it downloads the table) or set --lmu-data "
                             f"(default $LMUData, else ~/LMUData)")
        columns, rows = _read_table(table)
        matched, unmatched = match_rows(lines[name], rows)
        columns = [c for c in columns if c not in ("image", "prediction")] + ["prediction"]
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{model}_{dataset}.tsv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns, delimiter="\t", extrasaction="ignore")
            writer.writeheader()
            for i in sorted(matched):
                writer.writerow({**rows[i], "prediction": matched[i]["response"]})
        written.append(path)
        part = "" if len(matched) == len(rows) else f" (a part: {len(rows) - len(matched)} of its rows have no response)"
        log(f"{name} -> {path}: {len(matched)} of {len(rows)} rows of {dataset}{part}"
            + (f"; {unmatched} of our items matched no row (index, question and gold compared)" if unmatched else ""))
    if skipped:
        log(f"not exported (no VLMEvalKit dataset): {', '.join(skipped)}")
    log(f"score them with VLMEvalKit: vlmutil eval <file> [--judge gpt-4o-mini]; or, every row present, "
        f"PRED_FORMAT=tsv python run.py --mode eval --work-dir {eval_dir / 'vlmevalkit'} --model {model} "
        f"--data {' '.join(VLMEVALKIT[n] for n in names)}")
    return written
