"""Decon's simple mode: `SimpleDetector`, in three stages per batch of documents.

1. The prefilter (`decon.detect.prefilter`, lossless), over the whole batch at once: rules
   out the documents that hold no seed n-gram and no word anchor, and says for the others
   whether an n-gram cluster can score and where word anchors can occur (`prefilter: false`
   keeps every document, and its anchors are looked up).
2. Decon's n-gram clusters (`decon.detect.ngram_clusters`) of the documents where one can.
3. By default (`compat: none`), the word-alignment rules (`decon.detect.alignment_rules`) at
   the anchors, for every indexed item including those under `eval_min_token_length`; then
   one match per eval instance (a multiple-choice question expanded into a record per choice
   is one instance).

`compat: decon` stops after the clusters. Each match carries `match_kind`, `rule` and a
`reason` with the figures that decided it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from decon.detect import alignment_rules
from decon.detect.match import Findings, Match
from decon.detect.ngram_clusters import cluster_matches
from decon.detect.normalize import normalized_words
from decon.detect.reference import ReferenceIndex
from decon.detect.tokenize import BpeTokenizer, Tokenizer, WordTokenizer


@dataclass(frozen=True)
class _Kept:
    """A document the prefilter kept: its normalised words; `scan` False when no n-gram
    cluster can score; `candidates`, per item, the word positions where the alignment rules
    try its question (empty: no alignment step)."""

    text: str
    words: list[str]
    scan: bool
    candidates: dict[int, set[int]]


class SimpleDetector:
    """Decon's simple mode over a `ReferenceIndex` (see the module docstring)."""

    def __init__(self, index: ReferenceIndex) -> None:
        self.index = index
        self.options = index.options
        self.stats = index.stats

    def detect_batch(self, texts: list[str]) -> list[Findings]:
        return [
            Findings([], False) if kept is None else self._detect(kept)
            for kept in self._prefilter(texts)
        ]

    def _prefilter(self, texts: list[str]) -> list[_Kept | None]:
        """Per text: what the prefilter kept of it, or None when it cannot match (nor when
        it is shorter than one n-gram)."""
        o = self.options
        all_words: list[list[str] | None]
        marks: list[list[tuple[int, int]] | None] | None = None  # None: anchors not located
        if o.prefilter:
            chunk = self.index.prefilter.select_anchored(texts, o.punctuation_chars)
            all_words, scans, marks = chunk.words, chunk.selected, chunk.marks
        else:
            all_words = [normalized_words(t, o.punctuation_chars) for t in texts]
            scans = [True] * len(texts)
        by_length = self.index.anchors.by_length
        aligning = o.extended and bool(by_length)
        runs = self.index.prefilter.anchor_runs
        kept: list[_Kept | None] = []
        for i, (text, words) in enumerate(zip(texts, all_words, strict=True)):
            if words is None or len(words) < o.ngram_size:
                kept.append(None)
                continue
            # Where the alignment rules try each item's question: at every anchor in the words,
            # or at the prefilter's marks, (word position, index into `Prefilter.anchor_runs`)
            # where anchors can occur (all of them, and perhaps a few false ones).
            candidates: dict[int, set[int]] = {}
            if aligning and marks is None:
                candidates = alignment_rules.anchor_candidates(words, by_length)
            elif aligning:
                at = [(p, runs[a]) for p, a in marks[i] or ()]  # type: ignore[index]
                candidates = alignment_rules.candidates_at(words, at, by_length)
            kept.append(_Kept(text, words, scans[i], candidates))
        return kept

    def _detect(self, kept: _Kept) -> Findings:
        """The clusters and alignments of one kept document (its text is only read for
        sentence boundaries: the short-sentence rule)."""
        o, index = self.options, self.index
        if not kept.scan and not kept.candidates:
            return Findings([], True)
        tok, words = index.tokenizer, kept.words
        tokens: list[int] = []
        matches: list[Match] = []
        if kept.scan:
            tokens = _encode(tok, words)
            matches = cluster_matches(tokens, index, _renderer(tok, words, tokens))
        if o.extended:
            matches = _one_per_instance(matches)
        if not kept.candidates:
            return Findings(matches, True)
        seen = {m.item.instance for m in matches}  # type: ignore[union-attr]
        aligned = [
            a
            for a in alignment_rules.find_alignments(kept.text, words, index, kept.candidates)
            if a.item.instance not in seen
        ]
        if not aligned:
            return Findings(matches, True)
        if not tokens:
            tokens = _encode(tok, words)
        render = _renderer(tok, words, tokens)
        if isinstance(tok, WordTokenizer):

            def to_token(i: int, last: bool) -> int:
                return i

        else:
            to_token = alignment_rules.word_to_token_bpe(tok, tokens, words)
        length = len(tokens)
        matches += [alignment_rules.alignment_match(a, to_token, length, render) for a in aligned]
        matches.sort(key=lambda m: (m.start, m.item.item_id))
        return Findings(matches, True)


def _one_per_instance(matches: list[Match]) -> list[Match]:
    """The best-scoring match per eval instance (a multiple-choice question is one instance
    with a record per choice), in document order."""
    best: dict[tuple, Match] = {}
    for m in matches:
        key = m.item.instance  # type: ignore[union-attr]
        if key not in best or m.contamination_score > best[key].contamination_score:
            best[key] = m
    return sorted(best.values(), key=lambda m: (m.start, m.item.item_id))


def _encode(tok: Tokenizer, words: list[str]) -> list[int]:
    if isinstance(tok, WordTokenizer):
        return tok.encode_words(words)
    assert isinstance(tok, BpeTokenizer)
    return tok.encode(" ".join(words))


def _renderer(tok: Tokenizer, words: list[str], tokens: list[int]) -> Callable[[int, int], str]:
    """The text of tokens [a, b) of a document (its words, for the word tokenizer)."""
    if isinstance(tok, WordTokenizer):
        return lambda a, b: " ".join(words[a:b])
    return lambda a, b: tok.decode(tokens[a:b])
