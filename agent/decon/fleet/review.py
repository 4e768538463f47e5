"""`decon review`: read a job's reports (a local directory or an S3 prefix).

Counts contaminated documents per eval and per input file, lists the most matched eval items
and shows matches in context with the matched span highlighted: in the training document's own
words when its input file can be read (`--inputs`, or the job's input), located from the
report's word offsets; the normalised form follows. Report lines are Decon's JSONL
(`training_file`, `training_line`, `eval_key`, `eval_instance_index`, `contamination_score`,
`training_overlap_text` with the matched span in 【】, ...); unknown fields are ignored and a
malformed line is counted, never fatal.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decon.config import AwsSection, load_config
from decon.errors import UserError
from decon.storage import LocalStorage, Storage, open_storage

REPORT_SUFFIX = ".report.jsonl"
CLEAN_SUFFIX = ".clean"
SPAN_RE = re.compile(r"【(.*?)】", re.S)
ANSI_ON, ANSI_OFF = "\033[1;31m", "\033[0m"
PLAIN_ON, PLAIN_OFF = ">>>", "<<<"


@dataclass
class Match:
    """One report line, reduced to what review shows."""

    report: str  # report object key
    input_file: str
    training_line: int | None
    eval_key: str
    eval_item: str  # instance index (or eval line) within the eval
    score: float | None
    overlap_text: str
    question: str
    method: str
    start_idx: int | None = None  # the matched span's first and last word (normalised words)
    end_idx: int | None = None

    @property
    def document(self) -> tuple[str, int | None]:
        return (self.input_file, self.training_line)


@dataclass
class Review:
    reports: int = 0
    clean_files: int = 0
    matches: list[Match] = field(default_factory=list)
    malformed: int = 0
    malformed_first: str | None = None  # "key:line: why"

    def per_eval(self) -> list[tuple[str, int, int]]:
        """(eval, contaminated documents, matches), most documents first."""
        docs: dict[str, set[tuple[str, int | None]]] = defaultdict(set)
        hits: Counter[str] = Counter()
        for m in self.matches:
            docs[m.eval_key].add(m.document)
            hits[m.eval_key] += 1
        return sorted(((k, len(v), hits[k]) for k, v in docs.items()), key=lambda r: (-r[1], r[0]))

    def per_input(self) -> list[tuple[str, int, int]]:
        """(input file, contaminated documents, matches), most documents first."""
        docs: dict[str, set[int | None]] = defaultdict(set)
        hits: Counter[str] = Counter()
        for m in self.matches:
            docs[m.input_file].add(m.training_line)
            hits[m.input_file] += 1
        return sorted(((k, len(v), hits[k]) for k, v in docs.items()), key=lambda r: (-r[1], r[0]))

    def top_items(self, k: int) -> list[tuple[str, str, int, str]]:
        """(eval, item, documents matching it, question) for the `k` most matched eval items."""
        docs: dict[tuple[str, str], set[tuple[str, int | None]]] = defaultdict(set)
        question: dict[tuple[str, str], str] = {}
        for m in self.matches:
            docs[(m.eval_key, m.eval_item)].add(m.document)
            question.setdefault((m.eval_key, m.eval_item), m.question)
        ranked = sorted(docs.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:k]
        return [(e, i, len(d), question[(e, i)]) for (e, i), d in ranked]

    def documents(self) -> int:
        return len({m.document for m in self.matches})

    def best(self, n: int) -> list[Match]:
        """`n` matches to show: highest score first, one per eval item."""
        seen: set[tuple[str, str]] = set()
        out = []
        ranked = sorted(
            self.matches, key=lambda m: (-(m.score or 0.0), m.report, m.training_line or 0)
        )
        for m in ranked:
            if (m.eval_key, m.eval_item) not in seen:
                seen.add((m.eval_key, m.eval_item))
                out.append(m)
            if len(out) >= n:
                break
        return out


def parse_line(line: str, report: str) -> Match:
    """One report line; raises ValueError with the reason when it is not a report line."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    eval_key = data.get("eval_key") or data.get("eval_dataset")
    if not isinstance(eval_key, str) or not eval_key:
        raise ValueError("no eval_key")
    input_file = (
        data.get("input_path")
        or data.get("relative_path")
        or data.get("training_file")
        or report.removesuffix(REPORT_SUFFIX)
    )
    item = data.get("eval_instance_index")
    if item is None:
        item = data.get("eval_line")
    score = data.get("contamination_score")
    line_no = data.get("training_line")
    start = data.get("question_start_idx", data.get("contamination_start_idx"))
    end = data.get("question_end_idx", data.get("contamination_end_idx"))
    return Match(
        report=report,
        input_file=str(input_file),
        training_line=line_no if isinstance(line_no, int) else None,
        eval_key=eval_key,
        eval_item="?" if item is None else str(item),
        score=float(score) if isinstance(score, int | float) else None,
        overlap_text=str(data.get("training_overlap_text") or ""),
        question=str(data.get("eval_question_text") or data.get("eval_overlap_text") or ""),
        method=str(data.get("method") or ""),
        start_idx=start if isinstance(start, int) else None,
        end_idx=end if isinstance(end, int) else None,
    )


