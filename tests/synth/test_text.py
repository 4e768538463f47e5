"""Filler text from the Python installation; edits applied to planted items."""

from __future__ import annotations

import random

import pytest

from decon_synth import edits, text
from decon_synth.benchmarks import normalize_words


@pytest.fixture(scope="module")
def pool() -> text.FillerPool:
    return text.build_filler_pool()


def test_pool_has_prose_code_and_legal(pool):
    assert len(pool.prose) > 500 and len(pool.code) > 50 and len(pool.legal) >= 5
    assert any("def " in c for c in pool.code)
    assert any("WARRANTY" in p for p in pool.legal)
    assert pool == text.build_filler_pool()


def test_paragraphs_are_seeded(pool):
    a = text.natural_paragraphs(pool, random.Random(3), 5000)
    b = text.natural_paragraphs(pool, random.Random(3), 5000)
    c = text.natural_paragraphs(pool, random.Random(4), 5000)
    assert a == b and a != c
    assert sum(len(p) for p in a) >= 5000


def test_hard_paragraphs_mix_tables_code_and_legal(pool):
    pars = text.hard_paragraphs(pool, random.Random(1), 60_000)
    assert any(p.startswith("Table ") and "|---|" in p for p in pars)
    assert any(p in pool.code for p in pars)
    assert any(p in pool.legal for p in pars)
    assert any("Agreement" in p or "the Licensee" in p or "the Tenant" in p for p in pars)


def test_without_runs_drops_matching_paragraphs(pool):
    smaller = pool.without_runs(lambda p: "statement" in p)
    assert smaller.prose and all("statement" not in p for p in smaller.prose)
    assert len(smaller.prose) < len(pool.prose)


QUESTION = (
    "A student wants to find the total cost of a new car and a small house in the town, "
    "so which number should the teacher use to show the answer?"
)


def test_light_edit_changes_a_few_words():
    for seed in range(20):
        edited, n = edits.light_edit(QUESTION, random.Random(seed))
        before, after = normalize_words(QUESTION), normalize_words(edited)
        assert 1 <= n <= 4
        assert after != before
        changed = sum(1 for w in before if w not in after)
        assert changed <= n
        assert edited != QUESTION


def test_heavy_edit_paraphrases():
    edited, n = edits.heavy_edit(QUESTION, random.Random(0))
    before, after = normalize_words(QUESTION), normalize_words(edited)
    assert n >= 5
    assert sum(1 for a, b in zip(before, after, strict=False) if a != b) > len(before) // 3
    short, n_short = edits.heavy_edit("Where does a heifer's master live?", random.Random(1))
    assert n_short >= 1 and normalize_words(short) != normalize_words(
        "Where does a heifer's master live?"
    )


def test_template_rewrite_keeps_template_changes_content():
    q = "Janet has 16 ducks and sells 9 eggs at the market for 2 dollars each."
    out = edits.template_rewrite(q, random.Random(0), ["alpha", "bravo", "charlie"], share=0.0)
    words = normalize_words(out)
    assert "janet" not in words and "ducks" not in words
    assert not {"16", "9", "2"} & set(words)
    assert words[words.index("and")] == "and" and "the" in words and "at" in words


def test_topic_sentences_use_every_word_never_adjacent():
    words = edits.content_words(
        "Photosynthesis converts light energy into chemical energy in plants"
    )
    out = edits.topic_sentences(words, random.Random(0))
    norm = normalize_words(out)
    assert set(words) <= set(norm)
    pairs = set(zip(words, words[1:], strict=False))
    assert not pairs & set(zip(norm, norm[1:], strict=False))
