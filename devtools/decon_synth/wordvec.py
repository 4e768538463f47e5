"""Small word-vector files for offline tests and benchmarks of the toxic mode.

Real vectors (fastText crawl-300d-2M.vec) are gigabytes and must never be downloaded by tests.
These are derived from a corpus's own words instead: every word gets a random unit vector, and
the words of each synonym group of `decon_synth.edits` (the table the paraphrase edits draw
from) share a base vector plus noise, so synonyms are close (cosine about 1 / (1 + noise^2)) as
they are in real embeddings. Words containing digits are left out (the toxic mode treats them
as unknown anyway).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from decon.detect.io import is_data_file, iter_lines
from decon.detect.normalize import normalized_words
from decon_synth.edits import SYNONYMS

_DIGIT = re.compile(r"\d")


def synonym_groups(synonyms: Mapping[str, str]) -> list[list[str]]:
    """Connected groups of single-word synonyms (multi-word ones are left out)."""
    parent: dict[str, str] = {}

    def find(w: str) -> str:
        while parent.setdefault(w, w) != w:
            w = parent[w]
        return w

    for a, b in synonyms.items():
        if " " in a or " " in b:
            continue
        parent[find(a)] = find(b)
    groups: dict[str, list[str]] = {}
    for w in sorted(parent):
        groups.setdefault(find(w), []).append(w)
    return [g for g in groups.values() if len(g) > 1]


def corpus_vectors(
    words: Iterable[str],
    dim: int = 64,
    seed: int = 0,
    noise: float = 0.5,
    synonyms: Mapping[str, str] = SYNONYMS,
) -> dict[str, np.ndarray]:
    """A vector per distinct word (sorted), synonyms near each other. Deterministic."""
    rng = np.random.default_rng(seed)
    vocab = sorted({w for w in words if not _DIGIT.search(w)} | set(_single(synonyms)))
    vecs = rng.standard_normal((len(vocab), dim))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    row = {w: i for i, w in enumerate(vocab)}
    for group in synonym_groups(synonyms):
        base = vecs[row[group[0]]].copy()
        for w in group:
            v = base + noise * rng.standard_normal(dim) / np.sqrt(dim)
            vecs[row[w]] = v / np.linalg.norm(v)
    return {w: vecs[row[w]].astype(np.float32) for w in vocab}


def _single(synonyms: Mapping[str, str]) -> Iterable[str]:
    for a, b in synonyms.items():
        if " " not in a and " " not in b:
            yield a
            yield b


def corpus_words(root: Path) -> set[str]:
    """Normalised words of every data file under `root` (JSON text, keys included)."""
    words: set[str] = set()
    for path in sorted(root.rglob("*")):
        if path.is_file() and is_data_file(path):
            for raw in iter_lines(path):
                text = raw.decode("utf-8", errors="replace").replace("\\n", " ")
                words.update(normalized_words(text))
    return words


def write_corpus_vectors(root: Path, out: Path, dim: int = 64, seed: int = 0) -> int:
    """Write a .vec file for the words under `root`; returns the number of words."""
    from decon.detect.toxic import write_vec

    vectors = corpus_vectors(corpus_words(root), dim=dim, seed=seed)
    with open(out, "w", encoding="utf-8") as fh:
        write_vec(fh, vectors)
    return len(vectors)
