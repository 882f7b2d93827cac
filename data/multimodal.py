"""Stage-2 (MGT) multimodal data: VerMulti, MathV360K, a geometry extractor, a verifiability filter.

Sources
-------
* :func:`load_vermulti` - VerMulti (hub ``VLM-Reasoner/VerMulti``): ``mathv60k_message.jsonl``
  (PerceReason, broad multimodal math) and ``mathv_geo_message.jsonl`` (Geo), LMM-R1 message
  rows, images in ``mathv60k_img.tar.gz`` / ``mathv_geo_img.tar.gz`` extracted next to the jsonl.
* :func:`load_mathv360k` - MathV360K (hub ``Zhiqiang007/MathV360K``): ``train_samples_all_tuning.json``,
  a JSON list of LLaVA records, images under ``data_images/``. Raw: run
  :func:`verifiability_filter` on it before RL (``load_multimodal_by_name`` does by default).
* :func:`load_geo_fixture` - the bundled synthetic geometry fixture (``data/synth_geo.py``).
* :func:`load_multimodal_by_name` - dispatch on a name.

Selection
---------
* :func:`verifiability_filter` keeps rows whose gold a rule can check (option letter for choice
  questions, a math-verify parse otherwise) and reports why the others were dropped.
* :func:`is_geometry` / :func:`extract_geometry` - keyword/symbol geometry detector.

Errors follow ``data.loaders``: missing files raise ``FileNotFoundError``; bad rows raise
:class:`data.loaders.DataError` (``"FILE:LINE: ..."``, or ``"FILE:row N: ..."`` for JSON-list files)
or, with ``on_error="skip"``, are counted in ``report`` as ``"skipped/<reason>"`` and logged once.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import threading
import zipfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Iterator

from .loaders import DataError, _collect, load_message_jsonl, resolve_image_path, resolve_images
from .sample import R1_SYSTEM_PROMPT, Sample, make_messages

__all__ = [
    "VERMULTI_ID", "VERMULTI_SUBSETS", "MATHV360K_ID", "MATHV360K_JSON", "GEO_FIXTURE",
    "load_vermulti", "load_mathv360k", "load_geo_fixture", "load_multimodal_by_name",
    "extract_final_answer", "has_choices", "parse_choices", "option_letter",
    "gold_status", "verifiability_filter", "is_geometry", "extract_geometry",
]

logger = logging.getLogger(__name__)

VERMULTI_ID = "VLM-Reasoner/VerMulti"
# subset -> (jsonl, image archive, image folder inside the archive)
VERMULTI_SUBSETS = {
    "mathv60k": ("mathv60k_message.jsonl", "mathv60k_img.tar.gz", "mathv60k_img"),
    "geo": ("mathv_geo_message.jsonl", "mathv_geo_img.tar.gz", "mathv_geo_img"),
}
MATHV360K_ID = "Zhiqiang007/MathV360K"
MATHV360K_JSON = "train_samples_all_tuning.json"
MATHV360K_IMAGES = "data_images"
FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"
GEO_FIXTURE = FIXTURE_DIR / "geo_fixture.jsonl"
DEFAULT_CACHE = Path(os.environ.get("LMM_R1_CACHE", Path.home() / ".cache" / "lmm_r1"))

_HUB_ID_RE = re.compile(r"^[\w.-]+/[\w.-]+$")


# --------------------------------------------------------------------------- shared


def _hub_download(repo_id: str, files: list[str], cache_dir: str | os.PathLike | None) -> Path:
    """Download dataset files into ``<cache>/<org>__<name>/`` (real files, not cache symlinks)."""
    from huggingface_hub import snapshot_download

    local = Path(cache_dir or DEFAULT_CACHE) / repo_id.replace("/", "__")
    snapshot_download(repo_id, repo_type="dataset", allow_patterns=files, local_dir=str(local))
    return local


def _extract_once(archive: Path, dest: Path) -> None:
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


# --------------------------------------------------------------------------- answers and options

_CHOICES_HEAD = re.compile(r"(?im)^\s*(?:choices|options)\s*:")
_OPTION_LINE = re.compile(r"(?m)^\s*\(?([A-E])\s*[).:：]\s*(.*?)\s*$")
_OPTION_INLINE = re.compile(r"\(([A-E])\)\s*(.*?)\s*(?=\([A-E]\)|$)", re.S)
_WRAP_TEXT = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_ANSWER_PHRASE = re.compile(r"(?i)(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*:?\s*")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_NUMBER_UNIT = re.compile(r"([-+]?\$?\s*(?:\d[\d,]*(?:\.\d+)?|\.\d+))\s*"
                          r"(°|%|[A-Za-z]{1,12}(?:\s+[A-Za-z]{1,12})?(?:\^?[23²³])?)\.?")
_IMAGE_TOKEN = re.compile(r"<image>\s*")
_YES_NO = {"yes", "no"}
# "(B)", "(B) 36", "B", "B.", "B: 36", "B) 36" - never "A triangle" or "Bx"
_LETTER = re.compile(r"\(([A-E])\)(?:\s+.*)?|([A-E])(?:\s*[.:)](?:\s*.*)?)?", re.S)
# number + unit: "5 cm", "30°", "12 square units"; not "2 pi", "5 x"
_UNIT_STOP = {"pi", "and", "or", "sqrt", "times", "over", "plus", "minus", "i", "e", "x", "y", "z", "n", "k"}


def _unwrap(text: str) -> str:
    """Drop ``$``, ``\\boxed{}``, ``\\text{}`` and trailing periods around a short answer."""
    t = str(text).strip()
    for _ in range(3):
        before = t
        t = t.strip().strip("$").strip()
        m = _BOXED.fullmatch(t)
        if m:
            t = m.group(1)
        t = _WRAP_TEXT.sub(r"\1", t).strip()
        if len(t) > 1 and t.endswith(".") and not _PLAIN_NUMBER.fullmatch(t):
            t = t[:-1].rstrip()
        if t == before:
            break
    return t


def option_letter(answer: str) -> str | None:
    """Option letter of a short gold: ``"B"``, ``"(B)"``, ``"B."``, ``"$\\boxed{B}$"``, ``"B: 36"``; else None."""
    t = _unwrap(answer)
    m = _LETTER.fullmatch(t)
    return (m.group(1) or m.group(2)) if m else None


def has_choices(question: str) -> bool:
    """True when the question lists options: a ``Choices:`` line, or options ``(A)`` and ``(B)`` / ``A.`` and ``B.``."""
    if _CHOICES_HEAD.search(question):
        return True
    letters = {m.group(1) for m in _OPTION_LINE.finditer(question) if m.group(2)}
    if {"A", "B"} <= letters:
        return True
    return bool(re.search(r"\(A\)", question) and re.search(r"\(B\)", question))


def parse_choices(question: str) -> dict[str, str]:
    """``{"A": "text", ...}`` from the options listed in a question (after ``Choices:`` when present)."""
    m = _CHOICES_HEAD.search(question)
    tail = question[m.end():] if m else question
    opts = {k: v for k, v in ((mm.group(1), mm.group(2)) for mm in _OPTION_LINE.finditer(tail)) if v}
    if len(opts) < 2:
        opts = {mm.group(1): mm.group(2).strip() for mm in _OPTION_INLINE.finditer(tail.replace("\n", " "))}
    return opts


def _norm_text(s: str) -> str:
    return re.sub(r"\s+", " ", _unwrap(s)).strip().casefold()


def extract_final_answer(text: str, question: str = "") -> str:
    """Final answer of a free-form reply (MathV360K ``gpt`` turns).

    The last ``\\boxed{...}`` wins, else the text after the last "answer is" / "Answer:", else the
    whole reply. For a multiple-choice ``question`` the option letter is returned (also when the
    reply quotes an option's text); for numbers, the number (thousands separators, a leading ``$``,
    and a trailing unit or degree sign removed). Anything else is returned as is, and
    :func:`verifiability_filter` decides whether it is checkable.
    """
    t = str(text or "").strip()
    boxed = _BOXED.findall(t)
    if boxed:
        ans = boxed[-1]
    else:
        parts = _ANSWER_PHRASE.split(t)
        if len(parts) > 1:  # the rest of the line after the last "answer is"
            ans = parts[-1].strip().splitlines()[0] if parts[-1].strip() else ""
        else:
            ans = t
    ans = _unwrap(ans)
    if question and has_choices(question):
        letter = option_letter(ans)
        if letter:
            return letter
        want = _norm_text(ans)
        for k, v in parse_choices(question).items():
            if want and _norm_text(v) == want:
                return k
        return ans
    return _clean_number(ans)


def _clean_number(ans: str) -> str:
    a = ans.strip()
    if _THOUSANDS.fullmatch(a):
        return a.replace(",", "")
    m = _NUMBER_UNIT.fullmatch(a)
    if m and m.group(2) != "%" and m.group(2).split()[0].casefold() not in _UNIT_STOP:
        num = m.group(1).replace("$", "").replace(" ", "")
        if _THOUSANDS.fullmatch(num):
            num = num.replace(",", "")
        if _PLAIN_NUMBER.fullmatch(num):
            return num
    m = re.fullmatch(r"\$\s*(\d[\d,]*(?:\.\d+)?)", a)  # currency
    if m:
        return m.group(1).replace(",", "")
    return a


# --------------------------------------------------------------------------- VerMulti


def _resolve_vermulti(path_or_dir: str | os.PathLike, subset: str, cache_dir) -> Path:
    jsonl_name, archive, _ = VERMULTI_SUBSETS[subset]
    s = os.fspath(path_or_dir)
    p = Path(s).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        f = p / jsonl_name
        if not f.is_file():
            raise FileNotFoundError(2, f"no {jsonl_name} in folder (subset={subset!r})", str(p))
        return f
    if p.suffix.lower() in (".jsonl", ".json") or not _HUB_ID_RE.match(s):
        raise FileNotFoundError(2, "data file not found", s)
    local = _hub_download(s, [jsonl_name, archive], cache_dir)
    _extract_once(local / archive, local)
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
    """Copy of ``src`` (same name, same line numbers) with unresolved image refs rebased; None if none needed."""
    base_dir = src.resolve().parent
    cache: dict = {}
    changed = False
    out = tmp_dir / src.name
    with open(src, encoding="utf-8-sig") as fin, open(out, "w", encoding="utf-8") as fout:
        for line in fin:
            new = line
            try:
                row = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict):
                raw = row.get("message")
                msgs = None
                if isinstance(raw, str):
                    try:
                        msgs = json.loads(raw)
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
            fout.write(new if new.endswith("\n") else new + "\n")
    return out if changed else None


class _RenameSource(logging.Filter):
    """Rewrites one file name in log records (the rebased copy -> the original file)."""

    def __init__(self, old: str, new: str):
        super().__init__()
        self.old, self.new = old, new

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(a.replace(self.old, self.new) if isinstance(a, str) else a for a in record.args)
        return True


def _detect_choice(samples: Iterable[Sample]) -> None:
    """Multiple-choice rows (options in the question, a letter as gold) get domain "choice" and a bare letter."""
    for s in samples:
        if s.domain == "choice" or not has_choices(s.question):
            continue
        letter = option_letter(s.answer)
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
            loaders_logger = logging.getLogger("data.loaders")
            loaders_logger.addFilter(rename)
            try:
                samples = load_message_jsonl(rebased, **kwargs)
            except DataError as e:
                detail = (e.detail.replace(str(Path(tmp).resolve()), str(src.resolve().parent))
                          .replace(tmp, str(src.parent)))
                raise DataError(str(src), e.line, e.reason, detail) from None
            finally:
                loaders_logger.removeFilter(rename)
            for s in samples:
                s.meta["file"] = str(src)
    for s in samples:
        s.meta.setdefault("subset", subset)
    if detect_choice:
        _detect_choice(samples)
    return samples


# --------------------------------------------------------------------------- MathV360K


def _resolve_mathv360k(path_or_dir: str | os.PathLike, cache_dir) -> Path:
    s = os.fspath(path_or_dir)
    p = Path(s).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        f = p / MATHV360K_JSON
        if not f.is_file():
            raise FileNotFoundError(2, f"no {MATHV360K_JSON} in folder", str(p))
        return f
    if p.suffix.lower() in (".jsonl", ".json") or not _HUB_ID_RE.match(s):
        raise FileNotFoundError(2, "data file not found", s)
    local = _hub_download(s, [MATHV360K_JSON, f"{MATHV360K_IMAGES}*"], cache_dir)
    if not (local / MATHV360K_IMAGES).is_dir():
        for archive in sorted(local.glob(f"{MATHV360K_IMAGES}*")):
            if archive.is_file():
                _extract_once(archive, local)
    return local / MATHV360K_JSON


def _iter_records(path: Path) -> Iterator[tuple[int, Any]]:
    """``(row_no, record)`` from a JSON list (or ``{"data": [...]}``), or from JSON lines."""
    text = path.read_text(encoding="utf-8-sig")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if isinstance(data, list):
        yield from enumerate(data, 1)
        return
    if isinstance(data, dict):  # a single record
        yield 1, data
        return
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield i, json.loads(line)
        except json.JSONDecodeError as e:
            yield i, DataError(str(path), i, "bad_json", f"invalid JSON ({e.msg} at column {e.colno})")


def load_mathv360k(
    path_or_dir: str | os.PathLike = MATHV360K_ID,
    *,
    image_root: str | os.PathLike | None = None,
    on_error: str = "raise",
    max_samples: int | None = None,
    report: Counter | None = None,
    system: str | None = R1_SYSTEM_PROMPT,
    cache_dir: str | os.PathLike | None = None,
) -> list[Sample]:
    """Load MathV360K LLaVA records as Samples (R1 system prompt, image + question).

    ``path_or_dir``: ``train_samples_all_tuning.json`` (a JSON list; JSON lines work too), its
    folder, or the hub id (downloaded to ``cache_dir``, ``data_images*`` archives extracted).
    A record is ``{"id", "image": "IconQA/images/1.png", "conversations": [{"from": "human",
    "value": "<image>\\n..."}, {"from": "gpt", "value": "The answer is B"}]}``; images are looked
    up under ``image_root``, else ``<folder>/data_images/`` then ``<folder>/``.

    The question is the human turn without ``<image>`` tokens; the gold is
    :func:`extract_final_answer` of the gpt turn (option letter for multiple choice, the bare
    number for numbers, otherwise the text as is). ``domain`` is ``"choice"`` when the question
    lists options (``Choices: (A) ...``), else ``"math"``. ``meta`` has ``id``, ``file``, ``line``
    (the 1-based record number), ``image`` (as written), ``raw_answer`` and ``source`` (first
    folder of the image path, e.g. ``IconQA``). Errors read ``FILE:row N: ...``; reasons
    ``not_object``, ``bad_message`` (malformed ``conversations``), ``missing_question``,
    ``missing_answer``, ``bad_images``, ``missing_image``.
    """
    path = _resolve_mathv360k(path_or_dir, cache_dir)
    source = str(path)
    folder = path.resolve().parent
    roots = [Path(image_root).expanduser()] if image_root else [folder / MATHV360K_IMAGES, folder]

    def build(rec, line, err):
        if not isinstance(rec, dict):
            raise err("not_object", f"record must be a JSON object, got {type(rec).__name__}")
        convs = rec.get("conversations")
        if not isinstance(convs, list) or not all(isinstance(c, dict) for c in convs):
            raise err("bad_message", "`conversations` must be a list of {from, value} objects")
        human = next((i for i, c in enumerate(convs) if c.get("from") in ("human", "user")), None)
        question = ""
        if human is not None and isinstance(convs[human].get("value"), str):
            question = _IMAGE_TOKEN.sub("", convs[human]["value"]).strip()
        if not question:
            raise err("missing_question", "missing question: no non-empty human turn")
        reply = next((c.get("value") for c in convs[human + 1:] if c.get("from") in ("gpt", "assistant")), None)
        if not isinstance(reply, str) or not reply.strip():
            raise err("missing_answer", "missing answer: no non-empty gpt turn after the question")
        answer = extract_final_answer(reply, question)
        if not answer:
            raise err("missing_answer", f"empty answer extracted from {reply[:80]!r}")
        refs = rec.get("image")
        if isinstance(refs, str):
            refs = [refs]
        if not refs or not isinstance(refs, list) or not all(isinstance(r, str) and r for r in refs):
            raise err("bad_images", "missing `image` (a relative path string)" if not refs
                      else "`image` must be a path string or a list of them")
        images = resolve_images(refs, roots, err)
        domain = "choice" if has_choices(question) else "math"
        meta = {k: v for k, v in rec.items() if k not in ("conversations", "image", "id")}
        meta.update(file=source, line=line,
                    id=str(rec["id"]) if rec.get("id") not in (None, "") else f"{path.stem}:{line}",
                    image=rec.get("image"), raw_answer=reply,
                    source=refs[0].replace("\\", "/").split("/")[0] if "/" in refs[0] else "")
        return Sample(make_messages(question, images, system=system), answer, domain, meta)

    return _collect(source, _iter_records(path), build, on_error=on_error, max_samples=max_samples, report=report,
                    line_based=False)


# --------------------------------------------------------------------------- verifiability

_FAST_OK = re.compile(r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)|[-+]?\\frac\{\d+\}\{\d+\}|[-+]?\d+/\d+")
_WORDS = re.compile(r"[A-Za-z]{2,}(?:[\s'-]+[A-Za-z]+)*")
_MATH_WORDS = {"pi", "inf", "infinity", "oo"}


def _parse_timeout(timeout: float) -> int | None:
    # math-verify's timeout is signal.alarm based: main thread only, whole seconds.
    if threading.current_thread() is not threading.main_thread():
        return None
    return max(1, int(round(timeout)))


def gold_status(sample: Sample, *, max_chars: int = 200, timeout: float = 2.0) -> str:
    """``"ok"`` when the gold is checkable by a rule, else the drop reason.

    * ``empty``: no gold; ``too_long``: over ``max_chars`` characters (not parsed);
    * choice rows (``domain == "choice"``): ok iff the gold is one option letter A-E (and, when
      the options can be read from the question, one of them), else ``bad_choice``;
    * ``yes_no``: a bare Yes / No gold outside a choice question (no reward in ``rewards/``
      checks it: math-verify reads "No" as the product n*o);
    * otherwise the gold must parse with math-verify exactly as the math reward parses it
      (:func:`rewards.math.parse_gold`: gold wrapped in ``$...$``, prose refused) to a sympy
      number / expression / equation / set / interval: else ``free_text``; ``timeout`` when the
      parse ran over ``timeout`` seconds (signal based, main thread only).
    """
    gold = str(sample.answer if sample.answer is not None else "").strip()
    if not gold:
        return "empty"
    if len(gold) > max_chars:
        return "too_long"
    if sample.domain == "choice":
        letter = option_letter(gold)
        if letter is None:
            return "bad_choice"
        opts = parse_choices(sample.question)
        return "ok" if len(opts) < 2 or letter in opts else "bad_choice"
    bare = _unwrap(gold)
    if bare.casefold() in _YES_NO:
        return "yes_no"
    if _FAST_OK.fullmatch(bare):
        return "ok"
    if _WORDS.fullmatch(bare) and bare.casefold() not in _MATH_WORDS:
        return "free_text"  # words only: "increasing", "up", "red car"
    from math_verify.errors import TimeoutException
    from rewards.math import parse_gold  # the math reward's own gold parser: same verdict as training

    try:
        parsed = parse_gold(gold, _parse_timeout(timeout))
    except TimeoutException:
        return "timeout"
    except Exception:  # noqa: BLE001 - a gold that crashes the parser is not checkable
        return "free_text"
    return "ok" if parsed else "free_text"


def _as_yes_no_choice(sample: Sample) -> Sample:
    """A Yes/No row turned into a two-option question: ``Choices: (A) Yes (B) No``, gold A or B."""
    messages = copy.deepcopy(sample.messages)
    for msg in reversed(messages):
        if msg.get("role") == "user":
            parts = msg["content"] if isinstance(msg["content"], list) else [{"type": "text", "text": msg["content"]}]
            text_parts = [p for p in parts if isinstance(p, dict) and p.get("type") == "text"]
            text_parts[-1]["text"] = text_parts[-1]["text"].rstrip() + "\nChoices:\n(A) Yes\n(B) No"
            msg["content"] = parts
            break
    letter = "A" if _unwrap(sample.answer).casefold() == "yes" else "B"
    return replace(sample, messages=messages, answer=letter, domain="choice",
                   meta={**sample.meta, "raw_answer": sample.meta.get("raw_answer", sample.answer)})


def verifiability_filter(
    samples: Iterable[Sample],
    *,
    max_chars: int = 200,
    timeout: float = 2.0,
    yes_no: str = "drop",
) -> tuple[list[Sample], Counter]:
    """Keep the samples whose gold a rule can check (see :func:`gold_status`).

    Returns ``(kept, report)``; ``report`` counts ``"total"``, ``"kept"`` and ``"dropped/<reason>"``
    (``empty``, ``too_long``, ``bad_choice``, ``yes_no``, ``free_text``, ``timeout``). One summary
    line is logged (INFO, logger ``data.multimodal``).

    Yes/No golds: ``yes_no="drop"`` (default) drops them, since neither the math nor the choice
    reward can score them as they are; ``yes_no="choice"`` keeps them as two-option questions
    (the question gets ``Choices: (A) Yes (B) No``, the gold becomes A/B, ``domain="choice"``),
    counted as ``"converted/yes_no"`` as well as ``"kept"``.
    """
    if yes_no not in ("drop", "choice"):
        raise ValueError(f"yes_no must be 'drop' or 'choice', got {yes_no!r}")
    kept: list[Sample] = []
    report: Counter = Counter()
    for s in samples:
        report["total"] += 1
        status = gold_status(s, max_chars=max_chars, timeout=timeout)
        if status == "yes_no" and yes_no == "choice":
            s = _as_yes_no_choice(s)
            report["converted/yes_no"] += 1
            status = "ok"
        if status == "ok":
            kept.append(s)
            report["kept"] += 1
        else:
            report[f"dropped/{status}"] += 1
    dropped = {k.split("/", 1)[1]: v for k, v in sorted(report.items()) if k.startswith("dropped/")}
    logger.info("verifiability_filter: kept %d of %d%s", report["kept"], report["total"],
                "; dropped " + ", ".join(f"{k}={v}" for k, v in dropped.items()) if dropped else "")
    return kept, report


# --------------------------------------------------------------------------- geometry detector

_GEO_WORDS = re.compile(
    r"(?i)\b(?:triangles?|angles?|circles?|circumference|radius|radii|diameters?|chords?|tangents?|"
    r"parallel(?:ogram)?s?|perpendicular|polygons?|quadrilaterals?|pentagons?|hexagons?|octagons?|"
    r"rhombus(?:es)?|trapezoids?|trapezium|rectangles?|perimeter|arcs?|sectors?|congruent|"
    r"hypotenuse|isosceles|equilateral|midpoints?|bisect(?:s|or|ors)?|inscribed|circumscribed|"
    r"altitude|diagonals?|pythagorean|collinear|concyclic|"
    r"(?:surface )?area of (?:the |a |an |this |that )?(?:shaded |triangle|circle|square|rectangle|"
    r"trapezoid|parallelogram|rhombus|polygon|quadrilateral|sector|figure|region|semicircle|hexagon|"
    r"pentagon|kite|shape)|volume of (?:the |a |this )?(?:cone|cylinder|sphere|prism|pyramid|cube))"
)
_GEO_SIMILAR = re.compile(r"(?i)\bsimilar\s+(?:triangles?|polygons?|figures?|rectangles?|quadrilaterals?|to\s+(?:triangle|△))")
_GEO_SYMBOLS = re.compile(r"[∠△▲⊙⊥∥∽≌⌒°]|\\(?:angle|triangle|odot|perp|parallel|sim|cong|overline|overarc|widearc|circ)\b"
                          r"|\^\s*\{?\\circ\}?")
_TEMPERATURE = re.compile(r"(?i)°\s*[CF]\b|degrees?\s+(?:celsius|fahrenheit)")
# Segment / figure names: AB, BC, ABC, ABCD (capital letters) near = or a length word.
_SEGMENT = re.compile(r"\b(?!(?:AM|PM|OR|NO|ON|SO|TO|AT|AS|AN|BE|DO|GO|HE|ME|OF|OH|AH|EH)\b)[A-HM-T]{2}\b")
_SEGMENT_CONTEXT = re.compile(r"(?i)\b(?:point|points|line|lines|segment|segments|length|side|sides|"
                              r"lies on|intersect\w*|extend\w*|meets?)\b|[=⊥∥]")


def _question_of(sample_or_text: Sample | str) -> str:
    return sample_or_text if isinstance(sample_or_text, str) else sample_or_text.question


def is_geometry(sample_or_text: Sample | str) -> bool:
    """Does the question look like a geometry problem?

    Yes when it names a geometric object or relation (triangle, angle, circle, radius, chord,
    tangent, parallel, perpendicular, polygon, quadrilateral, perimeter, arc, sector, congruent,
    "similar triangles", "area of the shaded region", ...) or uses a geometry symbol
    (∠ △ ⊙ ⊥ ∥ ∽ ≌ °, ``\\angle``, ``^\\circ``); temperatures (``25°C``) do not count.
    Segment names alone (``AB``, ``BC``) count when there are two distinct ones next to a length
    word or ``=``, e.g. "If AB = 6 and BC = 8, find AC". Chart / table / counting questions with
    none of these ("How many objects are left?", "What is the value of the largest bar?") are not.
    """
    q = _question_of(sample_or_text)
    if not q:
        return False
    q_no_temp = _TEMPERATURE.sub(" ", q)
    if _GEO_WORDS.search(q_no_temp) or _GEO_SIMILAR.search(q_no_temp) or _GEO_SYMBOLS.search(q_no_temp):
        return True
    segments = {m.group(0) for m in _SEGMENT.finditer(q_no_temp)}
    return len(segments) >= 2 and bool(_SEGMENT_CONTEXT.search(q_no_temp))


def extract_geometry(samples: Iterable[Sample]) -> list[Sample]:
    """The geometry subset of ``samples`` (see :func:`is_geometry`), order kept."""
    samples = list(samples)
    out = [s for s in samples if is_geometry(s)]
    logger.info("extract_geometry: %d of %d samples look like geometry", len(out), len(samples))
    return out


# --------------------------------------------------------------------------- fixture / dispatch


def load_geo_fixture(**kwargs) -> list[Sample]:
    """Samples of the bundled synthetic geometry fixture (``data/fixtures/geo_fixture.jsonl``, 24 rows,
    ``domain="geo"``). ``kwargs`` go to :func:`data.loaders.load_message_jsonl`."""
    kwargs.setdefault("domain", "geo")
    return load_message_jsonl(GEO_FIXTURE, **kwargs)


def _synthetic_geo(n: int, seed: int, cache_dir, **kwargs) -> list[Sample]:
    from . import synth_geo

    folder = Path(cache_dir or DEFAULT_CACHE) / "synthetic_geo" / f"v{synth_geo.GENERATOR_VERSION}_seed{seed}_n{n}"
    path = folder / "geo.jsonl"
    if not path.is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=folder.parent))
        try:
            synth_geo.write_jsonl(synth_geo.generate(n, seed, tmp), tmp / "geo.jsonl")
            try:
                tmp.rename(folder)  # atomic: a half-written folder is never used
            except OSError:
                if not path.is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    kwargs.setdefault("domain", "geo")
    return load_message_jsonl(path, **kwargs)


def load_multimodal_by_name(
    name: str,
    *,
    path: str | os.PathLike | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    filter_verifiable: bool | None = None,
    **kwargs,
) -> list[Sample]:
    """Dispatch on a stage-2 dataset name.

    * ``"geo-fixture"`` -> :func:`load_geo_fixture`;
    * ``"synthetic-geo:N"`` (or ``"synthetic-geo:N:SEED"``) -> ``N`` problems of
      :mod:`data.synth_geo` generated once into ``<cache_dir>/synthetic_geo/v<version>_seed<S>_n<N>/``
      (default cache ``$LMM_R1_CACHE`` or ``~/.cache/lmm_r1``) and loaded from there;
    * ``"vermulti-geo"`` / ``"vermulti"`` (= ``"vermulti-mathv60k"``) -> :func:`load_vermulti`;
    * ``"mathv360k"`` -> :func:`load_mathv360k`; ``"mathv360k-geo"`` -> its geometry subset
      (:func:`extract_geometry`).

    For the VerMulti and MathV360K names the location is ``path=...`` or the part after the first
    colon (``"mathv360k:/data/MathV360K"``); without one the hub id is downloaded.
    ``filter_verifiable`` runs :func:`verifiability_filter` (default: only for the raw MathV360K
    names). Other ``kwargs`` (``on_error``, ``max_samples``, ``report``, ``system``, ...) go to the loader.
    """
    s = str(name).strip()
    key, _, rest = s.partition(":")
    key = key.lower()
    if key in ("geo-fixture", "geo_fixture"):
        samples = load_geo_fixture(**kwargs)
    elif key in ("synthetic-geo", "synth-geo"):
        bits = rest.split(":") if rest else []
        try:
            n = int(bits[0])
            if len(bits) > 1:
                seed = int(bits[1])
        except (IndexError, ValueError):
            raise ValueError(f"expected 'synthetic-geo:N' or 'synthetic-geo:N:SEED', got {s!r}") from None
        samples = _synthetic_geo(n, seed, cache_dir, **kwargs)
    elif key in ("vermulti", "vermulti-mathv60k", "vermulti-geo"):
        subset = "geo" if key == "vermulti-geo" else "mathv60k"
        samples = load_vermulti(path or rest or VERMULTI_ID, subset, cache_dir=cache_dir, **kwargs)
    elif key in ("mathv360k", "mathv360k-geo"):
        samples = load_mathv360k(path or rest or MATHV360K_ID, cache_dir=cache_dir, **kwargs)
        if key == "mathv360k-geo":
            samples = extract_geometry(samples)
        if filter_verifiable is None:
            filter_verifiable = True
    else:
        raise ValueError(
            f"unknown multimodal dataset {s!r}: expected 'geo-fixture', 'synthetic-geo:N[:SEED]', "
            "'vermulti[-mathv60k|-geo][:PATH]' or 'mathv360k[-geo][:PATH]'"
        )
    if filter_verifiable:
        samples, rep = verifiability_filter(samples)
        report = kwargs.get("report")
        if report is not None:
            report.update({f"filter/{k}": v for k, v in rep.items()})
    return samples
