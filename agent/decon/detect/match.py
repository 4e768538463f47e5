"""What a detector finds: per document its `Findings`, each `Match` one eval item in it with
the figures of the mode and rule that found it. `decon.detect.report.report_line` turns a
match into a report line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from decon.detect.evaltext import EvalQuestion
from decon.detect.reference import EvalItem


@dataclass(frozen=True)
class ClusterEvidence:
    """Simple mode, Decon's n-gram cluster (rule `decon_score`): its report values."""

    rule: ClassVar[str] = "decon_score"
    match_kind: str  # question | question_answer | question_passage | question_answer_passage
    reason: str  # the figures that decided it
    idf_overlap: float  # IDF-weighted share of the question's n-grams in the cluster
    ngram_matches: int  # distinct question n-grams in the cluster
    cluster_token_length: int
    length_adjusted_question_threshold: float
    answer_overlap_ratio: float | None = None
    answer_idf_overlap: float | None = None
    answer_boundaries: tuple[tuple[int, int], ...] | None = None  # token spans, inclusive
    passage_overlap_ratio: float | None = None
    passage_idf_overlap: float | None = None
    passage_span: tuple[int, int] | None = None  # tokens, inclusive


@dataclass(frozen=True)
class AlignmentEvidence:
    """Simple mode, a question aligned word by word (`decon.detect.alignment_rules`)."""

    rule: str  # question_answer_window | question_passage_window | question_only | ...
    match_kind: str  # question | question_answer | question_passage | short_question
    reason: str  # the figures that decided it
    edit_similarity: float  # 1 - word edits / question words
    matched_words: int  # question words less word edits
    min_edit_similarity: float  # the least `edit_similarity` the item's allowed edits give
    answer_span: tuple[int, int] | None = None  # tokens, inclusive
    passage_span: tuple[int, int] | None = None  # tokens, inclusive


@dataclass(frozen=True)
class ShingleEvidence:
    """minhash mode: the question's shingles against the best window's."""

    metric: str  # the report key of the score: jaccard_similarity | containment
    eval_shingles: int  # distinct shingles of the question


@dataclass(frozen=True)
class VectorEvidence:
    """toxic mode: the question's word-vector n-grams found in one window."""

    eval_ngrams: int  # n-grams of the question


Evidence = ClusterEvidence | AlignmentEvidence | ShingleEvidence | VectorEvidence


@dataclass(frozen=True)
class Match:
    """One eval item found in one training document. `start` and `end` (inclusive) are token
    positions in the document (words, for the toxic mode); `item` is an `EvalItem` in simple
    mode, an `EvalQuestion` in the similarity modes."""

    item: EvalItem | EvalQuestion
    contamination_score: float
    start: int
    end: int
    training_overlap_text: str
    evidence: Evidence


@dataclass(frozen=True)
class Findings:
    """What a detector found in one document: its matches, in document order, and whether it
    was scanned (passed the mode's lossless filters and was tokenized and searched)."""

    matches: list[Match]
    scanned: bool


def overlap_text(
    question: tuple[int, int],
    covered: tuple[int, int],
    length: int,
    render: Callable[[int, int], str],
) -> str:
    """Simple mode's `training_overlap_text` (Decon's layout): the `question` tokens (inclusive)
    in 【】 with 30 tokens of context before the `covered` span (question, and passage or
    answer) and 60 after it, of a document of `length` tokens; `render(a, b)` is the text of
    tokens [a, b)."""
    start, end = question
    before_start = max(0, covered[0] - 30)
    after_end = min(length, covered[1] + 1 + 60)
    parts = []
    if before_start > 0:
        parts.append("...")
    parts.append(render(before_start, start))
    parts.append("【" + render(start, end + 1) + "】")
    parts.append(render(end + 1, after_end))
    if after_end < length:
        parts.append("...")
    return " ".join(p.strip() for p in parts if p.strip())
