"""NgramTable: ids in order of first occurrence, postings, exact look-ups."""

from __future__ import annotations

import random

import numpy as np

from decon.detect.ngramtable import NgramTable, Postings, _unique_first_inverse


def plain_table(sequences: list[list[int] | None], n: int) -> tuple[dict, list[set[int]]]:
    """The dict-of-tuples form the table replaces."""
    ids: dict[tuple[int, ...], int] = {}
    docs: list[set[int]] = []
    for i, seq in enumerate(sequences):
        if not seq:
            continue
        windows = (
            [tuple(seq)]
            if len(seq) < n
            else [tuple(seq[j : j + n]) for j in range(len(seq) - n + 1)]
        )
        for key in windows:
            if key not in ids:
                ids[key] = len(docs)
                docs.append(set())
            docs[ids[key]].add(i)
    return ids, docs


def test_table_numbers_keys_as_the_dict_form_and_finds_every_window() -> None:
    rng = random.Random(4)
    seqs: list[list[int] | None] = [
        [rng.randrange(30) for _ in range(rng.randint(0, 25))] for _ in range(300)
    ]
    seqs[7] = None
    table, window_ids, spans = NgramTable.build(seqs, 3)
    ids, docs = plain_table(seqs, 3)
    assert len(table) == len(ids)
    for key, nid in ids.items():
        assert table.get(key) == nid and table[key] == nid and table.key(nid) == key
        assert Postings(table)[nid] == frozenset(docs[nid])
        assert table.df[nid] == len(docs[nid])
    for i, seq in enumerate(seqs):
        a, b = spans[i]
        if seq and len(seq) >= 3:
            assert window_ids[a:b].tolist() == [
                ids[tuple(seq[j : j + 3])] for j in range(len(seq) - 2)
            ]
            assert table.ids(seq) == window_ids[a:b].tolist()
    probe = [rng.randrange(40) for _ in range(500)]
    assert table.ids(probe) == [ids.get(tuple(probe[j : j + 3])) for j in range(len(probe) - 2)]
    assert table.get((99, 98, 97)) is None


def test_short_keys_are_never_found_as_windows() -> None:
    table, _, _ = NgramTable.build([[5, 6], [5, 6, 7, 8]], 3)
    assert table.get((5, 6)) == 0
    assert table.ids([5, 6, 7]) == [1]
    assert -1 not in table.hash_ids


def test_a_hash_collision_is_never_a_false_hit() -> None:
    table, _, _ = NgramTable.build([[1, 2, 3]], 3)
    # A window whose hash is forced equal must still be rejected on its tokens.
    other = np.array([4, 5, 6])
    tampered = NgramTable(
        table.n, table.seed, table.hashes, table.hash_ids, table.keys, table.offsets, table.postings
    )
    from decon.detect.ngramtable import window_hashes

    tampered.hashes = np.sort(np.concatenate([table.hashes, window_hashes(other, 3, table.seed)]))
    tampered.hash_ids = np.zeros(2, dtype=np.int64)
    assert tampered.ids([4, 5, 6]) == [None]
    assert tampered.ids([1, 2, 3]) == [0]


def test_row_ids_is_get_of_each_row() -> None:
    from decon.detect.prefilter import padded_rows

    rng = random.Random(2)
    sequences = [[rng.randrange(20) for _ in range(rng.randint(0, 12))] for _ in range(200)]
    table = NgramTable.build(sequences, 4)[0]
    keys = [tuple(s[i : i + rng.randint(1, 6)]) for s in sequences if s for i in range(2)]
    keys += [table.key(i) for i in range(0, len(table), 5)]
    got = table.row_ids(padded_rows(keys)).tolist()
    assert got == [table.get(k, -1) for k in keys]
    assert sum(i >= 0 for i in got) >= len(keys) // 3


def test_unique_first_inverse_equals_numpys_unique() -> None:
    rng = np.random.default_rng(4)
    for n, high in ((0, 5), (1, 5), (200, 7), (5000, 1 << 62)):
        values = rng.integers(0, high, n, dtype=np.int64).astype(np.uint64)
        values = np.concatenate([values, values[: n // 3]])
        expected = np.unique(values, return_index=True, return_inverse=True)
        got = _unique_first_inverse(values)
        for a, b in zip(got, expected, strict=True):
            assert np.array_equal(a, b.reshape(-1))
