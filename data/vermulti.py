"""VerMulti (hub ``VLM-Reasoner/VerMulti``), the stage-2 multimodal RL data of LMM-R1.

Two subsets of LMM-R1 message rows: ``mathv60k_message.jsonl`` (PerceReason, broad multimodal math) and
``mathv_geo_message.jsonl`` (Geo), images in ``mathv60k_img.tar.gz`` / ``mathv_geo_img.tar.gz`` extracted
next to the jsonl. The released rows carry the authors' image paths; :func:`load_vermulti` rebases them
onto the jsonl's folder. Errors follow :mod:`data.io` (``"FILE:LINE: ..."``, the original file).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable

from .gold import gold_letter, has_choices
from .images import image_roots, resolve_image_path
from .io import DataError, _limit, extract_once, find_data_file, hub_download, json_too_deep, raw_lines
from .io import logger as io_logger
from .loaders import load_message_jsonl
from .sample import R1_SYSTEM_PROMPT, Sample

__all__ = ["VERMULTI_ID", "VERMULTI_SUBSETS", "load_vermulti"]

VERMULTI_ID = "VLM-Reasoner/VerMulti"
# subset -> (jsonl, image archive, image folder inside the archive)
VERMULTI_SUBSETS = {
    "mathv60k": ("mathv60k_message.jsonl", "mathv60k_img.tar.gz", "mathv60k_img"),
    "geo": ("mathv_geo_message.jsonl", "mathv_geo_img.tar.gz", "mathv_geo_img"),
}


def _resolve_vermulti(path_or_dir: str | os.PathLike, subset: str, cache_dir) -> Path:
    jsonl_name, archive, _ = VERMULTI_SUBSETS[subset]
    found = find_data_file(path_or_dir, jsonl_name, f"no {jsonl_name} in folder (subset={subset!r})")
    if found is not None:
        return found
    local = hub_download(os.fspath(path_or_dir), [jsonl_name, archive], cache_dir)
    extract_once(local / archive, local)
    return local / jsonl_name


def _rebase_ref(ref: str, base_dir: Path, cache: dict) -> str | None:
    """An absolute path (``file:///...``) for an image ref that does not resolve as written.

    VerMulti refs carry the authors' prefixes (``/apdcephfs.../mathv60k/mathv60k_img/x.jpg``,
    ``data/mathv_geo/mathv_geo_img/x.png``); the images sit in ``<jsonl folder>/<subset>_img/``.
    Leading path components are dropped until the rest exists under ``base_dir``; the number
    dropped is remembered per first component so later rows resolve with one stat.
    """
    raw = ref[len("file://"):] if ref.startswith("file://") else ref
    parts = [x for x in raw.replace("\\", "/").split("/") if x not in ("", ".")]
    if not parts:
        return None
    key = parts[0]
    known = cache.get(key)
    order = ([known] if known is not None else []) + [i for i in range(1, len(parts)) if i != known]
    for i in order:
        if i >= len(parts):
            continue
        cand = base_dir.joinpath(*parts[i:])
        if cand.is_file():
            cache[key] = i
            return "file://" + str(cand.resolve())
    return None


def _local_relative(ref: str) -> str | None:
    """The path of a relative local ref (``file://x/y.png`` or ``x/y.png``), else None."""
    raw = ref[len("file://"):] if ref.startswith("file://") else ref
    if raw.startswith("/") or re.match(r"^[a-zA-Z][\w+.-]*:", raw):
        return None
    return raw


def _rebased_copy(src: Path, tmp_dir: Path) -> Path | None:
    """Copy of ``src`` (same name, same line numbers) with unresolved image refs rebased; None if none needed. A line
    that the loader will refuse (not UTF-8, too deep, not JSON) is copied as it is, unparsed; one over --max-row-bytes
    is never read whole (the copy holds a filler line over the limit in its place)."""
    base_dir = src.resolve().parent
    cache: dict = {}
    changed = False
    out = tmp_dir / src.name
    limit = _limit(None)
    with open(src, "rb") as fin, open(out, "wb") as fout:
        for raw_line in raw_lines(fin, limit):
            if raw_line is None:  # never read whole: the copy holds a line over the limit in its place, for the loader
                fout.write(b"x" * (limit + 1) + b"\n")
                continue
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError:
                fout.write(raw_line if raw_line.endswith(b"\n") else raw_line + b"\n")
                continue
            new = line
            try:
                row = json.loads(line) if line.strip() and not json_too_deep(line) else None
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict):
                raw = row.get("message")
                msgs = None
                if isinstance(raw, str):
                    try:
                        msgs = None if json_too_deep(raw) else json.loads(raw)
                    except json.JSONDecodeError:
                        msgs = None
                elif isinstance(raw, list):
                    msgs = raw
                row_changed = False
                for turn in msgs if isinstance(msgs, list) else []:
                    content = turn.get("content") if isinstance(turn, dict) else None
                    for part in content if isinstance(content, list) else []:
                        if not (isinstance(part, dict) and part.get("type") == "image"):
                            continue
                        key = next((k for k in ("image", "path", "url") if isinstance(part.get(k), str)), None)
                        if key is None:
                            continue
                        ref = part[key]
                        rel = _local_relative(ref)
                        resolved = resolve_image_path(ref, base_dir)
                        if resolved is not None:
                            if rel is not None:  # the copy lives elsewhere: make it absolute
                                part[key] = "file://" + resolved
                                row_changed = True
                            continue
                        rebased = _rebase_ref(ref, base_dir, cache)
                        if rebased is not None:
                            part[key] = rebased
                            row_changed = changed = True
                        elif rel is not None:  # still missing: point at the original folder for the error
                            part[key] = "file://" + str(base_dir / rel)
                            row_changed = True
                if row_changed:
                    row["message"] = json.dumps(msgs, ensure_ascii=False) if isinstance(raw, str) else msgs
                    new = json.dumps(row, ensure_ascii=False) + "\n"
            fout.write((new if new.endswith("\n") else new + "\n").encode("utf-8"))
    return out if changed else None


