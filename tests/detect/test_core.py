"""Unit tests of the detector core: normalisation, index, expansion, scoring, thresholds."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from decon.detect.ngram_clusters import (
    Scanner,
    ScoreInputs,
    ScoringParams,
    cluster_matches,
    combined_score,
    interpolate_threshold,
)
from decon.detect.normalize import normalize
from decon.detect.options import DetectOptions
from decon.detect.reference import build_index
from fakes.detect_one import detect_text

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
        DetectOptions(compat="decon"),
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
    assert (m.start, m.end) == (start, start + 29)
    assert m.contamination_score == pytest.approx(1.0)
    assert m.evidence.ngram_matches == m.item.unique_ngrams


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
    decay = ScoringParams(threshold=0.8, decay_start=20, decay_end=50)
    s = combined_score(ScoreInputs(0.95, 30, 30), decay)
    assert s == pytest.approx(0.95 * 0.8 / (1 - 0.2 * 10 / 30))
    assert combined_score(ScoreInputs(1.0, 30, 30), decay) == 1.0


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
    inputs = ScoreInputs(0.9, 40, 100, answer, 10 if answer else None, passage, 50)
    got = combined_score(inputs, ScoringParams(threshold=0.8, decay_start=-1, decay_end=-1))
    assert got == pytest.approx(expected)


def test_qa_item_needs_the_answer_after_the_question() -> None:
    rng = random.Random(5)
    q, a = sentence(rng, 30), sentence(rng, 20)
    idx = build_index(records({"question": q, "answer": a}), DetectOptions(compat="decon"))
    with_answer, _ = detect_text(FILLER + q + " " + a + " " + FILLER, idx)
    assert len(with_answer) == 1
    assert with_answer[0].evidence.answer_idf_overlap == pytest.approx(1.0)
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
    assert 0.95 < m.evidence.passage_idf_overlap < 1.0
    assert m.evidence.passage_span[0] == len(FILLER.split())


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
    assert cluster_matches(idx.tokenizer.encode("a b c d e f g"), idx, lambda a, b: "") == []


@pytest.mark.parametrize("compat", ["decon", "none"])
@pytest.mark.parametrize("tokenizer", ["word", "p50k", "cl100k"])
def test_prefilter_loses_no_match(tokenizer: str, compat: str) -> None:
    rng = random.Random(10)
    questions = [sentence(rng, 25) for _ in range(20)]
    recs = records(*({"question": q} for q in questions))
    on = build_index(recs, DetectOptions(tokenizer=tokenizer, compat=compat))
    off = build_index(recs, DetectOptions(tokenizer=tokenizer, prefilter=False, compat=compat))
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
        a = [(m.item.item_id, m.start) for m in detect_text(text, on)[0]]
        b = [(m.item.item_id, m.start) for m in detect_text(text, off)[0]]
        assert a == b
        found += len(b)
    assert found >= 15


def real_benchmark_corpus(docs: int) -> tuple[list[tuple[str, int, dict]], list[str]]:
    """Real eval items (several benchmarks) planted whole, cut and edited into natural prose."""
    from decon_synth.benchmarks import load_benchmark
    from decon_synth.edits import light_edit
    from decon_synth.text import build_filler_pool, natural_paragraphs

    rng = random.Random(11)
    items = []
    for key in ("humaneval", "gsm8k", "squad", "mmlu", "naturalqs_open", "csqa"):
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
        elif i % 6 == 2:  # short items, edits and answers before the question: compat none
            parts.insert(1, (it.answer or "") + "\n" + light_edit(it.question, rng)[0])
        texts.append("\n\n".join(parts))
    return recs, texts


# -- compat none: the alignment rules --------------------------------------------------------

PROSE = "Yesterday we walked along the river and talked about many things. "


def test_question_only_leak_of_a_qa_item_is_reported_by_default() -> None:
    rng = random.Random(20)
    q, a = sentence(rng, 30), sentence(rng, 20)
    idx = build_index(records({"question": q, "answer": a}), DetectOptions())
    (m,) = detect_text(FILLER + q + " " + FILLER, idx)[0]
    assert (m.evidence.rule, m.evidence.match_kind) == ("question_only", "question")
    assert "0 of" in m.evidence.reason and m.contamination_score == 1.0
    assert m.start == len(FILLER.split())


def test_answer_before_or_inside_the_question_counts() -> None:
    idx = build_index(
        records(
            {
                "question": "Who painted the ceiling of the Sistine Chapel?",
                "answer": "Michelangelo",
            },
            {
                "question": "Sarah gave Jessica her old bicycle because _ had outgrown it.",
                "answer": "Sarah",
            },
        ),
        DetectOptions(),
    )
    before, _ = detect_text(
        PROSE + "Michelangelo. who painted the ceiling of the sistine chapel " + PROSE, idx
    )
    assert [(m.evidence.rule, m.evidence.match_kind) for m in before] == [
        ("question_answer_window", "question_answer")
    ]
    assert "answer before" in before[0].evidence.reason
    inside, _ = detect_text(
        PROSE
        + " and so sarah gave jessica her old bicycle because sarah had outgrown it and "
        + PROSE,
        idx,
    )
    assert [m.item.item_id for m in inside] == [1]
    assert "answer inside" in inside[0].evidence.reason


def test_short_item_is_indexed_and_needs_a_sentence_or_its_answer() -> None:
    idx = build_index(
        records({"question": "who sang never gonna let you go", "answer": "Joe Pizzulo"}),
        DetectOptions(),
    )
    assert idx.items[0].ngram_indexed is False and idx.stats.aligned_only == 1
    decon = build_index(
        records({"question": "who sang never gonna let you go"}), DetectOptions(compat="decon")
    )
    assert decon.stats.skipped_min_tokens == 1
    own_line = detect_text(PROSE + "\nQ: Who sang Never Gonna Let You Go?\n" + PROSE, idx)[0]
    assert [(m.evidence.rule, m.evidence.match_kind) for m in own_line] == [
        ("short_sentence", "short_question")
    ]
    edited = detect_text(PROSE + "\nwho sang never gonna let you go\n" + PROSE, idx)[0]
    assert len(edited) == 1
    mid_sentence = PROSE + " she asked who sang never gonna let you go and laughed " + PROSE
    assert detect_text(mid_sentence, idx)[0] == []
    with_answer = PROSE + " she asked who sang never gonna let you go: Joe Pizzulo " + PROSE
    assert [m.evidence.rule for m in detect_text(with_answer, idx)[0]] == ["question_answer_window"]
    # Same template, other content words: never an alignment (content words must match).
    template = PROSE + "\nWho wrote always gonna make you stay?\n" + PROSE
    assert detect_text(template, idx)[0] == []
    assert (
        detect_text(own_line_text := PROSE + "\nwho sang never gonna let you go\n" + PROSE, decon)[
            0
        ]
        == []
        and own_line_text
    )


def test_light_edits_are_tolerated_up_to_the_allowed_count() -> None:
    rng = random.Random(21)
    words = sentence(rng, 20).split()
    idx = build_index(records({"question": " ".join(words)}), DetectOptions())
    assert idx.items[0].question_edits == 2
    two = words[:3] + ["really"] + words[4:12] + words[13:]
    (m,) = detect_text(FILLER + " ".join(two) + " " + FILLER, idx)[0]
    assert "2 of 2 allowed" in m.evidence.reason
    three = two[:15] + ["also"] + two[16:]
    assert all(
        x.evidence.rule == "decon_score"
        for x in detect_text(FILLER + " ".join(three) + " " + FILLER, idx)[0]
    )


@pytest.mark.parametrize("tokenizer", ["p50k", "cl100k"])
def test_bpe_alignment_positions_are_token_indices(tokenizer: str) -> None:
    idx = build_index(
        records({"question": "Which describes a property of all elements?", "answer": "pure"}),
        DetectOptions(tokenizer=tokenizer),
    )
    text = PROSE + "Question: Which describes a property of all elements?\n" + PROSE
    (m,) = detect_text(text, idx)[0]
    assert m.evidence.rule == "short_sentence"
    assert "【 which describes a property of all elements】" in m.training_overlap_text


@pytest.mark.parametrize("compat", ["decon", "none"])
@pytest.mark.parametrize("tokenizer", ["word", "p50k", "cl100k"])
def test_chunk_prefilter_loses_no_match_on_real_benchmarks(tokenizer: str, compat: str) -> None:
    """The pipeline's chunk-wide prefilter reports exactly what full tokenization reports."""
    import json

    from decon.detect.pipeline import detect_chunk
    from decon.detect.simple import SimpleDetector

    recs, texts = real_benchmark_corpus(300)
    lines = [json.dumps({"id": i, "text": t}).encode() + b"\n" for i, t in enumerate(texts)]
    lines.insert(5, b"not json\n")
    opts = DetectOptions(tokenizer=tokenizer, compat=compat)
    on = SimpleDetector(build_index(recs, opts))
    off = SimpleDetector(build_index(recs, dataclasses.replace(opts, prefilter=False)))
    a = detect_chunk(on, "f.jsonl", 0, lines)
    b = detect_chunk(off, "f.jsonl", 0, lines)
    assert a.reports == b.reports
    assert a.malformed == b.malformed == 1
    assert sum(len(r) for _, r in b.reports) >= (45 if compat == "decon" else 150)
    assert a.scanned <= len(texts) - 30  # it does reject
    assert b.scanned >= len(texts) - 5
