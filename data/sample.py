"""The in-memory training example shared by every data source.

A :class:`Sample` holds a chat in the transformers multimodal format (the
format ``processor.apply_chat_template`` takes for Qwen2.5-VL)::

    [{"role": "system", "content": [{"type": "text", "text": R1_SYSTEM_PROMPT}]},
     {"role": "user", "content": [{"type": "image", "image": "/abs/path.png"},
                                  {"type": "text", "text": "question ..."}]}]

Image entries hold either a ``PIL.Image.Image`` or a path string; paths are
opened lazily (see :func:`data.images.load_image`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

R1_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., "
    "<think> reasoning process here </think><answer> answer here </answer>"
)


@dataclass
class Sample:
    """One prompt with its gold answer.

    messages: chat list (system message first when there is one).
    answer:   gold answer (LaTeX for math); may be "" for environment domains.
    domain:   reward/task family, e.g. "math", "geo", "choice".
    meta:     provenance and extras: "file", "line" (1-based), "id", plus any extra row fields.
    """

    messages: list[dict]
    answer: str
    domain: str = "math"
    meta: dict = field(default_factory=dict)

    @property
    def images(self) -> list[Any]:
        """All images (PIL images or path strings) in message order."""
        out = []
        for msg in self.messages:
            content = msg.get("content")
            if isinstance(content, list):
                out.extend(part["image"] for part in content
                           if isinstance(part, dict) and part.get("type") == "image")
        return out

    @property
    def where(self) -> str:
        """The row it came from, for messages: "file:line" (or source:row), else "<benchmark> item <id>"."""
        meta = self.meta
        if not ("file" in meta or "source" in meta) and "benchmark" in meta:
            return f"{meta['benchmark']} item {meta.get('id', '?')}"
        return f"{meta.get('file') or meta.get('source', '?')}:{meta.get('line', meta.get('row', '?'))}"

    @property
    def question(self) -> str:
        """Text of the last user message (text parts joined by newlines)."""
        for msg in reversed(self.messages):
            if msg.get("role") == "user":
                return _text_of(msg.get("content"))
        return ""


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content
                         if isinstance(p, dict) and p.get("type") == "text")
    return ""


def system_message(text: str) -> dict:
    return {"role": "system", "content": [{"type": "text", "text": text}]}


def make_messages(question: str, images: Iterable[Any] = (), system: str | None = R1_SYSTEM_PROMPT) -> list[dict]:
    """Build ``[system, user]`` with the images before the question text.

    ``system=None`` (or "") leaves out the system message.
    """
    content = [{"type": "image", "image": img} for img in images]
    content.append({"type": "text", "text": question})
    messages = [system_message(system)] if system else []
    messages.append({"role": "user", "content": content})
    return messages
