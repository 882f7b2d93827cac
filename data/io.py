"""Plumbing every loader shares: errors, the rows reader, the row loop, hub downloads (image references: images.py).

Rows
----
:func:`read_rows` is the one reader of data rows; each row comes with where it was read:

* ``*.parquet`` -> one row per table row (``FILE:row N`` in errors);
* ``*.jsonl`` -> JSON lines (:func:`iter_jsonl`): one object per non-blank line (``FILE:LINE``, 1-based; blank
  lines are skipped but counted);
* any other file (``*.json``): one JSON document, a list of objects, ``{"data": [...]}`` or a single object
  (``FILE:row N``); a file that is not one JSON document (or is a bare number / string) is read as JSON lines;
* anything else is a hub dataset id (``datasets.load_dataset(id, split=split)``; ``ID[split]:row N``).

A row that is not a JSON object is a ``not_object`` error, a line that is not JSON a ``bad_json`` one.

Bounded reading: no row is read into memory whole when it is larger than ``max_row_bytes`` (``--max-row-bytes``,
default :data:`DEFAULT_MAX_ROW_BYTES`, 1 MiB: a row is a question, an answer and image paths; :func:`row_limit` sets
it for a block of code). A JSON line over the limit is skipped unread (``row_too_large``, an ordinary row error that
``on_error="skip"`` counts); a JSON document larger than the limit is read one row at a time when it is a list or
``{"data": [...]}`` (a row over the limit stops the load with the file and row), else as JSON lines. A line that is
not UTF-8 (a binary file) is a ``not_utf8`` row error naming the file, the line and the byte; a JSON document that is
not UTF-8 is one such error for the file. Parquet rows are read in small batches and measured (a row over the limit
is ``row_too_large``). No row nested deeper than :data:`MAX_JSON_DEPTH` (64) levels of arrays / objects is parsed
(``too_deep``; the released rows nest 5): :func:`json_too_deep` finds it first by its brackets (a linear scan, and
only a count of them for the ordinary row), in JSON lines, in a JSON document (then read row by row, so that the error
names the row) and in the ``message`` string of an LMM-R1 row.

Errors
------
* a missing data file -> ``FileNotFoundError`` naming the path;
* a bad row -> :class:`DataError` (a ``ValueError``) whose message starts with
  ``FILE:LINE:`` (1-based line; ``FILE:row N`` for non-line sources) and says what is wrong, in one line.
  ``DataError.reason`` is a short code: ``bad_json``, ``not_object``, ``not_utf8``, ``row_too_large``,
  ``too_deep``, ``bad_message``, ``missing_question``, ``missing_answer``, ``bad_images``, ``missing_image``,
  ``image_outside_data``, ``image_url``, ``bad_image``, ``image_too_large``.

Every loader takes ``on_error="raise"`` (default; first bad row raises) or ``"skip"`` (bad rows
are dropped and one summary line ``skipped N rows of FILE: reason=count, ...`` is logged at WARNING
level on the ``data.io`` logger; each one at DEBUG, which ``--check-data`` lists), ``max_samples`` (stop after that
many good samples) and ``report`` (an optional ``collections.Counter`` that receives ``"loaded"`` and
``"skipped/<reason>"`` counts). :func:`_collect` is that loop. The data flags reach every loader through
:func:`data.images.data_limits` (``--max-row-bytes``, ``--max-image-pixels``, ``--image-root``, ``--allow-urls``), not
arguments.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import io
import json
import logging
import os
import re
import socket
import tarfile
import threading
import zipfile
from collections import Counter
from itertools import accumulate
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from .sample import Sample

__all__ = [
    "FIXTURE_DIR", "DEFAULT_CACHE", "HUB_ID_RE", "DataError", "check_file", "read_rows", "raw_lines", "iter_jsonl",
    "write_jsonl",
    "DEFAULT_MAX_ROW_BYTES", "row_limit", "MAX_JSON_DEPTH", "json_too_deep",
    "find_data_file", "is_offline", "hub_unreachable", "hub_download", "extract_once",
]

logger = logging.getLogger(__name__)

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"
# Hub downloads and generated data sets go to <cache>/...
DEFAULT_CACHE = Path(os.environ.get("LMM_R1_CACHE", Path.home() / ".cache" / "lmm_r1"))
HUB_ID_RE = re.compile(r"^[\w.-]+/[\w.-]+$")
_URL_RE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|data:)")
DEFAULT_MAX_ROW_BYTES = 2**20  # a data row is a question, an answer and image paths: kilobytes, not megabytes
_ROW_LIMIT = contextvars.ContextVar("max_row_bytes", default=DEFAULT_MAX_ROW_BYTES)
_CHUNK = 1 << 20
MAX_JSON_DEPTH = 64  # the released rows nest 5 levels (a message string: 4 more); Python's parser recurses per level
@contextlib.contextmanager
def row_limit(max_row_bytes: int):
    """Every rows reader inside the block rejects rows larger than `max_row_bytes` (``--max-row-bytes``)."""
    if max_row_bytes < 1:
        raise ValueError(f"max_row_bytes must be at least 1, got {max_row_bytes}")
    token = _ROW_LIMIT.set(int(max_row_bytes))
    try:
        yield
    finally:
        _ROW_LIMIT.reset(token)


def _limit(max_row_bytes: int | None) -> int:
    return _ROW_LIMIT.get() if max_row_bytes is None else int(max_row_bytes)


def _too_large(limit: int) -> str:
    return f"row larger than --max-row-bytes {limit} bytes (not read)"


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_JSON_TOKEN = re.compile(_JSON_STRING.pattern + r"|[\[\]{}]")
_DEPTH_STEP = {ord("["): "+", ord("{"): "+", ord("]"): "-", ord("}"): "-"}


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH, start: int = 0, end: int | None = None) -> bool:
    """Whether JSON `text` (or ``text[start:end]``) nests arrays / objects deeper than `limit`, found before any parser
    recurses into it: linear, and a count of the brackets alone for the ordinary row."""
    end = len(text) if end is None else end
    if text.count("[", start, end) + text.count("{", start, end) <= limit:
        return False
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text[start:end]))
    return max(accumulate(1 if c == "+" else -1 for c in brackets.translate(_DEPTH_STEP)), default=0) > limit


def _value_end(buf: str, pos: int) -> int | None:
    """The end of the JSON array / object starting at ``buf[pos]`` (by its brackets, outside strings; not parsed); None
    if it does not end in `buf`."""
    depth = 0
    for m in _JSON_TOKEN.finditer(buf, pos):
        c = m.group()[0]
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth <= 0:
                return m.end()
    return None


def _too_deep(what: str = "row") -> str:
    return f"{what} nested deeper than {MAX_JSON_DEPTH} levels of JSON (not parsed)"


def _not_utf8(e: UnicodeDecodeError, column: int | None = None) -> str:
    where = f" at column {column}" if column is not None else ""
    return f"not UTF-8 text (byte 0x{e.object[e.start]:02x}{where}); is this a binary file?"


class DataError(ValueError):
    """A malformed data row. ``str(err)`` is ``"FILE:LINE: what is wrong"``."""

    def __init__(self, source: str, line: int | None, reason: str, detail: str, *, where: str | None = None):
        self.source = source
        self.line = line
        self.reason = reason
        self.detail = detail
        self.where = where or (f"{source}:{line}" if line is not None else source)
        super().__init__(f"{self.where}: {detail}")


def _row_error(source: str, line: int, line_based: bool, reason: str, detail: str) -> DataError:
    return DataError(source, line, reason, detail, where=None if line_based else f"{source}:row {line}")


# --------------------------------------------------------------------------- rows


def check_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path; ``FileNotFoundError`` naming it if it is not a file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(2, "data file not found", str(path))
    return p


def _object_or_error(source: str, line: int, line_based: bool, row: Any) -> Any:
    if isinstance(row, dict):
        return row
    return _row_error(source, line, line_based, "not_object", f"row must be a JSON object, got {type(row).__name__}")


def _read_line(f, limit: int) -> tuple[bytes | None, bool]:
    """(the next line, without reading more than `limit` bytes of it; whether it was longer and skipped).
    (None, False) at the end of the file."""
    line = f.readline(limit + 1)
    if not line:
        return None, False
    if len(line) <= limit or (len(line) == limit + 1 and line.endswith(b"\n")):
        return line, False
    while line and not line.endswith(b"\n"):  # skip the rest of the line, 64 KiB at a time
        line = f.readline(1 << 16)
    return b"", True


def raw_lines(f, limit: int) -> Iterator[bytes | None]:
    """Each line of binary file `f` as bytes (the first line's UTF-8 byte-order mark dropped), or None for a line over
    `limit` bytes, skipped without being read into memory whole."""
    first = True
    while True:
        raw, skipped = _read_line(f, limit)
        if raw is None:
            return
        if first and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        first = False
        yield None if skipped else raw


def iter_jsonl(path: Path, max_row_bytes: int | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_no, row_dict | DataError)`` for each non-blank line; a line over `max_row_bytes` (default: the
    current :func:`row_limit`) is a ``row_too_large`` error and is never held in memory whole."""
    source, limit = str(path), _limit(max_row_bytes)
    with open(path, "rb") as f:
        for line_no, raw in enumerate(raw_lines(f, limit), 1):
            if raw is None:
                yield line_no, DataError(source, line_no, "row_too_large", _too_large(limit))
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield line_no, DataError(source, line_no, "not_utf8", _not_utf8(e, e.start + 1))
                continue
            if not line.strip():
                continue
            if json_too_deep(line):
                yield line_no, DataError(source, line_no, "too_deep", _too_deep())
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield line_no, DataError(source, line_no, "bad_json", f"invalid JSON ({e.msg} at column {e.colno})")
                continue
            yield line_no, _object_or_error(source, line_no, True, row)


_DATA_HEAD = re.compile(r'\s*\{\s*"data"\s*:\s*\[')
_KEYED_HEAD = re.compile(r'\s*\{\s*"(?:[^"\\]|\\.){0,200}"\s*:\s*\{')  # {"1": {...}: rows by id
_KEY = re.compile(r'\s*"(?:[^"\\]|\\.){0,200}"\s*:')


def _stream_array(f, source: str, limit: int, keyed: bool = False) -> Iterator[tuple[int, Any]]:
    """Rows of a JSON array read from text file `f`, positioned just after its ``[``, one element at a time (an
    element over `limit` characters stops the load with a ``row_too_large`` error); `keyed`: the values of a JSON
    object of rows by id (MathVista's ``{"1": {...}, "2": {...}}``), positioned just after its ``{``."""
    decoder = json.JSONDecoder()
    buf, pos, eof, row = "", 0, False, 0

    def more(keep_from: int) -> int:
        nonlocal buf, eof
        chunk = f.read(max(_CHUNK, len(buf) - keep_from))
        eof = not chunk
        buf = buf[keep_from:] + chunk
        return 0

    def skip_ws():
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf) or eof:
                return
            pos = more(pos)

    while True:
        skip_ws()
        if pos >= len(buf) or buf[pos] == ("}" if keyed else "]"):
            return
        if row:
            if buf[pos] != ",":
                raise DataError(source, row, "bad_json", f"invalid JSON after row {row} (expected ',' or "
                                f"'{'}' if keyed else ']'}')", where=f"{source}:row {row}")
            pos += 1
            skip_ws()
        row += 1
        if keyed:  # the row's id, then ':'
            m = _KEY.match(buf, pos)
            while m is None and not eof and len(buf) - pos < limit:
                pos = more(pos)
                m = _KEY.match(buf, pos)
            if m is None:
                raise DataError(source, row, "bad_json", "invalid JSON (expected a row id and ':')",
                                where=f"{source}:row {row}")
            pos = m.end()
            skip_ws()
        deep = False
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
                if end < len(buf) or eof:
                    break  # a number cut at the end of the buffer is not whole yet
            except json.JSONDecodeError as e:
                if eof:
                    raise DataError(source, row, "bad_json", f"invalid JSON ({e.msg})",
                                    where=f"{source}:row {row}") from None
            except RecursionError:  # nested past Python's limit: skip the element by its brackets, unparsed
                end = _value_end(buf, pos)
                if end is not None:
                    value = deep = True
                    break
                if eof:
                    raise DataError(source, row, "too_deep", _too_deep(), where=f"{source}:row {row}") from None
            if len(buf) - pos > limit:
                raise DataError(source, row, "row_too_large", _too_large(limit), where=f"{source}:row {row}")
            pos = more(pos)
        if end - pos > limit:
            raise DataError(source, row, "row_too_large", _too_large(limit), where=f"{source}:row {row}")
        if deep or json_too_deep(buf, start=pos, end=end):
            yield row, DataError(source, row, "too_deep", _too_deep(), where=f"{source}:row {row}")
        else:
            yield row, _object_or_error(source, row, False, value)
        pos = end
        if pos > _CHUNK:
            buf, pos = buf[pos:], 0


