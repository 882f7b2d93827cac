"""Loaders of the generic formats into :class:`data.sample.Sample` lists, and the bundled fixtures.

* :func:`load_deepscaler` - DeepScaleR-style rows with ``problem`` / ``answer`` (hub id via
  ``datasets.load_dataset``, or a local ``.jsonl`` / ``.json`` / ``.parquet`` file).
* :func:`load_message_jsonl` - the LMM-R1 format: each line ``{"message": "<JSON string of a chat
  list>", "answer": "<LaTeX>"}``.
* :func:`load_jsonl` - plain rows with ``question`` | ``problem`` | ``prompt``, ``answer`` and
  optional ``images`` (list of paths) and ``domain``.
* :func:`load_fixture` / :func:`load_geo_fixture` - the small fixtures bundled in ``data/fixtures/``.

Image paths, errors and the ``on_error`` / ``max_samples`` / ``report`` arguments every loader takes
are described in :mod:`data.io`. ``--data NAME`` is dispatched by :func:`data.load_dataset_by_name`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from .images import resolve_image, resolve_images
from .io import FIXTURE_DIR, MAX_JSON_DEPTH, _collect, check_file, iter_jsonl, json_too_deep, read_rows
from .sample import R1_SYSTEM_PROMPT, Sample, make_messages, system_message

__all__ = [
    "DEEPSCALER_ID",
    "GEO_FIXTURE",
    "load_deepscaler",
    "load_message_jsonl",
    "load_jsonl",
    "load_fixture",
    "load_geo_fixture",
]

DEEPSCALER_ID = "agentica-org/DeepScaleR-Preview-Dataset"
FIXTURES = {
    "math": "math_fixture.jsonl",
    "message": "message_fixture.jsonl",
}
GEO_FIXTURE = FIXTURE_DIR / "geo_fixture.jsonl"


# --------------------------------------------------------------------------- row fields


def _get_answer(row: dict, err) -> str:
    ans = row.get("answer")
    if ans is None or isinstance(ans, bool) or not isinstance(ans, (str, int, float)):
        raise err("missing_answer", "missing answer" if ans is None
                  else f"answer must be a string or number, got {type(ans).__name__}")
    ans = str(ans).strip()
    if not ans:
        raise err("missing_answer", "empty answer")
    return ans


def _get_question(row: dict, keys: Iterable[str], err) -> str:
    for key in keys:
        q = row.get(key)
        if isinstance(q, str) and q.strip():
            return q
    keys = tuple(keys)
    raise err("missing_question", f"missing question: no non-empty string field among {keys}")


def _meta(row: dict, used: Iterable[str], source: str, line: int) -> dict:
    used = set(used)
    meta = {k: v for k, v in row.items() if k not in used}
    meta["file"] = source
    meta["line"] = line
    meta["id"] = str(row["id"]) if row.get("id") not in (None, "") else f"{Path(source).stem}:{line}"
    return meta


# --------------------------------------------------------------------------- DeepScaleR


def load_deepscaler(
    path_or_id: str | os.PathLike = DEEPSCALER_ID,
    split: str = "train",
    *,
    on_error: str = "raise",
    max_samples: int | None = None,
    report: Counter | None = None,
    system: str | None = R1_SYSTEM_PROMPT,
    domain: str = "math",
) -> list[Sample]:
    """Load DeepScaleR-style ``problem`` / ``answer`` rows as text-only Samples.

    ``path_or_id`` is a hub id (loaded with ``datasets.load_dataset(path_or_id, split=split)``) or a
    local ``.jsonl`` / ``.json`` (list of objects) / ``.parquet`` file (``split`` is then ignored), read by
    :func:`data.io.read_rows`.
    Other fields (e.g. ``solution``) go to ``meta``.
    """
    source, line_based, rows = read_rows(path_or_id, split)

    def build(row, line, err):
        question = _get_question(row, ("problem",), err)
        return Sample(make_messages(question, system=system), _get_answer(row, err), domain,
                      _meta(row, ("problem", "answer"), source, line))

    return _collect(source, rows, build, on_error=on_error, max_samples=max_samples, report=report,
                    line_based=line_based)


# --------------------------------------------------------------------------- LMM-R1 message jsonl


def _normalize_messages(raw: Any, base_dir: Path, system: str | None, err) -> list[dict]:
    if isinstance(raw, str):
        if json_too_deep(raw):
            raise err("too_deep", f"`message` nested deeper than {MAX_JSON_DEPTH} levels of JSON (not parsed)")
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise err("bad_message", f"`message` is not valid JSON ({e.msg} at column {e.colno})")
    if raw is None:
        raise err("bad_message", "missing `message`")
    if not isinstance(raw, list) or not raw:
        raise err("bad_message", f"`message` must be a non-empty JSON list of chat turns, got {type(raw).__name__}"
                  if not isinstance(raw, list) else "`message` is an empty list")
    messages = []
    has_question = False
    for i, turn in enumerate(raw):
        if not isinstance(turn, dict) or not isinstance(turn.get("role"), str) or "content" not in turn:
            raise err("bad_message", f"`message` turn {i} must be an object with 'role' and 'content'")
        content = turn["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise err("bad_message", f"`message` turn {i} content must be a string or a list")
        parts = []
        for part in content:
            if not isinstance(part, dict):
                raise err("bad_message", f"`message` turn {i} has a non-object content part")
            kind = part.get("type")
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise err("bad_message", f"`message` turn {i} has a text part without a 'text' string")
                if turn["role"] == "user" and part["text"].strip():
                    has_question = True
                parts.append(dict(part))
            elif kind == "image":
                ref = next((part[k] for k in ("image", "path", "url") if isinstance(part.get(k), str)), None)
                if not ref:
                    raise err("bad_message", f"`message` turn {i} has an image part without an image path")
                parts.append({"type": "image", "image": resolve_image(ref, [base_dir], err)})
            else:
                raise err("bad_message", f"`message` turn {i} has unsupported content type {kind!r}")
        messages.append({**turn, "content": parts})
    if not has_question:
        raise err("missing_question", "missing question: `message` has no user text")
    if system and not any(m["role"] == "system" for m in messages):
        messages.insert(0, system_message(system))
    return messages


def load_message_jsonl(
    path: str | os.PathLike,
    *,
    on_error: str = "raise",
    max_samples: int | None = None,
    report: Counter | None = None,
    system: str | None = R1_SYSTEM_PROMPT,
    domain: str = "math",
) -> list[Sample]:
    """Load an LMM-R1 jsonl: ``{"message": "<JSON chat list>", "answer": "<LaTeX>"}`` per line.

    ``message`` is a JSON *string* (an already-decoded list is accepted too) of turns
    ``{"role": ..., "content": str | [{"type": "image", "image": "file://images/x.png"},
    {"type": "text", "text": "..."}]}``. Image references follow :mod:`data.io`:
    ``file://rel/path`` and bare relative paths are relative to the jsonl's folder,
    ``file:///abs/path`` is absolute; each must exist inside the jsonl's folder (or ``--image-root``) and open
    within ``--max-image-pixels`` (:func:`data.images.resolve_image`). String contents become a text part.
    The system prompt ``system`` is prepended unless the chat already has a system turn
    (``system=None`` never adds one). A row's ``domain`` overrides the ``domain`` argument;
    other row fields go to ``meta``.
    """
    p = check_file(path)
    source = str(path)
    base_dir = p.resolve().parent

    def build(row, line, err):
        messages = _normalize_messages(row.get("message"), base_dir, system, err)
        return Sample(messages, _get_answer(row, err), str(row.get("domain") or domain),
                      _meta(row, ("message", "answer", "domain"), source, line))

    return _collect(source, iter_jsonl(p), build, on_error=on_error, max_samples=max_samples, report=report)


# --------------------------------------------------------------------------- plain jsonl


def load_jsonl(
    path: str | os.PathLike,
    *,
    on_error: str = "raise",
    max_samples: int | None = None,
    report: Counter | None = None,
    system: str | None = R1_SYSTEM_PROMPT,
    domain: str = "math",
) -> list[Sample]:
    """Load plain rows ``{"question"|"problem"|"prompt": str, "answer": ..., "images"?: [paths],
    "domain"?: str}``. Image paths follow :mod:`data.io` (relative to the jsonl's folder, and checked there)."""
    p = check_file(path)
    source = str(path)
    base_dir = p.resolve().parent

    def build(row, line, err):
        question = _get_question(row, ("question", "problem", "prompt"), err)
        answer = _get_answer(row, err)
        refs = row.get("images") or []
        if isinstance(refs, str):
            refs = [refs]
        if not isinstance(refs, list) or not all(isinstance(r, str) and r for r in refs):
            raise err("bad_images", "`images` must be a list of path strings")
        images = resolve_images(refs, [base_dir], err)
        return Sample(make_messages(question, images, system=system), answer, str(row.get("domain") or domain),
                      _meta(row, ("question", "problem", "prompt", "answer", "images", "domain"), source, line))

    return _collect(source, iter_jsonl(p), build, on_error=on_error, max_samples=max_samples, report=report)


# --------------------------------------------------------------------------- fixtures


def load_fixture(name: str = "math", **kwargs) -> list[Sample]:
    """Samples of a bundled fixture: ``"math"`` (64 synthetic problem/answer rows, see
    ``data/synth/math.py``) or ``"message"`` (LMM-R1 message rows with images). ``kwargs`` go to
    the loader (``on_error``, ``max_samples``, ``report``, ``system``, ``domain``)."""
    if name not in FIXTURES:
        raise ValueError(f"unknown fixture {name!r}; expected one of {sorted(FIXTURES)}")
    path = FIXTURE_DIR / FIXTURES[name]
    if name == "message":
        return load_message_jsonl(path, **kwargs)
    return load_deepscaler(path, **kwargs)


def load_geo_fixture(**kwargs) -> list[Sample]:
    """Samples of the bundled synthetic geometry fixture (``data/fixtures/geo_fixture.jsonl``, 24 rows,
    ``domain="geo"``, see ``data/synth/geometry.py``). ``kwargs`` go to :func:`load_message_jsonl`."""
    kwargs.setdefault("domain", "geo")
    return load_message_jsonl(GEO_FIXTURE, **kwargs)
