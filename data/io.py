"""Plumbing every loader shares: errors, the rows reader, image references, the row loop, hub downloads.

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

Image references
----------------
Image references (``"image"`` entries of a ``message``, items of ``images``) may be

* ``file:///abs/path.png`` or ``/abs/path.png`` - absolute;
* ``file://images/x.png`` or ``images/x.png`` - **relative to the folder of the data file**
  (not the working directory), so a data folder can be moved as a whole;
* ``http(s)://...`` / ``data:...`` - refused (``image_url``) unless ``--allow-urls`` (:func:`allowing_urls`): then
  each is fetched once, at load, into ``<cache>/url_images/`` (:func:`fetch_url`: a timeout, a size bound, never when
  ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set) and the row holds that local copy: no step fetches anything.

:func:`resolve_image` checks each one where the row is read, so that a step never draws an image it cannot use:

* it must exist (``missing_image``) and lie, symlinks resolved, inside the data file's folder (or the folders the
  loader looks in) or inside ``--image-root`` (:func:`image_roots`; relative paths are also looked up there), else
  ``image_outside_data``;
* it is opened and decoded once (cached per file): not an image, truncated or damaged -> ``bad_image``; more pixels
  than ``--max-image-pixels`` (:func:`max_image_pixels`, read from the header before any pixel is decoded; default
  :func:`default_max_image_pixels`: 64 x ``--max-pixels``, at least 4096 x 4096) -> ``image_too_large``. Pillow's
  decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) is kept at the same limit, and :func:`load_image`, which a
  step calls, refuses such an image too instead of decoding it.

Images stay paths in the Sample (absolute path strings); open them with :func:`load_image` when processing.

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
:func:`data_limits` (``--max-row-bytes``, ``--max-image-pixels``, ``--image-root``, ``--allow-urls``), not arguments.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import io
import json
import logging
import os
import re
import tarfile
import warnings
import zipfile
from collections import Counter
from itertools import accumulate
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote

from PIL import Image

from .sample import Sample

__all__ = [
    "FIXTURE_DIR", "DEFAULT_CACHE", "HUB_ID_RE", "DataError", "check_file", "read_rows", "iter_jsonl", "write_jsonl",
    "DEFAULT_MAX_ROW_BYTES", "row_limit", "MAX_JSON_DEPTH", "json_too_deep",
    "DEFAULT_MAX_IMAGE_PIXELS", "default_max_image_pixels", "max_image_pixels", "set_max_image_pixels",
    "data_limits", "image_roots", "allowing_urls", "is_offline", "fetch_url",
    "load_image", "check_image", "resolve_image_path", "resolve_image", "resolve_images",
    "find_data_file", "hub_download", "extract_once",
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
# Images: the processor resizes every image to at most --max-pixels, so a far larger one only costs memory to decode
IMAGE_PIXELS_MARGIN = 64  # --max-image-pixels 0 = this many times --max-pixels ...
MIN_MAX_IMAGE_PIXELS = 4096 * 4096  # ... and never below a 4096 x 4096 image (small presets, ordinary photos)
URL_TIMEOUT = 30.0  # seconds, one fetch of an image URL (--allow-urls)
MAX_URL_BYTES = 64 * 2**20  # an image URL whose body is larger is refused (read no further)
_IMAGE_ROOTS = contextvars.ContextVar("image_roots", default=())
_ALLOW_URLS = contextvars.ContextVar("allow_urls", default=False)


def default_max_image_pixels(max_pixels: int) -> int:
    """The image limit of ``--max-image-pixels 0``: :data:`IMAGE_PIXELS_MARGIN` x ``--max-pixels``, at least
    :data:`MIN_MAX_IMAGE_PIXELS`."""
    return max(IMAGE_PIXELS_MARGIN * int(max_pixels), MIN_MAX_IMAGE_PIXELS)


DEFAULT_MAX_IMAGE_PIXELS = default_max_image_pixels(640 * 28 * 28)  # the paper presets' --max-pixels: 32.1M pixels
_max_image_pixels = DEFAULT_MAX_IMAGE_PIXELS
# Pillow's decompression-bomb guard stays on at the same limit (it refuses images over twice the limit while opening
# them; its warning for those between one and two times the limit is not shown: our own check refuses them first)
Image.MAX_IMAGE_PIXELS = _max_image_pixels
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


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


def max_image_pixels() -> int:
    """The image limit (``--max-image-pixels``) of this process: the loaders' check and :func:`load_image`."""
    return _max_image_pixels


