"""<out>/samples.html: what the model wrote, as one static page a person opens in a browser (no server, no network:
images inline as PNG data URIs, every text escaped).

    write_samples_page(path, "eval of runs/x/final", [
        {"heading": "MathVista", "items": [
            {"prompt": "...", "images": [PIL image or path], "gold": "3",
             "responses": [{"text": "<think>...</think><answer>3</answer>", "scores": {"correct": True}}]}]}])

eval.py writes one for the first items of each benchmark it ran.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

MAX_TEXT = 4000  # characters of a prompt or response shown (the tail of a longer response: where its answer is)
THUMBNAIL = 256  # pixels of an image's longer side


def thumbnail(image, max_side: int = THUMBNAIL) -> str:
    """A PNG data URI of a PIL image or an image file, at most `max_side` pixels on its longer side; "" when it
    cannot be read (the page says so instead of failing)."""
    from PIL import Image

    try:
        img = image if isinstance(image, Image.Image) else Image.open(image)
        img = img.convert("RGB")
        img.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
    except Exception:  # noqa: BLE001 - a missing or damaged image is shown as such
        return ""
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _text(text, tail: bool = False) -> str:
    text = str(text)
    if len(text) > MAX_TEXT:
        text = ("... " + text[-MAX_TEXT:]) if tail else (text[:MAX_TEXT] + " ...")
    return html.escape(text)


def _score(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    return html.escape(str(value))


def _item(item: dict) -> str:
    images = "".join(f'<img src="{uri}" alt="image {i + 1}">' if (uri := thumbnail(im)) else
                     f'<span class="missing">image {i + 1} cannot be read</span>'
                     for i, im in enumerate(item.get("images") or ()))
    gold = item.get("gold")
    rows = []
    for j, response in enumerate(item.get("responses") or ()):
        scores = " ".join(f"<b>{html.escape(str(k))}</b> {_score(v)}" for k, v in response.get("scores", {}).items())
        rows.append(f'<div class="response"><div class="scores">#{j + 1} {scores}</div>'
                    f'<pre>{_text(response.get("text", ""), tail=True)}</pre></div>')
    return (f'<div class="item"><div class="images">{images}</div><pre class="prompt">{_text(item.get("prompt", ""))}'
            f'</pre>' + (f'<div class="gold">gold: <code>{_text(gold)}</code></div>' if gold not in (None, "") else "")
            + "".join(rows) + "</div>")


STYLE = ("body{font-family:sans-serif;margin:2em;max-width:70em}pre{white-space:pre-wrap;background:#f6f6f6;"
         "padding:.5em}.item{border-top:1px solid #ccc;margin:1em 0;padding-top:.5em}.images img{max-height:256px;"
         "margin-right:.5em;border:1px solid #ddd}.scores{font-size:90%;color:#333}.missing{color:#a00}")


def samples_page(title: str, sections: list[dict]) -> str:
    """The page as a string: a heading per section, then its items (prompt with images, gold, each response with
    its scores)."""
    body = "".join(f"<h2>{html.escape(s['heading'])}</h2>" + "".join(_item(i) for i in s.get("items", ()))
                   for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


def write_samples_page(path: str | Path, title: str, sections: list[dict]) -> Path:
    path = Path(path)
    path.write_text(samples_page(title, sections), encoding="utf-8")
    return path
