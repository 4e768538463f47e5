"""Report lines: the training location and document id, then the mode's own fields."""

from __future__ import annotations

from typing import Any

from decon.detect.match import Match

# Report fields of one match, without the training location (see `report_line`).
MatchFields = dict[str, Any]


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def report_line(
    fields: dict[str, Any], training_file: str, training_line: int, doc_id: Any = None
) -> dict[str, Any]:
    """One JSON-serialisable report line (training_line is 0-based, as Decon).

    `fields` are a detector's match fields; they must include `eval_key` and `method`.
    """
    line: dict[str, Any] = {
        "training_file": training_file,
        "input_path": training_file,
        "training_line": training_line,
        **fields,
    }
    if doc_id is not None:
        line["doc_id"] = doc_id
    return line


def simple_fields(match: Match) -> dict[str, Any]:
    """Decon's simple-mode report fields of one match, plus `match_kind` (question,
    question_answer, question_passage, question_answer_passage, short_question), `rule`
    (decon_score, question_answer_window, question_only, short_sentence) and `reason`."""
    item = match.item
    line: dict[str, Any] = {
        "eval_key": item.eval_key,
        "eval_dataset": item.eval_key,
        "eval_line": item.eval_line,
        "eval_instance_index": item.eval_instance_index,
        "split": item.split,
        "fingerprint": item.fingerprint,
        "reference_file": item.reference_file,
        "contamination_score": _r(match.contamination_score),
        "length_adjusted_question_threshold": _r(match.length_adjusted_question_threshold),
        "idf_overlap": _r(match.idf_overlap),
        "ngram_match_cnt": match.ngram_match_cnt,
        "eval_unique_ngrams": item.unique_ngrams,
        "question_start_idx": match.question_start_idx,
        "question_end_idx": match.question_end_idx,
        "contamination_start_idx": match.question_start_idx,
        "contamination_end_idx": match.question_end_idx,
        "cluster_token_length": match.cluster_token_length,
        "eval_token_length": item.question_token_length,
        "token_length_delta": match.cluster_token_length - item.question_token_length,
        "training_overlap_text": match.training_overlap_text,
        "eval_question_text": item.question_text,
        "eval_overlap_text": item.question_text,
        "method": "simple",
        "match_kind": match.match_kind,
        "rule": match.rule,
        "reason": match.reason,
    }
    if item.has_answer:
        line["eval_answer_text"] = item.answer_text
        line["answer_overlap_ratio"] = _r(match.answer_overlap_ratio)
        line["answer_idf_overlap"] = _r(match.answer_idf_overlap)
        if match.answer_boundaries:
            line["answer_boundaries"] = [list(b) for b in match.answer_boundaries]
            line["answer_start_idx"] = match.answer_boundaries[0][0]
            line["answer_end_idx"] = match.answer_boundaries[-1][1]
    if item.has_passage:
        line["eval_passage_text"] = item.passage_text
        line["passage_overlap_ratio"] = _r(match.passage_overlap_ratio)
        line["passage_idf_overlap"] = _r(match.passage_idf_overlap)
        if match.passage_start_idx is not None:
            line["passage_start_idx"] = match.passage_start_idx
            line["passage_end_idx"] = match.passage_end_idx
    return line
