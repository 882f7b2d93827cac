"""Multiple choice: which option letter a response gives.

* `extract_choice` / `choice_reward` - the training reward's released reading: a letter A-E, from `\\boxed{B}`,
  "the answer is B", a last line that starts with one, or the last "(B)".
* `choice_reading` - the benchmarks' reading (eval.py): letters up to the number of options, Chinese answer forms,
  the option's text stated in a sentence, an option equal in value; it says when the answer is ambiguous.
* `letter_of` - a text that is one option letter ("B", "(b)", "B."): gold answers.
"""
import re

from .text import (BOXED_FLAT, CHOICE_TEXT_CMD, MAX_RESPONSE_CHARS, answer_text, final_text, last_boxed, last_match,
                   normalize_text, numbers_in, with_digits)

LETTERS = "ABCDEFGHIJ"  # the benchmarks' option letters; the training reward reads A-E


def option_letter(letters: str = "A-E") -> str:
    """An option letter in group 1: only capitals in `letters`, never next to another letter or digit, so
    "A triangle", "BAD" or "a" do not read as options."""
    return rf"\(?([{letters}])\)?(?![A-Za-z0-9])"


def answer_phrase(letters: str = "A-E") -> re.Pattern:
    """"answer B" / "answer is: (B)"; option/choice need "is" or ":" so "option A is wrong" does not count. Each
    whitespace run has one place to go, so a long run of spaces cannot backtrack quadratically."""
    return re.compile(r"(?i:answer\s*(?:is\b\s*)?(?:[:=]\s*)?|(?:option|choice)\s*(?:is\b|[:=])\s*)"
                      + option_letter(letters))


_OPT = option_letter()
_PHRASE = answer_phrase()
_LEADING = re.compile(r"\s*\(?([A-E])(?:\s*[.):]|\s*$)")  # "B", "B.", "(B)", "B) 36°", "B: ..."
_PAREN = re.compile(r"\(([A-E])\)")
_BOXED_OPT = re.compile(r"\s*" + _OPT)


def _clean(text: str) -> str:
    # Unwrap \text{B} and drop $ and markdown bold so the patterns see the bare letter.
    return CHOICE_TEXT_CMD.sub(r"\1", text).replace("$", "").replace("*", "")


def extract_choice(response: str, max_chars: int = MAX_RESPONSE_CHARS) -> str | None:
    """Option letter from the answer block (or the whole response), else None.

    Tried in order: last \\boxed{...}; "answer is B" / "option: (B)"; a final line that
    starts with the letter ("B", "B.", "(B)", "B) 36°"); the last "(B)" anywhere.
    """
    text = _clean(answer_text(response or "", max_chars))
    boxed = last_boxed(text, BOXED_FLAT)
    if boxed is not None:
        m = _BOXED_OPT.match(boxed)
        if m:
            return m.group(1)
    letter = last_match(_PHRASE, text)
    if letter:
        return letter
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines:
        m = _LEADING.match(lines[-1])
        if m:
            return m.group(1)
    return last_match(_PAREN, text)


def letter_of(text: str, letters: str = "A-J") -> str | None:
    """The option letter a text is and nothing more ("B", "(b)", " B. "), upper case; else None."""
    m = re.fullmatch(rf"\s*\(?([{letters}{letters.lower()}])\)?\.?\s*", str(text))
    return m.group(1).upper() if m else None


def gold_letter(gold: str) -> str | None:
    """Gold option letter: "B", "(b)", "B." or anything extract_choice understands."""
    return letter_of(gold, "A-E") or extract_choice(str(gold).strip())


def choice_reward(response: str, gold: str) -> float:
    """1.0 when the extracted option equals the gold letter, else 0.0."""
    want = gold_letter(gold)
    return 1.0 if want is not None and extract_choice(response) == want else 0.0


# --------------------------------------------------------------------------- the benchmarks' reading

# Chinese answer forms: 答案是C, 答案为C, 答案：C, 故选C, 选择C, 选C
_ZH_ANSWER = re.compile(r"(?:答案\s*(?:是|为|应为)?\s*[:：]?|(?:故|所以)?\s*选(?:择)?\s*)\s*[(（]?([A-J])"
                        r"(?![A-Za-z0-9])")
