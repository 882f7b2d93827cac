"""Text helpers shared by the rewards."""

MAX_RESPONSE_CHARS = 10_000  # untrusted text is cut to its tail before any parsing


def answer_text(response: str, max_chars: int = MAX_RESPONSE_CHARS) -> str:
    """Content of the last non-blank `<answer>...</answer>` block, else the response.

    Only the last `max_chars` characters are considered. Uses rfind, not a regex,
    so it stays linear on inputs with many unclosed tags.
    """
    text = (response or "")[-max_chars:]
    end = text.rfind("</answer>")
    if end != -1:
        start = text.rfind("<answer>", 0, end)
        if start != -1:
            inner = text[start + len("<answer>"):end]
            if inner.strip():
                return inner
    return text
