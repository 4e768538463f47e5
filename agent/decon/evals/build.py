"""`decon evals build`: an evals config -> a directory of Decon eval records.

Every dataset is loaded and checked against its entry first (splits, fields); with any
problem nothing is written. Then each eval's records go to `{eval}_{split}-{n}.jsonl` chunks,
written to a staging directory beside the output and moved into place when all are done,
replacing that eval's earlier files. `doc_id` counts from 1 in config order, as Decon's does,
continuing after the highest `doc_id` already in the directory, so it stays unique over the
set.
"""

from __future__ import annotations

import itertools
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from decon.detect.io import READ_ERRORS, iter_lines
from decon.evals.extract import row_records
from decon.evals.sources import SourceProblem, check_fields, load_splits
from decon.evals.spec import ConfigProblems, EvalSpec
from decon.evals.writer import ChunkedWriter


@dataclass
class SplitResult:
    split: str
    rows: int
    records: int
    files: list[str]


@dataclass
class EvalResult:
    name: str
    splits: list[SplitResult] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)  # Decon's bundled files copied as they are

    @property
    def records(self) -> int:
        return sum(s.records for s in self.splits)


@dataclass
class _Loaded:
    spec: EvalSpec
    splits: dict[str, Any]  # split -> datasets.Dataset
    bundled: list[Path]


def _own_files(out_dir: Path, spec: EvalSpec) -> list[Path]:
    """This eval's record files already in the output directory."""
    if not out_dir.is_dir():
        return []
    names = "|".join(re.escape(s) for s in spec.splits)
    pattern = re.compile(rf"{re.escape(spec.name)}_({names})-\d+\.jsonl(\.gz)?")
    return sorted(p for p in out_dir.iterdir() if pattern.fullmatch(p.name))


def max_doc_id(files: Iterable[Path]) -> int:
    """The highest integer `doc_id` in these record files (0 when none)."""
    top = 0
    for path in files:
        try:
            for raw in iter_lines(path):
                try:
                    value = orjson.loads(raw).get("doc_id")
                except (orjson.JSONDecodeError, AttributeError):
                    continue
                if isinstance(value, int) and not isinstance(value, bool):
                    top = max(top, value)
        except READ_ERRORS:
            continue
    return top


def _record_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz"))
    )


def bundled_files(spec: EvalSpec, bundled_dir: Path | None) -> list[Path]:
    """Decon's pre-built files for `local_path: bundled_evals/<prefix>`."""
    prefix = spec.bundled_prefix
    assert prefix is not None
    if bundled_dir is None or not bundled_dir.is_dir():
        raise SourceProblem(
            f"{spec.local_path}: Decon's bundled-evals directory not found (give "
            "--bundled-evals DIR, the bundled-evals/ folder of a Decon checkout)"
        )
    found = sorted(bundled_dir.glob(f"{prefix}*.jsonl.gz"))
    if not found:
        raise SourceProblem(f"{bundled_dir}: no {prefix}*.jsonl.gz (local_path {spec.local_path})")
    return found


def load_all(
    specs: list[EvalSpec],
    config_dir: Path | None,
    cache_dir: Path | None,
    bundled_dir: Path | None,
    say: Callable[[str], None],
    keep_going: bool = False,
) -> tuple[list[_Loaded], list[str], list[str]]:
    """(loaded, problems, warnings): every dataset loaded and checked. Raises
    `ConfigProblems` listing every problem, unless `keep_going` (evals with problems left
    out, their problems returned)."""
    loaded, problems, warnings = [], [], []
    for spec in specs:
        before = len(problems)
        if isinstance(spec.passage, dict):
            warnings.append(
                f"{spec.name}: passage: {spec.passage!r} is not a field path; its records get "
                "no passage (as Decon's converter does)"
            )
        try:
            if spec.bundled_prefix is not None:
                loaded.append(_Loaded(spec, {}, bundled_files(spec, bundled_dir)))
                continue
            say(f"loading {spec.name} from {spec.source}")
            splits = load_splits(spec, config_dir, cache_dir)
        except SourceProblem as exc:
            problems.append(f"{spec.name}: {exc}")
            continue
        have = sorted(splits)
        for split in spec.splits:
            if split not in splits:
                problems.append(
                    f"{spec.name}: split {split!r} not in {spec.source} (has: {', '.join(have)})"
                )
                continue
            found, warned = check_fields(spec, split, splits[split])
            problems += found
            warnings += warned
        if len(problems) == before:
            loaded.append(_Loaded(spec, dict(splits), []))
    if problems and not keep_going:
        raise ConfigProblems(problems)
    return loaded, problems, warnings


