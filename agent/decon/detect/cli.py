"""`decon detect`: local detection over files or directory trees."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from decon.detect.io import is_data_file
from decon.detect.options import OPTION_HELP, DetectOptions
from decon.detect.pipeline import FileTask, load_reference, output_names, process_files
from decon.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments: inputs, reference, output dirs, and every DetectOptions field."""
    parser.add_argument("inputs", nargs="+", type=Path, help="training files or directories")
    parser.add_argument(
        "--reference",
        type=Path,
        required=True,
        help="Decon eval directory, or an index file built by `decon index`",
    )
    parser.add_argument("--report-dir", type=Path, required=True, help="report directory")
    parser.add_argument("--cleaned-dir", type=Path, help="purified copies (implies --purify)")
    parser.add_argument("--config", type=Path, help="job file; its detect section gives defaults")
    add_option_flags(parser)


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per DetectOptions field."""
    group = parser.add_argument_group("detection options (Decon simple mode names)")
    defaults = DetectOptions()
    for f in dataclasses.fields(DetectOptions):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = f"{OPTION_HELP[f.name]} (default: {default!r})".replace("%", "%%")
        if isinstance(default, bool):
            group.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            group.add_argument(flag, dest=f.name, type=type(default), default=None, help=help_text)


def options_from_args(args: argparse.Namespace) -> DetectOptions:
    """The options of `--config` and the option flags (validated)."""
    if args.config is not None:
        from decon.config import load_config

        base = load_config(args.config, {}).detect
    else:
        base = DetectOptions()
    changes = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(DetectOptions)
        if getattr(args, f.name) is not None
    }
    if getattr(args, "cleaned_dir", None) is not None:
        changes["purify"] = True
    options = dataclasses.replace(base, **changes)
    problems = options.validate()
    if problems:
        raise UserError(problems[0])
    return options


def _inputs(paths: list[Path]) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_file():
            found.append((path, path.name))
        elif path.is_dir():
            for p in sorted(path.rglob("*")):
                if p.is_file() and is_data_file(p):
                    found.append((p, p.relative_to(path).as_posix()))
        else:
            raise UserError(f"{path}: no such file or directory")
    return found


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    if not args.reference.exists():
        raise UserError(f"{args.reference}: reference directory not found")
    inputs = _inputs(args.inputs)
    if not inputs:
        raise UserError("no .json/.jsonl input files found")
    cleaned_dir = args.cleaned_dir or (args.report_dir / "cleaned" if options.purify else None)
    t0 = time.perf_counter()
    try:
        detector = load_reference(args.reference, options)
    except (OSError, ValueError) as exc:
        raise UserError(f"{args.reference}: {exc}") from None
    st = detector.stats
    if st.indexed == 0:
        raise UserError(f"{args.reference}: no eval records indexed ({st.lines} lines read)")
    print(
        f"reference: {st.indexed} items from {st.files} files "
        f"(skipped: {st.skipped_min_tokens} short, {st.skipped_min_unique_words} few words, "
        f"{st.skipped_duplicates} duplicates, {st.malformed} malformed; "
        f"{st.hot_ngrams} hot n-grams) in {time.perf_counter() - t0:.1f}s"
    )
    tasks = []
    for src, rel in inputs:
        names = output_names(rel)
        tasks.append(
            FileTask(
                src,
                rel,
                args.report_dir / names.report,
                cleaned_dir / names.cleaned if cleaned_dir else None,
            )
        )
    tty = sys.stderr.isatty()
    start = time.perf_counter()
    totals = {
        "files": 0,
        "lines": 0,
        "bytes": 0,
        "matches": 0,
        "contaminated_files": 0,
        "contaminated_lines": 0,
        "malformed": 0,
        "missing_key": 0,
        "undecodable": 0,
    }
    per_eval: dict[str, int] = {}
    try:
        for result in process_files(tasks, detector, options):
            totals["files"] += 1
            for k in (
                "lines",
                "bytes",
                "matches",
                "contaminated_lines",
                "malformed",
                "missing_key",
                "undecodable",
            ):
                totals[k] += getattr(result, k)
            totals["contaminated_files"] += result.contaminated
            for k, v in result.per_eval.items():
                per_eval[k] = per_eval.get(k, 0) + v
            bad = result.malformed + result.missing_key + result.undecodable
            if bad:
                print(
                    f"{result.rel_name}: {result.malformed} malformed, {result.missing_key} "
                    f"missing {options.content_key!r}, {result.undecodable} undecodable lines"
                )
            if tty:
                secs = time.perf_counter() - start
                mb = totals["bytes"] / 1e6
                print(
                    f"\r{totals['files']}/{len(tasks)} files  {totals['lines']} lines  "
                    f"{totals['matches']} matches  {mb / max(secs, 1e-9):.1f} MB/s",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
    except OSError as exc:
        where = getattr(exc, "filename", "") or "input"
        raise UserError(f"{where}: {exc.strerror or exc}") from None
    if tty:
        print(file=sys.stderr)
    secs = time.perf_counter() - start
    mb = totals["bytes"] / 1e6
    print(
        f"files: {totals['files']} ({totals['contaminated_files']} contaminated)  "
        f"lines: {totals['lines']} ({totals['contaminated_lines']} contaminated)  "
        f"matches: {totals['matches']}"
    )
    print(
        f"throughput: {mb:.1f} MB in {secs:.2f}s = {mb / max(secs, 1e-9):.1f} MB/s, "
        f"{totals['lines'] / max(secs, 1e-9):.0f} docs/s"
    )
    print(
        f"bad lines: {totals['malformed']} malformed, {totals['missing_key']} missing key, "
        f"{totals['undecodable']} undecodable"
    )
    for key in sorted(per_eval):
        print(f"  {key}: {per_eval[key]}")
    print(f"reports: {args.report_dir}" + (f"  cleaned: {cleaned_dir}" if cleaned_dir else ""))
    return 0
