"""Data: one `Sample` schema for every source; :func:`load_dataset_by_name` dispatches ``--data NAME``.

Modules (each imports only the ones above it; this file imports them all)::

    sample.py       Sample, make_messages, R1_SYSTEM_PROMPT
    io.py           DataError, the rows reader, the row loop, hub downloads, FIXTURE_DIR
    images.py       image references: resolved and checked at load, load_image; data_limits (the data flags)
    gold.py         gold answers: extract_final_answer, gold_status, verifiability_filter
    geo_detect.py   is_geometry / extract_geometry
    loaders.py      DeepScaleR rows, LMM-R1 message jsonl, plain jsonl, the bundled fixtures
    vermulti.py     VerMulti (rebases the released image paths)
    mathv360k.py    MathV360K (LLaVA records, answers read out of the replies)
    games.py        Sokoban / football prompts
    synth/          generators: math.py (text problems, fixtures), geometry.py (+ geometry_draw.py) diagrams,
                    classroom.py (the classroom problems, text and image forms)
"""

from __future__ import annotations

import os
from pathlib import Path

from .games import football_samples, sokoban_samples
from .geo_detect import extract_geometry, is_geometry
from .gold import gold_status, verifiability_filter
from .images import load_image, resolve_image_path
from .io import FIXTURE_DIR, HUB_ID_RE, DataError, check_file, iter_jsonl
from .loaders import (DEEPSCALER_ID, load_deepscaler, load_fixture, load_geo_fixture, load_jsonl,
                      load_message_jsonl)
from .mathv360k import MATHV360K_ID, load_mathv360k
from .sample import R1_SYSTEM_PROMPT, Sample, make_messages
from .vermulti import VERMULTI_ID, load_vermulti

__all__ = [
    "DataError", "FIXTURE_DIR", "load_image", "resolve_image_path", "R1_SYSTEM_PROMPT", "Sample", "make_messages",
    "load_dataset_by_name", "data_name_problem", "DEEPSCALER_ID", "VERMULTI_ID", "MATHV360K_ID",
    "load_deepscaler", "load_message_jsonl", "load_jsonl", "load_fixture", "load_geo_fixture",
    "load_vermulti", "load_mathv360k", "gold_status", "verifiability_filter", "is_geometry", "extract_geometry",
]


# --------------------------------------------------------------------------- one loader per family
# Each is called as loader(family, arg, name=..., seed=..., **kwargs): `arg` is what follows the first ":" of the
# name (original case), `name` the name as given; `kwargs` are the caller's.


def _fixture(family, arg, *, name, seed, **kwargs):
    return load_fixture(arg.lower() or "math", **kwargs)


def _game_prompts(family, arg, *, name, seed, **kwargs):
    if not arg.isdigit():
        raise ValueError(f"expected '{family}:N' (N prompts to generate), got {name!r}")
    make = sokoban_samples if family == "sokoban" else football_samples
    samples = make(int(arg), seed=seed)
    return samples[:kwargs["max_samples"]] if kwargs.get("max_samples") else samples


def _geo_fixture(family, arg, *, name, seed, path, cache_dir, **kwargs):
    return load_geo_fixture(**kwargs)


def _synthetic_geo(family, arg, *, name, seed, path, cache_dir, **kwargs):
    from .synth import geometry  # not at the top: `python -m data.synth.geometry` must import it only once

    bits = arg.split(":") if arg else []
    try:
        n = int(bits[0])
        if len(bits) > 1:
            seed = int(bits[1])
    except (IndexError, ValueError):
        raise ValueError(f"expected 'synthetic-geo:N' or 'synthetic-geo:N:SEED', got {name.strip()!r}") from None
    kwargs.setdefault("domain", "geo")
    return load_message_jsonl(geometry.cached_jsonl(n, seed, cache_dir), **kwargs)


def _classroom(family, arg, *, name, seed, **kwargs):
    from .synth.classroom import classroom_samples

    samples = classroom_samples(family.split("-", 1)[1], int(arg), seed=seed, split="train")
    return samples[:kwargs["max_samples"]] if kwargs.get("max_samples") else samples


def _vermulti(family, arg, *, name, seed, path, cache_dir, **kwargs):
    subset = "geo" if family == "vermulti-geo" else "mathv60k"
    return load_vermulti(path or arg or VERMULTI_ID, subset, cache_dir=cache_dir, **kwargs)


def _mathv360k(family, arg, *, name, seed, path, cache_dir, **kwargs):
    samples = load_mathv360k(path or arg or MATHV360K_ID, cache_dir=cache_dir, **kwargs)
    return extract_geometry(samples) if family == "mathv360k-geo" else samples


def _stage2(load, *, filter_by_default: bool = False):
    """A stage-2 family: also takes ``path=`` (the data location, instead of ``NAME:PATH``), ``cache_dir=`` (hub
    downloads, generated data) and ``filter_verifiable=`` (run :func:`verifiability_filter` on the samples; its
    counts go to ``report`` as ``filter/...``)."""

    def stage2(family, arg, *, name, seed, path=None, cache_dir=None, filter_verifiable=None, **kwargs):
        samples = load(family, arg, name=name, seed=seed, path=path, cache_dir=cache_dir, **kwargs)
        if filter_by_default if filter_verifiable is None else filter_verifiable:
            samples, rep = verifiability_filter(samples)
            report = kwargs.get("report")
            if report is not None:
                report.update({f"filter/{k}": v for k, v in rep.items()})
        return samples

    return stage2