_LEAD_LETTER = re.compile(r"\s*\(?([A-J])\s*[.):：]\s*(.+)\Z", re.DOTALL)  # "A: 6 cm": a letter, or "Answer:"?
_PHRASE_J = answer_phrase("A-J")
_PAREN_J = re.compile(r"\(([A-J])\)")


def _value(text: str) -> tuple[float, ...] | None:
    """The numbers of an option or an answer (a ratio 8:5 or a fraction as one value), None without numbers."""
    t = re.sub(r"(-?\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)", r"\1/\2", with_digits(normalize_text(text)))
    return tuple(round(v, 9) for v in numbers_in(t)) or None


def _states(text: str, words: str) -> bool:
    """Whether `text` holds `words` as whole words ("6" in "6 cm", not in "16" or "6.5")."""
    return re.search(r"(?<![\w.])" + re.escape(words) + r"(?!\w)", text) is not None


def _option_in_text(said: str, options: list[str]) -> tuple[int | None, bool]:
    """(the option whose text the answer states, ambiguous): the longest option text found as whole words in the
    answer. Two different texts of that length, or a shorter option found outside it, are ambiguous."""
    found = []
    for i, option in enumerate(options):
        o = normalize_text(option)
        if o and _states(said, o):
            found.append((len(o), i, o))
    if not found:
        return None, False
    longest = max(n for n, _, _ in found)
    best = [(i, o) for n, i, o in found if n == longest]
    if len({o for _, o in best}) > 1:
        return None, True
    rest = said.replace(best[0][1], " ")  # "6" inside "6 cm" is part of it; a "6" elsewhere is not
    others = [o for n, i, o in found if n < longest and _states(rest, o)]
    return (None, True) if others else (best[0][0], False)


def choice_reading(response: str, options: list[str]) -> tuple[str | None, bool]:
    """(the option letter an answer gives, ambiguous). Tried in order: the answer equal to an option's text;
    "A: <an option's text>" (A: read as "Answer:"); `\\boxed{B}`; "the answer is B" / "option: (B)"; Chinese forms
    (答案是C, 选C); a bare letter; a last line that starts with one - letters up to the number of options (A-E
    without options); then the longest option text stated in a sentence; then an option equal in value ("8:5" =
    "$8: 5$", "\\frac{1}{3}" = "1:3")."""
    letters = LETTERS[:max(len(options), 5)]
    answer = final_text(response)
    said = normalize_text(answer)
    plain = answer.replace("*", "").replace("$", "")
    for i, option in enumerate(options):
        if said and said == normalize_text(option):
            return LETTERS[i], False
    lead = _LEAD_LETTER.match(plain)
    if lead and options:
        rest = normalize_text(lead.group(2))
        equal = [i for i, o in enumerate(options) if rest == normalize_text(o)]
        if equal:
            return LETTERS[equal[0]], False
    boxed = last_boxed(answer)
    m = re.fullmatch(r"\s*(?:\\text\{)?\(?([A-J])\)?\}?\s*", boxed) if boxed is not None else None
    letter = m.group(1) if m else None
    for pattern in (_PHRASE_J, _ZH_ANSWER):
        letter = letter or last_match(pattern, plain)
    if letter is None and said:
        bare = re.fullmatch(r"\s*\(?([A-J])\)?[.):]?\s*", said.upper())
        letter = bare.group(1) if bare else None
    lines = [ln for ln in plain.splitlines() if ln.strip()]
    if letter is None and lines:
        m = re.match(r"\s*\(?([A-J])(?:\s*[.):]|\s*\Z)", lines[-1])
        letter = m.group(1) if m else None
    if letter is None:
        letter = last_match(_PAREN_J, plain)
    if letter is not None and letter in letters:
        return letter, False
    if not options or not said:
        return None, False
    stated, ambiguous = _option_in_text(said, options)
    if stated is not None or ambiguous:
        return (LETTERS[stated] if stated is not None else None), ambiguous
    value = _value(answer)
    equal = [i for i, o in enumerate(options) if value is not None and _value(o) == value]
    return (LETTERS[equal[0]], False) if len(equal) == 1 else (None, len(equal) > 1)
