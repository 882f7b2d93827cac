"""`--check-data`: read every row as training would, before any model is loaded, and report what is wrong.

Every gold answer is parsed as the reward parses it (`gold_status`), every image is opened, and empty questions or
answers (NaN included) are counted, with a few examples of each problem naming the file and line. Rows the loader
refuses are listed as `row_<reason>` (`skipped_rows`): among them the images checked at load (`row_bad_image`,
`row_image_too_large`, `row_image_outside_data`, `row_image_url`), `row_too_deep` and `row_row_too_large`. Golds
that parse but that the verifier reads wrongly (`gold_ambiguity`: a repeating decimal, a time, a number with words, a
single letter in a math row) are listed as `gold_ambiguous`, with the reason; training skips or keeps them as
`--on-ambiguous-gold` says.
"""

import contextlib
import logging
import math
from collections import Counter

from tqdm.auto import tqdm

from .gold import AMBIGUOUS, gold_ambiguity, gold_status
from .images import check_image, load_image
from .sample import Sample


# Qwen-VL's vision tokens: written in a row's own text they are read as image slots its images do not fill (training
# skips such a prompt, counted in data/image_token_mismatch)
VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")


def row_problems(sample: Sample, needs_gold: bool = True) -> list[str]:
    """The problems of one row: 'empty_question', 'vision_tokens_in_text', 'empty_gold', a gold status other than ok
    ('gold_<status>'), 'gold_ambiguous', 'image_unreadable'."""
    problems = []
    if not sample.question.strip() and not sample.images:
        problems.append("empty_question")
    if any(token in sample.question for token in VISION_TOKENS):
        problems.append("vision_tokens_in_text")
    answer = sample.answer
    if needs_gold:
        if answer is None or (isinstance(answer, float) and math.isnan(answer)) or not str(answer).strip():
            problems.append("empty_gold")
        else:
            status = gold_status(sample)
            if status != "ok":
                problems.append(f"gold_{status}")
            elif gold_ambiguity(sample) is not None:
                problems.append("gold_ambiguous")
    for image in sample.images:
        try:
            if isinstance(image, str) and "://" not in image:
                if check_image(image):  # decoded once per process: the loader's check already did it
                    raise ValueError(image)
            else:
                load_image(image)
        except Exception:  # noqa: BLE001 - any failure to open is the finding
            problems.append("image_unreadable")
            break
    return problems


class _Skips(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.found: list[tuple[str, str]] = []

    def emit(self, record):
        if hasattr(record, "reason"):
            self.found.append((f"row_{record.reason}", record.getMessage().removeprefix("skipped ")))


@contextlib.contextmanager
def skipped_rows():
    """Collect the rows a loader skips (on_error='skip') as (kind, 'file:line: why')."""
    handler, log = _Skips(), logging.getLogger("data.io")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield handler.found
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def check_samples(samples: list[Sample], needs_gold: bool = True, examples: int = 3,
                  skipped: list[tuple[str, str]] = ()) -> dict:
    """{"rows", "bad_rows", "problems": {kind: count}, "examples": {kind: ["file:line: gold or image"]}}; `skipped`
    are rows the loader could not read at all (from `skipped_rows`)."""
    counts, shown, bad = Counter(), {}, len(skipped)
    for kind, where in skipped:
        counts[kind] += 1
        if len(shown.setdefault(kind, [])) < examples:
            shown[kind].append(where)
    for sample in tqdm(samples, desc="check data", unit="row", dynamic_ncols=True):
        problems = row_problems(sample, needs_gold)
        bad += bool(problems)
        for kind in problems:
            counts[kind] += 1
            if len(shown.setdefault(kind, [])) < examples:
                what = (sample.images[0] if kind == "image_unreadable" else repr(sample.question)[:80]
                        if kind == "vision_tokens_in_text" else repr(str(sample.answer))[:80])
                if kind == "gold_ambiguous":
                    what += f" ({AMBIGUOUS[gold_ambiguity(sample)]})"
                shown[kind].append(f"{sample.where}: {what}")
    return {"rows": len(samples) + len(skipped), "bad_rows": bad, "problems": dict(counts), "examples": shown}


def format_report(report: dict) -> str:
    rows, bad = report["rows"], report["bad_rows"]
    lines = [f"{rows} rows, {bad} with problems ({bad / max(rows, 1):.2%})"]
    for kind, n in sorted(report["problems"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {kind}: {n}")
        lines.extend(f"      {example}" for example in report["examples"].get(kind, []))
    return "\n".join(lines)
