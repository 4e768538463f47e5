"""Decon's simple mode: `SimpleDetector`, in three stages per batch of documents.

1. The prefilter (`decon.detect.prefilter`, lossless), over the whole batch at once: rules
   out the documents that hold no seed n-gram and no word anchor, and says for the others
   whether an n-gram cluster can score and where word anchors can occur.
2. Decon's n-gram clusters (`decon.detect.ngram_clusters`) of the documents where one can.
3. By default (`compat: none`), the word-alignment rules (`decon.detect.alignment_rules`) at
   the anchors, for every indexed item including those under `eval_min_token_length`; then
   one match per eval instance (a multiple-choice question expanded into a record per choice
   is one instance).

`compat: decon` stops after the clusters. Each match carries `match_kind`, `rule` and a
`reason` with the figures that decided it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from decon.detect import alignment_rules
from decon.detect.alignment_rules import alignment_match, find_alignments, word_to_token_bpe
from decon.detect.match import Findings, Match
from decon.detect.ngram_clusters import detect_tokens
from decon.detect.normalize import normalized_words
from decon.detect.prefilter import Run
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
        n = o.ngram_size
        if not o.prefilter:
            all_words = [normalized_words(t, o.punctuation_chars) for t in texts]
            return [
                _Kept(text, words, True, self._anchor_candidates(words))
                if len(words) >= n
                else None
                for text, words in zip(texts, all_words, strict=True)
            ]
        prefilter = self.index.prefilter
        chunk = prefilter.select_anchored(texts, o.punctuation_chars)
        if chunk.marks is None:  # the prefilter has no word anchors: look them all up
            return [
                _Kept(text, words, scan, self._anchor_candidates(words))
                if words is not None and len(words) >= n
                else None
                for text, words, scan in zip(texts, chunk.words, chunk.selected, strict=True)
            ]
        runs = prefilter.anchor_runs
        return [
            _Kept(text, words, scan, self._candidates_at(words, places or (), runs))
            if words is not None and len(words) >= n
            else None
            for text, words, scan, places in zip(
                texts, chunk.words, chunk.selected, chunk.marks, strict=True
            )
        ]

    def _anchor_candidates(self, words: list[str]) -> dict[int, set[int]]:
        """Where the alignment rules try each item's question: at every anchor in `words`."""
        by_length = self.index.anchors.by_length
        if not (self.options.extended and by_length):
            return {}
        return alignment_rules.anchor_candidates(words, by_length)

    def _candidates_at(
        self, words: list[str], places: Iterable[tuple[int, int]], runs: tuple[Run, ...]
    ) -> dict[int, set[int]]:
        """`_anchor_candidates` from the prefilter's `places`, (word position, index into
        `runs`): where anchors can occur (all of them, and perhaps a few false ones)."""
        by_length = self.index.anchors.by_length
        if not (self.options.extended and by_length):
            return {}
        at = [(p, runs[a]) for p, a in places]
        return alignment_rules.candidates_at(words, at, by_length)

    def _detect(self, kept: _Kept) -> Findings:
        """The clusters and alignments of one kept document; `text` is only read for
        sentence boundaries (short-item rule)."""
        o, index = self.options, self.index
        if not kept.scan and not kept.candidates:
            return Findings([], True)
        tok, words = index.tokenizer, kept.words
        tokens: list[int] = []
        matches: list[Match] = []
        if kept.scan:
            tokens = _encode(tok, words)
            matches = detect_tokens(tokens, index, _renderer(tok, words, tokens))
        if o.extended:
            matches = _one_per_instance(matches)
        if not kept.candidates:
            return Findings(matches, True)
        seen = {m.item.instance for m in matches}  # type: ignore[union-attr]
        aligned = [
            a
            for a in find_alignments(kept.text, words, index, kept.candidates)
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
            to_token = word_to_token_bpe(tok, tokens, words)
        matches += [alignment_match(al, to_token, len(tokens), render) for al in aligned]
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
