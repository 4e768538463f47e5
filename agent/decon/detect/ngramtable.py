"""Token n-grams as flat arrays (pure: token lists in, tables out; built vectorised).

An `NgramTable` numbers the distinct n-grams of a list of token sequences in order of first
occurrence (the numbering the scan and the IDF sums have always used) and keeps, per id, its
tokens and the sequences holding it (CSR postings). Look-ups hash a window's tokens to 64 bits,
binary-search the sorted hashes and compare the tokens, so a hash collision never gives a false
id. Nothing here is a Python object per n-gram: a table is a handful of numpy arrays, which
forked workers share and which an index file maps from disk.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

_U = np.uint64
_MASK = (1 << 64) - 1
_MUL = 0x100000001B3
_K1, _K2 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F
_PAD = -1  # token slot past the end of a key shorter than the table's n


def _mix(h: np.ndarray) -> np.ndarray:
    h = h * _U(_K1)
    h ^= h >> _U(29)
    h *= _U(_K2)
    h ^= h >> _U(32)
    return h


def window_hashes(tokens: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The hash of every k-token window of `tokens` (int64), as uint64."""
    count = len(tokens) - k + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    t = tokens.astype(np.uint64)
    h = np.full(count, _U((seed * _K2 + k) & _MASK), dtype=np.uint64)
    for j in range(k):
        h = h * _U(_MUL) + t[j : j + count]
    return _mix(h)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """`np.unique(values)` by a sort (numpy's hash-based unique is many times slower here)."""
    out = np.sort(values)
    if len(out) > 1:
        out = out[np.concatenate([[True], out[1:] != out[:-1]])]
    return out


def _windows(tokens: np.ndarray, k: int) -> np.ndarray:
    """The k-token windows of `tokens` as a (count, k) view."""
    return np.lib.stride_tricks.sliding_window_view(tokens, k)


