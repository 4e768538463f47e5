"""``python -m decon_synth make-corpus|evaluate``: ground-truth corpus and its scoring."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from decon.errors import UserError, guarded_main
from decon_synth.benchmarks import ALL_BENCHMARKS
from decon_synth.evaluate import compare_table, evaluate_dirs, format_markdown
from decon_synth.plant import ALL_KINDS, COMPRESSIONS, CorpusSpec, make_corpus


def _kind_counts(values: list[str]) -> dict[str, int]:
    counts = {}
    for value in values:
        kind, sep, n = value.partition("=")
        if not sep or not n.isdigit():
            raise UserError(f"--kind {value!r}: use KIND=N with KIND one of {', '.join(ALL_KINDS)}")
        counts[kind] = int(n)
    return counts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m decon_synth",
        description="Generate a ground-truth contamination corpus from real benchmark items, "
        "and score detector reports against it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make-corpus", help="write DIR/reference, DIR/train, DIR/truth.jsonl")
    mk.add_argument("--out", type=Path, required=True, help="output directory")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument(
        "--benchmarks",
        default="",
        help=f"comma-separated eval keys (default: all installed): {','.join(ALL_BENCHMARKS)}",
    )
    mk.add_argument("--items-per-benchmark", type=int, default=10)
    mk.add_argument("--held-out-per-benchmark", type=int, default=3)
    mk.add_argument("--docs-per-kind", type=int, default=30)
    mk.add_argument("--kind", action="append", default=[], metavar="KIND=N", help="per kind")
    mk.add_argument("--files", type=int, default=4, help="number of training files")
    mk.add_argument("--compression", default="gz", choices=[*COMPRESSIONS, "mixed"])
    mk.add_argument("--content-key", default="text", help="dotted path, e.g. meta.text")
    mk.add_argument("--malformed-lines", type=int, default=0)
    mk.add_argument("--doc-chars", type=int, default=2000, help="filler per ordinary document")
    mk.add_argument("--long-doc-chars", type=int, default=50_000, help="embedded_long size")

    ev = sub.add_parser("evaluate", help="score report directories against truth.jsonl")
    ev.add_argument("--truth", type=Path, required=True)
    ev.add_argument(
        "--reports",
        action="append",
        required=True,
        metavar="[NAME=]DIR",
        help="report directory; repeat with NAME=DIR to compare several runs",
    )
    ev.add_argument("--line-base", type=int, default=0, choices=(0, 1))
    ev.add_argument("--json", action="store_true", help="print figures as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "make-corpus":
        spec = CorpusSpec(
            seed=args.seed,
            benchmarks=tuple(b for b in args.benchmarks.split(",") if b) or None,
            items_per_benchmark=args.items_per_benchmark,
            held_out_per_benchmark=args.held_out_per_benchmark,
            docs_per_kind=args.docs_per_kind,
            kind_counts=_kind_counts(args.kind),
            files=args.files,
            compression=args.compression,
            content_key=args.content_key,
            malformed_lines=args.malformed_lines,
            doc_chars=args.doc_chars,
            long_doc_chars=args.long_doc_chars,
        )
        m = make_corpus(args.out, spec)
        print(
            f"wrote {m.documents} documents ({m.bytes_uncompressed / 1e6:.1f} MB) in "
            f"{len(m.files)} files under {m.train_dir}, {m.reference_items} reference items "
            f"under {m.reference_dir}, truth {m.truth_path}"
        )
        return 0
    results = {}
    for value in args.reports:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = Path(value).name, value
        results[name] = evaluate_dirs(args.truth, Path(path), args.line_base)
    if args.json:
        print(json.dumps({n: r.to_dict() for n, r in results.items()}, indent=2))
    elif len(results) == 1:
        name, result = next(iter(results.items()))
        sys.stdout.write(format_markdown(result, name))
    else:
        print(compare_table(results))
    return 0


def run() -> int:
    return guarded_main(main, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(run())
