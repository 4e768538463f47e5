"""Eval records: the one reader and the one filter every detection mode, `decon index` and
`decon evals stats` use (pure apart from reading the reference files).

A record is Decon's eval record format: `eval_key`, `eval_instance_index`, `split`,
`question`, optional `answer` and `passage`, `doc_id`, `fingerprint`. The filter keeps them in
order and counts why it skips the others:
- too short: fewer than `eval_min_token_length` tokens, in the chosen tokenizer, over the
  indexed fields (passage, question, answer). With `compat: none` such a record is kept for the
  word-alignment rules only (`aligned_only`); with `compat: decon` it is skipped;
- few unique words: fewer than `eval_min_unique_word_count` distinct words over those fields;
- duplicate: an (eval_key, fingerprint) pair seen before (`eval_dedup`);
- no question.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decon.detect.io import is_data_file, iter_lines
from decon.detect.normalize import normalize
from decon.detect.options import DetectOptions
from decon.detect.tokenize import BpeTokenizer, Tokenizer

# Records are filtered a batch at a time, so BPE counts and encodes a batch at once (threads).
BATCH_RECORDS = 4096

TOO_SHORT = "too_short"
FEW_UNIQUE_WORDS = "few_unique_words"
DUPLICATE = "duplicate"
NO_QUESTION = "no_question"
SKIP_REASONS = (TOO_SHORT, FEW_UNIQUE_WORDS, DUPLICATE, NO_QUESTION)


@dataclass
class ReferenceStats:
    """Counts from reading and filtering a reference."""

    files: int = 0
    lines: int = 0
    indexed: int = 0
    skipped_min_tokens: int = 0
    aligned_only: int = 0  # short items indexed for the alignment rules only (compat none)
    skipped_min_unique_words: int = 0
    skipped_duplicates: int = 0
    skipped_no_question: int = 0
    malformed: int = 0
    hot_ngrams: int = 0
    per_eval: dict[str, int] = field(default_factory=dict)
    # eval key -> skip reason -> records
    skipped_per_eval: dict[str, dict[str, int]] = field(default_factory=dict)

    def count_kept(self, eval_key: str) -> None:
        self.indexed += 1
        self.per_eval[eval_key] = self.per_eval.get(eval_key, 0) + 1

    def count_skipped(self, eval_key: str, reason: str) -> None:
        if reason == TOO_SHORT:
            self.skipped_min_tokens += 1
        elif reason == FEW_UNIQUE_WORDS:
            self.skipped_min_unique_words += 1
        elif reason == DUPLICATE:
            self.skipped_duplicates += 1
        else:
            self.skipped_no_question += 1
        reasons = self.skipped_per_eval.setdefault(eval_key, {})
        reasons[reason] = reasons.get(reason, 0) + 1


def reference_files(path: Path) -> list[Path]:
    """The .json/.jsonl(.gz ...) files of a reference directory tree (or the file itself)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and is_data_file(p))


def read_records(path: Path, stats: ReferenceStats) -> Iterator[tuple[str, int, dict]]:
    """Yield (file name, line number, record) from every reference file under `path`."""
    for file in reference_files(path):
        stats.files += 1
        for line_num, raw in enumerate(iter_lines(file)):
            stripped = raw.strip()
            if not stripped or stripped.startswith(b"#"):
                continue
            stats.lines += 1
            try:
                record = json.loads(stripped)
            except ValueError:
                stats.malformed += 1
                continue
            if not isinstance(record, dict):
                stats.malformed += 1
                continue
            yield file.name, line_num, record


def record_text(record: dict, key: str) -> str:
    """The string field `key` of an eval record ("" when missing or not a string)."""
    value = record.get(key)
    return value if isinstance(value, str) else ""


def record_source(file_name: str, line_num: int, record: dict) -> dict[str, Any]:
    """The fields naming an eval record in reports: eval_key (eval_name or the file's stem
    when missing), eval_line, eval_instance_index (the line when missing), split,
    fingerprint, reference_file."""
    instance = record.get("eval_instance_index")
    split = record.get("split")
    fingerprint = record.get("fingerprint")
    return {
        "eval_key": str(record.get("eval_key") or record.get("eval_name") or _stem(file_name)),
        "eval_line": line_num,
        "eval_instance_index": instance if isinstance(instance, int) else line_num,
        "split": split if isinstance(split, str) else None,
        "fingerprint": str(fingerprint) if fingerprint is not None else None,
        "reference_file": file_name,
    }