class _RenameSource(logging.Filter):
    """Rewrites one file name in log records (the rebased copy -> the original file)."""

    def __init__(self, old: str, new: str):
        super().__init__()
        self.old, self.new = old, new

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(str(a).replace(self.old, self.new) if isinstance(a, (str, DataError)) else a
                                for a in record.args)
        return True


def _detect_choice(samples: Iterable[Sample]) -> None:
    """Multiple-choice rows (options in the question, a letter as gold) get domain "choice" and a bare letter."""
    for s in samples:
        if s.domain == "choice" or not has_choices(s.question):
            continue
        letter = gold_letter(s.answer)
        if letter:
            s.meta.setdefault("raw_answer", s.answer)
            s.meta.setdefault("orig_domain", s.domain)
            s.answer, s.domain = letter, "choice"


def load_vermulti(
    path_or_dir: str | os.PathLike = VERMULTI_ID,
    subset: str = "mathv60k",
    *,
    on_error: str = "raise",
    max_samples: int | None = None,
    report: Counter | None = None,
    system: str | None = R1_SYSTEM_PROMPT,
    domain: str | None = None,
    detect_choice: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> list[Sample]:
    """Load a VerMulti subset (``"mathv60k"`` = PerceReason-style broad set, ``"geo"`` = Geo).

    ``path_or_dir``: the subset's jsonl, a folder holding it (``mathv60k_message.jsonl`` /
    ``mathv_geo_message.jsonl``), or a hub id: ``huggingface_hub.snapshot_download`` fetches the
    jsonl and the image archive into ``cache_dir`` (default ``$LMM_R1_CACHE`` or
    ``~/.cache/lmm_r1``) and extracts the archive next to the jsonl.

    Rows are read by :func:`data.loaders.load_message_jsonl`. Image refs that do not resolve as
    written (the released files carry the authors' absolute / ``data/...`` prefixes) are rebased
    onto the jsonl's folder (``<folder>/mathv60k_img/...``): a rebased copy of the file is loaded
    from a temporary folder, with the same line numbers; errors and ``meta["file"]`` still name the
    original file. ``domain`` defaults to ``"geo"`` for the geo subset and ``"math"`` otherwise
    (a row's own ``domain`` wins); with ``detect_choice``, rows whose question lists options and
    whose gold is an option letter (``"$\\boxed{B}$"`` too) become ``domain="choice"`` with the bare
    letter as answer (the original in ``meta["raw_answer"]``).
    """
    if subset not in VERMULTI_SUBSETS:
        raise ValueError(f"unknown VerMulti subset {subset!r}; expected one of {sorted(VERMULTI_SUBSETS)}")
    if domain is None:
        domain = "geo" if subset == "geo" else "math"
    src = _resolve_vermulti(path_or_dir, subset, cache_dir)
    kwargs = dict(on_error=on_error, max_samples=max_samples, report=report, system=system, domain=domain)
    with tempfile.TemporaryDirectory(prefix="vermulti_") as tmp:
        rebased = _rebased_copy(src, Path(tmp))
        if rebased is None:
            samples = load_message_jsonl(src, **kwargs)
        else:
            # errors, the skip summary and meta["file"] name the original file, not the copy
            rename = _RenameSource(str(rebased), str(src))
            io_logger.addFilter(rename)
            try:
                with image_roots(src.resolve().parent):  # the copy's images lie in the original's folder
                    samples = load_message_jsonl(rebased, **kwargs)
            except DataError as e:
                detail = (e.detail.replace(str(Path(tmp).resolve()), str(src.resolve().parent))
                          .replace(tmp, str(src.parent)))
                raise DataError(str(src), e.line, e.reason, detail) from None
            finally:
                io_logger.removeFilter(rename)
            for s in samples:
                s.meta["file"] = str(src)
    for s in samples:
        s.meta.setdefault("subset", subset)
    if detect_choice:
        _detect_choice(samples)
    return samples
