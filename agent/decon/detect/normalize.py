"""Text normalisation shared by eval records and training text (Decon's `clean_text`).

Lowercase, each punctuation character becomes a space, collapse whitespace, trim. The fast
path works on UTF-8 bytes: ASCII bytes never occur inside a multi-byte sequence, so a flat
256-byte `bytes.translate` maps ASCII punctuation, and `bytes.replace` maps the few non-ASCII
punctuation characters; `str.split()` then splits on exactly the whitespace it always did.
"""

from __future__ import annotations

from functools import lru_cache

from decon.detect.options import DEFAULT_PUNCTUATION_CHARS

# Every character str.split() treats as whitespace (str.isspace()); checked by a test.
WHITESPACE_CHARS = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


@lru_cache(maxsize=8)
def ascii_table(punctuation_chars: str, spaces_too: bool = False) -> bytes:
    """A 256-byte table mapping ASCII punctuation (and ASCII whitespace if asked) to b" "."""
    table = bytearray(range(256))
    for c in punctuation_chars + (WHITESPACE_CHARS if spaces_too else ""):
        if ord(c) < 128:
            table[ord(c)] = 0x20
    return bytes(table)


@lru_cache(maxsize=8)
def non_ascii_utf8(chars: str) -> tuple[bytes, ...]:
    """UTF-8 encodings of the non-ASCII characters of `chars`."""
    return tuple(sorted({c.encode() for c in chars if ord(c) >= 128}))


def lowered_utf8(text: str) -> bytes:
    """`text.lower()` as UTF-8 (lone surrogates, which JSON can carry, pass through)."""
    return text.lower().encode("utf-8", "surrogatepass")


def normalize(text: str, punctuation_chars: str = DEFAULT_PUNCTUATION_CHARS) -> str:
    """Lowercase, turn each punctuation character into a space, collapse whitespace, trim."""
    return " ".join(normalized_words(text, punctuation_chars))


def normalized_words(text: str, punctuation_chars: str = DEFAULT_PUNCTUATION_CHARS) -> list[str]:
    """The whitespace words of `normalize(text)` (same result, without the join)."""
    data = lowered_utf8(text).translate(ascii_table(punctuation_chars))
    if not data.isascii():
        for seq in non_ascii_utf8(punctuation_chars):
            if seq in data:
                data = data.replace(seq, b" ")
    return data.decode("utf-8", "surrogatepass").split()
