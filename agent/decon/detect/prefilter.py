"""Prefilter: word-level anchors a document must contain to be worth tokenizing (lossless).

This module plans the seeds (the n-grams that can start a match, as the bytes their tokens
decode to: `seed_bytes`) and builds the two forms that share one contract (a rejected document
contains no seed, so has no match):
- `Prefilter.may_match(words)`: one document's normalised words (Python sets and substrings).
- `Prefilter.select(texts, punctuation_chars)`: a whole chunk of raw texts at once with numpy,
  the chunk filter of `decon.detect.chunkfilter`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from decon.detect.chunkfilter import ChunkFilter, ChunkSelection, SeedBound, SeedBytes, flat_ranges
from decon.detect.tokenize import BpeTokenizer, Tokenizer, WordTokenizer

NgramKey = tuple[int, ...]

Run = tuple[str, ...]


@dataclass(eq=False)
class Prefilter:
    """Anchors: a document that contains none of them has no match (lossless).

    The chunk form (`select...`) is what the pipeline uses. The per-document form
    (`may_match`) is made from `seed_bytes` on its first use: `runs` is, per run length k, a
    map from a run of k consecutive words to the texts of which the document (" " + its joined
    words) must then contain one (no texts: the run suffices); `fragments` are such texts for
    n-grams that lie inside at most two words.
    """

    seed_bytes: SeedBytes
    word_seeds: bool  # the word tokenizer's seeds (a token is a word)
    chunk: ChunkFilter = field(default=None, compare=False)  # type: ignore[assignment]
    # compat none: the word anchors of the alignment rules alone (see `select_anchored`).
    anchors: ChunkFilter | None = field(default=None, compare=False)
    anchor_runs: tuple[Run, ...] = ()  # the runs `anchors` was built from, in its seed order
    # Over the chunk filter's seeds: a text no seed of which can reach it is not selected.
    bound: SeedBound | None = field(default=None, compare=False)

    def select(self, texts: list[str], punctuation_chars: str) -> list[bool]:
        """Per raw text: False only when no seed can occur in its normalised form (or, with
        a bound, the seeds that can occur cannot reach it)."""
        return self.chunk.select_marked(texts, punctuation_chars, bound=self.bound).selected

    def select_words(self, texts: list[str], punctuation_chars: str) -> list[list[str] | None]:
        """Per raw text: its `normalized_words`, or None when not selected (see `select`)."""
        return self.chunk.select_marked(texts, punctuation_chars, bound=self.bound).words

    def select_anchored(self, texts: list[str], punctuation_chars: str) -> ChunkSelection:
        """`select`, and per text the word anchors that can occur in it, as (word position,
        index into `anchor_runs`): every occurrence, and perhaps a few false ones (None when
        none can, so its alignment step can be skipped; `marks` is None without anchors).
        Words are given for the texts that are selected or hold an anchor."""
        return self.chunk.select_marked(texts, punctuation_chars, self.anchors, self.bound)

    @property
    def document_anchors(self) -> _DocumentAnchors:
        got = self.__dict__.get("_document_anchors")
        if got is None:
            got = _DocumentAnchors.build(self.seed_bytes, self.word_seeds)
            self.__dict__["_document_anchors"] = got
        return got

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_document_anchors", None)
        return state

    def may_match(self, words: list[str]) -> bool:
        """False only when no indexed, non-hot question n-gram can occur in `words`."""
        doc = self.document_anchors
        joined = None
        if self.chunk is not None and self.chunk.surrogates_pass:
            joined = " " + " ".join(words)
            if not joined.isascii() and _has_surrogate(joined):
                return True
        for k, table in doc.runs:
            keys = doc.key_sets[k]
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
        if not doc.fragments:
            return False
        if joined is None:
            joined = " " + " ".join(words)
        return any(f in joined for f in doc.fragments)

    @property
    def size(self) -> int:
        doc = self.document_anchors
        return sum(len(t) for _, t in doc.runs) + len(doc.fragments)


@dataclass(frozen=True)
class _DocumentAnchors:
    """The per-document form's anchors (see `Prefilter`)."""

    runs: tuple[tuple[int, dict[Run, tuple[str, ...]]], ...]
    fragments: tuple[str, ...]
    key_sets: dict[int, frozenset[Run]]  # the runs of each table, for set intersection

    @classmethod
    def build(cls, seeds: SeedBytes, word_seeds: bool) -> _DocumentAnchors:
        runs, fragments = _document_anchors(seeds, word_seeds)
        return cls(
            runs=tuple(
                (k, {r: tuple(sorted(t)) for r, t in sorted(table.items())})
                for k, table in sorted(runs.items())
            ),
            key_sets={k: frozenset(table) for k, table in runs.items()},
            fragments=tuple(sorted(fragments, key=lambda f: (-len(f), f))),
        )


