"""The chunk filter: the prefilter's numpy form over a whole chunk of raw texts at once.

It never splits rejected documents into word objects: word fingerprints, hashes of runs of
consecutive words, a table look-up per run, and a vectorised check of the partial words a BPE
seed begins and ends with. It knows which seeds each text can hold, so it can also bound a
score over them (`SeedBound`: simple mode's question IDF per item). Seeds come as the bytes
their tokens decode to (`SeedBytes`); `decon.detect.prefilter` plans them.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from decon.detect.ngramtable import sorted_unique
from decon.detect.normalize import BUFFER_PAD, normalized_buffer


@dataclass(frozen=True, eq=False)
class SeedBytes:
    """Byte strings in one buffer (uint8): string i is data[offsets[i]:offsets[i + 1]]."""

    data: np.ndarray
    offsets: np.ndarray

    @classmethod
    def of(cls, strings: list[bytes]) -> SeedBytes:
        offsets = np.zeros(len(strings) + 1, dtype=np.int64)
        np.cumsum([len(x) for x in strings], out=offsets[1:])
        return cls(np.frombuffer(b"".join(strings), dtype=np.uint8), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __iter__(self) -> Iterator[bytes]:
        data, bounds = self.data.tobytes(), self.offsets.tolist()
        return (data[a:b] for a, b in itertools.pairwise(bounds))


# Longest run of whole words hashed per anchor; a longer run is cut to its longest window.
MAX_RUN_WORDS = 5
_PAD = BUFFER_PAD
_U = np.uint64
_K1, _K2, _K3 = _U(0x9E3779B97F4A7C15), _U(0xC2B2AE3D27D4EB4F), _U(0x165667B19E3779F9)
_RUN = _U(0x100000001B3)
_MASKS = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_PREFIX, _SUFFIX = -1, -2  # variants keyed on a word's first / last bytes instead of a run
# Partial words are compared on 1, 2, 4 or 8 bytes (a longer piece is cut): at most 5 x 5
# (left, right) size groups per table, which fit the uint32 group bit masks.
_EDGE_BYTES = (0, 1, 2, 2, 4, 4, 4, 4, 8)


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
    head8: np.ndarray  # the 8 bytes from each word's start (the word and what follows)
    tail8: np.ndarray  # the 8 bytes up to each word's end (what precedes and the word)
    fp: np.ndarray  # per-word fingerprint: equal words have equal fingerprints

    @classmethod
    def of(cls, buf: np.ndarray) -> _Words:
        """`buf`: uint8, normalised bytes (words separated by spaces) with _PAD spaces around."""
        is_word = buf != 0x20
        edges = np.flatnonzero(is_word[1:] != is_word[:-1]) + 1
        starts, ends = edges[0::2], edges[1::2]
        v8 = np.ndarray(shape=(len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
        lens = ends - starts
        head8, tail8 = v8[starts], v8[ends - 8]
        first = head8 & _MASKS[np.minimum(lens, 8)]
        # The last 8 bytes only say more than the first 8 for longer words.
        last = np.where(lens > 8, tail8, _U(0))
        fp = _mix(first + last * _K2 + lens.astype(np.uint64) * _K3)
        return cls(v8, starts, ends, head8, tail8, fp)

    def runs(self, ks: Iterable[int]) -> dict[int, np.ndarray]:
        """Per k: a key per start position, hashing the run of k words starting there."""
        wanted = set(ks)
        out: dict[int, np.ndarray] = {}
        run = self.fp
        for k in range(1, max(wanted, default=0) + 1):
            if k > 1:
                run = run[:-1] * _RUN + self.fp[k - 1 :]
            if k in wanted:
                out[k] = run
        return out


def _edge_keys(words: _Words, side: int, nbytes: int) -> np.ndarray:
    if side == _PREFIX:
        return words.head8 & _MASKS[nbytes]
    return words.tail8 >> _U(8 * (8 - nbytes))


def _tail(piece: bytes) -> bytes:
    return piece[len(piece) - _EDGE_BYTES[min(len(piece), 8)] :]


def _head(piece: bytes) -> bytes:
    return piece[: _EDGE_BYTES[min(len(piece), 8)]]


def _neighbours(words: _Words, pos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The tail8 of the word before and the head8 of the word after each run of k at `pos`."""
    after = np.minimum(pos + k, len(words.starts) - 1)
    return words.tail8[pos - 1], words.head8[after]


