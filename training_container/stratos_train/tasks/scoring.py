"""Answer extraction and scoring rules shared by the tasks (pure functions, stdlib only).

The rules, in the order they are tried, are part of the README's "Tasks" section; change both together.

* **Final answer segment** (:func:`answer_segment`): the text after the last ``Answer:`` / ``answer is``
  marker on its line (markdown ``**`` and a trailing full stop tolerated); else the whole completion.
* **Numbers** (:func:`extract_number`): the text after the last ``####``; else the last ``\\boxed{...}``;
  else the last "answer" marker's line; in each, the first number. Failing all three, the last number in
  the completion. Thousands commas, currency symbols, percent signs and units around the number are ignored
  (``"The answer is 1,234."`` -> 1234, ``"$18.00"`` -> 18, ``"18 eggs"`` -> 18); a leading minus counts only
  when it is not a hyphen between two numbers (``"10-15"`` is 10 and 15). Numbers compare exactly as
  fractions, so ``18.00 == 18`` and ``0.5 == 1/2``.
* **Exact match** (:func:`normalise_text`): Unicode NFKC, case-folded, whitespace collapsed, surrounding
  quotes, markdown emphasis and trailing ``.``/``!``/``?`` stripped.
* **Sets** (:func:`set_f1`): precision/recall/F1 over distinct items; two empty sets score 1.
* **End of a response** (:func:`answer_line_done`): the response format ends with one ``Answer: ...`` line,
  so evaluation stops a generation once such a line (at the start of a line, non-empty) has been finished by
  a newline; what a model would write after it is never scored.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from fractions import Fraction

# A number: optional minus (not a hyphen after a word/digit), digits with thousands commas or plain digits,
# optional decimals. "1,23" is not a thousands-grouped number: it reads as 1 and 23; "3,4,5" as 3, 4, 5.
_NUMBER = r"(?<![\w.])(?P<sign>[-−–])?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?(?![\d])"
_NUMBER_RE = re.compile(_NUMBER)
_FRACTION_RE = re.compile(_NUMBER + r"\s*/\s*(?P<den>\d+)(?![\d.])")
_HASHES_RE = re.compile(r"####")
_BOXED_RE = re.compile(r"\\boxed\s*\{([^{}]*)\}")
# "Answer:", "answer is", "final answer =", with optional markdown emphasis around the marker.
_ANSWER_MARK_RE = re.compile(r"\banswer\b\**\s*(?:is\b|:|=)?\**\s*:?", re.IGNORECASE)
_EMPHASIS = "*_`\"'“”‘’"
# A finished final-answer line: "Answer: <something>" at the start of a line, followed by a newline.
_ANSWER_LINE_DONE_RE = re.compile(r"^[ \t]*\**answer\**[ \t]*:\**[ \t]*\S[^\n]*\n", re.IGNORECASE | re.MULTILINE)


def answer_line_done(text: str) -> bool:
    """True when ``text`` holds a final answer line that a newline has closed (``"...\\nAnswer: 3m 6m\\n"``).

    ``"Answer:"`` alone, an answer line still being written, and "the answer is 4" inside a sentence do not
    count."""
    return _ANSWER_LINE_DONE_RE.search(text) is not None


def answer_segment(text: str) -> str | None:
    """The text after the last answer marker (``Answer:``, ``answer is``...) up to the end of its line.

    Returns None when the text has no marker. The segment is stripped of markdown emphasis and whitespace.
    """
    last = None
    for match in _ANSWER_MARK_RE.finditer(text):
        last = match
    if last is None:
        return None
    rest = text[last.end() :]
    line = rest.split("\n", 1)[0]
    return line.strip().strip(_EMPHASIS).strip()


def parse_number(text: str) -> Fraction | None:
    """The first number in ``text`` (a ``a/b`` fraction counts as one number), or None.

    ``"$1,234.50 total"`` -> 2469/2; ``"3/4 cup"`` -> 3/4; ``"-7 degrees"`` -> -7.
    """
    frac = _FRACTION_RE.search(text)
    plain = _NUMBER_RE.search(text)
    if plain is None:
        return None
    if frac is not None and frac.start() == plain.start() and int(frac.group("den")) != 0:
        return _to_fraction(frac) / int(frac.group("den"))
    return _to_fraction(plain)


def last_number(text: str) -> Fraction | None:
    """The last number in ``text``, or None; a trailing ``a/b`` reads as the fraction (``"so 3/4"`` -> 3/4)."""
    last = None
    for match in _NUMBER_RE.finditer(text):
        last = match
    if last is None:
        return None
    for frac in _FRACTION_RE.finditer(text):
        if frac.end() == last.end() and int(frac.group("den")) != 0:
            return _to_fraction(frac) / int(frac.group("den"))
    return _to_fraction(last)


def extract_number(text: str) -> Fraction | None:
    """The final numeric answer of a completion, by the rules in the module docstring; None if none."""
    hashes = list(_HASHES_RE.finditer(text))
    if hashes:
        value = parse_number(text[hashes[-1].end() :].split("\n", 1)[0])
        if value is not None:
            return value
    boxed = _BOXED_RE.findall(text)
    if boxed:
        value = parse_number(boxed[-1])
        if value is not None:
            return value
    segment = answer_segment(text)
    if segment:
        value = parse_number(segment)
        if value is not None:
            return value
    return last_number(text)


def format_number(value: Fraction) -> str:
    """Canonical text of a number: ``18``, ``-3``, ``2.5``; a non-terminating fraction as ``1/3``."""
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    sign = "-" if value < 0 else ""
    value = abs(value)
    whole, rest = divmod(value.numerator, value.denominator)
    digits = ""
    while rest:
        rest *= 10
        digit, rest = divmod(rest, value.denominator)
        digits += str(digit)
    return f"{sign}{whole}.{digits}"


def _to_fraction(match: re.Match[str]) -> Fraction:
    value = Fraction(match.group("int").replace(",", "") + (match.group("frac") or ""))
    return -value if match.group("sign") else value


def normalise_text(text: str) -> str:
    """Text for exact-match comparison: NFKC, case-folded, whitespace collapsed, quotes/emphasis and a
    trailing ``.``, ``!`` or ``?`` stripped."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = " ".join(text.split())
    previous = None
    while previous != text:
        previous = text
        text = text.strip(_EMPHASIS + " ").rstrip(".!?").strip()
    return text