# Longest word run used as a BPE anchor; longer runs reject more but cost a bigger tuple.
MAX_BPE_ANCHOR_WORDS = 3


def build_prefilter(
    seeds: Iterable[NgramKey] | SeedBytes,
    tok: Tokenizer,
    word_anchors: Iterable[tuple[str, ...]] = (),
    bound: SeedBound | None = None,
) -> Prefilter:
    """Anchors for the token sequences (`seeds`, any length >= 1, or their `seed_bytes`) at
    which a scan can start.

    `word_anchors` (runs of normalised words) also get a chunk filter of their own, which says
    which documents can contain one (`Prefilter.select_anchored`). With `bound`, the chunk
    form looks for the bound's seeds only (the first `bound.count` seeds, which must include
    every seed that can start a match), and selects a text only when the bound is reached.

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
    The chunk form finds a superset of the seeds that occur, so a bound over them is at least
    the bound over the seeds that really occur.
    """
    anchor_runs = tuple(word_anchors)
    anchor_bytes = [
        (" " + " ".join(run) + " ").encode("utf-8", "surrogatepass") for run in anchor_runs
    ]
    if not isinstance(seeds, SeedBytes):
        rows = padded_rows(list(seeds))
        seeds = seed_bytes(lambda: [rows], tok)
    chunk_count = None if bound is None else bound.count
    is_word = isinstance(tok, WordTokenizer)
    return Prefilter(
        seed_bytes=seeds,
        word_seeds=is_word,
        chunk=ChunkFilter.build(seeds, bpe=not is_word, count=chunk_count),
        anchors=ChunkFilter.build(SeedBytes.of(anchor_bytes)) if anchor_bytes else None,
        anchor_runs=anchor_runs,
        bound=bound,
    )


def _document_anchors(
    seeds: Iterable[bytes], word_seeds: bool
) -> tuple[dict[int, dict[Run, set[str]]], set[str]]:
    """The per-document form's anchors of seeds given by their bytes (`seed_bytes`):
    word runs with the texts that confirm them, and fragments (see `build_prefilter`)."""
    runs: dict[int, dict[Run, set[str]]] = {}
    fragments: set[str] = set()
    for raw in seeds:
        if word_seeds:
            run_ = tuple(raw.decode("utf-8", "surrogatepass").split(" ")[1:-1])
            runs.setdefault(len(run_), {})[run_] = set()
            continue
        # Partial characters can only sit at the ends of a substring of valid UTF-8.
        text = raw.decode("utf-8", errors="ignore")
        inner = raw.split(b" ")[1:-1]
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
    return runs, fragments


def padded_rows(keys: list[NgramKey]) -> np.ndarray:
    """Token sequences as the rows of a matrix, -1 past each one's end."""
    width = max(map(len, keys), default=0)
    rows = np.full((len(keys), width), -1, dtype=np.int64)
    for i, key in enumerate(keys):
        rows[i, : len(key)] = key
    return rows


def _token_pieces(tok: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """Per token id the bytes it adds to " " + the joined words (a word: " " + the word), as
    one buffer and offsets."""
    if isinstance(tok, WordTokenizer):
        pieces = [(" " + w).encode("utf-8", "surrogatepass") for w in tok.words]
    else:
        assert isinstance(tok, BpeTokenizer)
        pieces = tok.token_bytes
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)), out=offsets[1:])
    return np.frombuffer(b"".join(pieces), dtype=np.uint8), offsets


def seed_bytes(blocks: Callable[[], Iterable[np.ndarray]], tok: Tokenizer) -> SeedBytes:
    """The bytes each seed's tokens stand for in " " + the joined words (a word seed's with
    the spaces that delimit its words); seeds given as blocks of rows of token ids, -1 past
    each seed's end (`padded_rows`). `blocks()` is called twice, for the sizes and then for
    the bytes, so that only the result is ever held whole."""
    data, bounds = _token_pieces(tok)
    sizes = np.diff(bounds)
    is_word = isinstance(tok, WordTokenizer)

    def content_sizes(block: np.ndarray) -> np.ndarray:
        valid = block >= 0
        return np.where(valid, sizes[np.where(valid, block, 0)], 0).sum(axis=1)

    # A word seed is " " + " ".join(words) + " ": a space after the words, two for none.
    lengths = [
        content_sizes(b) + np.where((b >= 0).any(axis=1), 1, 2) if is_word else content_sizes(b)
        for b in blocks()
    ]
    offsets = np.zeros(sum(map(len, lengths)) + 1, dtype=np.int64)
    if lengths:
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
    out = np.full(int(offsets[-1]), 0x20, dtype=np.uint8)
    row = 0
    for block in blocks():
        tokens = block[block >= 0]  # row by row
        into = flat_ranges(offsets[row : row + len(block)], content_sizes(block))
        out[into] = data[flat_ranges(bounds[tokens], sizes[tokens])]
        row += len(block)
    return SeedBytes(out, offsets)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
