"""`decon evals stats DIR`: what a reference set holds and what detection would skip of it.

Records are read and filtered by the detector's own reader and filter
(`decon.detect.records`), under the detection options given, so the skip counts are the
ones `decon detect` prints on its `reference:` line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decon.detect.options import DetectOptions
from decon.detect.records import (
    BATCH_RECORDS,
    SKIP_REASONS,
    EvalRecord,
    RecordFilter,
    ReferenceStats,
    read_records,
    token_counts,
)
from decon.detect.tokenize import get_tokenizer
from decon.errors import UserError

FIELDS = ("question", "answer", "passage")


@dataclass
class Lengths:
    """Token lengths of one field over the records that have it."""

    count: int = 0
    total: int = 0
    low: int | None = None
    high: int | None = None

    def add(self, n: int) -> None:
        self.count += 1
        self.total += n
        self.low = n if self.low is None else min(self.low, n)
        self.high = n if self.high is None else max(self.high, n)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def to_json(self) -> dict[str, Any]:
        mean = self.mean
        return {"min": self.low, "mean": round(mean, 1) if mean is not None else None,
                "max": self.high}  # fmt: skip


@dataclass
class EvalStats:
    """One eval's figures."""

    records: int = 0
    with_answer: int = 0
    with_passage: int = 0
    lengths: dict[str, Lengths] = field(default_factory=lambda: {f: Lengths() for f in FIELDS})


def collect(directory: Path, options: DetectOptions) -> tuple[dict[str, EvalStats], ReferenceStats]:
    """Per eval figures, and the filter's counts (per eval in `skipped_per_eval`)."""
    tokenizer = get_tokenizer(options.tokenizer)
    reference = ReferenceStats()
    keep = RecordFilter(options, tokenizer, reference).keep
    per_eval: dict[str, EvalStats] = {}
    batch: list[EvalRecord] = []

    def flush() -> None:
        for name in FIELDS:
            having = [r for r in batch if getattr(r, name)]
            counts = token_counts([getattr(r, name) for r in having], tokenizer)
            for r, n in zip(having, counts, strict=True):
                per_eval[r.eval_key].lengths[name].add(n)
        keep(batch)
        batch.clear()

    for file_name, line_num, record in read_records(directory, reference):
        r = EvalRecord.of(file_name, line_num, record, options.punctuation_chars)
        st = per_eval.setdefault(r.eval_key, EvalStats())
        st.records += 1
        st.with_answer += bool(r.has_answer_field and r.answer)
        st.with_passage += bool(r.passage)
        batch.append(r)
        if len(batch) >= BATCH_RECORDS:
            flush()
    flush()
    return per_eval, reference


def _fmt(lengths: Lengths) -> str:
    if not lengths.count:
        return "-"
    return f"{lengths.low}/{lengths.mean:.1f}/{lengths.high}"


def render(
    where: Path, per_eval: dict[str, EvalStats], ref: ReferenceStats, options: DetectOptions
) -> str:
    head = ("eval", "records", "answers", "passages", "question", "answer", "passage",
            "short", "few words", "duplicate", "no question", "indexed")  # fmt: skip
    rows = []
    for name in sorted(per_eval):
        st = per_eval[name]
        skipped = ref.skipped_per_eval.get(name, {})
        rows.append(
            (name, st.records, st.with_answer, st.with_passage,
             *(_fmt(st.lengths[f]) for f in FIELDS),
             *(skipped.get(reason, 0) for reason in SKIP_REASONS), ref.per_eval.get(name, 0))
        )  # fmt: skip
    widths = [max(len(str(r[c])) for r in [head, *rows]) for c in range(len(head))]
    lines = [
        f"{where}: {sum(st.records for st in per_eval.values())} records in {ref.files} "
        f"files, {len(per_eval)} evals; lengths "
        f"min/mean/max in {options.tokenizer} tokens (normalised text)",
        "",
    ]
    for r in [head, *rows]:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]  # fmt: skip
        lines.append("  ".join(cells).rstrip())
    lines += [
        "",
        f"with these options detection indexes {ref.indexed} items "
        f"(skipped: {ref.skipped_min_tokens} short, {ref.skipped_min_unique_words} few words, "
        f"{ref.skipped_duplicates} duplicates, {ref.skipped_no_question} without a question, "
        f"{ref.malformed} malformed)"
        + (
            f"; {ref.aligned_only} short ones for the word-alignment rules only"
            if ref.aligned_only
            else ""
        ),  # fmt: skip
        f"short: under eval_min_token_length={options.eval_min_token_length} tokens"
        + (" (compat none keeps them for alignment)" if options.extended else "")
        + f"; few words: under eval_min_unique_word_count={options.eval_min_unique_word_count}"
        f"; duplicate: eval_dedup={options.eval_dedup}",
    ]
    return "\n".join(lines)


def to_json(per_eval: dict[str, EvalStats], ref: ReferenceStats) -> dict[str, Any]:
    return {
        "files": ref.files,
        "records": sum(st.records for st in per_eval.values()),
        "malformed": ref.malformed,
        "indexed": ref.indexed,
        "aligned_only": ref.aligned_only,
        "skipped": {
            "too_short": ref.skipped_min_tokens,
            "few_unique_words": ref.skipped_min_unique_words,
            "duplicate": ref.skipped_duplicates,
            "no_question": ref.skipped_no_question,
        },
        "evals": {
            name: {
                "records": st.records,
                "with_answer": st.with_answer,
                "with_passage": st.with_passage,
                "lengths": {f: st.lengths[f].to_json() for f in FIELDS},
                "skipped": {
                    reason: ref.skipped_per_eval.get(name, {}).get(reason, 0)
                    for reason in SKIP_REASONS
                },
                "indexed": ref.per_eval.get(name, 0),
            }
            for name, st in sorted(per_eval.items())
        },
    }


def run_stats(args: argparse.Namespace) -> int:
    from decon.detect.cli import options_from_args

    options = options_from_args(args)
    if not args.dir.exists():
        raise UserError(f"{args.dir}: no such file or directory")
    try:
        per_eval, ref = collect(args.dir, options)
    except OSError as exc:
        raise UserError(f"{getattr(exc, 'filename', None) or args.dir}: {exc.strerror}") from None
    if not ref.files:
        raise UserError(f"{args.dir}: no eval record files (.jsonl, .jsonl.gz, ...)")
    if args.json:
        print(json.dumps(to_json(per_eval, ref), indent=2))
    else:
        print(render(args.dir, per_eval, ref, options))
    if ref.malformed:
        print(f"decon: {args.dir}: {ref.malformed} malformed line(s) skipped", file=sys.stderr)
    return 0