def _streamed_rows(f, source: str, limit: int) -> Iterator[tuple[int, Any]] | None:
    """The rows of text file `f` read one at a time when it holds a list, ``{"data": [...]}`` or an object of rows by
    id (else None, `f` closed)."""
    try:
        head = f.read(512)
    except UnicodeDecodeError as e:
        f.close()
        raise DataError(source, 1, "not_utf8", _not_utf8(e)) from None
    start = head.lstrip()
    m = _DATA_HEAD.match(head)
    keyed = not m and _KEYED_HEAD.match(head) is not None
    if not (start.startswith("[") or m or keyed):
        f.close()
        return None
    f.seek(0)
    f.read(len(head) - len(start) + 1 if start.startswith(("[", "{")) and not m else m.end())

    def rows():
        with f:
            try:
                yield from _stream_array(f, source, limit, keyed)
            except UnicodeDecodeError as e:
                raise DataError(source, None, "not_utf8", _not_utf8(e)) from None
    return rows()


def _json_document_rows(path: Path, source: str, limit: int | None = None) -> Iterator[tuple[int, Any]] | None:
    """Rows of a file holding one JSON list / ``{"data": [...]}`` / object of rows by id / a single object; None if it
    holds something else. A file over the row limit is streamed (any of the first three) or left to the JSON lines
    reader."""
    limit = _limit(limit)
    if path.stat().st_size > limit:
        return _streamed_rows(open(path, encoding="utf-8-sig"), source, limit)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(source, line, "not_utf8", _not_utf8(e, col)) from None
    if json_too_deep(text, MAX_JSON_DEPTH + 1):  # + the list's own level: read row by row, each row checked
        return _streamed_rows(io.StringIO(text), source, limit)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None  # probably JSON lines with a .json name
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    elif isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        data = list(data.values())  # rows by id (MathVista's testmini.json)
    elif isinstance(data, dict):
        data = [data]  # a single row
    if not isinstance(data, list):
        return None
    return ((i, _object_or_error(source, i, False, r)) for i, r in enumerate(data, 1))


