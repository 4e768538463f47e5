"""`decon compare A B`: the matches of two report sets (directories or S3 prefixes), side by
side: per eval, how many are in both, only in A, only in B.

A match is keyed by (training file, training line, eval key, eval instance): the records of
one multiple-choice item count once, with the best score of their lines. Reports are read,
and examples shown in the document's own words, by `decon review`'s code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from decon.config import AwsSection, load_config
from decon.errors import UserError
from decon.fleet.review import (
    Documents,
    Match,
    Review,
    clip,
    load_reports,
    match_lines,
    table_lines,
)
from decon.storage import open_storage

MatchKey = tuple[str, int | None, str, str]  # (training file, line, eval key, eval instance)


def match_key(m: Match) -> MatchKey:
    return (m.input_file, m.training_line, m.eval_key, m.eval_item)


def keyed(review: Review, evals: set[str] | None, min_score: float | None) -> dict[MatchKey, Match]:
    """The matches kept by the filters, one per key (its best-scoring line)."""
    out: dict[MatchKey, Match] = {}
    for m in review.matches:
        if evals is not None and m.eval_key not in evals:
            continue
        if min_score is not None and (m.score if m.score is not None else 0.0) < min_score:
            continue
        key = match_key(m)
        have = out.get(key)
        if have is None or (m.score or 0.0) > (have.score or 0.0):
            out[key] = m
    return out


@dataclass
class Comparison:
    a: dict[MatchKey, Match]
    b: dict[MatchKey, Match]

    @property
    def both(self) -> list[MatchKey]:
        return sorted(self.a.keys() & self.b.keys(), key=_order)

    @property
    def only_a(self) -> list[MatchKey]:
        return sorted(self.a.keys() - self.b.keys(), key=_order)

    @property
    def only_b(self) -> list[MatchKey]:
        return sorted(self.b.keys() - self.a.keys(), key=_order)

    def per_eval(self) -> list[tuple[str, int, int, int]]:
        """(eval, in both, only in A, only in B), by eval name."""
        counts: dict[str, Counter[str]] = {}
        for side, keys in (("both", self.both), ("a", self.only_a), ("b", self.only_b)):
            for key in keys:
                counts.setdefault(key[2], Counter())[side] += 1
        return [(e, c["both"], c["a"], c["b"]) for e, c in sorted(counts.items())]


def _order(key: MatchKey) -> tuple[str, int, str, str]:
    return (key[0], key[1] if key[1] is not None else -1, key[2], key[3])


def best(matches: list[Match], n: int) -> list[Match]:
    """`n` examples: highest score first, one per eval item (as `decon review` picks)."""
    return Review(matches=matches).best(n) if n > 0 else []


def _row(m: Match) -> dict[str, Any]:
    return {
        "training_file": m.input_file,
        "training_line": m.training_line,
        "eval": m.eval_key,
        "item": m.eval_item,
        "score": m.score,
        "question": m.question,
        "training_overlap_text": m.overlap_text,
    }


def to_json(c: Comparison, a: str, b: str, only_in: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "a": a,
        "b": b,
        "totals": {"both": len(c.both), "only_a": len(c.only_a), "only_b": len(c.only_b)},
        "per_eval": [
            {"eval": e, "both": n, "only_a": x, "only_b": y} for e, n, x, y in c.per_eval()
        ],
    }
    if only_in in (None, "a"):
        data["only_a"] = [_row(c.a[k]) for k in c.only_a]
    if only_in in (None, "b"):
        data["only_b"] = [_row(c.b[k]) for k in c.only_b]
    return data


def render(
    c: Comparison,
    a: str,
    b: str,
    only_in: str | None,
    show: int,
    color: bool,
    documents: Documents | None,
) -> str:
    lines = [
        f"A: {a}",
        f"B: {b}",
        f"matches (training file, line, eval item): {len(c.both)} in both, "
        f"{len(c.only_a)} only in A, {len(c.only_b)} only in B",
    ]
    lines += table_lines("per eval", ("eval", "both", "only A", "only B"), c.per_eval())
    sides = [("a", "A", c.a, c.only_a), ("b", "B", c.b, c.only_b)]
    for side, name, matches, keys in sides:
        if only_in not in (None, side):
            continue
        if only_in == side:
            rows = [
                (k[0], k[1], f"{k[2]}[{k[3]}]", _score(matches[k]), clip(matches[k].question, 60))
                for k in keys
            ]
            lines += table_lines(
                f"only in {name}", ("training file", "line", "eval item", "score", "question"), rows
            )
        examples = best([matches[k] for k in keys], show)
        if examples:
            lines += ["", f"examples only in {name}:"]
            for m in examples:
                lines += ["", *match_lines(m, color, documents)]
    return "\n".join(lines)


def _score(m: Match) -> str:
    return "?" if m.score is None else f"{m.score:.3f}"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A", help="report directory or s3://bucket/prefix/")
    parser.add_argument("b", metavar="B", help="report directory or s3://bucket/prefix/")
    parser.add_argument(
        "--only-in", choices=("a", "b"), help="list the matches found only in A (or only in B)"
    )
    parser.add_argument(
        "--eval", action="append", metavar="NAME", help="only this eval (repeat for several)"
    )
    parser.add_argument(
        "--min-score", type=float, metavar="S", help="only matches scoring at least S"
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument(
        "--show", type=int, default=3, metavar="N", help="examples of each side to show (3)"
    )
    parser.add_argument(
        "--inputs",
        metavar="INPUTS",
        help="the training files (directory or s3:// prefix), to show examples in their own "
        "words (default: the job's input.uri with --config)",
    )
    parser.add_argument(
        "--content-key", help="the text's key in each training line (default: the job's, text)"
    )
    parser.add_argument("--config", help="job file: its AWS settings, input and content key")
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="highlight with ANSI colours (auto: when stdout is a terminal)",
    )


def _read(where: str, aws: AwsSection) -> Review:
    review = load_reports(where, aws)
    if review.malformed:
        print(
            f"decon: {where}: {review.malformed} malformed report line(s) skipped (first: "
            f"{review.malformed_first})",
            file=sys.stderr,
        )
    return review


def run(args: argparse.Namespace) -> int:
    aws = AwsSection()
    inputs, content_key = args.inputs, args.content_key
    if args.config:
        cfg = load_config(args.config)
        aws = cfg.aws
        inputs = inputs or cfg.input.uri
        content_key = content_key or cfg.detect.content_key
    if args.show < 0:
        raise UserError("compare: --show must be >= 0")
    evals = set(args.eval) if args.eval else None
    comparison = Comparison(
        keyed(_read(args.a, aws), evals, args.min_score),
        keyed(_read(args.b, aws), evals, args.min_score),
    )
    if args.json:
        print(json.dumps(to_json(comparison, args.a, args.b, args.only_in), indent=2))
        return 0
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    documents = Documents(open_storage(inputs, aws), content_key or "text") if inputs else None
    try:
        print(render(comparison, args.a, args.b, args.only_in, args.show, color, documents))
    finally:
        if documents is not None:
            documents.close()
    return 0
