"""Text normalisation shared by eval records and training text (Decon's `clean_text`), one
text at a time (`normalize`, `normalized_words`) or a chunk of texts as one byte buffer
(`normalized_buffer`, which the chunk prefilter reads).

Lowercase, each punctuation character becomes a space, collapse whitespace, trim. The fast
path works on UTF-8 bytes: ASCII bytes never occur inside a multi-byte sequence, so a flat
256-byte `bytes.translate` maps ASCII punctuation, and `bytes.replace` maps the few non-ASCII
punctuation characters; `str.split()` then splits on exactly the whitespace it always did.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

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


BUFFER_PAD = 8  # spaces around a chunk's buffer, so 8-byte reads at any word never leave it
_SEPARATOR = "\x00"


_SEQ_MASKS = np.array(
    [0] * 0xC0 + [0xFFFF] * 0x20 + [0xFFFFFF] * 0x10 + [0xFFFFFFFF] * 0x10, dtype=np.uint32
)


def _cased_non_ascii(buf: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """Offsets of the non-ASCII characters of the UTF-8 `buf` that str.lower() changes."""
    if not len(lead):
        return lead
    v4 = np.ndarray(shape=(len(buf) - 3,), dtype="<u4", buffer=buf, strides=(1,))
    codes = v4[lead] & _SEQ_MASKS[buf[lead]]
    cased = []
    for code in np.unique(codes).tolist():
        ch = int(code).to_bytes(4, "little").rstrip(b"\x00").decode("utf-8", "surrogatepass")
        if ch.lower() != ch:
            cased.append(code)
    return lead[np.isin(codes, cased)] if cased else lead[:0]


def normalized_buffer(texts: list[str], punctuation_chars: str) -> tuple[np.ndarray, np.ndarray]:
    """The texts lowercased, UTF-8, punctuation and whitespace as spaces, joined by a space.

    Returns the bytes (with BUFFER_PAD spaces around) and each text's start offset. Its words, the
    runs of non-space bytes, are the UTF-8 of each text's `normalized_words`: a text whose
    non-ASCII characters all lack a lowercase form is lowered by bytes.lower() (ASCII letters),
    any other by str.lower(); every later mapping keeps byte lengths.
    """
    pad = " " * BUFFER_PAD
    joined = _SEPARATOR.join([pad, *texts, pad])
    data = joined.encode("utf-8", "surrogatepass")
    if data.count(b"\x00") != len(texts) + 1:  # some text holds a NUL itself
        return _joined_buffer([lowered_utf8(t) for t in texts], punctuation_chars)
    seps = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0)
    lead = None
    if joined.isascii():
        data = data.lower()
    else:
        # bytes.lower() lowers ASCII letters only: enough when no other character has a
        # lowercase form (typical: curly quotes, dashes, accented lowercase letters).
        buf = np.frombuffer(data, dtype=np.uint8)
        lead = np.flatnonzero(buf >= 0xC2)  # first bytes of multi-byte characters
        cased = _cased_non_ascii(buf, lead)
        if len(cased):
            # Only the texts holding such a character need str.lower() (slower).
            slow = set((np.searchsorted(seps, cased, side="right") - 1).tolist())
            return _joined_buffer(
                [
                    lowered_utf8(t) if i in slow else t.encode("utf-8", "surrogatepass").lower()
                    for i, t in enumerate(texts)
                ],
                punctuation_chars,
            )
        data = data.lower()
    starts = seps[:-1] + 1
    table = ascii_table(punctuation_chars + _SEPARATOR, True)
    return _mapped(data.translate(table), starts, punctuation_chars, lead)


def _joined_buffer(parts: list[bytes], punctuation_chars: str) -> tuple[np.ndarray, np.ndarray]:
    """`normalized_buffer` from each text lowered and encoded, joined by a space."""
    starts = np.cumsum([BUFFER_PAD + 1] + [len(p) + 1 for p in parts[:-1]])
    data = b" " * (BUFFER_PAD + 1) + b" ".join(parts) + b" " * (BUFFER_PAD + 1)
    table = ascii_table(punctuation_chars, True)
    return _mapped(data.translate(table), starts, punctuation_chars, None)


def _mapped(
    data: bytes, starts: np.ndarray, punctuation_chars: str, lead: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Non-ASCII punctuation and whitespace to spaces (ASCII is mapped already)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if not data.isascii():
        buf = buf.copy()
        if lead is None:
            lead = np.flatnonzero(buf >= 0xC2)
        for seq in non_ascii_utf8(punctuation_chars + WHITESPACE_CHARS):
            at = lead[buf[lead] == seq[0]]
            for j in range(1, len(seq)):
                at = at[buf[at + j] == seq[j]]
            for j in range(len(seq)):
                buf[at + j] = 0x20
    return buf, np.asarray(starts, dtype=np.int64)
