"""Loaders that turn data files / hub datasets into :class:`data.sample.Sample` lists.

Sources
-------
* :func:`load_deepscaler` - DeepScaleR-style rows with ``problem`` / ``answer`` (hub id via
  ``datasets.load_dataset``, or a local ``.jsonl`` / ``.json`` / ``.parquet`` file).
* :func:`load_message_jsonl` - the LMM-R1 format: each line ``{"message": "<JSON string of a chat
  list>", "answer": "<LaTeX>"}``.
* :func:`load_jsonl` - plain rows with ``question`` | ``problem`` | ``prompt``, ``answer`` and
  optional ``images`` (list of paths) and ``domain``.
* :func:`load_fixture` - the small fixtures bundled in ``data/fixtures/``.
* :func:`load_dataset_by_name` - dispatch on a name or path.

Image paths
-----------
Image references (``"image"`` entries of a ``message``, items of ``images``) may be

* ``file:///abs/path.png`` or ``/abs/path.png`` - absolute;
* ``file://images/x.png`` or ``images/x.png`` - **relative to the folder of the jsonl file**
  (not the working directory), so a data folder can be moved as a whole;
* ``http(s)://...`` / ``data:...`` - passed through untouched (not checked).

Local paths are resolved to absolute path strings and must exist (else a ``missing_image``
error). Images stay paths in the Sample; open them with :func:`load_image` when processing.

Errors
------
* a missing data file -> ``FileNotFoundError`` naming the path;
* a bad row -> :class:`DataError` (a ``ValueError``) whose message starts with
  ``FILE:LINE:`` (1-based line; ``FILE:row N`` for non-line sources) and says what is wrong.
  ``DataError.reason`` is a short code: ``bad_json``, ``not_object``, ``bad_message``,
  ``missing_question``, ``missing_answer``, ``bad_images``, ``missing_image``.

Every loader takes ``on_error="raise"`` (default; first bad row raises) or ``"skip"`` (bad rows
are dropped and one summary line ``skipped N rows of FILE: reason=count, ...`` is logged at WARNING
level on the ``data.loaders`` logger), ``max_samples`` (stop after that many good samples) and
``report`` (an optional ``collections.Counter`` that receives ``"loaded"`` and
``"skipped/<reason>"`` counts).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import unquote

from PIL import Image

from .sample import R1_SYSTEM_PROMPT, Sample, make_messages, system_message

__all__ = [
    "DEEPSCALER_ID",
    "FIXTURE_DIR",
    "DataError",
    "load_image",
    "resolve_image_path",
    "load_deepscaler",
    "load_message_jsonl",
    "load_jsonl",
    "load_fixture",
    "load_dataset_by_name",
]

logger = logging.getLogger(__name__)

DEEPSCALER_ID = "agentica-org/DeepScaleR-Preview-Dataset"
FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"
FIXTURES = {
    "math": "math_fixture.jsonl",
    "message": "message_fixture.jsonl",
}
_URL_RE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|data:)")
_HUB_ID_RE = re.compile(r"^[\w.-]+/[\w.-]+$")


class DataError(ValueError):
    """A malformed data row. ``str(err)`` is ``"FILE:LINE: what is wrong"``."""

    def __init__(self, source: str, line: int | None, reason: str, detail: str, *, where: str | None = None):
        self.source = source
        self.line = line
        self.reason = reason
        self.detail = detail
        self.where = where or (f"{source}:{line}" if line is not None else source)
        super().__init__(f"{self.where}: {detail}")


# --------------------------------------------------------------------------- images


def load_image(image: Any) -> Image.Image:
    """Open an image reference as an RGB ``PIL.Image``.

    Accepts a PIL image, a path (``str`` / ``os.PathLike``, ``file://`` prefix allowed), raw
    ``bytes`` or a ``{"bytes": ..., "path": ...}`` dict (the HF ``datasets`` Image encoding).
    ``http(s)://`` and ``data:`` URLs are delegated to ``transformers.image_utils.load_image``.
    """
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, (bytes, bytearray)):
        with Image.open(io.BytesIO(image)) as im:
            return im.convert("RGB")
    if isinstance(image, dict):
        if image.get("bytes"):
            return load_image(image["bytes"])
        if image.get("path"):
            return load_image(image["path"])
        raise ValueError(f"image dict has neither 'bytes' nor 'path': {sorted(image)}")
    if isinstance(image, (str, os.PathLike)):
        ref = os.fspath(image)
        if ref.startswith("file://"):
            ref = ref[len("file://"):]
        elif _URL_RE.match(ref):
            from transformers.image_utils import load_image as hf_load_image

            return hf_load_image(ref).convert("RGB")
        with Image.open(ref) as im:
            return im.convert("RGB")
    raise TypeError(f"cannot load an image from {type(image).__name__}")


def resolve_image_path(ref: str, base_dir: str | os.PathLike) -> str | None:
    """Resolve an image reference (see module doc) to an absolute path string.

    URLs other than ``file://`` are returned unchanged. Returns ``None`` if a local file does not
    exist.
    """
    if ref.startswith("file://"):
        raw = ref[len("file://"):]
    elif _URL_RE.match(ref):
        return ref
    else:
        raw = ref
    for candidate in (raw, unquote(raw)):
        p = Path(os.path.expanduser(candidate))
        if not p.is_absolute():
            p = Path(base_dir) / p
        if p.is_file():
            return str(p.resolve())
    return None


# --------------------------------------------------------------------------- shared machinery


def resolve_images(refs: list[str], roots: list[Path], err) -> list[str]:
    """Each reference resolved under the first root that has it; a missing one is a `missing_image` row error."""
    images = []
    for ref in refs:
        resolved = next((r for r in (resolve_image_path(ref, root) for root in roots) if r), None)
        if resolved is None:
            raise err("missing_image", f"image not found: {ref} (looked under {', '.join(map(str, roots))})")
        images.append(resolved)
    return images


class _Collector:
    """Applies on_error / max_samples / report for one source."""

    def __init__(self, source: str, on_error: str, max_samples: int | None, report: Counter | None):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if max_samples is not None and max_samples < 0:
            raise ValueError(f"max_samples must be >= 0 or None, got {max_samples}")
        self.source = source
        self.on_error = on_error
        self.max_samples = max_samples
        self.report = report
        self.samples: list[Sample] = []
        self.skipped: Counter = Counter()

    @property
    def full(self) -> bool:
        return self.max_samples is not None and len(self.samples) >= self.max_samples

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    def bad(self, err: DataError) -> None:
        if self.on_error == "raise":
            raise err
        self.skipped[err.reason] += 1

    def finish(self) -> list[Sample]:
        if self.report is not None:
            self.report["loaded"] += len(self.samples)
            for reason, n in self.skipped.items():
                self.report[f"skipped/{reason}"] += n
        if self.skipped:
            counts = ", ".join(f"{r}={n}" for r, n in sorted(self.skipped.items()))
            logger.warning("skipped %d rows of %s: %s", sum(self.skipped.values()), self.source, counts)
        return self.samples


def _collect(source: str, rows, build, *, on_error: str, max_samples: int | None, report: Counter | None,
             line_based: bool = True) -> list[Sample]:
    """The loop every loader shares: `build(row, line, err)` makes one Sample; a bad row (a DataError, from the
    reader or raised through `err(reason, detail)`) stops the load or is counted, as `on_error` says."""
    col = _Collector(source, on_error, max_samples, report)
    for line, row in rows:
        if col.full:
            break

        def err(reason, detail, _line=line):
            return _row_error(source, _line, line_based, reason, detail)

        try:
            if isinstance(row, DataError):
                raise row
            col.add(build(row, line, err))
        except DataError as e:
            col.bad(e)
    return col.finish()


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(2, "data file not found", str(path))
    return p


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_no, row_dict | DataError)`` for each non-blank line."""
    with open(path, encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield line_no, DataError(str(path), line_no, "bad_json", f"invalid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(row, dict):
                yield line_no, DataError(str(path), line_no, "not_object",
                                         f"row must be a JSON object, got {type(row).__name__}")
                continue
            yield line_no, row


def _row_error(source: str, line: int, line_based: bool, reason: str, detail: str) -> DataError:
    return DataError(source, line, reason, detail, where=None if line_based else f"{source}:row {line}")


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


def _extras(row: dict, used: Iterable[str]) -> dict:
    used = set(used)
    return {k: v for k, v in row.items() if k not in used}


def _meta(row: dict, used: Iterable[str], source: str, line: int) -> dict:
    meta = _extras(row, used)
    meta["file"] = source
    meta["line"] = line
    meta["id"] = str(row["id"]) if row.get("id") not in (None, "") else f"{Path(source).stem}:{line}"
    return meta


# --------------------------------------------------------------------------- DeepScaleR


def _iter_rows(path_or_id: str | os.PathLike, split: str) -> tuple[str, bool, Iterator[tuple[int, Any]]]:
    """Return ``(source_name, line_based, rows)`` for a local file or a hub dataset."""
    s = os.fspath(path_or_id)
    p = Path(s)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json", ".parquet") or p.is_file():
        p = _check_file(p)
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(p).to_pylist()
            return s, False, iter(enumerate(rows, 1))
        if suffix == ".json":
            text = p.read_text(encoding="utf-8-sig")
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                data = None  # probably JSON lines with a .json name
            if isinstance(data, dict) and isinstance(data.get("data"), list):
                data = data["data"]
            if isinstance(data, list):
                return s, False, ((i, r if isinstance(r, dict) else DataError(
                    s, i, "not_object", f"row must be a JSON object, got {type(r).__name__}", where=f"{s}:row {i}"))
                    for i, r in enumerate(data, 1))
        return s, True, _iter_jsonl(p)
    # A hub dataset id (or a local dataset folder / script understood by `datasets`).
    import datasets

    ds = datasets.load_dataset(s, split=split)
    return f"{s}[{split}]", False, iter(enumerate(ds, 1))


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
    local ``.jsonl`` / ``.json`` (list of objects) / ``.parquet`` file (``split`` is then ignored).
    Other fields (e.g. ``solution``) go to ``meta``.
    """
    source, line_based, rows = _iter_rows(path_or_id, split)

    def build(row, line, err):
        question = _get_question(row, ("problem",), err)
        return Sample(make_messages(question, system=system), _get_answer(row, err), domain,
                      _meta(row, ("problem", "answer"), source, line))

    return _collect(source, rows, build, on_error=on_error, max_samples=max_samples, report=report,
                    line_based=line_based)


# --------------------------------------------------------------------------- LMM-R1 message jsonl


def _normalize_messages(raw: Any, base_dir: Path, system: str | None, err) -> list[dict]:
    if isinstance(raw, str):
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
                resolved = resolve_image_path(ref, base_dir)
                if resolved is None:
                    raise err("missing_image", f"image not found: {ref} (looked relative to {base_dir})")
                parts.append({"type": "image", "image": resolved})
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
    {"type": "text", "text": "..."}]}``. Image references follow the module convention:
    ``file://rel/path`` and bare relative paths are relative to the jsonl's folder,
    ``file:///abs/path`` is absolute; each must exist. String contents become a text part.
    The system prompt ``system`` is prepended unless the chat already has a system turn
    (``system=None`` never adds one). A row's ``domain`` overrides the ``domain`` argument;
    other row fields go to ``meta``.
    """
    p = _check_file(path)
    source = str(path)
    base_dir = p.resolve().parent

    def build(row, line, err):
        messages = _normalize_messages(row.get("message"), base_dir, system, err)
        return Sample(messages, _get_answer(row, err), str(row.get("domain") or domain),
                      _meta(row, ("message", "answer", "domain"), source, line))

    return _collect(source, _iter_jsonl(p), build, on_error=on_error, max_samples=max_samples, report=report)


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
    "domain"?: str}``. Image paths follow the module convention (relative to the jsonl's folder)."""
    p = _check_file(path)
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

    return _collect(source, _iter_jsonl(p), build, on_error=on_error, max_samples=max_samples, report=report)


# --------------------------------------------------------------------------- fixtures / dispatch


def load_fixture(name: str = "math", **kwargs) -> list[Sample]:
    """Samples of a bundled fixture: ``"math"`` (64 synthetic problem/answer rows, see
    ``data/synth_math.py``) or ``"message"`` (LMM-R1 message rows with images). ``kwargs`` go to
    the loader (``on_error``, ``max_samples``, ``report``, ``system``, ``domain``)."""
    if name not in FIXTURES:
        raise ValueError(f"unknown fixture {name!r}; expected one of {sorted(FIXTURES)}")
    path = FIXTURE_DIR / FIXTURES[name]
    if name == "message":
        return load_message_jsonl(path, **kwargs)
    return load_deepscaler(path, **kwargs)


def _sniff_is_message_jsonl(path: Path) -> bool:
    """True if the first valid JSON-object row has a ``message`` key."""
    for _, row in _iter_jsonl(path):
        if isinstance(row, dict):
            return "message" in row
    return False


def load_dataset_by_name(name_or_path: str | os.PathLike, *, split: str = "train", seed: int = 0,
                         **kwargs) -> list[Sample]:
    """Dispatch to a loader.

    * ``"deepscaler"`` -> :func:`load_deepscaler` (hub ``DEEPSCALER_ID``, ``split``);
    * ``"fixture"`` / ``"fixture:math"`` / ``"fixture:message"`` -> :func:`load_fixture`;
    * ``"sokoban:N"`` / ``"football:N"`` -> N generated game prompts (:mod:`data.games`, seeded by ``seed``);
    * ``"geo-fixture"``, ``"synthetic-geo:N"``, ``"vermulti[-geo][:PATH]"``, ``"mathv360k[-geo][:PATH]"`` ->
      :func:`data.multimodal.load_multimodal_by_name`;
    * ``*.jsonl`` -> :func:`load_message_jsonl` if its first valid row has a ``message`` key,
      else :func:`load_jsonl`;
    * ``*.json`` / ``*.parquet`` / an existing folder / a hub id ``org/name`` -> :func:`load_deepscaler`.

    ``kwargs`` (``on_error``, ``max_samples``, ``report``, ``system``, ``domain``) go to the loader.
    """
    s = os.fspath(name_or_path)
    key = s.strip().lower()
    if key == "deepscaler":
        return load_deepscaler(DEEPSCALER_ID, split, **kwargs)
    if key == "fixture" or key.startswith("fixture:"):
        return load_fixture(key.partition(":")[2] or "math", **kwargs)
    head, _, rest = key.partition(":")
    if head in ("sokoban", "football"):
        from . import games
        if not rest.isdigit():
            raise ValueError(f"expected '{head}:N' (N prompts to generate), got {s!r}")
        make = games.sokoban_samples if head == "sokoban" else games.football_samples
        samples = make(int(rest), seed=seed)
        return samples[:kwargs["max_samples"]] if kwargs.get("max_samples") else samples
    if head in ("geo-fixture", "synthetic-geo", "vermulti", "vermulti-mathv60k", "vermulti-geo", "mathv360k",
                "mathv360k-geo"):
        from .multimodal import load_multimodal_by_name
        return load_multimodal_by_name(s, seed=seed, **kwargs)
    p = Path(s)
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        p = _check_file(p)
        loader = load_message_jsonl if _sniff_is_message_jsonl(p) else load_jsonl
        return loader(p, **kwargs)
    if suffix in (".json", ".parquet") or p.exists() or _HUB_ID_RE.match(s):
        return load_deepscaler(s, split, **kwargs)
    raise ValueError(
        f"unknown dataset {s!r}: expected 'deepscaler', 'fixture[:math|:message]', "
        "a .jsonl/.json/.parquet path or a hub id 'org/name'"
    )
