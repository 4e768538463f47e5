"""`decon detect`: local detection over files or directory trees."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from decon.detect.detector import load_detector
from decon.detect.io import is_data_file
from decon.detect.options import OPTION_HELP, DetectOptions
from decon.detect.pipeline import FileResult, FileTask, output_names, process_files
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


SUMMARY_NAME = "detect-summary.json"
PROGRESS_LINE_SECONDS = 30.0  # when stderr is not a terminal


class DetectProgress:
    """Progress by bytes of input on disk, across and within files, with rate, ETA, files and
    matches: a tqdm bar on a terminal, else one line every `PROGRESS_LINE_SECONDS`."""

    def __init__(self, total_bytes: int, total_files: int, tty: bool) -> None:
        self.total_bytes = total_bytes
        self.total_files = total_files
        self.files = 0
        self.matches = 0  # of finished files
        self.file_matches = 0  # of the file in progress
        self.done_bytes = 0  # of finished files
        self.file_bytes = 0  # of the file in progress
        self.start = time.monotonic()
        self.last_line = self.start
        self.bar = (
            tqdm(
                total=total_bytes,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                dynamic_ncols=True,
                postfix=self._postfix(),
            )
            if tty
            else None
        )

    def _postfix(self) -> str:
        return f"files {self.files}/{self.total_files}, matches {self.matches + self.file_matches}"

    def chunk(self, result: FileResult, read_to: int) -> None:
        """A chunk of the current file is done: `read_to` bytes of it on disk."""
        self.file_bytes, self.file_matches = read_to, result.matches
        self._show()

    def file(self, result: FileResult, size: int) -> None:
        self.files += 1
        self.matches += result.matches
        self.done_bytes += size
        self.file_bytes = self.file_matches = 0
        self._show()

    def _show(self) -> None:
        n = min(self.done_bytes + self.file_bytes, self.total_bytes)
        if self.bar is not None:
            self.bar.set_postfix_str(self._postfix(), refresh=False)
            self.bar.update(n - self.bar.n)
            return
        now = time.monotonic()
        if now - self.last_line >= PROGRESS_LINE_SECONDS:
            self.last_line = now
            meter = tqdm.format_meter(
                n,
                self.total_bytes,
                now - self.start,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                postfix=self._postfix(),
                ncols=0,
            )
            print(f"progress: {meter}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
        detector = load_detector(args.reference, options)
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
    sizes = {task.rel_name: _size(task.src) for task in tasks}
    progress = DetectProgress(sum(sizes.values()), len(tasks), sys.stderr.isatty())
    start = time.perf_counter()
    results: list[FileResult] = []
    try:
        for result in process_files(tasks, detector, options, on_progress=progress.chunk):
            progress.file(result, sizes[result.rel_name])
            results.append(result)
            if result.error:
                _say(progress, f"decon: {result.error}", sys.stderr)
                continue
            bad = result.malformed + result.missing_key + result.undecodable
            if bad:
                _say(
                    progress,
                    f"{result.rel_name}: {result.malformed} malformed, {result.missing_key} "
                    f"missing {options.content_key!r}, {result.undecodable} undecodable lines",
                    sys.stdout,
                )
    except OSError as exc:
        where = getattr(exc, "filename", "") or "output"
        raise UserError(f"{where}: {exc.strerror or exc}") from None
    finally:
        progress.close()
    secs = time.perf_counter() - start
    summary = _summary(results)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    (args.report_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=1) + "\n")
    totals = summary["totals"]
    mb = totals["bytes"] / 1e6
    print(
        f"files: {totals['files']} ({totals['contaminated_files']} contaminated, "
        f"{totals['failed_files']} failed)  "
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
    for key, count in sorted(summary["per_eval"].items()):
        print(f"  {key}: {count}")
    print(f"reports: {args.report_dir}" + (f"  cleaned: {cleaned_dir}" if cleaned_dir else ""))
    failed = [r for r in results if r.error]
    if failed:
        print(
            f"decon: {len(failed)} of {len(results)} files failed (no outputs for them; "
            f"see {args.report_dir / SUMMARY_NAME})",
            file=sys.stderr,
        )
        return 1
    return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _say(progress: DetectProgress, text: str, stream: TextIO) -> None:
    """Print a line without breaking the progress bar."""
    if progress.bar is not None:
        progress.bar.write(text, file=stream)
    else:
        print(text, file=stream, flush=True)


def _summary(results: list[FileResult]) -> dict[str, Any]:
    """detect-summary.json: each file's status and line counts, the totals, matches per eval
    (no times: the same input gives the same bytes, like every other output)."""
    files = []
    totals = dict.fromkeys(
        ("files", "contaminated_files", "failed_files", "bytes", "lines", "with_text",
         "malformed", "missing_key", "undecodable", "matches", "contaminated_lines"),
        0,
    )  # fmt: skip
    per_eval: dict[str, int] = {}
    for r in results:
        status = "failed" if r.error else "contaminated" if r.contaminated else "clean"
        entry: dict[str, Any] = {"file": r.rel_name, "status": status, **r.counts()}
        if r.error:
            entry["error"] = r.error
        files.append(entry)
        totals["files"] += 1
        totals["failed_files"] += bool(r.error)
        totals["contaminated_files"] += status == "contaminated"
        totals["bytes"] += r.bytes
        for key, value in r.counts().items():
            totals[key] += value
        for key, value in r.per_eval.items():
            per_eval[key] = per_eval.get(key, 0) + value
    return {"totals": totals, "per_eval": per_eval, "files": files}