def set_max_image_pixels(limit: int) -> int:
    """Set the image limit of this process (and Pillow's bomb guard, ``Image.MAX_IMAGE_PIXELS``) for what follows:
    loading and every later :func:`load_image` (training draws). Returns the previous limit."""
    global _max_image_pixels
    if int(limit) < 1:
        raise ValueError(f"--max-image-pixels {limit}: must be at least 1 (0 = the default)")
    previous, _max_image_pixels = _max_image_pixels, int(limit)
    Image.MAX_IMAGE_PIXELS = _max_image_pixels
    return previous


@contextlib.contextmanager
def image_roots(*dirs: str | os.PathLike):
    """Inside the block, images may also lie under `dirs` (``--image-root``), and relative image paths are also looked
    up there (after the data file's folder)."""
    resolved = []
    for d in dirs:
        p = Path(os.path.expanduser(os.fspath(d)))
        if not p.is_dir():
            raise ValueError(f"--image-root {d}: not a directory")
        resolved.append(p.resolve())
    token = _IMAGE_ROOTS.set((*_IMAGE_ROOTS.get(), *resolved))
    try:
        yield
    finally:
        _IMAGE_ROOTS.reset(token)


@contextlib.contextmanager
def allowing_urls(allow: bool = True):
    """Inside the block, ``http(s)://`` and ``data:`` image references are fetched once at load (``--allow-urls``)
    instead of refused."""
    token = _ALLOW_URLS.set(bool(allow))
    try:
        yield
    finally:
        _ALLOW_URLS.reset(token)


@contextlib.contextmanager
def data_limits(*, max_row_bytes: int | None = None, max_image_pixels: int | None = None,
                image_root: str | os.PathLike | None = None, allow_urls: bool | None = None):
    """The data flags for a block of code: ``--max-row-bytes``, ``--max-image-pixels`` (restored at the end, unlike
    :func:`set_max_image_pixels`), ``--image-root``, ``--allow-urls``; None leaves one as it is."""
    with contextlib.ExitStack() as stack:
        if max_row_bytes is not None:
            stack.enter_context(row_limit(max_row_bytes))
        if max_image_pixels is not None:
            stack.callback(set_max_image_pixels, set_max_image_pixels(max_image_pixels))
        if image_root:
            stack.enter_context(image_roots(image_root))
        if allow_urls is not None:
            stack.enter_context(allowing_urls(allow_urls))
        yield


def _limit(max_row_bytes: int | None) -> int:
    return _ROW_LIMIT.get() if max_row_bytes is None else int(max_row_bytes)


def _too_large(limit: int) -> str:
    return f"row larger than --max-row-bytes {limit} bytes (not read)"


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
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