def _parquet_rows(path: Path, source: str, limit: int) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
        for row in batch.to_pylist():
            n += 1
            size = sum(len(v) for v in row.values() if isinstance(v, (str, bytes)))
            yield n, (DataError(source, n, "row_too_large", _too_large(limit), where=f"{source}:row {n}")
                      if size > limit else row)


def read_rows(path_or_id: str | os.PathLike, split: str = "train",
              max_row_bytes: int | None = None) -> tuple[str, bool, Iterator[tuple[int, Any]]]:
    """``(source, line_based, rows)`` of a local file or a hub dataset (see the module doc).

    ``rows`` yields ``(n, row_dict | DataError)``; ``n`` is the 1-based line when ``line_based``, else the row
    number. ``source`` names the file (as given) or ``"ID[split]"`` for a hub dataset. ``max_row_bytes``: the row
    limit (default: the current :func:`row_limit`).
    """
    limit = _limit(max_row_bytes)
    s = os.fspath(path_or_id)
    p = Path(s)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json", ".parquet") or p.is_file():
        p = check_file(p)
        if suffix == ".parquet":
            return s, False, _parquet_rows(p, s, limit)
        if suffix != ".jsonl":
            rows = _json_document_rows(p, s, limit)
            if rows is not None:
                return s, False, rows
        return s, True, iter_jsonl(p, limit)
    # A hub dataset id (or a local dataset folder / script understood by `datasets`).
    import datasets

    ds = datasets.load_dataset(s, split=split)
    return f"{s}[{split}]", False, iter(enumerate(ds, 1))


