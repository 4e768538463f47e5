"""A stand-in detector with the same contract as decon.detect.pipeline.process_file: a line is
contaminated when its `text` contains one of the marker strings found in the reference files.

Writes the report (contaminated files only) and the cleaned copy (same compression) to temp
names and renames them when complete; writes the `.clean` marker next to the report path for
clean files; returns early with `cancelled=True` when `cancel()` turns true.
Env FAKE_DETECT_SLEEP: seconds to sleep per line (to stop a job in the middle of a file).
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import zstandard

from decon.detect.pipeline import FileResult


def _open(path: Path, mode: str) -> IO[bytes]:
    name = str(path)
    if name.endswith(".gz"):
        return gzip.open(path, mode)  # type: ignore[return-value]
    if name.endswith((".zst", ".zstd")):
        if mode == "rb":
            return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"))  # noqa: SIM115
        return zstandard.ZstdCompressor().stream_writer(open(path, "wb"))  # noqa: SIM115
    if name.endswith(".bz2"):
        return bz2.open(path, mode)  # type: ignore[return-value]
    if name.endswith(".xz"):
        return lzma.open(path, mode)  # type: ignore[return-value]
    return open(path, mode)  # noqa: SIM115


def _compression(name: str) -> str:
    for ext in (".gz", ".zst", ".zstd", ".bz2", ".xz"):
        if name.endswith(ext):
            return ext
    return ""


def read_lines(path: Path) -> list[bytes]:
    with _open(path, "rb") as fh:
        return fh.read().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open(path, "wb") as fh:
        fh.write(b"".join(lines))


def load_markers(reference_dir: Path) -> list[str]:
    markers = []
    for path in sorted(Path(reference_dir).rglob("*")):
        if path.is_file():
            markers += [x.strip() for x in path.read_text().splitlines() if x.strip()]
    return markers


def marker_factory(cfg, reference_dir: Path):  # type: ignore[no-untyped-def]
    markers = load_markers(reference_dir)
    delay = float(os.environ.get("FAKE_DETECT_SLEEP", "0"))

    def detect(
        src: Path,
        rel_name: str,
        report_path: Path,
        cleaned_path: Path | None,
        cancel: Callable[[], bool] | None = None,
    ) -> FileResult:
        result = FileResult(rel_name)
        reports: list[str] = []
        kept: list[bytes] = []
        for number, raw in enumerate(read_lines(src)):
            if cancel is not None and cancel():
                result.cancelled = True
                return result
            if delay:
                time.sleep(delay)
            result.lines += 1
            result.bytes += len(raw)
            try:
                text = json.loads(raw)["text"]
            except (ValueError, KeyError, TypeError):
                result.malformed += 1
                kept.append(raw)
                continue
            hits = [m for m in markers if m in text]
            for marker in hits:
                reports.append(
                    json.dumps({"training_file": rel_name, "training_line": number, "eval": marker})
                )
            if hits:
                result.contaminated_lines += 1
                result.matches += len(hits)
            else:
                kept.append(raw)
        marker_path = report_path.with_name(
            report_path.name.removesuffix(".report.jsonl") + ".clean"
        )
        report_path.parent.mkdir(parents=True, exist_ok=True)
        if cleaned_path is not None:
            tmp = cleaned_path.with_name(cleaned_path.name + ".tmp" + _compression(src.name))
            write_lines(tmp, kept)
            os.replace(tmp, cleaned_path)
        if reports:
            tmp = report_path.with_name(report_path.name + ".tmp")
            tmp.write_text("\n".join(reports) + "\n")
            os.replace(tmp, report_path)
        else:
            marker_path.write_bytes(b"")
        return result

    return detect
