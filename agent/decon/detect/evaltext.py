"""Eval questions for the similarity modes (minhash, toxic): Decon eval records in, the
normalised question words of every kept record out, with its report metadata.

Records are read and filtered as for simple mode (`decon.detect.records`). Only the question
is matched: it is what a leak always contains (answers and passages may or may not come
along).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from decon.detect.options import DetectOptions
from decon.detect.records import ReferenceStats, kept_records, read_records
from decon.detect.tokenize import get_tokenizer


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
    records = read_records(reference, stats)
    tokenizer = get_tokenizer(options.tokenizer)
    out: list[EvalQuestion] = []
    for kept in kept_records(records, options, tokenizer, stats):
        for r in kept:
            words = tuple(r.question.split())
            out.append(EvalQuestion(item_id=len(out), **r.source, words=words))
    return out, stats
