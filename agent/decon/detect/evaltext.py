"""Eval questions for the similarity modes (minhash, toxic): Decon eval records in, the
normalised question words of every kept record out, with its report metadata.

The record filters are simple mode's (`eval_min_token_length` over passage + question +
answer, counted in words here, applied with `compat: decon` only, as in simple mode;
`eval_min_unique_word_count`; `eval_dedup` on (eval_key, fingerprint); records without a
question are skipped). Only the question is matched: it is what
a leak always contains (answers and passages may or may not come along).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decon.detect.normalize import normalized_words
from decon.detect.options import DetectOptions
from decon.detect.reference import ReferenceStats, read_records, record_source, record_text


@dataclass(frozen=True)
class EvalQuestion:
    """One kept eval record: where it came from and its normalised question words."""

    item_id: int
    eval_key: str
    eval_line: int
    eval_instance_index: int
    split: str | None
    fingerprint: str | None
    reference_file: str
    words: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.words[:1000])


def read_questions(
    reference: Path, options: DetectOptions
) -> tuple[list[EvalQuestion], ReferenceStats]:
    """Every kept eval question under `reference` (a file or a directory tree), and counts."""
    stats = ReferenceStats()
    seen: set[tuple[str, str]] = set()
    out: list[EvalQuestion] = []
    punct = options.punctuation_chars
    for file_name, line_num, record in read_records(reference, stats):
        question = normalized_words(record_text(record, "question"), punct)
        combined = len(question)
        if options.index_answers:
            combined += len(normalized_words(record_text(record, "answer"), punct))
        if options.index_passages:
            combined += len(normalized_words(record_text(record, "passage"), punct))
        too_short = options.eval_min_token_length and combined < options.eval_min_token_length
        if too_short and not options.extended:
            stats.skipped_min_tokens += 1
            continue
        unique = set(question)
        if options.eval_min_unique_word_count and len(unique) < options.eval_min_unique_word_count:
            stats.skipped_min_unique_words += 1
            continue
        source = record_source(file_name, line_num, record)
        fingerprint = source["fingerprint"]
        if options.eval_dedup and fingerprint is not None:
            key = (source["eval_key"], fingerprint)
            if key in seen:
                stats.skipped_duplicates += 1
                continue
            seen.add(key)
        if not question:
            stats.skipped_no_question += 1
            continue
        out.append(EvalQuestion(item_id=len(out), **source, words=tuple(question)))
        stats.indexed += 1
        eval_key = source["eval_key"]
        stats.per_eval[eval_key] = stats.per_eval.get(eval_key, 0) + 1
    return out, stats


def question_fields(question: EvalQuestion) -> dict[str, Any]:
    """The report fields naming the matched eval item (the same names simple mode uses)."""
    return {
        "eval_key": question.eval_key,
        "eval_dataset": question.eval_key,
        "eval_line": question.eval_line,
        "eval_instance_index": question.eval_instance_index,
        "split": question.split,
        "fingerprint": question.fingerprint,
        "reference_file": question.reference_file,
        "eval_question_text": question.text,
    }
