"""Score a detector's report directory against a corpus's truth.jsonl.

A document counts as found when at least one report line points at its (training file, line);
"right item" additionally needs a report line naming the planted (eval_key, eval_instance_index).
Precision is document-level: flagged positive documents over all flagged documents, where a
report line pointing at a line with no truth record (e.g. a malformed line) counts as a flagged
negative.

Which training file a report line refers to is resolved, in order, from: a relative-path field
of the line (`RELPATH_FIELDS`), the report file's own path under the report root
(``{report_dir}/{relative path}.report.jsonl``), then `training_file` (a basename, as Decon
writes it, with or without the compression suffix; used only when unambiguous). Lines are
0-based like Decon's ``training_line``; pass ``line_base=1`` for 1-based reports.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from decon.detect.io import compression_of
from decon.errors import UserError
from decon_synth.benchmarks import BUCKET_NAMES
from decon_synth.plant import (
    ALL_KINDS,
    MALFORMED_KIND,
    NEGATIVE_KINDS,
    POSITIVE_KINDS,
    TruthRecord,
    read_truth,
)

RELPATH_FIELDS: tuple[str, ...] = (
    "input_relpath",
    "input_relative_path",
    "relative_path",
    "relpath",
    "rel_path",
    "input_path",
    "training_path",
    "source_path",
    "input_file",
    "path",
)
REPORT_SUFFIX = ".report.jsonl"


def _strip_compression(name: str) -> str:
    return name.removesuffix(compression_of(name))


@dataclass(frozen=True)
class ReportHit:
    """One report line: which training line it flags and which eval item it names."""

    candidates: tuple[str, ...]  # relative paths to try, most specific first
    training_file: str
    line: int
    eval_key: str | None
    eval_instance_index: int | None
    source: str  # report file and line number, for messages


def read_reports(report_dir: Path, line_base: int = 0) -> tuple[list[ReportHit], int]:
    """Every report line under `report_dir` (``*.report.jsonl``), plus the count of lines that
    are not JSON objects with a training line (skipped)."""
    if not report_dir.is_dir():
        raise UserError(f"{report_dir}: report directory not found")
    hits: list[ReportHit] = []
    bad = 0
    for path in sorted(report_dir.rglob(f"*{REPORT_SUFFIX}")):
        rel_from_name = path.relative_to(report_dir).as_posix()[: -len(REPORT_SUFFIX)]
        with path.open(encoding="utf-8", errors="replace") as fh:
            for n, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                    line = int(rec["training_line"]) - line_base
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    bad += 1
                    continue
                if not isinstance(rec, dict):
                    bad += 1
                    continue
                fields = [str(rec[f]) for f in RELPATH_FIELDS if isinstance(rec.get(f), str)]
                index = rec.get("eval_instance_index")
                hits.append(
                    ReportHit(
                        candidates=(*fields, rel_from_name),
                        training_file=str(rec.get("training_file") or ""),
                        line=line,
                        eval_key=rec.get("eval_key"),
                        eval_instance_index=int(index) if isinstance(index, int) else None,
                        source=f"{path}:{n}",
                    )
                )
    return hits, bad


class _TruthIndex:
    def __init__(self, truths: Iterable[TruthRecord]):
        self.by_line: dict[tuple[str, int], TruthRecord] = {}
        self.files: dict[str, str] = {}  # stripped relpath -> truth relpath
        self.by_base: dict[str, set[str]] = {}
        for t in truths:
            stripped = _strip_compression(t.file)
            self.by_line[(stripped, t.line)] = t
            self.files[stripped] = t.file
            base = stripped.rsplit("/", 1)[-1]
            self.by_base.setdefault(base, set()).add(stripped)

    def resolve_file(self, hit: ReportHit) -> str | None:
        for cand in hit.candidates:
            c = _strip_compression(cand.replace("\\", "/")).lstrip("./")
            if c in self.files:
                return c
            # An absolute or root-prefixed path: match on a whole-component suffix.
            for stripped in self.files:
                if c.endswith("/" + stripped):
                    return stripped
        base = _strip_compression(hit.training_file.rsplit("/", 1)[-1])
        matches = self.by_base.get(base, set())
        return next(iter(matches)) if len(matches) == 1 else None

    def lookup(self, hit: ReportHit) -> TruthRecord | None:
        stripped = self.resolve_file(hit)
        return self.by_line.get((stripped, hit.line)) if stripped is not None else None


@dataclass
class Cell:
    """Documents of one (kind, bucket): how many, how many flagged, how many with the right
    item named."""

    docs: int = 0
    flagged: int = 0
    right_item: int = 0

    def add(self, other: Cell) -> None:
        self.docs += other.docs
        self.flagged += other.flagged
        self.right_item += other.right_item


@dataclass
class Score:
    """Result of scoring one report directory. Cells are keyed by (kind, bucket); bucket is
    None for documents without an item (clean text, malformed lines)."""

    cells: dict[tuple[str, str | None], Cell] = field(default_factory=dict)
    report_lines: int = 0
    unresolved_lines: int = 0  # report lines whose file/line matches no truth record
    unresolved_docs: int = 0  # distinct (file, line) among them: counted as false positives
    bad_report_lines: int = 0

    def cell(self, kind: str | None = None, bucket: str | None = None) -> Cell:
        """Sum over cells matching `kind` and `bucket` (None = any)."""
        total = Cell()
        for (k, b), c in self.cells.items():
            if (kind is None or k == kind) and (bucket is None or b == bucket):
                total.add(c)
        return total

    def _positive(self, bucket: str | None) -> Cell:
        total = Cell()
        for kind in POSITIVE_KINDS:
            total.add(self.cell(kind, bucket))
        return total

    def recall(self, kind: str | None = None, bucket: str | None = None) -> float:
        """Found / planted over positive documents (of `kind`, in `bucket`)."""
        c = self.cell(kind, bucket) if kind else self._positive(bucket)
        return c.flagged / c.docs if c.docs else float("nan")

    def item_recall(self, kind: str | None = None, bucket: str | None = None) -> float:
        """Share of positive documents whose report names the planted item."""
        c = self.cell(kind, bucket) if kind else self._positive(bucket)
        return c.right_item / c.docs if c.docs else float("nan")

    def false_positives(self, kind: str | None = None, bucket: str | None = None) -> int:
        """Flagged negative documents (of `kind`, in `bucket`; unresolved lines included when
        neither is given)."""
        kinds = [kind] if kind else [*NEGATIVE_KINDS, MALFORMED_KIND]
        fp = sum(self.cell(k, bucket).flagged for k in kinds if k not in POSITIVE_KINDS)
        if kind is None and bucket is None:
            fp += self.unresolved_docs
        return fp

    def precision(self, bucket: str | None = None) -> float:
        """Flagged positives / all flagged documents (in `bucket`); 1.0 when nothing flagged."""
        tp = self._positive(bucket).flagged
        fp = self.false_positives(None, bucket)
        return tp / (tp + fp) if tp + fp else 1.0

    def to_dict(self) -> dict:
        """Plain figures, e.g. for a JSON summary."""
        return {
            "precision": self.precision(),
            "recall": self.recall(),
            "item_recall": self.item_recall(),
            "false_positives": self.false_positives(),
            "report_lines": self.report_lines,
            "unresolved_lines": self.unresolved_lines,
            "bad_report_lines": self.bad_report_lines,
            "kinds": {
                k: {
                    "docs": self.cell(k).docs,
                    "flagged": self.cell(k).flagged,
                    "right_item": self.cell(k).right_item,
                }
                for k in (*ALL_KINDS, MALFORMED_KIND)
                if self.cell(k).docs
            },
            "buckets": {
                b: {"recall": self.recall(None, b), "precision": self.precision(b)}
                for b in BUCKET_NAMES
                if self._positive(b).docs
            },
        }


def score(truths: Iterable[TruthRecord], hits: Iterable[ReportHit], bad_lines: int = 0) -> Score:
    """Score report hits against the truth (pure)."""
    truths = list(truths)
    index = _TruthIndex(truths)
    flagged: set[tuple[str, int]] = set()
    right: set[tuple[str, int]] = set()
    unresolved: set[tuple[str, int]] = set()
    result = Score(bad_report_lines=bad_lines)
    for hit in hits:
        result.report_lines += 1
        truth = index.lookup(hit)
        if truth is None:
            result.unresolved_lines += 1
            unresolved.add((index.resolve_file(hit) or hit.training_file, hit.line))
            continue
        key = (truth.file, truth.line)
        flagged.add(key)
        if (
            truth.positive
            and hit.eval_key == truth.eval_key
            and hit.eval_instance_index == truth.eval_instance_index
        ):
            right.add(key)
    result.unresolved_docs = len(unresolved)
    for t in truths:
        cell = result.cells.setdefault((t.kind, t.bucket), Cell())
        cell.docs += 1
        key = (t.file, t.line)
        cell.flagged += key in flagged
        cell.right_item += key in right
    return result


def evaluate_dirs(truth_path: Path, report_dir: Path, line_base: int = 0) -> Score:
    """Read truth.jsonl and a report directory, and score them."""
    hits, bad = read_reports(report_dir, line_base)
    return score(read_truth(truth_path), hits, bad)


# ---------------------------------------------------------------------------- tables


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{x:.3f}"


def kind_table(result: Score) -> str:
    """Markdown: per kind, documents, flagged, recall (positives) or false positives."""
    rows = [
        "| kind | docs | flagged | recall | right item |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind in POSITIVE_KINDS:
        c = result.cell(kind)
        if c.docs:
            rows.append(
                f"| {kind} | {c.docs} | {c.flagged} | {_pct(result.recall(kind))} "
                f"| {_pct(result.item_recall(kind))} |"
            )
    for kind in (*NEGATIVE_KINDS, MALFORMED_KIND):
        c = result.cell(kind)
        if c.docs:
            rows.append(f"| {kind} (negative) | {c.docs} | {c.flagged} | - | - |")
    rows.append(
        f"| **all** | {sum(c.docs for c in result.cells.values())} "
        f"| {sum(c.flagged for c in result.cells.values()) + result.unresolved_docs} "
        f"| {_pct(result.recall())} | {_pct(result.item_recall())} |"
    )
    rows.append("")
    rows.append(
        f"Precision {_pct(result.precision())}, false positives {result.false_positives()}"
        + (f" (incl. {result.unresolved_docs} unresolved)" if result.unresolved_docs else "")
        + "."
    )
    return "\n".join(rows)


def bucket_table(result: Score) -> str:
    """Markdown: per item-length bucket, recall over positives and precision."""
    rows = [
        "| words | positives | found | recall | negatives | false pos. | precision |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for bucket in BUCKET_NAMES:
        pos = result._positive(bucket)
        negs = sum(result.cell(k, bucket).docs for k in NEGATIVE_KINDS)
        if not pos.docs and not negs:
            continue
        rows.append(
            f"| {bucket} | {pos.docs} | {pos.flagged} | {_pct(result.recall(None, bucket))} "
            f"| {negs} | {result.false_positives(None, bucket)} "
            f"| {_pct(result.precision(bucket))} |"
        )
    return "\n".join(rows)


def kind_bucket_table(result: Score) -> str:
    """Markdown: recall per positive kind (rows) and length bucket (columns)."""
    rows = [
        "| kind | " + " | ".join(BUCKET_NAMES) + " | all |",
        "|---|" + "---:|" * (len(BUCKET_NAMES) + 1),
    ]
    for kind in POSITIVE_KINDS:
        if not result.cell(kind).docs:
            continue
        cells = [_pct(result.recall(kind, b)) for b in BUCKET_NAMES]
        rows.append(f"| {kind} | " + " | ".join(cells) + f" | {_pct(result.recall(kind))} |")
    return "\n".join(rows)


def compare_table(results: Mapping[str, Score]) -> str:
    """Markdown: recall per kind and precision, one column per named result (e.g. per mode)."""
    names = list(results)
    rows = ["| kind | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for kind in POSITIVE_KINDS:
        cells = " | ".join(_pct(results[n].recall(kind)) for n in names)
        rows.append(f"| {kind} (recall) | {cells} |")
    for bucket in BUCKET_NAMES:
        rows.append(
            f"| {bucket} words (recall) | "
            + " | ".join(_pct(results[n].recall(None, bucket)) for n in names)
            + " |"
        )
    for kind in NEGATIVE_KINDS:
        rows.append(
            f"| {kind} (false pos.) | "
            + " | ".join(str(results[n].false_positives(kind)) for n in names)
            + " |"
        )
    precision = " | ".join(_pct(results[n].precision()) for n in names)
    recall = " | ".join(_pct(results[n].recall()) for n in names)
    rows += [f"| **precision** | {precision} |", f"| **recall** | {recall} |"]
    return "\n".join(rows)


def format_markdown(result: Score, title: str | None = None) -> str:
    """All tables of one result, as markdown (what the README shows)."""
    parts = [f"### {title}\n" if title else ""]
    parts += [kind_table(result), "", bucket_table(result), "", kind_bucket_table(result)]
    return "\n".join(parts).strip() + "\n"
