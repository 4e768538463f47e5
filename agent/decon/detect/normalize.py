"""Text normalisation shared by eval records and training text (Decon's `clean_text`)."""

from __future__ import annotations

from functools import lru_cache

from decon.detect.options import DEFAULT_PUNCTUATION_CHARS


@lru_cache(maxsize=8)
def _table(punctuation_chars: str) -> dict[int, int]:
    return {ord(c): 0x20 for c in punctuation_chars}


def normalize(text: str, punctuation_chars: str = DEFAULT_PUNCTUATION_CHARS) -> str:
    """Lowercase, turn each punctuation character into a space, collapse whitespace, trim."""
    return " ".join(text.lower().translate(_table(punctuation_chars)).split())


def normalized_words(text: str, punctuation_chars: str = DEFAULT_PUNCTUATION_CHARS) -> list[str]:
    """The whitespace words of `normalize(text)` (same result, without the join)."""
    return text.lower().translate(_table(punctuation_chars)).split()
