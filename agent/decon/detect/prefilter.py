"""Prefilter: word-level anchors a document must contain to be worth tokenizing (lossless).

Two forms share one contract (a rejected document contains no seed, so has no match):
- `Prefilter.may_match(words)`: one document's normalised words (Python sets and substrings).
- `Prefilter.select(texts, punctuation_chars)`: a whole chunk of raw texts at once with numpy
  (`ChunkFilter`), never splitting rejected documents into word objects: word fingerprints,
  hashes of runs of consecutive words, a table look-up per run, and a vectorised check of the
  partial words a BPE seed begins and ends with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from decon.detect.normalize import WHITESPACE_CHARS, ascii_table, lowered_utf8, non_ascii_utf8
from decon.detect.tokenize import BpeTokenizer, Tokenizer, WordTokenizer

NgramKey = tuple[int, ...]

Run = tuple[str, ...]


@dataclass(frozen=True)
class Prefilter:
    """Anchors: a document that contains none of them has no match (lossless).

    `runs` is, per run length k, a map from a run of k consecutive words to the texts of which
    the document (" " + its joined words) must then contain one (no texts: the run suffices);
    `fragments` are such texts for n-grams that lie inside at most two words.
    """

    runs: tuple[tuple[int, dict[Run, tuple[str, ...]]], ...]
    fragments: tuple[str, ...]
    key_sets: dict[int, frozenset[Run]]  # the runs of each table, for set intersection
    chunk: ChunkFilter = field(default=None, compare=False)  # type: ignore[assignment]

    def select(self, texts: list[str], punctuation_chars: str) -> list[bool]:
        """Per raw text: False only when no seed can occur in its normalised form."""
        return self.chunk.select(texts, punctuation_chars)

    def may_match(self, words: list[str]) -> bool:
        """False only when no indexed, non-hot question n-gram can occur in `words`."""
        joined = None
        for k, table in self.runs:
            keys = self.key_sets[k]
            # One C-level pass over the document's k-word runs.
            hits = keys.intersection(zip(*(words[i:] for i in range(k)), strict=False))
            for run in hits:
                texts = table[run]
                if not texts:
                    return True
                if joined is None:
                    joined = " " + " ".join(words)
                if any(t in joined for t in texts):
                    return True
        if not self.fragments:
            return False
        if joined is None:
            joined = " " + " ".join(words)
        return any(f in joined for f in self.fragments)

    @property
    def size(self) -> int:
        return sum(len(t) for _, t in self.runs) + len(self.fragments)


# Longest word run used as a BPE anchor; longer runs reject more but cost a bigger tuple.
MAX_BPE_ANCHOR_WORDS = 3


def build_prefilter(seeds: Iterable[NgramKey], tok: Tokenizer) -> Prefilter:
    """Anchors for the token sequences (`seeds`, any length >= 1) at which a scan can start.

    Why nothing is lost: a document is scanned as the tokens of its normalised words, and the
    caller passes every token sequence that can start a match (for simple mode: the non-hot
    question n-grams), so a document containing none of the seeds has no match.
    - word: a token is a word, so an n-gram occurs iff its n words occur consecutively; the
      anchor is the n-gram itself (exact: the scan runs iff a seed occurs).
    - BPE: the document's tokens concatenate to the UTF-8 bytes of " " + " ".join(words), whose
      words contain no whitespace and are separated by single spaces, and byte 0x20 is only
      ever U+0020. So if a token n-gram occurs, its byte string occurs, and every piece of it
      lying between two of its spaces is a whole document word, consecutive pieces being
      consecutive words. The anchor is a run of up to MAX_BPE_ANCHOR_WORDS such words, confirmed
      by the n-gram's text, which " " + the joined words must then contain (partial characters
      can only be at its ends and are dropped); with no whole word, the text alone.
      An n-gram whose inner piece is empty or not UTF-8 can never occur and needs no anchor.
    """
    runs: dict[int, dict[Run, set[str]]] = {}
    fragments: set[str] = set()
    seed_bytes: list[bytes] = []
    if isinstance(tok, WordTokenizer):
        vocab = tok.words
        for key in seeds:
            words = tuple(vocab[t] for t in key)
            runs.setdefault(len(key), {})[words] = set()
            seed_bytes.append((" " + " ".join(words) + " ").encode("utf-8", "surrogatepass"))
    else:
        assert isinstance(tok, BpeTokenizer)
        for key in seeds:
            raw = b"".join(tok.decode_token(t) for t in key)
            seed_bytes.append(raw)
            # Partial characters can only sit at the ends of a substring of valid UTF-8.
            text = raw.decode("utf-8", errors="ignore")
            pieces = raw.split(b" ")
            inner = pieces[1:-1]
            try:
                whole = [p.decode("utf-8") for p in inner]
            except UnicodeDecodeError:
                continue
            if any(not w for w in whole):
                continue
            if not whole:
                fragments.add(text)  # "" (nothing to anchor on) passes every document
                continue
            k = min(len(whole), MAX_BPE_ANCHOR_WORDS)
            run = max(
                (tuple(whole[i : i + k]) for i in range(len(whole) - k + 1)),
                key=lambda r: (sum(map(len, r)), r),
            )
            runs.setdefault(k, {}).setdefault(run, set()).add(text)
    return Prefilter(
        runs=tuple(
            (k, {r: tuple(sorted(t)) for r, t in sorted(table.items())})
            for k, table in sorted(runs.items())
        ),
        key_sets={k: frozenset(table) for k, table in runs.items()},
        fragments=tuple(sorted(fragments, key=lambda f: (-len(f), f))),
        chunk=ChunkFilter.build(seed_bytes),
    )


# -- chunk form (numpy) ------------------------------------------------------------------------

# Longest run of whole words hashed per anchor; a longer run is cut to its longest window.
MAX_RUN_WORDS = 5
_PAD = 8  # spaces around a chunk's buffer, so 8-byte reads at any word never leave it
_U = np.uint64
_K1, _K2, _K3 = _U(0x9E3779B97F4A7C15), _U(0xC2B2AE3D27D4EB4F), _U(0x165667B19E3779F9)
_RUN = _U(0x100000001B3)
_BITMAP_SHIFT = _U(44)  # a 2**20-entry table of which hashed keys exist
_MASKS = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_PREFIX, _SUFFIX = -1, -2  # variants keyed on a word's first / last bytes instead of a run


def _mix(x: np.ndarray) -> np.ndarray:
    x = x * _K1
    x ^= x >> _U(29)
    x *= _K2
    x ^= x >> _U(32)
    return x


@dataclass
class _Words:
    """The words of a space-padded byte buffer: offsets, 8-byte views, fingerprints."""

    v8: np.ndarray  # the 8 bytes starting at every offset, as little-endian uint64
    starts: np.ndarray
    ends: np.ndarray
    fp: np.ndarray  # per-word fingerprint: equal words have equal fingerprints

    @classmethod
    def of(cls, buf: bytes) -> _Words:
        a = np.frombuffer(buf, dtype=np.uint8)
        is_word = a != 0x20
        edges = np.flatnonzero(is_word[1:] != is_word[:-1]) + 1
        starts, ends = edges[0::2], edges[1::2]
        v8 = np.ndarray(shape=(len(a) - 7,), dtype="<u8", buffer=buf, strides=(1,))
        lens = ends - starts
        short = np.minimum(lens, 8)
        first = v8[starts] & _MASKS[short]
        last = v8[ends - 8] >> ((8 - short) * 8).astype(np.uint64)
        fp = _mix(first) + _mix(last ^ _K3) + lens.astype(np.uint64) * _K3
        return cls(v8, starts, ends, _mix(fp))

    def keys(self, k: int) -> np.ndarray:
        """Key per start position: a hash of the run of `k` words starting there."""
        run = self.fp
        for j in range(1, k):
            run = run[:-1] * _RUN + self.fp[j:]
        return _mix(run)


def _edge_keys(words: _Words, side: int, nbytes: int) -> np.ndarray:
    if side == _PREFIX:
        raw = words.v8[words.starts] & _MASKS[nbytes]
    else:
        raw = words.v8[words.ends - 8] >> _U(8 * (8 - nbytes))
    return _mix(raw ^ _U(nbytes * 0x1000 + (-side)))


def _pack_prefix(b: bytes) -> int:
    return int.from_bytes(b[:8], "little")


def _pack_suffix(b: bytes) -> int:
    return int.from_bytes(b[-8:], "little")


@dataclass
class _Table:
    """Anchors of one variant, sorted by key, with the partial words they must be next to."""

    keys: np.ndarray
    bitmap: np.ndarray
    left_val: np.ndarray  # last bytes of the word before the run (0 bytes: no condition)
    left_shift: np.ndarray
    left_on: np.ndarray
    right_val: np.ndarray  # first bytes of the word after the run
    right_mask: np.ndarray
    right_on: np.ndarray
    checks: bool  # any anchor with a left or right condition


@dataclass
class ChunkFilter:
    """Vectorised `Prefilter` over a chunk of documents (see `build_prefilter`)."""

    tables: dict[tuple[int, int], _Table]  # (kind, size): kind k >= 1 runs, or _PREFIX/_SUFFIX
    inside: tuple[bytes, ...]  # seeds within one word: found by substring search
    always: bool = False  # some seed has nothing to anchor on: every document passes

    @classmethod
    def build(cls, seeds: Iterable[bytes]) -> ChunkFilter:
        """Anchors for seeds given as the bytes their tokens decode to (see build_prefilter)."""
        rows: dict[tuple[int, int], list[tuple[bytes, bytes, bytes]]] = {}
        inside: set[bytes] = set()
        always = False
        for raw in seeds:
            pieces = raw.split(b" ")
            if len(pieces) == 1:
                if raw:
                    inside.add(raw)
                else:
                    always = True
                continue
            left, inner, right = pieces[0], pieces[1:-1], pieces[-1]
            if any(not w for w in inner):
                continue  # two spaces in a row never occur in normalised text
            try:
                for w in inner:
                    w.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                continue  # a token sequence that no text encodes to
            if inner:
                k = min(len(inner), MAX_RUN_WORDS)
                at = max(
                    range(len(inner) - k + 1), key=lambda i: (sum(map(len, inner[i : i + k])), -i)
                )
                run = b" ".join(inner[at : at + k])
                left = left if at == 0 else b""
                right = right if at + k == len(inner) else b""
                rows.setdefault((k, 0), []).append((run, left, right))
            elif right:
                rows.setdefault((_PREFIX, min(len(right), 8)), []).append((right, left, b""))
            elif left:
                rows.setdefault((_SUFFIX, min(len(left), 8)), []).append((left, b"", b""))
            else:
                always = True
        tables = {v: _make_table(v, r) for v, r in sorted(rows.items())}
        return cls(tables, tuple(sorted(inside)), always)

    def select(self, texts: list[str], punctuation_chars: str) -> list[bool]:
        """Per raw text: False only when no seed can occur in its normalised tokens."""
        if self.always or not texts:
            return [True] * len(texts)
        parts = [lowered_utf8(t) for t in texts]
        offsets = np.zeros(len(parts), dtype=np.int64)
        np.cumsum([len(p) + 1 for p in parts[:-1]], out=offsets[1:])
        offsets += _PAD
        pad = b" " * _PAD
        buf = (pad + b" ".join(parts) + pad).translate(ascii_table(punctuation_chars, True))
        if not buf.isascii():
            for seq in non_ascii_utf8(punctuation_chars + WHITESPACE_CHARS):
                if seq in buf:
                    buf = buf.replace(seq, b" " * len(seq))
        words = _Words.of(buf)
        nwords = len(words.starts)
        hit_words: list[np.ndarray] = []
        hit_bytes: list[int] = []
        if nwords:
            for (kind, size), table in self.tables.items():
                if kind >= 1:
                    if nwords < kind:
                        continue
                    keys = words.keys(kind)
                else:
                    keys = _edge_keys(words, kind, size)
                pos = np.flatnonzero(table.bitmap[keys >> _BITMAP_SHIFT])
                if not len(pos):
                    continue
                pos = _confirm(table, words, pos, keys[pos], max(kind, 0))
                if len(pos):
                    hit_words.append(pos)
        for frag in self.inside:
            i = buf.find(frag)
            while i != -1:
                hit_bytes.append(i)
                doc = int(np.searchsorted(offsets, i, side="right"))
                if doc >= len(offsets):
                    break
                i = buf.find(frag, int(offsets[doc]))
        selected = np.zeros(len(texts), dtype=bool)
        if hit_words:
            first_word = np.searchsorted(words.starts, offsets)
            at = np.concatenate(hit_words)
            selected[np.searchsorted(first_word, at, side="right") - 1] = True
        if hit_bytes:
            selected[np.searchsorted(offsets, np.array(hit_bytes), side="right") - 1] = True
        return selected.tolist()


def _make_table(variant: tuple[int, int], rows: list[tuple[bytes, bytes, bytes]]) -> _Table:
    kind, size = variant
    pad = b" " * _PAD
    words = _Words.of(pad + b" ".join(r[0] for r in rows) + pad)
    if kind >= 1:
        # Each row's run is `kind` words; hash them exactly as a chunk's runs are hashed.
        run_keys = words.keys(kind)
        ends = np.cumsum([len(r[0].split(b" ")) for r in rows]) - kind
        keys = run_keys[ends]
    else:
        keys = _edge_keys(words, kind, size)
    lefts = [r[1][-8:] for r in rows]
    rights = [r[2][:8] for r in rows]
    left_on = np.array([len(b) > 0 for b in lefts])
    right_on = np.array([len(b) > 0 for b in rights])
    left_val = np.array([_pack_suffix(b) for b in lefts], dtype=np.uint64)
    left_shift = np.array([8 * (8 - len(b)) if b else 0 for b in lefts], dtype=np.uint64)
    right_val = np.array([_pack_prefix(b) for b in rights], dtype=np.uint64)
    right_mask = _MASKS[[len(b) for b in rights]]
    order = np.argsort(keys, kind="stable")
    bitmap = np.zeros(1 << 20, dtype=bool)
    bitmap[keys >> _BITMAP_SHIFT] = True
    return _Table(
        keys=keys[order],
        bitmap=bitmap,
        left_val=left_val[order],
        left_shift=left_shift[order],
        left_on=left_on[order],
        right_val=right_val[order],
        right_mask=right_mask[order],
        right_on=right_on[order],
        checks=bool(left_on.any() or right_on.any()),
    )


def _confirm(table: _Table, words: _Words, pos: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Start positions whose key is an anchor's and whose neighbouring words fit it."""
    lo = np.searchsorted(table.keys, keys, side="left")
    hi = np.searchsorted(table.keys, keys, side="right")
    found = hi > lo
    pos, lo, hi = pos[found], lo[found], hi[found]
    if not table.checks or not len(pos):
        return pos
    # One row per (position, anchor with that key).
    counts = hi - lo
    total = int(counts.sum())
    first = np.repeat(np.cumsum(counts) - counts, counts)
    anchor = np.arange(total) - first + np.repeat(lo, counts)
    at = np.repeat(pos, counts)
    last_word = len(words.starts) - 1
    before = np.clip(at - 1, 0, last_word)
    after = np.clip(at + k, 0, last_word)
    left_ok = ~table.left_on[anchor] | (
        (words.v8[words.ends[before] - 8] >> table.left_shift[anchor]) == table.left_val[anchor]
    )
    right_ok = ~table.right_on[anchor] | (
        (words.v8[words.starts[after]] & table.right_mask[anchor]) == table.right_val[anchor]
    )
    # Before the chunk's first word there is no word: a left condition cannot hold there.
    left_ok &= ~table.left_on[anchor] | (at > 0)
    return at[left_ok & right_ok]