def iter_jsonl(path: Path, max_row_bytes: int | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_no, row_dict | DataError)`` for each non-blank line; a line over `max_row_bytes` (default: the
    current :func:`row_limit`) is a ``row_too_large`` error and is never held in memory whole."""
    source, limit = str(path), _limit(max_row_bytes)
    with open(path, "rb") as f:
        line_no = 0
        while True:
            raw, skipped = _read_line(f, limit)
            if raw is None:
                return
            line_no += 1
            if skipped:
                yield line_no, DataError(source, line_no, "row_too_large", _too_large(limit))
                continue
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
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


def _stream_array(f, source: str, limit: int) -> Iterator[tuple[int, Any]]:
    """Rows of a JSON array read from text file `f`, positioned just after its ``[``, one element at a time (an
    element over `limit` characters stops the load with a ``row_too_large`` error)."""
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
        if pos >= len(buf) or buf[pos] == "]":
            return
        if row:
            if buf[pos] != ",":
                raise DataError(source, row, "bad_json", f"invalid JSON after row {row} (expected ',' or ']')",
                                where=f"{source}:row {row}")
            pos += 1
            skip_ws()
        row += 1
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
    """The rows of text file `f` read one at a time when it holds a list or ``{"data": [...]}`` (else None, `f`
    closed)."""
    try:
        head = f.read(64)
    except UnicodeDecodeError as e:
        f.close()
        raise DataError(source, 1, "not_utf8", _not_utf8(e)) from None
    start = head.lstrip()
    m = _DATA_HEAD.match(head)
    if not (start.startswith("[") or m):
        f.close()
        return None
    f.seek(0)
    f.read(len(head) - len(start) + 1 if start.startswith("[") else m.end())

    def rows():
        with f:
            try:
                yield from _stream_array(f, source, limit)
            except UnicodeDecodeError as e:
                raise DataError(source, None, "not_utf8", _not_utf8(e)) from None
    return rows()


def _json_document_rows(path: Path, source: str, limit: int | None = None) -> Iterator[tuple[int, Any]] | None:
    """Rows of a file holding one JSON list / ``{"data": [...]}`` / object; None if it holds something else. A file
    over the row limit is streamed (a list or ``{"data": [...]}``) or left to the JSON lines reader."""
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


# --------------------------------------------------------------------------- images


def _open_rgb(fp, limit: int, probe: bool = False) -> Image.Image:
    """The image of a path or binary file as RGB, its size checked against `limit` before any pixel is decoded
    (``_TooLarge``); `probe`: decoded at the smallest size the format allows (JPEG: 1/8), only to prove it whole."""
    with Image.open(fp) as im:
        w, h = im.size
        if w * h > limit:
            raise _TooLarge(w, h, limit)
        if probe:
            im.draft("RGB", (1, 1))
        return im.convert("RGB")  # decodes every pixel: a truncated or damaged file raises here


class _TooLarge(ValueError):
    def __init__(self, w: int, h: int, limit: int):
        self.pixels = w * h
        super().__init__(f"{w} x {h} = {w * h:,} pixels, over --max-image-pixels {limit:,} (not decoded)")


def _image_failure(e: Exception, limit: int) -> tuple[str, str]:
    """(reason, what is wrong) of an image that failed to open."""
    if isinstance(e, _TooLarge):
        return "image_too_large", str(e)
    if isinstance(e, Image.DecompressionBombError):
        m = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
        return "image_too_large", f"{size}, over --max-image-pixels {limit:,} (not decoded)"
    if isinstance(e, Image.UnidentifiedImageError):
        return "bad_image", "not an image (Pillow cannot identify the file)"
    if isinstance(e, (OSError, SyntaxError, ValueError, EOFError)) and "truncated" in str(e).lower():
        return "bad_image", f"truncated or damaged ({str(e).strip()[:120]})"
    return "bad_image", f"cannot be decoded ({type(e).__name__}: {str(e).strip()[:120]})"


@functools.lru_cache(maxsize=1 << 16)
def _probe(path: str, mtime_ns: int, size: int, limit: int) -> tuple[str, str] | None:
    try:
        _open_rgb(path, limit, probe=True)
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes Pillow raise is the finding
        return _image_failure(e, limit)
    return None


def check_image(path: str | os.PathLike) -> tuple[str, str] | None:
    """None if the local image at `path` opens and decodes whole within :func:`max_image_pixels`, else
    ``(reason, what is wrong)`` with reason ``bad_image`` or ``image_too_large`` (its size is read from the header and
    checked before any pixel is decoded). Each file is decoded once per process (cached by path, time and size)."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError as e:
        return "bad_image", f"cannot be read ({e.strerror or e})"
    return _probe(path, st.st_mtime_ns, st.st_size, _max_image_pixels)


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set (1 / true / yes / on): nothing is fetched."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def fetch_url(url: str, timeout: float = URL_TIMEOUT, max_bytes: int = MAX_URL_BYTES) -> Path:
    """The local copy of image URL `url` (``http(s)://`` or ``data:``) in ``<cache>/url_images/`` (named by the URL's
    SHA-256): fetched once with a `timeout`, at most `max_bytes`, written atomically; an ``http(s)`` URL that is not
    cached yet is never fetched offline (:func:`is_offline`). Raises ``ValueError`` / ``OSError`` saying why not."""
    import urllib.request

    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("http", "https", "data"):
        raise ValueError(f"unsupported URL scheme {scheme!r} (http, https and data are)")
    cache = Path(DEFAULT_CACHE) / "url_images"
    path = cache / hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()
    if path.is_file():
        return path
    if scheme != "data" and is_offline():
        raise ValueError("offline (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set): not fetched")
    with urllib.request.urlopen(url, timeout=timeout) as r:
        data = r.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"larger than {max_bytes:,} bytes (not kept)")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _short(ref: str, n: int = 100) -> str:
    return ref if len(ref) <= n else ref[:n] + "..."