# --data NAME: NAME is case-insensitive; its family is the part before the first ":".
_HUB_ALIASES = {"deepscaler": DEEPSCALER_ID}  # NAME -> hub id, loaded by load_deepscaler
_FAMILIES = {  # family -> loader
    "fixture": _fixture,
    "sokoban": _game_prompts,
    "football": _game_prompts,
    "geo-fixture": _stage2(_geo_fixture),
    "synthetic-geo": _stage2(_synthetic_geo),
    "classroom-text": _classroom,
    "classroom-image": _classroom,
    "classroom-geo": _classroom,
    "vermulti": _stage2(_vermulti),
    "vermulti-mathv60k": _stage2(_vermulti),
    "vermulti-geo": _stage2(_vermulti),
    "mathv360k": _stage2(_mathv360k, filter_by_default=True),
    "mathv360k-geo": _stage2(_mathv360k, filter_by_default=True),
}


def _is_message_jsonl(path: Path) -> bool:
    """True if the first valid JSON-object row has a ``message`` key."""
    for _, row in iter_jsonl(path):
        if isinstance(row, dict):
            return "message" in row
    return False


def data_name_problem(name_or_path: str | os.PathLike) -> str | None:
    """What is wrong with ``--data NAME`` before anything is loaded or generated (None when it looks loadable)."""
    s = os.fspath(name_or_path).strip()
    family, _, arg = s.partition(":")
    family = family.lower()
    if not s:
        return "empty; expected a data set name or a file"
    if s.lower() in _HUB_ALIASES:
        return None
    if family in ("sokoban", "football") or family.startswith("classroom-"):
        return None if arg.isdigit() and int(arg) > 0 else f"expected '{family}:N' with N > 0 prompts to generate"
    if family == "synthetic-geo":
        bits = arg.split(":")
        ok = 1 <= len(bits) <= 2 and all(b.isdigit() for b in bits) and int(bits[0]) > 0
        return None if ok else "expected 'synthetic-geo:N' or 'synthetic-geo:N:SEED' with N > 0"
    if family == "fixture":
        return None if arg.lower() in ("", "math", "message") else "expected 'fixture', 'fixture:math' or 'fixture:message'"
    if family in _FAMILIES:
        return None
    p = Path(s)
    if p.suffix.lower() in (".jsonl", ".json", ".parquet"):
        if p.is_dir() or not p.exists():
            return f"no such file {p}"
        return None
    if p.exists() or HUB_ID_RE.match(s):
        return None
    names = ", ".join([*_HUB_ALIASES, *_FAMILIES])
    return (f"unknown data set; expected a name ({names}), a .jsonl/.json/.parquet file, a folder or a hub id "
            f"'org/name'")


def load_dataset_by_name(name_or_path: str | os.PathLike, *, split: str = "train", seed: int = 0,
                         **kwargs) -> list[Sample]:
    """The samples of ``--data NAME``.

    * ``"deepscaler"`` -> :func:`load_deepscaler` (hub ``DEEPSCALER_ID``, ``split``);
    * ``"fixture"`` / ``"fixture:math"`` / ``"fixture:message"`` -> :func:`load_fixture`;
    * ``"sokoban:N"`` / ``"football:N"`` -> N generated game prompts (:mod:`data.games`, seeded by ``seed``);
    * ``"classroom-text:N"`` / ``"classroom-image:N"`` / ``"classroom-geo:N"`` -> N problems of the training split
      of :mod:`data.synth.classroom` (seeded by ``seed``; the held-out split is eval.py's ``classroom`` group);
    * ``"geo-fixture"`` -> :func:`load_geo_fixture`;
    * ``"synthetic-geo:N"`` (or ``"synthetic-geo:N:SEED"``) -> ``N`` problems of :mod:`data.synth.geometry`
      generated once into ``<cache_dir>/synthetic_geo/v<version>_seed<S>_n<N>/`` (default cache
      ``$LMM_R1_CACHE`` or ``~/.cache/lmm_r1``) and loaded from there;
    * ``"vermulti-geo"`` / ``"vermulti"`` (= ``"vermulti-mathv60k"``) -> :func:`load_vermulti`;
    * ``"mathv360k"`` -> :func:`load_mathv360k`; ``"mathv360k-geo"`` -> its geometry subset
      (:func:`extract_geometry`);
    * ``*.jsonl`` -> :func:`load_message_jsonl` if its first valid row has a ``message`` key,
      else :func:`load_jsonl`;
    * ``*.json`` / ``*.parquet`` / an existing folder / a hub id ``org/name`` -> :func:`load_deepscaler`.

    For the VerMulti and MathV360K names the location is ``path=...`` or the part after the first
    colon (``"mathv360k:/data/MathV360K"``); without one the hub id is downloaded (into ``cache_dir``).
    ``filter_verifiable`` runs :func:`verifiability_filter` on a stage-2 name (default: only for the raw
    MathV360K names). Other ``kwargs`` (``on_error``, ``max_samples``, ``report``, ``system``, ``domain``)
    go to the loader.
    """
    s = os.fspath(name_or_path)
    name = s.strip()
    family, _, arg = name.partition(":")
    family = family.lower()
    if name.lower() in _HUB_ALIASES:
        return load_deepscaler(_HUB_ALIASES[name.lower()], split, **kwargs)
    if family in _FAMILIES:
        return _FAMILIES[family](family, arg, name=s, seed=seed, **kwargs)
    p = Path(s)
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        p = check_file(p)
        loader = load_message_jsonl if _is_message_jsonl(p) else load_jsonl
        return loader(p, **kwargs)
    if suffix in (".json", ".parquet") or p.exists() or HUB_ID_RE.match(s):
        return load_deepscaler(s, split, **kwargs)
    names = ", ".join([*_HUB_ALIASES, *_FAMILIES])
    raise ValueError(f"unknown dataset {s!r}: expected a name ({names}; some take ':ARG', see "
                     "data.load_dataset_by_name), a .jsonl/.json/.parquet path, a folder or a hub id 'org/name'")
