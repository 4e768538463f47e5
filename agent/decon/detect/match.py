"""What a detector found: one (document, eval item) match."""

from __future__ import annotations

from dataclasses import dataclass

from decon.detect.reference import EvalItem


@dataclass
class Match:
    """One contaminated (document, eval item) pair with Decon's report values."""

    item: EvalItem
    contamination_score: float
    idf_overlap: float
    ngram_match_cnt: int
    question_start_idx: int
    question_end_idx: int
    cluster_token_length: int
    length_adjusted_question_threshold: float
    answer_overlap_ratio: float | None = None
    answer_idf_overlap: float | None = None
    answer_boundaries: list[tuple[int, int]] | None = None
    passage_overlap_ratio: float | None = None
    passage_idf_overlap: float | None = None
    passage_start_idx: int | None = None
    passage_end_idx: int | None = None
    training_overlap_text: str | None = None
    match_kind: str = "question"  # question | question_answer | question_passage | ...
    rule: str = "decon_score"  # which rule reported it (see the module docstring)
    reason: str = ""  # the figures that decided it
