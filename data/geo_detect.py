"""Geometry detector: which questions look like geometry problems (for the ``mathv360k-geo`` subset)."""

from __future__ import annotations

import logging
import re
from typing import Iterable

from .sample import Sample

__all__ = ["is_geometry", "extract_geometry"]

logger = logging.getLogger(__name__)

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
