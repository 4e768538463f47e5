"""The chunk filter: the seed bound against a plain sum, and tables independent of the block
size they are built in. (Its losslessness against the per-document form: test_prefilter.py.)"""

from __future__ import annotations

import random

import numpy as np
import pytest

from decon.detect import chunkfilter
from decon.detect.chunkfilter import SeedBound


def test_seed_bound_adds_each_distinct_seed_once_per_group() -> None:
    rng = random.Random(8)
    n_seeds, n_groups, n_texts = 40, 12, 30
    groups = [frozenset(rng.sample(range(n_groups), rng.randint(0, 3))) for _ in range(n_seeds)]
    weights = [rng.uniform(0, 3) for _ in range(n_seeds)]
    needs = [rng.choice([0.0, rng.uniform(1, 8)]) for _ in range(n_groups)]
    slack = [rng.choice([0.0, rng.uniform(0, 2)]) for _ in range(n_groups)]
    bound = SeedBound.build(groups, weights, needs, slack)
    pairs = [(rng.randrange(n_texts), rng.randrange(n_seeds)) for _ in range(200)]
    texts = np.array([t for t, _ in pairs])
    seeds = np.array([s for _, s in pairs])
    got = bound.reached(texts, seeds, n_texts).tolist()
    want = []
    for t in range(n_texts):
        totals: dict[int, float] = {}  # only groups with a seed in the text
        for s in {s for u, s in pairs if u == t}:  # distinct: a repeat adds nothing
            for g in groups[s]:
                totals[g] = totals.get(g, slack[g]) + weights[s]
        want.append(any(0 < needs[g] <= total * (1 + 1e-6) for g, total in totals.items()))
    assert got == want
    assert 5 <= sum(want) <= n_texts - 5


def _tables(cf) -> list:  # noqa: ANN001
    out: list = [sorted(cf.inside.items()), list(cf.always)]
    for variant, table in cf.tables.items():
        out.append((variant, table.keys.keys.tolist(), table.groups.tolist()))
        for ext in table.extended:
            out.append((ext.left, ext.right, ext.keys.keys.tolist(), ext.offsets.tolist()))
            out.append(ext.seeds.tolist())
    return out


def test_chunk_filter_is_the_same_built_in_small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeds are classified and anchor rows hashed a block at a time: a row's anchors depend
    on its own seed alone, so any block size gives the same tables."""
    rng = random.Random(11)
    pieces = [b"a", b"the", b"ab", b"x1", b"\xc3\xa9", b"\xc3", b"\xa9", b"\xed\xa0\x80",
              b"verylongwordhere", b" ", b" ", b" ", b"  "]  # fmt: skip
    seeds = [b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 14))) for _ in range(3000)]
    for bpe in (False, True):
        whole = chunkfilter.ChunkFilter.build(seeds, bpe=bpe)
        monkeypatch.setattr(chunkfilter, "_BUILD_BLOCK", 7)
        small = chunkfilter.ChunkFilter.build(seeds, bpe=bpe)
        monkeypatch.undo()
        assert _tables(small) == _tables(whole)
        assert len(whole.tables) >= 8 and whole.inside and whole.always
        # `count` builds the filter of a prefix of the seeds.
        head = chunkfilter.ChunkFilter.build(chunkfilter.SeedBytes.of(seeds), bpe=bpe, count=1000)
        assert _tables(head) == _tables(chunkfilter.ChunkFilter.build(seeds[:1000], bpe=bpe))