@dataclass
class EvalRecord:
    """One eval record read, its fields normalised; `source` names it in reports."""

    record: dict
    source: dict[str, Any]
    question: str
    answer: str
    passage: str
    has_answer_field: bool
    aligned_only: bool = False  # set by the filter: too short for n-grams (compat none)

    @classmethod
    def of(cls, file_name: str, line_num: int, record: dict, punctuation: str) -> EvalRecord:
        return cls(
            record=record,
            source=record_source(file_name, line_num, record),
            question=normalize(record_text(record, "question"), punctuation),
            answer=normalize(record_text(record, "answer"), punctuation),
            passage=normalize(record_text(record, "passage"), punctuation),
            has_answer_field="answer" in record,
        )

    @property
    def eval_key(self) -> str:
        return self.source["eval_key"]

    def indexed_text(self, options: DetectOptions) -> str:
        """Passage, question and answer as the index sees them (the minimum length's text)."""
        parts = []
        if options.index_passages and self.passage:
            parts.append(self.passage)
        if self.question:
            parts.append(self.question)
        if options.index_answers and self.has_answer_field and self.answer:
            parts.append(self.answer)
        return " ".join(parts)


class RecordFilter:
    """Keeps eval records in order and counts why it skips the others (see the module)."""

    def __init__(self, options: DetectOptions, tokenizer: Tokenizer, stats: ReferenceStats):
        self.options = options
        self.tokenizer = tokenizer
        self.stats = stats
        self.seen: set[tuple[str, str]] = set()

    def keep(self, batch: list[EvalRecord]) -> list[EvalRecord]:
        """The records of `batch` the index keeps, in order (`aligned_only` set on each)."""
        o, stats = self.options, self.stats
        texts = [r.indexed_text(o) for r in batch]
        short = shorter_than(texts, self.tokenizer, o.eval_min_token_length)
        kept = []
        for r, text, too_short in zip(batch, texts, short, strict=True):
            reason = None
            if too_short and not o.extended:
                reason = TOO_SHORT
            elif o.eval_min_unique_word_count and (
                len(set(text.split())) < o.eval_min_unique_word_count
            ):
                reason = FEW_UNIQUE_WORDS
            elif o.eval_dedup and r.source["fingerprint"] is not None and not self._first(r):
                reason = DUPLICATE
            elif not r.question:
                reason = NO_QUESTION
            if reason is not None:
                stats.count_skipped(r.eval_key, reason)
                continue
            r.aligned_only = too_short
            stats.aligned_only += too_short
            stats.count_kept(r.eval_key)
            kept.append(r)
        return kept

    def _first(self, r: EvalRecord) -> bool:
        key = (r.eval_key, r.source["fingerprint"])
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def kept_records(
    records: Iterable[tuple[str, int, dict]],
    options: DetectOptions,
    tokenizer: Tokenizer,
    stats: ReferenceStats,
) -> Iterator[list[EvalRecord]]:
    """The kept records of (file name, line number, record) triples, a batch at a time."""
    keep = RecordFilter(options, tokenizer, stats).keep
    punctuation = options.punctuation_chars
    batch: list[EvalRecord] = []
    for file_name, line_num, record in records:
        batch.append(EvalRecord.of(file_name, line_num, record, punctuation))
        if len(batch) >= BATCH_RECORDS:
            yield keep(batch)
            batch = []
    if batch:
        yield keep(batch)


def shorter_than(texts: list[str], tokenizer: Tokenizer, minimum: int) -> list[bool]:
    """Per normalised text: fewer than `minimum` tokens (`token_counts`)? A text of at least
    `minimum` words is never encoded: BPE pre-tokenisation never puts two space-separated words
    in one piece, so each word gives at least one token that is not only spaces."""
    if minimum <= 0:
        return [False] * len(texts)
    short = [len(t.split()) < minimum for t in texts]
    if isinstance(tokenizer, BpeTokenizer):
        maybe = [i for i, s in enumerate(short) if s]
        for i, n in zip(maybe, token_counts([texts[i] for i in maybe], tokenizer), strict=True):
            short[i] = n < minimum
    return short


def token_counts(texts: list[str], tokenizer: Tokenizer) -> list[int]:
    """Tokens per text in `tokenizer`, as Decon counts them (BPE tokens of spaces only do not
    count; the word tokenizer counts words)."""
    if not isinstance(tokenizer, BpeTokenizer):
        return [len(t.split()) for t in texts]
    blank = _blank_tokens(tokenizer)
    return [
        len(t) - int(blank[np.asarray(t, dtype=np.int64)].sum()) if t else 0
        for t in tokenizer.encode_batch(texts)
    ]


_BLANK: dict[str, np.ndarray] = {}


def _blank_tokens(tok: BpeTokenizer) -> np.ndarray:
    """Per rank: True for a token of spaces only."""
    got = _BLANK.get(tok.name)
    if got is None:
        got = _BLANK[tok.name] = np.array([not b.strip(b" ") for b in tok.token_bytes])
    return got


def _stem(file_name: str) -> str:
    return file_name.split(".", 1)[0]