def load_image(image: Any) -> Image.Image:
    """Open an image reference as an RGB ``PIL.Image``.

    Accepts a PIL image, a path (``str`` / ``os.PathLike``, ``file://`` prefix allowed), raw
    ``bytes`` or a ``{"bytes": ..., "path": ...}`` dict (the HF ``datasets`` Image encoding).
    ``http(s)://`` and ``data:`` URLs are read from their local copy (:func:`fetch_url`: fetched once, never
    offline). An image over :func:`max_image_pixels` is refused before it is decoded (a ``DataError``
    ``image_too_large`` naming it); a file that is not a whole image raises what Pillow raises.
    """
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    limit = _max_image_pixels
    if isinstance(image, (bytes, bytearray)):
        fp, name = io.BytesIO(image), "<bytes>"
    elif isinstance(image, dict):
        if image.get("bytes"):
            return load_image(image["bytes"])
        if image.get("path"):
            return load_image(image["path"])
        raise ValueError(f"image dict has neither 'bytes' nor 'path': {sorted(image)}")
    elif isinstance(image, (str, os.PathLike)):
        fp = name = os.fspath(image)
        if fp.startswith("file://"):
            fp = fp[len("file://"):]
        elif _URL_RE.match(fp):
            fp = str(fetch_url(fp))
    else:
        raise TypeError(f"cannot load an image from {type(image).__name__}")
    try:
        return _open_rgb(fp, limit)
    except (_TooLarge, Image.DecompressionBombError) as e:
        raise DataError(_short(name), None, "image_too_large", f"image {_image_failure(e, limit)[1]}") from None


def resolve_image_path(ref: str, base_dir: str | os.PathLike) -> str | None:
    """Resolve an image reference (see module doc) to an absolute path string (symlinks resolved).

    URLs other than ``file://`` are returned unchanged. Returns ``None`` if a local file does not
    exist. Nothing is checked (see :func:`resolve_image`).
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


def _inside(path: str, root: Path) -> bool:
    return Path(path).is_relative_to(root)


def resolve_image(ref: str, roots: list[Path], err) -> str:
    """The checked local image of reference `ref` of a row, as an absolute path string; else a row error (`err`):

    * looked up under each of `roots` (the data folder, first), then each ``--image-root``: ``missing_image``;
    * must lie, symlinks resolved, under one of them: ``image_outside_data``;
    * ``http(s)://`` / ``data:``: ``image_url`` unless ``--allow-urls`` (:func:`allowing_urls`), then its local copy
      (:func:`fetch_url`; ``image_url`` when it cannot be fetched, or offline);
    * it must open and decode whole within ``--max-image-pixels``: ``bad_image``, ``image_too_large``
      (:func:`check_image`).
    """
    if _URL_RE.match(ref) and not ref.startswith("file://"):
        if not _ALLOW_URLS.get():
            raise err("image_url", f"image {_short(ref)} is a URL: not fetched (pass --allow-urls to fetch each "
                      f"image URL once at load, or use local files)")
        try:
            path = str(fetch_url(ref))
        except (OSError, ValueError) as e:
            raise err("image_url", f"image {_short(ref)} cannot be fetched: {str(e).strip()[:160]}") from None
    else:
        lookup = [*roots, *(r for r in _IMAGE_ROOTS.get() if r not in roots)]
        path = next((r for r in (resolve_image_path(ref, root) for root in lookup) if r), None)
        if path is None:
            raise err("missing_image", f"image not found: {ref} (looked under {', '.join(map(str, lookup))})")
        if not any(_inside(path, Path(root).resolve()) for root in lookup):
            raise err("image_outside_data", f"image {ref} is {path}, outside the data folder "
                      f"{Path(roots[0]).resolve()}: pass --image-root DIR to allow images under DIR")
    problem = check_image(path)
    if problem:
        reason, what = problem
        raise err(reason, f"image {_short(ref)}: {what}")
    return path


def resolve_images(refs: list[str], roots: list[Path], err) -> list[str]:
    """Each reference resolved and checked by :func:`resolve_image` (the first error is the row's)."""
    return [resolve_image(ref, roots, err) for ref in refs]


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
