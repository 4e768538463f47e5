"""Normalisation: the bytes fast path gives exactly the words of the plain definition."""

from __future__ import annotations

import random
import re

from decon.detect.normalize import WHITESPACE_CHARS, normalize, normalized_words
from decon.detect.options import DEFAULT_PUNCTUATION_CHARS


def test_whitespace_chars_are_exactly_what_str_split_splits_on() -> None:
    assert "".join(c for c in map(chr, range(0x110000)) if c.isspace()) == WHITESPACE_CHARS


def test_fast_path_equals_the_definition_on_awkward_text() -> None:
    word = re.compile("[^\\s" + re.escape(DEFAULT_PUNCTUATION_CHARS) + "]+")
    alphabet = list("abcXYZ09 \t\n.,'\"-_") + [
        "\u201c", "\u201d", "\u2018", "\u2019", "\u2014", "\xa0", "\u2003", "\u3000", "\x1c",
        "É", "İ", "Σ", "ß", "ǅ", "\ud800", "\x00", "日本",
    ]  # fmt: skip
    rng = random.Random(1)
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        expected = word.findall(text.lower())
        assert normalized_words(text) == expected, text
        assert normalize(text) == " ".join(expected)
