"""Unit tests of the detector core: normalisation, index, expansion, scoring, thresholds."""

from __future__ import annotations

import math
import random

import pytest

from decon.detect.normalize import normalize
from decon.detect.options import DetectOptions
from decon.detect.reference import build_index
from decon.detect.simple import (
    Scanner,
    combined_score,
    detect_text,
    detect_tokens,
    interpolate_threshold,
)

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(n))


def records(*items: dict, distractors: int = 5) -> list[tuple[str, int, dict]]:
    """Eval records; unrelated distractors keep IDF = ln(N/df) above zero (N > 1)."""
    rng = random.Random(99)
    extra = [{"question": sentence(rng, 30)} for _ in range(distractors)]
    return [("ev.jsonl", i, dict(eval_key="ev", **it)) for i, it in enumerate([*items, *extra])]


FILLER = "the cat sat on the mat and looked at the sky " * 6


def test_normalize_lowercases_strips_punctuation_and_collapses_space() -> None:
    assert normalize("  Hello, World!\n\tIt's  “fine”—ok. ") == "hello world it s fine ok"


def test_index_question_ngrams_idf_and_short_record_skips() -> None:
    rng = random.Random(1)
    q1, q2 = sentence(rng, 30), sentence(rng, 30)
    shared = "common words shared by both questions here"
    idx = build_index(
        records(
            {"question": q1 + " " + shared},
            {"question": q2 + " " + shared},
            {"question": "too short"},
            {"question": q1 + " " + shared, "fingerprint": "x"},
            {"question": q2, "fingerprint": "x"},
            distractors=0,
        ),
        DetectOptions(),
    )
    assert idx.stats.skipped_min_tokens == 1
    assert idx.stats.skipped_duplicates == 1
    assert len(idx.items) == 3
    item = idx.items[0]
    assert item.question_token_length == 37
    assert item.unique_ngrams == 33
    shared_key = tuple(idx.tokenizer.encode("shared by both questions here"))
    nid = idx.question_ngrams[shared_key]
    assert idx.ngram_docs[nid] == frozenset({0, 1, 2})
    assert idx.ngram_idf[nid] == 0.0  # ln(3 / 3)
    only_q2 = tuple(idx.tokenizer.encode(" ".join(q2.split()[:5])))
    assert idx.ngram_idf[idx.question_ngrams[only_q2]] == pytest.approx(math.log(3))


def test_verbatim_question_only_item_is_found_and_span_is_exact() -> None:
    rng = random.Random(2)
    q = sentence(rng, 30)
    idx = build_index(records({"question": q}), DetectOptions())
    matches, scanned = detect_text(FILLER + q + " " + FILLER, idx)
    assert scanned and len(matches) == 1
    m = matches[0]
    start = len(FILLER.split())
    assert (m.question_start_idx, m.question_end_idx) == (start, start + 29)
    assert m.contamination_score == pytest.approx(1.0)
    assert m.ngram_match_cnt == m.item.unique_ngrams


def test_cluster_expansion_tolerates_gaps_up_to_max_misses() -> None:
    rng = random.Random(3)
    words = sentence(rng, 40).split()
    idx = build_index(records({"question": " ".join(words)}), DetectOptions())
    edited = words[:20] + ["zzz"] + words[20:]  # one inserted word: 5 n-grams miss
    tokens = idx.tokenizer.encode(" ".join(FILLER.split() + edited))
    scanner = Scanner(idx)
    ids = scanner.ngram_ids(tokens, 5, idx.question_ngrams)
    clusters = scanner.find_clusters(ids)
    assert len(clusters) == 1
    start, end = clusters[0].bounds[0]
    assert start == len(FILLER.split())
    assert end == len(FILLER.split()) + 41 - 5
    # With a tolerance below the gap the right part is lost.
    tight = build_index(
        records({"question": " ".join(words)}), DetectOptions(question_max_consecutive_misses=3)
    )
    clusters = Scanner(tight).find_clusters(ids)
    assert all(c.bounds[0][1] < len(FILLER.split()) + 21 for c in clusters[:1])


