"""Decon's simple mode on one document: its n-gram clusters (`decon.detect.ngram_clusters`)
and, by default, the word-alignment rules (`decon.detect.alignment_rules`).

`compat: decon` stops at the clusters. The default (`compat: none`) probes every position,
adds the word-alignment rules for every indexed item including those under
`eval_min_token_length`, and reports one match per eval instance (a multiple-choice question
expanded into a record per choice is one instance). Each match carries `match_kind`, `rule`
and a `reason` with the figures that decided it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from decon.detect.alignment_rules import alignment_match, find_alignments, word_to_token_bpe
from decon.detect.match import Match
from decon.detect.ngram_clusters import detect_tokens
from decon.detect.normalize import normalized_words
from decon.detect.reference import ReferenceIndex
from decon.detect.tokenize import BpeTokenizer, Tokenizer, WordTokenizer


def detect_text(text: str, index: ReferenceIndex) -> tuple[list[Match], bool]:
    """Matches in one document and whether it was fully scanned (passed the prefilter)."""
    return detect_words(text, normalized_words(text, index.options.punctuation_chars), index)


def detect_words(
    text: str,
    words: list[str],
    index: ReferenceIndex,
    scan: bool = True,
    anchors: list[tuple[int, tuple[str, ...]]] | None = None,
) -> tuple[list[Match], bool]:
    """`detect_text` of a document whose normalised words are already known (`words`); the
    text itself is only read for sentence boundaries (short-item rule). From the chunk
    prefilter: `scan=False` says no n-gram cluster can score (no n-gram scan); `anchors`
    lists the places where word anchors can occur (`Prefilter.select_anchored`; empty: no
    alignment step; None: look them up)."""
    o = index.options
    if len(words) < o.ngram_size:
        return [], False
    if o.prefilter and not index.prefilter.may_match(words):
        return [], False
    align = o.extended and anchors != [] and bool(index.anchors.by_length)
    if not scan and not align:
        return [], True
    tok = index.tokenizer
    tokens: list[int] = []
    if scan:
        tokens = _encode(tok, words)
        matches = detect_tokens(tokens, index, _renderer(tok, words, tokens))
    else:
        matches = []
    if not align:
        return (_one_per_instance(matches) if o.extended else matches), True
    matches = _one_per_instance(matches)
    seen = {m.item.instance for m in matches}
    aligned = [
        a for a in find_alignments(text, words, index, anchors) if a.item.instance not in seen
    ]
    if not aligned:
        return matches, True
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
    return matches, True


def _one_per_instance(matches: list[Match]) -> list[Match]:
    """The best-scoring match per eval instance (a multiple-choice question is one instance
    with a record per choice), in document order."""
    best: dict[tuple, Match] = {}
    for m in matches:
        key = m.item.instance
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


@dataclass(frozen=True)
class SelectedText:
    """A text the chunk prefilter kept: its normalised words; `scan` False when no n-gram
    cluster can score; `anchors` the word anchors of the alignment rules that can occur, as
    (word position, run) (None: not known, look them up; empty: none, no alignment step)."""

    words: list[str]
    scan: bool = True
    anchors: list[tuple[int, tuple[str, ...]]] | None = None


class SimpleDetector:
    """Decon's simple mode over a `ReferenceIndex`."""

    def __init__(self, index: ReferenceIndex) -> None:
        self.index = index
        self.options = index.options
        self.stats = index.stats
        unfiltered = dataclasses.replace(index.options, prefilter=False)
        self._selected_index = dataclasses.replace(index, options=unfiltered)

    def detect(self, text: str) -> tuple[list[Match], bool]:
        return detect_text(text, self.index)

    def select(self, texts: list[str]) -> list[SelectedText | None]:
        punctuation = self.options.punctuation_chars
        if not self.options.prefilter:
            return [SelectedText(normalized_words(t, punctuation)) for t in texts]
        prefilter = self.index.prefilter
        chunk = prefilter.select_anchored(texts, punctuation)
        if chunk.marks is None:
            return [
                None if words is None else SelectedText(words, selected)
                for words, selected in zip(chunk.words, chunk.selected, strict=True)
            ]
        runs = prefilter.anchor_runs
        return [
            None
            if words is None
            else SelectedText(words, selected, [(p, runs[a]) for p, a in places or ()])
            for words, selected, places in zip(
                chunk.words, chunk.selected, chunk.marks, strict=True
            )
        ]

    def detect_selected(self, text: str, selected: SelectedText) -> tuple[list[Match], bool]:
        return detect_words(
            text, selected.words, self._selected_index, selected.scan, selected.anchors
        )
