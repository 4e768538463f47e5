"""The one eval-record reader and filter: reasons, order, counts, and the token-length shortcut."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from conftest import BUNDLED_EVALS
from decon.detect.evaltext import read_questions
from decon.detect.options import DetectOptions
from decon.detect.records import (
    DUPLICATE,
    FEW_UNIQUE_WORDS,
    NO_QUESTION,
    TOO_SHORT,
    EvalRecord,
    ReferenceStats,
    _few_unique_words,
    kept_records,
    read_records,
    shorter_than,
    token_counts,
)
from decon.detect.reference import load_index
from decon.detect.tokenize import get_tokenizer

BUNDLED = BUNDLED_EVALS

LONG = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho"


def records() -> list[tuple[str, int, dict]]:
    rows = [
        {"eval_key": "e", "question": LONG + " sigma tau upsilon", "fingerprint": "f1"},
        {"eval_key": "e", "question": "short one here now", "fingerprint": "f2"},
        {"eval_key": "e", "question": LONG + " again " * 5, "fingerprint": "f1"},
        {"eval_key": "e", "question": "same same same " * 9, "fingerprint": "f3"},
        {"eval_key": "g", "question": "", "passage": LONG + " phi chi psi omega"},
        {"eval_key": "g", "question": LONG + " phi chi psi omega", "answer": "yes"},
    ]
    return [("x.jsonl", i, r) for i, r in enumerate(rows)]


def kept(options: DetectOptions, stats: ReferenceStats) -> list[EvalRecord]:
    tok = get_tokenizer(options.tokenizer)
    return [r for batch in kept_records(records(), options, tok, stats) for r in batch]


@pytest.mark.parametrize("tokenizer", ["word", "cl100k"])
def test_each_skip_reason_is_counted_per_eval_and_in_total(tokenizer: str) -> None:
    stats = ReferenceStats()
    got = kept(DetectOptions(compat="decon", tokenizer=tokenizer), stats)
    assert [r.source["eval_line"] for r in got] == [0, 5]
    assert stats.skipped_per_eval == {
        "e": {TOO_SHORT: 1, DUPLICATE: 1, FEW_UNIQUE_WORDS: 1},
        "g": {NO_QUESTION: 1},
    }
    assert (stats.skipped_min_tokens, stats.skipped_duplicates) == (1, 1)
    assert (stats.skipped_min_unique_words, stats.skipped_no_question) == (1, 1)
    assert stats.indexed == 2 and stats.per_eval == {"e": 1, "g": 1}


def test_compat_none_keeps_a_short_record_for_the_alignment_rules_only() -> None:
    stats = ReferenceStats()
    got = kept(DetectOptions(compat="none"), stats)
    assert [(r.source["eval_line"], r.aligned_only) for r in got] == [
        (0, False),
        (1, True),
        (5, False),
    ]
    assert stats.aligned_only == 1 and stats.skipped_min_tokens == 0


def test_simple_and_similarity_modes_keep_the_same_records(tmp_path: Path) -> None:
    ref = tmp_path / "evals.jsonl"
    ref.write_text("".join(json.dumps(r) + "\n" for _, _, r in records()))
    for tokenizer in ("word", "cl100k"):
        options = DetectOptions(compat="decon", tokenizer=tokenizer)
        index = load_index(ref, options)
        questions, stats = read_questions(ref, options)
        assert [q.eval_line for q in questions] == [0, 5]
        assert stats.skipped_per_eval == index.stats.skipped_per_eval
        assert stats.indexed == index.stats.indexed == 2


def test_reader_counts_files_lines_and_malformed_lines(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"question": "q"}\n\n# note\nnot json\n[1, 2]\n')
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as fh:
        fh.write('{"question": "r"}\n')
    stats = ReferenceStats()
    got = list(read_records(tmp_path, stats))
    assert [(name, line) for name, line, _ in got] == [("a.jsonl", 0), ("b.jsonl.gz", 0)]
    assert (stats.files, stats.lines, stats.malformed) == (2, 4, 2)


def _texts() -> list[str]:
    rng = random.Random(5)
    words = ["a", "the", "über", "naïve", "12345678", "x" * 40, "🙂🙂", "ab1", "zz", "q"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randrange(1, 40))) for _ in range(3000)]
    if BUNDLED.is_dir():
        options = DetectOptions()
        for path in sorted(BUNDLED.glob("*.jsonl.gz"))[:1]:
            with gzip.open(path, "rt") as fh:
                for line in list(fh)[:3000]:
                    rec = EvalRecord.of(path.name, 0, json.loads(line), options.punctuation_chars)
                    texts.append(rec.indexed_text(options))
    return texts


@pytest.mark.parametrize("tokenizer", ["cl100k", "p50k", "word"])
def test_the_word_count_shortcut_gives_the_exact_token_count_decision(tokenizer: str) -> None:
    texts = _texts()
    tok = get_tokenizer(tokenizer)
    exact = token_counts(texts, tok)
    assert all(n >= len(t.split()) for n, t in zip(exact, texts, strict=True))
    for minimum in (1, 5, 20, 30):
        assert shorter_than(texts, tok, minimum) == [n < minimum for n in exact]


def test_few_unique_words_equals_counting_them_all() -> None:
    rng = random.Random(9)
    for _ in range(3000):
        words = [rng.choice("abcdef") for _ in range(rng.randrange(0, 40))]
        text = " ".join(words)
        for minimum in (0, 1, 4, 6):
            assert _few_unique_words(text, minimum) == (len(set(words)) < minimum)
