"""Text normalisation shared by eval records and training text (Decon's `clean_text`)."""

from __future__ import annotations

import re
from functools import lru_cache

from decon.detect.options import DEFAULT_PUNCTUATION_CHARS


@lru_cache(maxsize=8)
def _table(punctuation_chars: str) -> dict[int, int]:
    return {ord(c): 0x20 for c in punctuation_chars}


@lru_cache(maxsize=8)
def _ascii_table(punctuation_chars: str) -> bytes:
    # bytes.translate is a flat 256-byte lookup; str.translate with a dict is several times slower.
    table = bytearray(range(256))
    for c in punctuation_chars:
        if ord(c) < 128:
            table[ord(c)] = 0x20
    return bytes(table)


@lru_cache(maxsize=8)
def _word_pattern(punctuation_chars: str) -> re.Pattern[str]:
    # re's \s is str.isspace(), the same whitespace str.split() splits on.
    return re.compile("[^\\s" + re.escape(punctuation_chars) + "]+")


def _lowered_spaced(text: str, punctuation_chars: str) -> str:
    if text.isascii():
        data = text.encode("ascii").lower().translate(_ascii_table(punctuation_chars))
        return data.decode("ascii")
    return text.lower().translate(_table(punctuation_chars))


def normalize(text: str, punctuation_chars: str = DEFAULT_PUNCTUATION_CHARS) -> str:
    """Lowercase, turn each punctuation character into a space, collapse whitespace, trim."""
    return " ".join(normalized_words(text, punctuation_chars))


def normalized_words(text: str, punctuation_chars: str = DEFAULT_PUNCTUATION_CHARS) -> list[str]:
    """The whitespace words of `normalize(text)` (same result, without the join)."""
    if text.isascii():
        return _lowered_spaced(text, punctuation_chars).split()
    return _word_pattern(punctuation_chars).findall(text.lower())