def set_f1(predicted: Iterable[str], reference: Iterable[str]) -> float:
    """F1 of two sets of items (duplicates ignored). 1.0 when both are empty; 0.0 when exactly one is."""
    pred, ref = set(predicted), set(reference)
    if not pred and not ref:
        return 1.0
    hits = len(pred & ref)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(pred), hits / len(ref)
    return 2 * precision * recall / (precision + recall)


def split_items(text: str) -> tuple[str, ...]:
    """A free-text list as distinct normalised items, in first-seen order: split on commas, semicolons,
    newlines and the word "and" (``"red, Blue and green."`` -> ``("red", "blue", "green")``)."""
    parts = re.split(r",|;|\n|\band\b", text)
    seen: dict[str, None] = {}
    for part in parts:
        item = normalise_text(part)
        if item:
            seen.setdefault(item, None)
    return tuple(seen)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion: ``(low, high)``, both in 0..1.

    Unlike the normal approximation it stays inside 0..1 and is informative at 0 or ``n`` successes: 0 of
    200 gives (0, 0.0188), so a model that scores nothing is bounded above rather than floored.
    ``z`` = 1.959964 is the two-sided 95 % normal quantile. Source: E. B. Wilson, "Probable inference, the
    law of succession, and statistical inference", JASA 22 (1927), eq. for the score interval.

    Raises:
        ValueError: ``n`` < 1 or ``successes`` outside 0..n.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * ((p * (1 - p) / n + z2 / (4 * n * n)) ** 0.5)
    return max(0.0, centre - half), min(1.0, centre + half)
