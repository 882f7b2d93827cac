"""MathV360K (hub ``Zhiqiang007/MathV360K``): LLaVA records with free-form answers, before RL filtering.

``train_samples_all_tuning.json`` is a JSON list of records, images under ``data_images/``. The gold is read
out of the reply by :func:`data.gold.extract_final_answer`; run :func:`data.gold.verifiability_filter` on the
samples before RL (``--data mathv360k`` does by default). Errors follow :mod:`data.io`.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from .gold import extract_final_answer, has_choices
from .images import resolve_images
from .io import _collect, extract_once, find_data_file, hub_download, read_rows
from .sample import R1_SYSTEM_PROMPT, Sample, make_messages

__all__ = ["MATHV360K_ID", "MATHV360K_JSON", "load_mathv360k"]

MATHV360K_ID = "Zhiqiang007/MathV360K"
MATHV360K_JSON = "train_samples_all_tuning.json"
MATHV360K_IMAGES = "data_images"
_IMAGE_TOKEN = re.compile(r"<image>\s*")


def _resolve_mathv360k(path_or_dir: str | os.PathLike, cache_dir) -> Path:
    found = find_data_file(path_or_dir, MATHV360K_JSON, f"no {MATHV360K_JSON} in folder")
    if found is not None:
        return found
    local = hub_download(os.fspath(path_or_dir), [MATHV360K_JSON, f"{MATHV360K_IMAGES}*"], cache_dir)
    if not (local / MATHV360K_IMAGES).is_dir():
        for archive in sorted(local.glob(f"{MATHV360K_IMAGES}*")):
            if archive.is_file():
                extract_once(archive, local)
    return local / MATHV360K_JSON


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

    ``path_or_dir``: ``train_samples_all_tuning.json`` (a JSON list; a ``.jsonl`` of records works too,
    see :func:`data.io.read_rows`), its folder, or the hub id (downloaded to ``cache_dir``, ``data_images*`` archives extracted).
    A record is ``{"id", "image": "IconQA/images/1.png", "conversations": [{"from": "human",
    "value": "<image>\\n..."}, {"from": "gpt", "value": "The answer is B"}]}``; images are looked
    up under ``image_root``, else ``<folder>/data_images/`` then ``<folder>/``.

    The question is the human turn without ``<image>`` tokens; the gold is
    :func:`extract_final_answer` of the gpt turn (option letter for multiple choice, the bare
    number for numbers, otherwise the text as is). ``domain`` is ``"choice"`` when the question
    lists options (``Choices: (A) ...``), else ``"math"``. ``meta`` has ``id``, ``file``, ``line``
    (the 1-based record number; the line for JSON lines), ``image`` (as written), ``raw_answer`` and ``source``
    (first folder of the image path, e.g. ``IconQA``). Errors read ``FILE:row N: ...`` (``FILE:LINE: ...`` for
    JSON lines); reasons
    ``not_object``, ``bad_message`` (malformed ``conversations``), ``missing_question``,
    ``missing_answer``, ``bad_images`` and the image checks of :func:`data.images.resolve_image` (``missing_image``,
    ``image_outside_data``: outside the image folders, ``bad_image``, ``image_too_large``, ``image_url``).
    """
    path = _resolve_mathv360k(path_or_dir, cache_dir)
    source, line_based, rows = read_rows(path)
    folder = path.resolve().parent
    roots = [Path(image_root).expanduser()] if image_root else [folder / MATHV360K_IMAGES, folder]

    def build(rec, line, err):
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

    return _collect(source, rows, build, on_error=on_error, max_samples=max_samples, report=report,
                    line_based=line_based)