def read_reports(area: Storage) -> Review:
    """Every `*.report.jsonl` (and `.clean` marker) under the area."""
    review = Review()
    for obj in area.list(""):
        if obj.key.endswith(CLEAN_SUFFIX):
            review.clean_files += 1
        elif obj.key.endswith(REPORT_SUFFIX):
            review.reports += 1
            _read_one(review, obj.key, area.get_bytes(obj.key))
    return review


def _read_one(review: Review, key: str, body: bytes) -> None:
    for number, raw in enumerate(body.decode("utf-8", errors="replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            review.matches.append(parse_line(raw, key))
        except ValueError as exc:  # JSONDecodeError is a ValueError
            review.malformed += 1
            if review.malformed_first is None:
                review.malformed_first = f"{key}:{number}: {str(exc).splitlines()[0]}"


def highlight(text: str, question: str, color: bool) -> str:
    """The matched span marked: 【...】 from Decon, else the eval question found in the text."""
    on, off = (ANSI_ON, ANSI_OFF) if color else (PLAIN_ON, PLAIN_OFF)
    if SPAN_RE.search(text):
        return SPAN_RE.sub(lambda m: f"{on}{m[1].strip()}{off}", text)
    if question:
        start = text.lower().find(question.lower())
        if start >= 0:
            end = start + len(question)
            return f"{text[:start]}{on}{text[start:end]}{off}{text[end:]}"
    return text


NEIGHBOUR_WORDS = 30  # words of the document shown on each side of the matched span


class Documents:
    """Training documents by (input file, line), read from the input area."""

    def __init__(self, area: Storage, content_key: str) -> None:
        self.area = area
        self.content_key = content_key
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def text(self, input_file: str, line: int) -> str | None:
        """The content of line `line` (0-based) of `input_file`, or None if unreadable."""
        from decon.detect.io import extract_text, iter_lines

        try:
            if isinstance(self.area, LocalStorage):
                path = self.area.root / input_file
            else:
                if self._tmp is None:
                    self._tmp = tempfile.TemporaryDirectory(prefix="decon-review-")
                path = Path(self._tmp.name) / input_file
                if not path.exists():
                    self.area.get_file(input_file, path)
            for number, raw in enumerate(iter_lines(path)):
                if number == line:
                    return extract_text(raw, self.content_key).text
        except UserError:
            return None
        except OSError:
            return None
        return None

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def own_words(text: str, m: Match, on: str, off: str) -> str | None:
    """The matched span in the document's own words with `NEIGHBOUR_WORDS` words around it,
    located from the report's word offsets (checked against the normalised span; searched
    for when they disagree, as with BPE token offsets), or None if it cannot be located."""
    from decon.detect.normalize import normalized_words

    tokens = text.split()
    words: list[str] = []  # normalised words
    owner: list[int] = []  # the document token each normalised word comes from
    for t, token in enumerate(tokens):
        for word in normalized_words(token):
            words.append(word)
            owner.append(t)
    span = _span(m.overlap_text)
    want = normalized_words(span) if span else []
    start = _locate(words, want, m.start_idx, m.end_idx)
    if start is None:
        return None
    end = start + len(want) - 1 if want else m.end_idx
    if end is None or not 0 <= start <= end < len(words):
        return None
    first, last = owner[start], owner[end]
    lo, hi = max(0, first - NEIGHBOUR_WORDS), min(len(tokens), last + 1 + NEIGHBOUR_WORDS)
    before = ("... " if lo > 0 else "") + " ".join(tokens[lo:first])
    after = " ".join(tokens[last + 1 : hi]) + (" ..." if hi < len(tokens) else "")
    matched = " ".join(tokens[first : last + 1])
    return f"{before} {on}{matched}{off} {after}".strip()


def _locate(words: list[str], want: list[str], start: int | None, end: int | None) -> int | None:
    """Where the span starts among the document's normalised words."""
    if not want:
        return start if start is not None and end is not None else None
    if start is not None and words[start : start + len(want)] == want:
        return start
    hits = [i for i in range(len(words) - len(want) + 1) if words[i : i + len(want)] == want]
    if not hits:
        return None
    return min(hits, key=lambda i: abs(i - (start or 0)))


def render(
    review: Review,
    where: str,
    top: int,
    show: int,
    color: bool,
    documents: Documents | None = None,
) -> str:
    lines = [
        f"reports in {where}: {review.reports} contaminated input file(s), "
        f"{review.clean_files} clean, {review.documents()} contaminated document(s), "
        f"{len(review.matches)} match(es)"
    ]
    if review.malformed:
        lines.append(
            f"malformed report lines: {review.malformed} (first: {review.malformed_first})"
        )
    lines += table_lines("per eval", ("eval", "documents", "matches"), review.per_eval())
    lines += table_lines(
        "per input file", ("input file", "documents", "matches"), review.per_input()[:top]
    )
    items = [(e, i, n, clip(q, 70)) for e, i, n, q in review.top_items(top)]
    lines += table_lines("top matched eval items", ("eval", "item", "documents", "question"), items)
    for m in review.best(show):
        lines += ["", *match_lines(m, color, documents)]
    return "\n".join(lines)


def match_lines(m: Match, color: bool, documents: Documents | None = None) -> list[str]:
    """One match shown: where, the eval question, the document's own words around the span
    (when its input file can be read), the normalised overlap."""
    on, off = (ANSI_ON, ANSI_OFF) if color else (PLAIN_ON, PLAIN_OFF)
    score = "?" if m.score is None else f"{m.score:.3f}"
    lines = [
        f"match: {m.input_file} line {m.training_line} ~ {m.eval_key}[{m.eval_item}] "
        f"score {score} {m.method}".rstrip(),
        f"  eval:       {m.question}",
    ]
    text = None
    if documents is not None and m.training_line is not None:
        text = documents.text(m.input_file, m.training_line)
    seen = own_words(text, m, on, off) if text is not None else None
    if seen is not None:
        lines.append(f"  document:   {seen}")
    elif documents is not None:
        lines.append(f"  document:   (not found: {m.input_file} line {m.training_line})")
    lines.append(f"  normalised: {highlight(m.overlap_text, m.question, color)}")
    return lines


def to_json(review: Review, top: int, show: int) -> dict[str, Any]:
    return {
        "reports": review.reports,
        "clean_files": review.clean_files,
        "documents": review.documents(),
        "matches": len(review.matches),
        "malformed_lines": review.malformed,
        "first_malformed": review.malformed_first,
        "per_eval": [{"eval": e, "documents": d, "matches": n} for e, d, n in review.per_eval()],
        "per_input": [
            {"input_file": f, "documents": d, "matches": n} for f, d, n in review.per_input()
        ],
        "top_items": [
            {"eval": e, "item": i, "documents": n, "question": q}
            for e, i, n, q in review.top_items(top)
        ],
        "examples": [
            {
                "input_file": m.input_file,
                "training_line": m.training_line,
                "eval": m.eval_key,
                "item": m.eval_item,
                "score": m.score,
                "question": m.question,
                "training_overlap_text": m.overlap_text,
                "span": _span(m.overlap_text),
            }
            for m in review.best(show)
        ],
    }


def _span(text: str) -> str | None:
    found = SPAN_RE.search(text)
    return found[1].strip() if found else None


def table_lines(
    title: str, head: tuple[str, ...], rows: Iterable[tuple[Any, ...]]
) -> Iterator[str]:
    rows = [tuple(str(c) for c in r) for r in rows]
    yield ""
    yield f"{title}:"
    if not rows:
        yield "  (none)"
        return
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    for r in [head, *rows]:
        yield "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()


def clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def load_reports(where: str, aws: AwsSection) -> Review:
    """The reports under `where` (a directory or s3:// prefix); a UserError when it holds none."""
    storage = open_storage(where, aws)
    if isinstance(storage, LocalStorage) and not storage.root.is_dir():
        # S3 has no directories, but a local path that is not one is a typo worth naming
        raise UserError(f"{storage.root}: not a directory")
    review = read_reports(storage)
    if not review.reports and not review.clean_files:
        raise UserError(f"{where}: no reports (*.report.jsonl) and no .clean markers")
    return review


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "reports",
        nargs="?",
        metavar="REPORTS",
        help="report directory or s3://bucket/prefix/ (default: the job's reports prefix)",
    )
    parser.add_argument(
        "--config", help="job file: its reports and input prefixes, content key, AWS settings"
    )
    parser.add_argument(
        "--inputs",
        metavar="INPUTS",
        help="the training files (directory or s3:// prefix) to show matches in their own "
        "words (default: the job's input.uri)",
    )
    parser.add_argument(
        "--content-key", help="the text's key in each training line (default: the job's, text)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--top", type=int, default=10, metavar="K", help="rows per table (10)")
    parser.add_argument("--show", type=int, default=1, metavar="N", help="matches to show (1)")
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="highlight with ANSI colours (auto: when stdout is a terminal)",
    )


def run(args: argparse.Namespace) -> int:
    aws = AwsSection()
    where = args.reports
    inputs = args.inputs
    content_key = args.content_key
    if args.config:
        cfg = load_config(args.config)
        aws = cfg.aws
        where = where or cfg.output_prefix("reports")
        inputs = inputs or cfg.input.uri
        content_key = content_key or cfg.detect.content_key
    if not where:
        raise UserError("review: give REPORTS (a directory or s3:// prefix) or --config")
    if args.top < 1 or args.show < 0:
        raise UserError("review: --top must be >= 1 and --show >= 0")
    review = load_reports(where, aws)
    if args.json:
        print(json.dumps(to_json(review, args.top, args.show), indent=2, sort_keys=True))
        return 0
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    documents = Documents(open_storage(inputs, aws), content_key or "text") if inputs else None
    try:
        print(render(review, where, args.top, args.show, color, documents))
    finally:
        if documents is not None:
            documents.close()
    return 0
