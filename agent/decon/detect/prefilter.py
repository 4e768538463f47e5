"""Prefilter: word-level anchors a document must contain to be worth tokenizing (lossless)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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
    if isinstance(tok, WordTokenizer):
        vocab = tok.words
        for key in seeds:
            runs.setdefault(len(key), {})[tuple(vocab[t] for t in key)] = set()
    else:
        assert isinstance(tok, BpeTokenizer)
        for key in seeds:
            raw = b"".join(tok.decode_token(t) for t in key)
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
    )
