"""Image references of data rows: resolved, checked once where the row is read, opened when a step draws them.

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

The data flags for a block of code are set by :func:`data_limits` (``--max-row-bytes`` of the rows reader, with the
image flags ``--max-image-pixels``, ``--image-root``, ``--allow-urls``): the loaders take no arguments for them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import io
import os
import re
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from PIL import Image

from .io import _URL_RE, DEFAULT_CACHE, DataError, is_offline, row_limit

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS", "default_max_image_pixels", "max_image_pixels", "set_max_image_pixels",
    "data_limits", "image_roots", "allowing_urls", "fetch_url",
    "load_image", "check_image", "resolve_image_path", "resolve_image", "resolve_images",
]

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


def fetch_url(url: str, timeout: float = URL_TIMEOUT, max_bytes: int = MAX_URL_BYTES) -> Path:
    """The local copy of image URL `url` (``http(s)://`` or ``data:``) in ``<cache>/url_images/`` (named by the URL's
    SHA-256): fetched once with a `timeout`, at most `max_bytes`, written atomically; an ``http(s)`` URL that is not
    cached yet is never fetched offline (:func:`data.io.is_offline`). Raises ``ValueError`` / ``OSError`` saying why
    not."""
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
