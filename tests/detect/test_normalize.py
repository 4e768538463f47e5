"""Normalisation: the bytes fast path gives exactly the words of the plain definition."""

from __future__ import annotations

import random
import re

from decon.detect.normalize import (
    WHITESPACE_CHARS,
    normalize,
    normalized_buffer,
    normalized_words,
)
from decon.detect.options import DEFAULT_PUNCTUATION_CHARS


def test_whitespace_chars_are_exactly_what_str_split_splits_on() -> None:
    assert "".join(c for c in map(chr, range(0x110000)) if c.isspace()) == WHITESPACE_CHARS


ALPHABET = list("abcXYZ09 \t\n.,'\"-_") + [
        "\u201c", "\u201d", "\u2018", "\u2019", "\u2014", "\xa0", "\u2003", "\u3000", "\x1c",
        "É", "İ", "Σ", "ß", "ǅ", "\ud800", "\x00", "日本",
]  # fmt: skip


def awkward_text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 30)))


def test_fast_path_equals_the_definition_on_awkward_text() -> None:
    word = re.compile("[^\\s" + re.escape(DEFAULT_PUNCTUATION_CHARS) + "]+")
    rng = random.Random(1)
    for _ in range(5000):
        text = awkward_text(rng)
        expected = word.findall(text.lower())
        assert normalized_words(text) == expected, text
        assert normalize(text) == " ".join(expected)


def test_the_batch_form_holds_each_texts_normalised_words() -> None:
    rng = random.Random(3)
    texts = [awkward_text(rng) for _ in range(300)] + ["a\x00b", "ΑΣ. Σ", "plain ascii"]
    ascii_only = [t for t in texts if t.isascii() and "\x00" not in t]
    for chunk in (texts, texts[:1], ascii_only, [t for t in texts if "\x00" not in t]):
        buf, starts = normalized_buffer(chunk, DEFAULT_PUNCTUATION_CHARS)
        data = buf.tobytes()
        ends = [*starts[1:].tolist(), len(data)]
        for text, a, b in zip(chunk, starts.tolist(), ends, strict=True):
            got = data[a:b].decode("utf-8", "surrogatepass").split(" ")
            assert [w for w in got if w] == normalized_words(text)
