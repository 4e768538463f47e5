"""The prefilter's contract: a document containing any seed token sequence is never rejected.

Checked directly (seeds of every length, cut from the documents' own tokens, so many occur)
for both forms, the per-document `may_match` and the chunk-wide numpy `select`, on text with
the awkward parts of real data: non-ASCII punctuation and whitespace, uppercase non-ASCII
letters (final sigma), NULs, lone surrogates, digits and long unbroken strings.
"""

from __future__ import annotations

import random
import zlib

import pytest

from decon.detect.chunkfilter import MAX_RUN_WORDS
from decon.detect.normalize import normalized_words
from decon.detect.options import DEFAULT_PUNCTUATION_CHARS
from decon.detect.prefilter import build_prefilter
from decon.detect.tokenize import get_tokenizer

_VOCAB_TEXT = (
    "the of and to a in is it that for on with as was return list number string true false "
    "given function example 1 2 3 10 42 0x1f e25960a79dbc zzzzzzzdddd palindrome ΣΟΦΙΑ "
    "café naïve Émile straße İstanbul don't co-op e.g. (x) [y] {z} x+y=z 3.14 "
)
VOCAB = _VOCAB_TEXT.split()
ODD = ["\u201c", "\u201d", "\u2014", "\xa0", "\u3000", "\u2028", "\x1c", "\t", "\n", "\x00",
       "\ud800", "  ", ", ", ". ", "'", "\u2019s "]  # fmt: skip


def noisy_text(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        w = rng.choice(VOCAB)
        if rng.random() < 0.3:
            w = w.upper() if rng.random() < 0.5 else w.capitalize()
        out.append(w)
        out.append(rng.choice(ODD) if rng.random() < 0.15 else " ")
    return "".join(out)


def tokens_of(tok, text: str) -> list[int]:  # noqa: ANN001
    words = normalized_words(text)
    if tok.name == "word":
        for w in words:  # the reference side grows the vocabulary
            tok.add(w)
        return tok.encode_words(words)
    return tok.encode(" ".join(words))


def occurs(seq: tuple[int, ...], tokens: list[int]) -> bool:
    n = len(seq)
    return any(tuple(tokens[i : i + n]) == seq for i in range(len(tokens) - n + 1))


@pytest.mark.parametrize("tokenizer", ["word", "p50k", "cl100k"])
def test_no_document_containing_a_seed_is_rejected(tokenizer: str) -> None:
    rng = random.Random(zlib.crc32(tokenizer.encode()))  # str hash() differs per process
    tok = get_tokenizer(tokenizer)
    docs = [noisy_text(rng, rng.randint(0, 60)) for _ in range(300)]
    docs += ["", "   ", "\x00", "ΣΑΣ σας", "word"]
    token_lists = [tokens_of(tok, d) for d in docs]
    # Seeds of every length, cut from a third of the documents (others may contain them too).
    seeds = set()
    for tokens in token_lists[::3]:
        for _ in range(4):
            if tokens:
                n = rng.randint(1, MAX_RUN_WORDS + 4)
                i = rng.randrange(len(tokens))
                seeds.add(tuple(tokens[i : i + n]))
    # A seed of spaces alone passes every document (tested below): left out to see rejections.
    seeds = {s for s in seeds if tok.decode(list(s)).strip()}
    pf = build_prefilter(seeds, tok)
    selected = pf.select(docs, DEFAULT_PUNCTUATION_CHARS)
    kept_words = pf.select_words(docs, DEFAULT_PUNCTUATION_CHARS)
    for doc, words in zip(docs, kept_words, strict=True):
        assert words is None or words == normalized_words(doc)
    must = rejected = 0
    for doc, tokens, sel in zip(docs, token_lists, selected, strict=True):
        if any(occurs(s, tokens) for s in seeds):
            must += 1
            assert sel, doc
            assert pf.may_match(normalized_words(doc)), doc
        rejected += not sel
    assert must >= 100
    assert rejected >= 5  # it does reject (few: short seeds of a small vocabulary are common)
    # One seed at a time: no other seed can make up for a lost one.
    for seed in sorted(seeds)[::2]:
        one = build_prefilter([seed], tok)
        selected = one.select(docs, DEFAULT_PUNCTUATION_CHARS)
        for doc, tokens, sel in zip(docs, token_lists, selected, strict=True):
            assert sel or not occurs(seed, tokens), (tok.decode(list(seed)), doc)


@pytest.mark.parametrize("tokenizer", ["word", "cl100k"])
def test_select_agrees_with_may_match_on_rejections(tokenizer: str) -> None:
    """Both forms are lossless; select is at least as strict on ordinary text."""
    rng = random.Random(5)
    tok = get_tokenizer(tokenizer)
    docs = [noisy_text(rng, 40) for _ in range(200)]
    seeds = {tuple(tokens_of(tok, noisy_text(rng, 5))[:5]) for _ in range(50)}
    pf = build_prefilter({s for s in seeds if s}, tok)
    selected = pf.select(docs, DEFAULT_PUNCTUATION_CHARS)
    per_doc = [pf.may_match(normalized_words(d)) for d in docs]
    assert sum(selected) <= sum(per_doc) or tokenizer == "cl100k"
    assert sum(selected) < len(docs)


def test_a_seed_with_nothing_to_anchor_on_passes_everything() -> None:
    tok = get_tokenizer("cl100k")
    space = tok.encode("")  # " " alone: no word to anchor on
    pf = build_prefilter([tuple(space)], tok)
    assert pf.select(["anything at all", ""], DEFAULT_PUNCTUATION_CHARS) == [True, True]


@pytest.mark.parametrize("tokenizer", ["word", "cl100k"])
def test_seed_bytes_are_each_seeds_tokens_joined(tokenizer: str) -> None:
    from decon.detect.prefilter import padded_rows, seed_bytes

    rng = random.Random(4)
    tok = get_tokenizer(tokenizer)
    token_lists = [tokens_of(tok, noisy_text(rng, 12)) for _ in range(50)]
    seeds = [tuple(t[: rng.randint(1, 8)]) for t in token_lists if t]
    if tokenizer == "word":
        seeds.append(())  # no words: " " + "" + " "
        want = [
            (" " + " ".join(tok.words[t] for t in s) + " ").encode("utf-8", "surrogatepass")
            for s in seeds
        ]
    else:
        want = [b"".join(tok.decode_token(t) for t in s) for s in seeds]
    rows = padded_rows(seeds)
    got = seed_bytes(lambda: [rows[:7], rows[7:]], tok)
    assert list(got) == want