@dataclass
class NgramTable:
    """Distinct token n-grams: per id its tokens (`keys`, -1 padded for shorter keys) and the
    sequences holding it (`postings[offsets[i]:offsets[i + 1]]`, ascending); `hashes` sorted
    with `hash_ids` the id of each."""

    n: int
    seed: int
    hashes: np.ndarray  # uint64, sorted
    hash_ids: np.ndarray  # int32: id of hashes[i]
    keys: np.ndarray  # (ids, n) int32
    offsets: np.ndarray  # int64, ids + 1
    postings: np.ndarray  # int32 sequence numbers

    @classmethod
    def build(
        cls, sequences: Sequence[Sequence[int] | np.ndarray | None], n: int
    ) -> tuple[NgramTable, np.ndarray, np.ndarray]:
        """The table of the n-grams of `sequences` (None or empty: holds none; shorter than n:
        the whole sequence is its one key); the ids of all their windows in order, and per
        sequence the (start, end) of its windows in them."""
        arrays = [
            np.zeros(0, dtype=np.int32) if seq is None else np.asarray(seq, dtype=np.int32)
            for seq in sequences
        ]
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32)
        del arrays
        first_pos = np.cumsum(lengths) - lengths
        # Windows per sequence: length - n + 1, or one padded key for a shorter sequence.
        counts = np.where(lengths >= n, lengths - n + 1, (lengths > 0).astype(np.int64))
        owner = np.repeat(np.arange(len(lengths), dtype=np.int32), counts)
        ends = np.cumsum(counts)
        spans = np.stack([ends - counts, ends], axis=1)
        starts = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(ends - counts, counts)
        starts += first_pos[owner]
        # A padded key's slots past its sequence's end are read as _PAD.
        limit = (first_pos + lengths)[owner]
        matrix = np.full((len(starts), n), _PAD, dtype=np.int32)
        if len(flat):
            for j in range(n):  # a column at a time: no (windows, n) index matrix
                pos = starts + j
                inside = pos < limit
                matrix[inside, j] = flat[pos[inside]]
        del starts, limit
        rows, owners = [matrix], [owner]
        for seed in itertools.count(1):
            table, window_ids = cls._from_rows(rows, owners, n, seed)
            if table is not None:
                return table, window_ids, spans
        raise AssertionError("unreachable")

    @classmethod
    def _from_rows(
        cls, rows: list[np.ndarray], owners: list[np.ndarray], n: int, seed: int
    ) -> tuple[NgramTable | None, np.ndarray]:
        if rows:
            matrix = np.concatenate(rows)
            owner = np.concatenate(owners)
        else:
            matrix = np.zeros((0, n), dtype=np.int32)
            owner = np.zeros(0, dtype=np.int32)
        hashes = _row_hashes(matrix, seed)
        uniq, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        for lo in range(0, len(matrix), 1 << 20):  # in slices: no second copy of the matrix
            part = slice(lo, lo + (1 << 20))
            if not np.array_equal(matrix[part], matrix[first[inverse[part]]]):
                return None, owner  # two keys share a hash: try another seed
        # ids in order of first occurrence
        by_first = np.argsort(first, kind="stable")
        id_of_uniq = np.empty(len(uniq), dtype=np.int32)
        id_of_uniq[by_first] = np.arange(len(uniq), dtype=np.int32)
        window_ids = id_of_uniq[inverse]
        keys = matrix[first[by_first]]
        width = int(owner.max(initial=0)) + 1
        pairs = sorted_unique(window_ids.astype(np.int64) * width + owner)
        pair_ids, pair_owner = pairs // width, pairs % width
        offsets = np.zeros(len(uniq) + 1, dtype=np.int64)
        np.cumsum(np.bincount(pair_ids, minlength=len(uniq)), out=offsets[1:])
        table = cls(
            n=n,
            seed=seed,
            hashes=uniq,
            hash_ids=id_of_uniq,
            keys=keys,
            offsets=offsets,
            postings=pair_owner.astype(np.int32),
        )
        return table, window_ids

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def df(self) -> np.ndarray:
        """Per id, how many sequences hold it."""
        return np.diff(self.offsets)

    def key(self, nid: int) -> tuple[int, ...]:
        row = self.keys[nid]
        return tuple(int(t) for t in row if t != _PAD)

    def docs(self, nid: int) -> np.ndarray:
        return self.postings[self.offsets[nid] : self.offsets[nid + 1]]

    def lookup(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """The id of every n-token window of `tokens` (-1: not in the table)."""
        arr = np.asarray(tokens, dtype=np.int64)
        hashes = window_hashes(arr, self.n, self.seed)
        if not len(hashes) or not len(self.hashes):
            return np.full(len(hashes), -1, dtype=np.int64)
        at = np.searchsorted(self.hashes, hashes)
        at[at == len(self.hashes)] = 0
        ids = self.hash_ids[at]
        hit = self.hashes[at] == hashes
        if hit.any():
            pos = np.flatnonzero(hit)
            same = (self.keys[ids[pos]] == _windows(arr, self.n)[pos]).all(axis=1)
            hit[pos[~same]] = False
        return np.where(hit, ids, -1)

    def ids(self, tokens: Sequence[int]) -> list[int | None]:
        """`lookup` as a list with None for a window not in the table."""
        return [None if i < 0 else i for i in self.lookup(tokens).tolist()]

    def row_ids(self, rows: np.ndarray) -> np.ndarray:
        """`get` of every row of a matrix of keys (-1 past each key's end; -1 where absent)."""
        out = np.full(len(rows), -1, dtype=np.int64)
        if not len(rows) or not len(self.hashes):
            return out
        fits = (rows[:, self.n :] == _PAD).all(axis=1)
        matrix = np.full((len(rows), self.n), _PAD, dtype=np.int64)
        width = min(self.n, rows.shape[1])
        matrix[:, :width] = rows[:, :width]
        h = _row_hashes(matrix, self.seed)
        at = np.searchsorted(self.hashes, h)
        at[at == len(self.hashes)] = 0
        ids = self.hash_ids[at]
        hit = fits & (self.hashes[at] == h) & (self.keys[ids] == matrix).all(axis=1)
        out[hit] = ids[hit]
        return out

    def get(self, key: tuple[int, ...], default: int | None = None) -> int | None:
        """The id of one key (of any length up to n), or `default`."""
        if len(key) > self.n or not len(self.hashes):
            return default
        row = np.full(self.n, _PAD, dtype=np.int64)
        row[: len(key)] = key
        h = _row_hashes(row[None, :], self.seed)[0]
        at = int(np.searchsorted(self.hashes, h))
        if at == len(self.hashes) or self.hashes[at] != h:
            return default
        nid = int(self.hash_ids[at])
        return nid if np.array_equal(self.keys[nid], row) else default

    def __getitem__(self, key: tuple[int, ...]) -> int:
        nid = self.get(key)
        if nid is None:
            raise KeyError(key)
        return nid

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and self.get(key) is not None

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        return (self.key(i) for i in range(len(self)))


def _row_hashes(matrix: np.ndarray, seed: int) -> np.ndarray:
    """The hash of each row of a (count, n) key matrix (a full row hashes as its window)."""
    count, n = matrix.shape
    h = np.full(count, _U((seed * _K2 + n) & _MASK), dtype=np.uint64)
    for j in range(n):  # (the padding, -1, wraps to 2**64 - 1 from int32 as from int64)
        h = h * _U(_MUL) + matrix[:, j].astype(np.uint64)
    return _mix(h)


class Postings:
    """`table.docs(nid)` as frozensets, as the scan uses them, made on first use and kept (a
    bounded cache: the n-grams a job's documents hit are few)."""

    MAX_CACHED = 1 << 18

    def __init__(self, table: NgramTable) -> None:
        self.table = table
        self._cache: dict[int, frozenset[int]] = {}

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, nid: int) -> frozenset[int]:
        got = self._cache.get(nid)
        if got is None:
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            got = self._cache[nid] = frozenset(self.table.docs(nid).tolist())
        return got

    def __getstate__(self) -> dict:
        return {"table": self.table}

    def __setstate__(self, state: dict) -> None:
        self.table = state["table"]
        self._cache = {}