def write_all(
    loaded: list[_Loaded], out_dir: Path, gzip: bool, say: Callable[[str], None]
) -> list[EvalResult]:
    """Write every eval's records (see the module's docstring)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    replaced = {p for item in loaded for p in _own_files(out_dir, item.spec)}
    replaced |= {out_dir / _bundled_name(item.spec, p) for item in loaded for p in item.bundled}
    kept = [p for p in _record_files(out_dir) if p not in replaced]
    next_id = max_doc_id(kept) + 1
    results = []
    # beside the output, not in it: a staging directory left by a killed build is never read
    # as part of the reference
    parent = out_dir.resolve().parent
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.building-", dir=parent) as tmp:
        staging = Path(tmp)
        for item in loaded:
            spec, result = item.spec, EvalResult(item.spec.name)
            if item.bundled:
                for src in item.bundled:
                    shutil.copyfile(src, staging / _bundled_name(spec, src))
                    result.copied.append(_bundled_name(spec, src))
                next_id = max(next_id, max_doc_id(item.bundled) + 1)
                say(f"{spec.name}: copied {len(item.bundled)} bundled file(s)")
                results.append(result)
                continue
            for split in spec.splits:
                doc_ids = itertools.count(next_id)
                rows = 0
                with ChunkedWriter(staging, f"{spec.name}_{split}", gzip) as writer:
                    for rows, row in enumerate(item.splits[split], 1):
                        for record in row_records(row, spec, split, rows - 1, doc_ids):
                            writer.write(record)
                next_id += writer.records
                files = [p.name for p in writer.files]
                result.splits.append(SplitResult(split, rows, writer.records, files))
                say(
                    f"{spec.name} {split}: {rows} rows -> {writer.records} records in "
                    f"{len(files)} file(s)"
                )
            results.append(result)
        for path in replaced:
            path.unlink(missing_ok=True)
        for path in sorted(staging.iterdir()):
            path.replace(out_dir / path.name)
    return results


def _bundled_name(spec: EvalSpec, src: Path) -> str:
    """Decon's name for a copied bundled file (agi_eval's keep theirs)."""
    prefix = spec.bundled_prefix or ""
    if spec.name == "agi_eval":
        return src.name
    return src.name.replace(prefix, f"{spec.name}_", 1)


def build(
    specs: list[EvalSpec],
    out_dir: Path,
    *,
    config_dir: Path | None = None,
    cache_dir: Path | None = None,
    bundled_dir: Path | None = None,
    gzip: bool = False,
    keep_going: bool = False,
    say: Callable[[str], None] = lambda _line: None,
) -> tuple[list[EvalResult], list[str], list[str]]:
    """(per eval results, problems, warnings) of building `specs` into `out_dir` (problems
    only with `keep_going`: else they raise `ConfigProblems` before anything is written)."""
    loaded, problems, warnings = load_all(
        specs, config_dir, cache_dir, bundled_dir, say, keep_going
    )
    return write_all(loaded, out_dir, gzip, say), problems, warnings


def records_of(spec: EvalSpec, rows_by_split: dict[str, Iterable[dict]]) -> list[dict]:
    """The records an entry makes of rows already in memory (doc_id from 1): for
    callers with their own rows, such as `decon_synth`'s packaged benchmarks."""
    doc_ids = itertools.count(1)
    out: list[dict] = []
    for split in spec.splits:
        for index, row in enumerate(rows_by_split.get(split, ())):
            out += row_records(row, spec, split, index, doc_ids)
    return out