def write_jsonl(rows: list[dict], path: str | Path) -> Path:
    """Write ``rows`` as JSON lines (UTF-8, non-ASCII kept), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# --------------------------------------------------------------------------- the row loop


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
        logger.debug("skipped %s", err, extra={"reason": err.reason})  # --check-data collects these

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


# --------------------------------------------------------------------------- hub data sets


def find_data_file(path_or_dir: str | os.PathLike, filename: str, missing: str) -> Path | None:
    """The data file a user named: the file itself, or ``filename`` in a folder (``FileNotFoundError`` with the
    message ``missing`` when it is not there). None when ``path_or_dir`` is a hub id to download; any other
    name that is not on disk is a ``FileNotFoundError``."""
    s = os.fspath(path_or_dir)
    p = Path(s).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        f = p / filename
        if not f.is_file():
            raise FileNotFoundError(2, missing, str(p))
        return f
    if p.suffix.lower() in (".jsonl", ".json") or not HUB_ID_RE.match(s):
        raise FileNotFoundError(2, "data file not found", s)
    return None


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set (1 / true / yes / on): nothing is fetched."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=1)
def hub_unreachable(timeout: float = 2.0) -> str | None:
    """Why the hub cannot be reached, or None when it can (or when ``HF_HUB_OFFLINE`` is set: then the hub libraries
    read their cache, at once). One TCP connection to ``HF_ENDPOINT`` (default huggingface.co) within `timeout`
    seconds, name lookup included, once per process: an offline machine is known in a second, not after the hub
    libraries' retries."""
    if is_offline():
        return None
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    found: list = []

    def probe():
        try:
            socket.create_connection((host.hostname, host.port or 443), timeout=timeout).close()
            found.append(None)
        except OSError as e:
            found.append(f"{host.hostname}: {e.strerror or e}")

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    return found[0] if found else f"{host.hostname}: no answer within {timeout:g} s"


def hub_download(repo_id: str, files: list[str], cache_dir: str | os.PathLike | None) -> Path:
    """Download dataset files into ``<cache>/<org>__<name>/`` (real files, not cache symlinks)."""
    from huggingface_hub import snapshot_download

    local = Path(cache_dir or DEFAULT_CACHE) / repo_id.replace("/", "__")
    snapshot_download(repo_id, repo_type="dataset", allow_patterns=files, local_dir=str(local))
    return local


def extract_once(archive: Path, dest: Path) -> None:
    """Extract a .tar.gz / .zip into ``dest`` unless a marker says it was done."""
    marker = dest / f".extracted_{archive.name}"
    if marker.exists() or not archive.is_file():
        return
    logger.info("extracting %s into %s", archive, dest)
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    else:
        with tarfile.open(archive) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, filter="data")
            else:  # pragma: no cover - Python < 3.11.4
                tf.extractall(dest)
    marker.touch()