def test_seed_inside_expanded_cluster_is_still_found() -> None:
    # Item B (6 words) sits inside item A's text; A's cluster spans it (10 misses < 11).
    # Decon resumes sampling after A's cluster and never seeds B; we re-check inside.
    rng = random.Random(4)
    a = sentence(rng, 40).split()
    b = sentence(rng, 6).split()
    opts = DetectOptions(sample_every_m_tokens=100, eval_min_token_length=0)
    idx = build_index(records({"question": " ".join(a)}, {"question": " ".join(b)}), opts)
    matches, _ = detect_text(" ".join(a[:20] + b + a[20:]), idx)
    assert {m.item.item_id for m in matches} == {0, 1}


def test_threshold_interpolation_and_length_adjusted_scores() -> None:
    assert interpolate_threshold(10, 20, 50, 0.8) == 1.0
    assert interpolate_threshold(35, 20, 50, 0.8) == pytest.approx(0.9)
    assert interpolate_threshold(60, 20, 50, 0.8) == 0.8
    assert interpolate_threshold(30, -1, -1, 0.8) == 0.8
    # Short eval (cumulative 30 tokens): a 0.95 score is scaled below the threshold.
    s = combined_score(0.95, 30, 30, None, None, None, None, 0.8, 20, 50)
    assert s == pytest.approx(0.95 * 0.8 / (1 - 0.2 * 10 / 30))
    assert combined_score(1.0, 30, 30, None, None, None, None, 0.8, 20, 50) == 1.0


@pytest.mark.parametrize(
    ("answer", "passage", "expected"),
    [
        (None, None, 0.9),  # Q
        (1.0, None, 0.75 * 0.9 + 0.25),  # QA
        (None, 1.0, 0.85 * 0.9 + 0.15),  # QP
        (1.0, 0.5, 0.7 * 0.9 + 0.2 + 0.05),  # QAP
    ],
)
def test_scoring_branches_use_decon_weights(answer, passage, expected) -> None:
    got = combined_score(0.9, 40, 100, answer, 10 if answer else None, passage, 50, 0.8, -1, -1)
    assert got == pytest.approx(expected)


def test_qa_item_needs_the_answer_after_the_question() -> None:
    rng = random.Random(5)
    q, a = sentence(rng, 30), sentence(rng, 20)
    idx = build_index(records({"question": q, "answer": a}), DetectOptions())
    with_answer, _ = detect_text(FILLER + q + " " + a + " " + FILLER, idx)
    assert len(with_answer) == 1
    assert with_answer[0].answer_idf_overlap == pytest.approx(1.0)
    question_only, _ = detect_text(FILLER + q + " " + FILLER, idx)
    assert question_only == []  # 0.75 x 1.0 < 0.8
    answer_before, _ = detect_text(FILLER + a + " " + q + " " + FILLER, idx)
    assert answer_before == []


def test_qp_item_finds_the_passage_before_the_question() -> None:
    rng = random.Random(6)
    q, p = sentence(rng, 25), sentence(rng, 60)
    idx = build_index(records({"question": q, "passage": p}), DetectOptions())
    (m,) = detect_text(FILLER + p + " " + q + " " + FILLER, idx)[0]
    # Decon stops one token before the question, so the last passage n-gram is not seen.
    assert 0.95 < m.passage_idf_overlap < 1.0
    assert m.passage_start_idx == len(FILLER.split())


def test_hard_negative_same_vocabulary_no_shared_run() -> None:
    rng = random.Random(7)
    q = sentence(rng, 30)
    words = q.split()
    shuffled = words[:]
    random.Random(8).shuffle(shuffled)
    idx = build_index(records({"question": q}), DetectOptions())
    assert detect_text(" ".join(shuffled) * 2, idx)[0] == []


def test_short_documents_are_not_scanned() -> None:
    rng = random.Random(9)
    q = sentence(rng, 30)
    idx = build_index(records({"question": q}), DetectOptions())
    assert detect_tokens(idx.tokenizer.encode("a b c d e f g"), idx) == []