def _full_keys(
    keys: np.ndarray, tails: np.ndarray, heads: np.ndarray, left: int, right: int
) -> np.ndarray:
    """`keys` of runs extended by the last `left` bytes of the word before each run and the
    first `right` bytes of the word after it (0: not extended); see `_neighbours`."""
    out = keys
    if left:
        out = out ^ (((tails >> _U(8 * (8 - left))) + _U(left)) * _K2)
    if right:
        out = out ^ (((heads & _MASKS[right]) + _U(right << 8)) * _K3)
    return out


@dataclass
class _KeySet:
    """Sorted unique keys, and a bitmap of their hashes (packed, about 16 bits per key) for
    few false hits: a cheap first test before the binary search."""

    keys: np.ndarray
    bitmap: np.ndarray  # uint8, bit h % 8 of byte h // 8 for hash h
    shift: np.uint64

    @classmethod
    def of(cls, keys: np.ndarray) -> _KeySet:
        return cls.of_sorted(sorted_unique(keys))

    @classmethod
    def of_sorted(cls, unique: np.ndarray) -> _KeySet:
        """From keys already sorted and unique."""
        bits = min(32, max(10, (16 * len(unique)).bit_length()))
        shift = _U(64 - bits)
        hashes = (unique * _K1) >> shift
        bitmap = np.zeros(1 << (bits - 3), dtype=np.uint8)
        bit = np.left_shift(np.uint8(1), (hashes & _U(7)).astype(np.uint8))
        np.bitwise_or.at(bitmap, hashes >> _U(3), bit)
        return cls(unique, bitmap, shift)

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The positions in `keys` of the keys in the set, and their indices in `self.keys`."""
        hashes = (keys * _K1) >> self.shift
        pos = np.flatnonzero((self.bitmap[hashes >> _U(3)] >> (hashes & _U(7))) & 1)
        if not len(pos):
            return pos, pos
        sub = keys[pos]
        at = np.searchsorted(self.keys, sub)
        at[at == len(self.keys)] = 0
        found = self.keys[at] == sub
        return pos[found], at[found]


@dataclass
class _Extended:
    """The anchors of one (left, right) size group: their full keys (see `_full_keys`), and
    per key the seeds it stands for (CSR)."""

    left: int
    right: int
    keys: _KeySet
    offsets: np.ndarray  # seeds of keys.keys[i]: seeds[offsets[i] : offsets[i + 1]]
    seeds: np.ndarray


@dataclass
class _Table:
    """Anchors of one variant: their keys, and per (left, right) size the keys extended by
    the partial words next to the run (see `_full_keys`)."""

    keys: _KeySet
    groups: np.ndarray  # per key, bit g: an anchor with this key is in `extended[g]`
    extended: list[_Extended]


@dataclass(frozen=True)
class SeedBound:
    """A score bound over seeds (lossless when each seed's weight bounds what it adds).

    A document can score for a group only if one of the group's seeds occurs in it, and the
    weights of the distinct seeds of the group that can occur, plus the group's slack (the
    most that anything else can add), reach the group's need (a need <= 0 never is). For
    simple mode: seeds are the n-grams that can start a cluster, groups eval items, weights
    IDF, and the slack is the IDF of an item's hot n-grams (counted, but never a start).
    """

    # Seed s is row rows[s] (row s without `rows`): the groups of row r are
    # groups[offsets[r] : offsets[r + 1]], its weight weights[r]. Rows can be those of a larger
    # table (simple mode: its n-gram table and IDF, shared rather than copied).
    offsets: np.ndarray
    groups: np.ndarray
    weights: np.ndarray
    needs: np.ndarray  # per group
    slack: np.ndarray  # per group
    rows: np.ndarray | None = None

    @property
    def count(self) -> int:
        """The number of seeds."""
        return len(self.offsets) - 1 if self.rows is None else len(self.rows)

    @classmethod
    def build(
        cls,
        seed_groups: list[frozenset[int]],
        weights: list[float],
        needs: list[float],
        slack: list[float],
    ) -> SeedBound:
        groups = [np.asarray(sorted(g), dtype=np.int64) for g in seed_groups]
        offsets = np.zeros(len(groups) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(g) for g in groups])
        flat = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
        return cls(
            offsets,
            flat,
            np.asarray(weights, dtype=np.float64),
            np.asarray(needs, dtype=np.float64),
            np.asarray(slack, dtype=np.float64),
        )

    def reached(self, texts: np.ndarray, seeds: np.ndarray, n_texts: int) -> np.ndarray:
        """Per text: whether the seeds found in it (pairs `texts[i]`, `seeds[i]`, repeats
        allowed) can reach some group's need."""
        out = np.zeros(n_texts, dtype=bool)
        n_seeds = self.count
        pairs = sorted_unique(texts.astype(np.int64) * n_seeds + seeds)
        texts, seeds = pairs // n_seeds, pairs % n_seeds
        rows = seeds if self.rows is None else self.rows[seeds]
        first, counts = self.offsets[rows], self.offsets[rows + 1] - self.offsets[rows]
        groups = self.groups[flat_ranges(first, counts)]
        n_groups = len(self.needs)
        key = np.repeat(texts, counts) * n_groups + groups
        unique, inverse = np.unique(key, return_inverse=True)
        group = unique % n_groups
        sums = np.bincount(inverse, weights=np.repeat(self.weights[rows], counts))
        totals = sums + self.slack[group]
        needs = self.needs[group]
        # The margin makes the bound weaker than any summation order's rounding.
        ok = (needs > 0) & (totals >= needs * (1 - 1e-6))
        out[unique[ok] // n_groups] = True
        return out


def flat_ranges(first: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenated ranges first[i] .. first[i] + counts[i] - 1."""
    total = int(counts.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    return np.arange(total, dtype=np.int64) + np.repeat(first - (ends - counts), counts)


@dataclass(frozen=True)
class ChunkSelection:
    """What `ChunkFilter.select_marked` found in a chunk, per text."""

    words: list[list[str] | None]  # normalised words of the selected (or marked) texts
    selected: list[bool]  # a seed can occur (and, with a bound, the bound is reached)
    # With a marker: where its seeds can start, (word position, seed); None where none can.
    marks: list[list[tuple[int, int]] | None] | None = None

    @property
    def marked(self) -> list[bool]:
        """Per text: whether a seed of the marker can occur (all True without a marker)."""
        if self.marks is None:
            return [True] * len(self.selected)
        return [m is not None for m in self.marks]


@dataclass
class ChunkFilter:
    """Vectorised `Prefilter` over a chunk of documents (see `build_prefilter`)."""

    tables: dict[tuple[int, int], _Table]  # (kind, size): kind k >= 1 runs, or _PREFIX/_SUFFIX
    inside: dict[bytes, tuple[int, ...]]  # seeds within one word: found by substring search
    always: tuple[int, ...] = ()  # seeds with nothing to anchor on: in every document
    # tiktoken encodes a lone surrogate as U+FFFD: such documents are passed unexamined.
    surrogates_pass: bool = False

    @classmethod
    def build(
        cls, seeds: SeedBytes | Iterable[bytes], bpe: bool = False, count: int | None = None
    ) -> ChunkFilter:
        """Anchors for seeds given as the bytes their tokens decode to (see build_prefilter);
        with `count`, for the first `count` seeds only.

        `bpe`: the seeds are tiktoken's, which sees a lone surrogate as U+FFFD.
        """
        if not isinstance(seeds, SeedBytes):
            seeds = SeedBytes.of(list(seeds))
        n_seeds = len(seeds) if count is None else count
        # int32 columns while the seeds' bytes are addressable by them
        rows = _AnchorRows(dtype=np.int32 if len(seeds.data) < 1 << 31 else np.int64)
        for lo in range(0, n_seeds, _BUILD_BLOCK):
            rows.add(seeds, lo, min(n_seeds, lo + _BUILD_BLOCK))
        data = seeds.data
        tables = {
            (kind, size): _make_table(kind, size, data, *fields)
            for (kind, size), fields in rows.variants()
        }
        return cls(
            tables,
            {frag: tuple(ids) for frag, ids in sorted(rows.inside.items())},
            tuple(sorted(rows.always)),
            surrogates_pass=bpe,
        )

    def select(self, texts: list[str], punctuation_chars: str) -> list[list[str] | None]:
        """Per raw text: its `normalized_words`, or None when no seed can occur in them."""
        return self.select_marked(texts, punctuation_chars).words

    def select_marked(
        self,
        texts: list[str],
        punctuation_chars: str,
        marker: ChunkFilter | None = None,
        bound: SeedBound | None = None,
    ) -> ChunkSelection:
        """Per text: whether a seed can occur in it (and, given a `bound` over this filter's
        seeds, the bound is reached), where seeds of `marker` (another filter's, of whole
        words only) can occur, and the normalised words of the texts for which either holds."""
        if not texts:
            return ChunkSelection([], [], [])
        buf, starts = normalized_buffer(texts, punctuation_chars)
        words = _Words.of(buf)
        nwords = len(words.starts)
        tables = [*self.tables, *(marker.tables if marker is not None else ())]
        runs = words.runs(k for k, _ in tables if k >= 1 and k <= nwords)  # one pass for both
        selected = self._selected(buf, words, starts, runs, bound)
        if marker is None:
            return ChunkSelection(_words_of(buf, starts, selected), selected.tolist())
        marks = marker._word_hits(buf, words, starts, runs)
        marked = np.array([m is not None for m in marks], dtype=bool)
        return ChunkSelection(_words_of(buf, starts, selected | marked), selected.tolist(), marks)

    def _word_hits(
        self, buf: np.ndarray, words: _Words, starts: np.ndarray, runs: dict[int, np.ndarray]
    ) -> list[list[tuple[int, int]] | None]:
        """Per text of the buffer: (word position in the text, seed) of every place where a
        seed of this filter can start (a superset), or None where none can. Seeds must be
        whole words (no partial word at either end), so that each place is a word's start."""
        assert not (self.inside or self.always), "seeds of whole words only"
        at, seeds = self._hits(buf, words, starts, runs)
        texts = np.searchsorted(starts, at, side="right") - 1
        first_word = np.searchsorted(words.starts, starts)
        local = np.searchsorted(words.starts, at) - first_word[texts]
        order = np.lexsort((seeds, local, texts))
        places = list(zip(local[order].tolist(), seeds[order].tolist(), strict=True))
        texts = texts[order]
        bounds = np.searchsorted(texts, np.arange(len(starts) + 1)).tolist()
        return [places[a:b] or None for a, b in itertools.pairwise(bounds)]

    def _selected(
        self,
        buf: np.ndarray,
        words: _Words,
        starts: np.ndarray,
        runs: dict[int, np.ndarray],
        bound: SeedBound | None,
    ) -> np.ndarray:
        """Per text of the buffer: whether a seed of this filter can occur in it (and the
        `bound` is reached); `runs`: `words.runs` for at least this filter's run lengths."""
        n_texts = len(starts)
        at, seeds = self._hits(buf, words, starts, runs)
        texts = np.searchsorted(starts, at, side="right") - 1
        if self.always:
            always = np.asarray(self.always, dtype=np.int64)
            texts = np.concatenate([texts, np.repeat(np.arange(n_texts), len(always))])
            seeds = np.concatenate([seeds, np.tile(always, n_texts)])
        selected = np.zeros(n_texts, dtype=bool)
        selected[texts] = True
        if bound is not None:
            selected &= bound.reached(texts, seeds, n_texts)
        if self.surrogates_pass:
            lead = np.flatnonzero(buf == 0xED)  # UTF-8 of U+D800..U+DFFF: ED A0..BF xx
            surrogate = lead[buf[lead + 1] >= 0xA0]
            selected[np.searchsorted(starts, surrogate, side="right") - 1] = True
        return selected

    def _hits(
        self, buf: np.ndarray, words: _Words, starts: np.ndarray, runs: dict[int, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(byte offset, seed) of every place where a seed can occur (a superset)."""
        offsets: list[np.ndarray] = []
        seeds: list[np.ndarray] = []
        for (kind, size), table in self.tables.items():
            if kind >= 1:
                if kind not in runs:
                    continue
                keys = runs[kind]
            else:
                keys = _edge_keys(words, kind, size)
            pos, at = table.keys.find(keys)
            if not len(pos):
                continue
            keys, groups = keys[pos], table.groups[at]
            tails, heads = _neighbours(words, pos, max(kind, 0))
            for g, ext in enumerate(table.extended):
                sel = np.flatnonzero(groups & np.uint32(1 << g))
                if not len(sel):
                    continue
                full = _full_keys(keys[sel], tails[sel], heads[sel], ext.left, ext.right)
                hit, i = ext.keys.find(full)
                first = ext.offsets[i]
                counts = ext.offsets[i + 1] - first
                offsets.append(np.repeat(words.starts[pos[sel][hit]], counts))
                seeds.append(ext.seeds[flat_ranges(first, counts)])
        if self.inside:
            at, found = self._inside_hits(buf, words, starts)
            offsets.append(at)
            seeds.append(found)
        if not offsets:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(offsets), np.concatenate(seeds)

    def _inside_hits(
        self, buf: np.ndarray, words: _Words, starts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(byte offset, seed) of seeds that lie within one word, searched in the long words
        only (the first occurrence in each text)."""
        lens = words.ends - words.starts
        long = np.flatnonzero(lens >= min(map(len, self.inside)))
        if not len(long):
            return long, long
        # Each long enough word with the space before it, in one buffer; `at` maps back.
        sizes = lens[long] + 1
        at = flat_ranges(words.starts[long] - 1, sizes)
        data = buf[at].tobytes()
        text_starts = np.searchsorted(at, starts).tolist()
        found_at: list[int] = []
        found_seeds: list[int] = []
        for frag, ids in self.inside.items():
            i = data.find(frag)
            while i != -1:
                found_at += [i] * len(ids)
                found_seeds += ids
                nxt = bisect.bisect_right(text_starts, i)  # the next text
                if nxt >= len(text_starts):
                    break
                i = data.find(frag, text_starts[nxt])
        return at[np.array(found_at, dtype=np.int64)], np.array(found_seeds, dtype=np.int64)


def _words_of(buf: np.ndarray, starts: np.ndarray, selected: np.ndarray) -> list[list[str] | None]:
    """The words of each selected text in the buffer (None for the others)."""
    ends = [*starts[1:].tolist(), len(buf)]
    out: list[list[str] | None] = [None] * len(starts)
    for i in np.flatnonzero(selected).tolist():
        out[i] = buf[starts[i] : ends[i]].tobytes().decode("utf-8", "surrogatepass").split()
    return out


# Seeds classified, and anchor rows hashed, this many at a time (bounds the temporaries).
_BUILD_BLOCK = 1 << 18


@dataclass
class _AnchorRows:
    """The anchor rows of seeds (see `ChunkFilter.build`), as arrays kept per variant
    (kind, size): per row the bytes [start, end) of the seed that hold "left run right" (each
    piece a word, the partial ones cut to their compared bytes), its word count, the sizes of
    its partial words (left, right) and its seed. Seeds within one word are `inside`, seeds
    with nothing to anchor on `always`."""

    inside: dict[bytes, list[int]] = field(default_factory=dict)
    always: list[int] = field(default_factory=list)
    by_variant: dict[tuple[int, int], list[list[np.ndarray]]] = field(default_factory=dict)
    dtype: type = np.int64

    def add(self, seeds: SeedBytes, lo: int, hi: int) -> None:
        """The rows of seeds lo .. hi - 1."""
        raw, off = seeds.data, seeds.offsets[lo : hi + 1]
        starts, ends = off[:-1], off[1:]
        block = raw[int(off[0]) : int(off[-1])]
        spaces = np.flatnonzero(block == 0x20) + off[0]
        owner = np.searchsorted(off, spaces, side="right") - 1
        n_spaces = np.bincount(owner, minlength=hi - lo)
        first_at = np.searchsorted(owner, np.arange(hi - lo))
        first = spaces[np.minimum(first_at, max(len(spaces) - 1, 0))] if len(spaces) else starts
        last = spaces[np.maximum(first_at + n_spaces - 1, 0)] if len(spaces) else starts
        for s in np.flatnonzero(n_spaces == 0).tolist():
            a, b = int(starts[s]), int(ends[s])
            if a < b:
                self.inside.setdefault(raw[a:b].tobytes(), []).append(lo + s)
            else:
                self.always.append(lo + s)
        bad = np.zeros(hi - lo, dtype=bool)
        twice = np.flatnonzero((spaces[1:] == spaces[:-1] + 1) & (owner[1:] == owner[:-1]))
        bad[owner[twice]] = True  # two spaces in a row never occur in normalised text
        inner = n_spaces - 1
        # The inner words, space-separated, are valid UTF-8 iff each one is.
        high = np.zeros(len(block) + 1, dtype=np.int64)
        np.cumsum(block >= 0x80, out=high[1:])
        base = off[0]
        some = np.flatnonzero(~bad & (inner >= 1))
        non_ascii = some[high[last[some] - base] > high[first[some] + 1 - base]]
        for s in non_ascii.tolist():
            try:
                raw[int(first[s]) + 1 : int(last[s])].tobytes().decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                bad[s] = True  # a token sequence that no text encodes to
        # (Clipped: seeds without a space have no first or last space.)
        left_len, right_len = np.maximum(first - starts, 0), np.maximum(ends - last - 1, 0)
        tail = _EDGE_SIZES[np.minimum(left_len, 8)]
        head = _EDGE_SIZES[np.minimum(right_len, 8)]
        zero = np.zeros(hi - lo, dtype=np.int64)
        # Runs of 1 .. MAX_RUN_WORDS whole words, with both partial words.
        runs = np.flatnonzero(~bad & (inner >= 1) & (inner <= MAX_RUN_WORDS))
        self._put(
            lo + runs,
            inner[runs],
            zero[runs],
            np.where(tail[runs] > 0, first[runs] - tail[runs], first[runs] + 1),
            np.where(head[runs] > 0, last[runs] + 1 + head[runs], last[runs]),
            inner[runs] + (tail[runs] > 0) + (head[runs] > 0),
            tail[runs],
            head[runs],
        )
        # Longer runs: cut to their longest window (rare; the partial words only next to it).
        for s in np.flatnonzero(~bad & (inner > MAX_RUN_WORDS)).tolist():
            self._put_long(raw, int(starts[s]), int(ends[s]), lo + s)
        one = (n_spaces == 1) & ~bad
        # No whole word: the first bytes of the right word (with the left's last ones) ...
        pre = np.flatnonzero(one & (right_len > 0))
        size = _EDGE_SIZES[np.minimum(right_len[pre], 8)]
        self._put(
            lo + pre,
            np.full(len(pre), _PREFIX),
            size,
            np.where(tail[pre] > 0, first[pre] - tail[pre], first[pre] + 1),
            first[pre] + 1 + size,
            1 + (tail[pre] > 0),
            tail[pre],
            zero[pre],
        )
        # ... or the last bytes of the left word ...
        suf = np.flatnonzero(one & (right_len == 0) & (left_len > 0))
        size = _EDGE_SIZES[np.minimum(left_len[suf], 8)]
        self._put(
            lo + suf,
            np.full(len(suf), _SUFFIX),
            size,
            first[suf] - size,
            first[suf],
            np.ones(len(suf), dtype=np.int64),
            zero[suf],
            zero[suf],
        )
        # ... or nothing at all (a lone space).
        self.always += (lo + np.flatnonzero(one & (right_len == 0) & (left_len == 0))).tolist()

    def _put_long(self, raw: np.ndarray, start: int, end: int, seed: int) -> None:
        pieces = raw[start:end].tobytes().split(b" ")
        left, inner, right = pieces[0], pieces[1:-1], pieces[-1]
        k = MAX_RUN_WORDS
        at = max(range(len(inner) - k + 1), key=lambda i: (sum(map(len, inner[i : i + k])), -i))
        left = left if at == 0 else b""
        right = right if at + k == len(inner) else b""
        tail, head = _EDGE_BYTES[min(len(left), 8)], _EDGE_BYTES[min(len(right), 8)]
        run_start = start + len(pieces[0]) + 1 + sum(len(w) + 1 for w in inner[:at])
        run_end = run_start + len(b" ".join(inner[at : at + k]))
        one = np.ones(1, dtype=np.int64)
        self._put(
            one * seed,
            one * k,
            one * 0,
            one * (run_start - tail - 1 if tail else run_start),
            one * (run_end + 1 + head if head else run_end),
            one * (k + bool(tail) + bool(head)),
            one * tail,
            one * head,
        )

    def _put(
        self,
        seed: np.ndarray,
        kind: np.ndarray,
        size: np.ndarray,
        *columns: np.ndarray,
    ) -> None:
        """Rows given column by column: seed, kind, size, then the variant's columns (start,
        end, words, left size, right size)."""
        if not len(seed):
            return
        # Kinds are -2 .. MAX_RUN_WORDS, sizes at most 8 bytes.
        variant = (np.asarray(kind, dtype=np.int64) + 2) * 16 + size
        for code in sorted_unique(variant).tolist():
            at = np.flatnonzero(variant == code)
            kept = self.by_variant.setdefault((code // 16 - 2, code % 16), [[] for _ in range(6)])
            # start, end and seed as `dtype`; word counts and partial-word sizes fit a byte
            dtypes = (self.dtype, self.dtype, np.uint8, np.uint8, np.uint8, self.dtype)
            for into, values, dtype in zip(kept, (*columns, seed), dtypes, strict=True):
                into.append(np.asarray(values, dtype=dtype)[at])

    def variants(self) -> Iterator[tuple[tuple[int, int], list[np.ndarray]]]:
        """Per variant (kind, size), ascending: its rows' (start, end, words, left size,
        right size, seed), in seed order (each variant's rows freed once handed over)."""
        for key in sorted(self.by_variant):
            columns = [np.concatenate(c) for c in self.by_variant.pop(key)]
            seed = columns[-1]
            if len(seed) > 1 and not (seed[1:] > seed[:-1]).all():
                order = np.argsort(seed, kind="stable")
                columns = [c[order] for c in columns]
            yield key, columns


_EDGE_SIZES = np.array(_EDGE_BYTES, dtype=np.int64)


def _row_keys(
    kind: int,
    size: int,
    data: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    words: np.ndarray,
    has_left: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per anchor row: its key, hashed exactly as a chunk's words are, and its neighbours
    (`_neighbours`), from a buffer holding the rows as "left run right" (a block at a time:
    a row's key and neighbours depend on its own bytes only)."""
    keys, tails, heads = (np.empty(len(start), dtype=np.uint64) for _ in range(3))
    pad = _PAD
    for lo in range(0, len(start), _BUILD_BLOCK):
        hi = min(lo + _BUILD_BLOCK, len(start))
        a, b = start[lo:hi], end[lo:hi]
        lens = b - a
        at_buf = pad + np.cumsum(lens + 1) - (lens + 1)
        buf = np.full(int(lens.sum() + len(lens)) - 1 + 2 * pad, 0x20, dtype=np.uint8)
        buf[flat_ranges(at_buf, lens)] = data[flat_ranges(a, lens)]
        found = _Words.of(buf)
        count = words[lo:hi]
        at = np.cumsum(count) - count + has_left[lo:hi]
        if kind >= 1:
            keys[lo:hi] = found.runs([kind])[kind][at]
        else:
            keys[lo:hi] = _edge_keys(found, kind, size)[at]
        tails[lo:hi], heads[lo:hi] = _neighbours(found, at, max(kind, 0))
    return keys, tails, heads


def _make_table(
    kind: int,
    size: int,
    data: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    words: np.ndarray,
    left_sizes: np.ndarray,
    right_sizes: np.ndarray,
    row_seeds: np.ndarray,
) -> _Table:
    """The table of one variant's anchor rows (see `_AnchorRows`)."""
    all_keys, all_tails, all_heads = _row_keys(kind, size, data, start, end, words, left_sizes > 0)
    anchors = _KeySet.of(all_keys)
    groups = np.zeros(len(anchors.keys), dtype=np.uint32)
    extended = []
    # (left, right) pairs in lexicographic order; sizes are at most 8 bytes
    pair = left_sizes.astype(np.int64) * 256 + right_sizes
    for g, code in enumerate(sorted_unique(pair).tolist()):
        left, right = divmod(code, 256)
        sel = np.flatnonzero(pair == code)
        keys = all_keys[sel]
        full = _full_keys(keys, all_tails[sel], all_heads[sel], left, right)
        order = np.argsort(full, kind="stable")
        ordered = full[order]
        first = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
        offsets = np.append(first, len(order)).astype(np.int64)
        ext_keys = _KeySet.of_sorted(ordered[first])
        extended.append(_Extended(left, right, ext_keys, offsets, row_seeds[sel][order]))
        groups[np.searchsorted(anchors.keys, keys)] |= np.uint32(1 << g)
    return _Table(keys=anchors, groups=groups, extended=extended)
