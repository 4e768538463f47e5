"""Report lines: the training location and document id, then the match's eval item and the
figures of the mode and rule that found it (Decon's simple-mode names where they exist)."""

from __future__ import annotations

from typing import Any

from decon.detect.evaltext import EvalQuestion
from decon.detect.match import (
    AlignmentEvidence,
    ClusterEvidence,
    Match,
    ShingleEvidence,
    VectorEvidence,
)
from decon.detect.reference import EvalItem


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def report_line(
    match: Match, training_file: str, training_line: int, doc_id: Any = None
) -> dict[str, Any]:
    """One JSON-serialisable report line (training_line is 0-based, as Decon)."""
    item = match.item
    line: dict[str, Any] = {
        "training_file": training_file,
        "input_path": training_file,
        "training_line": training_line,
        "eval_key": item.eval_key,
        "eval_dataset": item.eval_key,
        "eval_line": item.eval_line,
        "eval_instance_index": item.eval_instance_index,
        "split": item.split,
        "fingerprint": item.fingerprint,
        "reference_file": item.reference_file,
    }
    evidence = match.evidence
    if isinstance(evidence, ClusterEvidence | AlignmentEvidence):
        assert isinstance(item, EvalItem)
        _simple_fields(line, match, item, evidence)
    else:
        assert isinstance(item, EvalQuestion)
        _similarity_fields(line, match, item, evidence)
    if doc_id is not None:
        line["doc_id"] = doc_id
    return line


def _simple_fields(
    line: dict[str, Any],
    match: Match,
    item: EvalItem,
    evidence: ClusterEvidence | AlignmentEvidence,
) -> None:
    """Decon's simple-mode report fields, plus `match_kind` (question, question_answer,
    question_passage, question_answer_passage, short_question), `rule` (decon_score,
    question_answer_window, question_passage_window, question_only, short_sentence) and
    `reason`. An alignment reports its word-edit similarity as `idf_overlap`, its matched
    words as `ngram_match_cnt`, and a found answer or passage with overlap ratio 1."""
    if isinstance(evidence, ClusterEvidence):
        overlap = evidence.idf_overlap
        matched = evidence.ngram_matches
        threshold = evidence.length_adjusted_question_threshold
        span_tokens = evidence.cluster_token_length
        answer_ratio, answer_idf = evidence.answer_overlap_ratio, evidence.answer_idf_overlap
        answer_bounds = evidence.answer_boundaries
        passage_ratio, passage_idf = evidence.passage_overlap_ratio, evidence.passage_idf_overlap
    else:
        overlap = evidence.edit_similarity
        matched = evidence.matched_words
        threshold = evidence.min_edit_similarity
        span_tokens = match.end - match.start + 1
        answer_ratio = 1.0 if evidence.answer_span is not None else None
        answer_idf = None
        answer_bounds = (evidence.answer_span,) if evidence.answer_span is not None else None
        passage_ratio = 1.0 if evidence.passage_span is not None else None
        passage_idf = None
    passage_span = evidence.passage_span
    line.update(
        {
            "contamination_score": _r(match.contamination_score),
            "length_adjusted_question_threshold": _r(threshold),
            "idf_overlap": _r(overlap),
            "ngram_match_cnt": matched,
            "eval_unique_ngrams": item.unique_ngrams,
            "question_start_idx": match.start,
            "question_end_idx": match.end,
            "contamination_start_idx": match.start,
            "contamination_end_idx": match.end,
            "cluster_token_length": span_tokens,
            "eval_token_length": item.question_token_length,
            "token_length_delta": span_tokens - item.question_token_length,
            "training_overlap_text": match.training_overlap_text,
            "eval_question_text": item.question_text,
            "eval_overlap_text": item.question_text,
            "method": "simple",
            "match_kind": evidence.match_kind,
            "rule": evidence.rule,
            "reason": evidence.reason,
        }
    )
    if item.has_answer:
        line["eval_answer_text"] = item.answer_text
        line["answer_overlap_ratio"] = _r(answer_ratio)
        line["answer_idf_overlap"] = _r(answer_idf)
        if answer_bounds:
            line["answer_boundaries"] = [list(b) for b in answer_bounds]
            line["answer_start_idx"] = answer_bounds[0][0]
            line["answer_end_idx"] = answer_bounds[-1][1]
    if item.has_passage:
        line["eval_passage_text"] = item.passage_text
        line["passage_overlap_ratio"] = _r(passage_ratio)
        line["passage_idf_overlap"] = _r(passage_idf)
        if passage_span is not None:
            line["passage_start_idx"] = passage_span[0]
            line["passage_end_idx"] = passage_span[1]


def _similarity_fields(
    line: dict[str, Any],
    match: Match,
    question: EvalQuestion,
    evidence: ShingleEvidence | VectorEvidence,
) -> None:
    """The minhash and toxic modes' fields: the score under its metric's name (minhash:
    jaccard_similarity or containment; toxic: overlap_ratio) and the question's size."""
    score = _r(match.contamination_score)
    line["eval_question_text"] = question.text
    line[evidence.metric if isinstance(evidence, ShingleEvidence) else "overlap_ratio"] = score
    line["contamination_score"] = score
    line["contamination_start_idx"] = match.start
    line["contamination_end_idx"] = match.end
    line["training_overlap_text"] = match.training_overlap_text
    if isinstance(evidence, ShingleEvidence):
        line["eval_shingles"] = evidence.eval_shingles
        line["method"] = "minhash"
    else:
        line["eval_ngrams"] = evidence.eval_ngrams
        line["method"] = "toxic"