@pytest.mark.parametrize("tokenizer", ["word", "p50k", "cl100k"])
def test_prefilter_loses_no_match(tokenizer: str) -> None:
    rng = random.Random(10)
    questions = [sentence(rng, 25) for _ in range(20)]
    recs = records(*({"question": q} for q in questions))
    on = build_index(recs, DetectOptions(tokenizer=tokenizer))
    off = build_index(recs, DetectOptions(tokenizer=tokenizer, prefilter=False))
    docs = []
    for i in range(200):
        text = sentence(rng, 80)
        if i % 7 == 0:
            q = questions[i % 20].split()
            text += " " + " ".join(q[3 + i % 5 : 3 + i % 5 + 12]) + " " + sentence(rng, 5)
        if i % 11 == 0:
            text += " " + questions[(i * 3) % 20]
        docs.append(text)
    found = 0
    for text in docs:
        a = [(m.item.item_id, m.question_start_idx) for m in detect_text(text, on)[0]]
        b = [(m.item.item_id, m.question_start_idx) for m in detect_text(text, off)[0]]
        assert a == b
        found += len(b)
    assert found >= 15


def real_benchmark_corpus(docs: int) -> tuple[list[tuple[str, int, dict]], list[str]]:
    """Real eval items (several benchmarks) planted whole, cut and edited into natural prose."""
    from decon.synth.benchmarks import load_benchmark
    from decon.synth.text import build_filler_pool, natural_paragraphs

    rng = random.Random(11)
    items = []
    for key in ("humaneval", "gsm8k", "squad", "mmlu"):
        got = load_benchmark(key)
        items += rng.sample(got, min(30, len(got)))
    recs = [("ref.jsonl", i, it.record(i)) for i, it in enumerate(items)]
    pool = build_filler_pool()
    texts = []
    for i in range(docs):
        parts = natural_paragraphs(pool, rng, 600)
        it = items[i % len(items)]
        if i % 3 == 0:
            parts.insert(1, it.question + " " + (it.answer or ""))
        elif i % 3 == 1:
            words = it.question.split()
            start = rng.randrange(max(1, len(words) - 8))
            parts.insert(1, " ".join(words[start : start + rng.randint(6, 30)]))
        texts.append("\n\n".join(parts))
    return recs, texts


@pytest.mark.parametrize("tokenizer", ["word", "p50k", "cl100k"])
def test_prefilter_loses_no_match_on_real_benchmarks(tokenizer: str) -> None:
    recs, texts = real_benchmark_corpus(300)
    on = build_index(recs, DetectOptions(tokenizer=tokenizer))
    off = build_index(recs, DetectOptions(tokenizer=tokenizer, prefilter=False))
    found = rejected = 0
    for text in texts:
        a, scanned = detect_text(text, on)
        b, _ = detect_text(text, off)
        assert [(m.item.item_id, m.question_start_idx, m.contamination_score) for m in a] == [
            (m.item.item_id, m.question_start_idx, m.contamination_score) for m in b
        ]
        found += len(b)
        rejected += not scanned
    assert found >= 60
    assert rejected >= 30  # the prefilter does reject natural text


@pytest.mark.parametrize("tokenizer", ["word", "p50k", "cl100k"])
def test_chunk_prefilter_loses_no_match_on_real_benchmarks(tokenizer: str) -> None:
    """The pipeline's chunk-wide prefilter reports exactly what full tokenization reports."""
    import json

    from decon.detect.detector import SimpleDetector
    from decon.detect.pipeline import detect_chunk

    recs, texts = real_benchmark_corpus(300)
    lines = [json.dumps({"id": i, "text": t}).encode() + b"\n" for i, t in enumerate(texts)]
    lines.insert(5, b"not json\n")
    on = SimpleDetector(build_index(recs, DetectOptions(tokenizer=tokenizer)))
    off = SimpleDetector(build_index(recs, DetectOptions(tokenizer=tokenizer, prefilter=False)))
    a = detect_chunk(on, "f.jsonl", 0, lines)
    b = detect_chunk(off, "f.jsonl", 0, lines)
    assert a.reports == b.reports
    assert a.malformed == b.malformed == 1
    assert sum(len(r) for _, r in b.reports) >= 60
    assert a.scanned <= len(texts) - 30  # it does reject
    assert b.scanned >= len(texts) - 5
