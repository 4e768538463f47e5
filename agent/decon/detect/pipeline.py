"""File-level detection: reference loading, per-document detection, per-file outputs.

`process_file` / `process_files` stream each input in chunks of lines. With more than one
worker the chunks go to a fork-based process pool (the detector is inherited copy-on-write,
never pickled) and come back in submission order, so outputs are identical for any worker count.
At most a few chunks per worker are in flight: memory stays bounded whatever the file size.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decon.detect.detector import DocumentDetector, load_detector
from decon.detect.io import (
    GzipFromParts,
    atomic_temp,
    compression_of,
    deflate_part,
    extract_text,
    iter_lines,
    open_binary_write,
    strip_data_suffix,
)
from decon.detect.options import DetectOptions
from decon.detect.report import report_line

CHUNK_BYTES = 4 << 20
# A chunk prefilter's arrays take several times its texts' size: batches of about this many
# characters keep them small (cache-friendly, and memory is reused rather than faulted in).
SELECT_BATCH_CHARS = 1 << 20
CANCEL_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class OutputNames:
    """Output names of one input file, relative to the report / cleaned directories."""

    basename: str
    report: str
    clean_marker: str
    cleaned: str


def output_names(rel_name: str) -> OutputNames:
    """SPEC section 6: `{basename}` is the relative path without `.jsonl[.gz|.zst|...]`."""
    rel = rel_name.replace(os.sep, "/").lstrip("/")
    base = strip_data_suffix(rel)
    ext = compression_of(rel)
    return OutputNames(base, f"{base}.report.jsonl", f"{base}.clean", f"{base}.clean.jsonl{ext}")


@dataclass
class FileResult:
    """What processing one input file produced."""

    rel_name: str
    lines: int = 0
    bytes: int = 0
    matches: int = 0
    contaminated_lines: int = 0
    malformed: int = 0
    missing_key: int = 0
    undecodable: int = 0
    scanned: int = 0  # lines that passed the prefilter and were fully tokenized
    per_eval: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def contaminated(self) -> bool:
        return self.contaminated_lines > 0


@dataclass
class FileTask:
    """One input file and where its outputs go."""

    src: Path
    rel_name: str
    report_path: Path
    cleaned_path: Path | None = None


def load_reference(path_or_dir: Path | str, options: DetectOptions) -> DocumentDetector:
    """The detector of `options.mode` built from a Decon eval file or directory tree."""
    return load_detector(path_or_dir, options)


# -- chunk work (runs in workers) ------------------------------------------------------------


@dataclass
class ChunkResult:
    """Per-chunk outcome: report lines by line offset, counters, and (when asked for) the
    kept lines compressed by `deflate_part`."""

    reports: list[tuple[int, list[dict[str, Any]]]]
    malformed: int = 0
    missing_key: int = 0
    undecodable: int = 0
    scanned: int = 0
    kept_deflated: bytes | None = None


def detect_chunk(
    detector: DocumentDetector,
    rel_name: str,
    first_line: int,
    lines: list[bytes],
    deflate_kept: bool = False,
) -> ChunkResult:
    """Detect every line of a chunk (pure apart from CPU).

    A detector with a chunk prefilter (`ChunkPrefiltering`) first rules out, in one
    vectorised pass over all the chunk's texts, the documents that cannot match.
    `deflate_kept` also compresses the lines a purified gzip copy keeps, so that compression
    runs in the workers rather than in the one process that writes the file.
    """
    content_key = detector.options.content_key
    result = ChunkResult(reports=[])
    offsets: list[int] = []
    texts: list[str] = []
    doc_ids: list[Any] = []
    for offset, raw in enumerate(lines):
        got = extract_text(raw, content_key)
        if got.text is None:
            if got.problem == "malformed":
                result.malformed += 1
            elif got.problem == "missing_key":
                result.missing_key += 1
            elif got.problem == "undecodable":
                result.undecodable += 1
            continue
        offsets.append(offset)
        texts.append(got.text)
        doc_ids.append(got.doc_id)
    select = getattr(detector, "select", None)
    if select is not None:
        kept = []
        for batch in _batches(texts, SELECT_BATCH_CHARS):
            kept += select(batch)

        def detect(i: int) -> tuple[list[dict[str, Any]], bool]:
            selected = kept[i]
            if selected is None:
                return [], False
            return detector.detect_selected(texts[i], selected)  # type: ignore[attr-defined]

    else:

        def detect(i: int) -> tuple[list[dict[str, Any]], bool]:
            return detector.detect(texts[i])

    for i, (offset, doc_id) in enumerate(zip(offsets, doc_ids, strict=True)):
        matches, scanned = detect(i)
        result.scanned += scanned
        if matches:
            line_no = first_line + offset
            result.reports.append(
                (offset, [report_line(m, rel_name, line_no, doc_id) for m in matches])
            )
    if deflate_kept:
        bad = {offset for offset, _ in result.reports}
        result.kept_deflated = deflate_part(
            b"".join(raw for offset, raw in enumerate(lines) if offset not in bad)
        )
    return result


def _batches(texts: list[str], chars: int) -> Iterator[list[str]]:
    """Consecutive runs of `texts` of about `chars` characters each (at least one text)."""
    start = size = 0
    for i, text in enumerate(texts):
        size += len(text)
        if size >= chars:
            yield texts[start : i + 1]
            start, size = i + 1, 0
    if start < len(texts):
        yield texts[start:]


# The detector of a pool's worker process (set in the child by the pool's initializer).
_WORKER_DETECTOR: list[DocumentDetector] = []


def _init_worker(detector: DocumentDetector) -> None:
    keep_freed_memory()
    _WORKER_DETECTOR[:] = [detector]


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the
    kernel: every chunk allocates and frees arrays of the same sizes, and faulting fresh
    pages in for each one cost a quarter of the CPU time. Memory then stays at its peak
    for one chunk. A no-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # the most glibc accepts on 64-bit
    libc.mallopt(_M_TRIM_THRESHOLD, 512 << 20)


def _worker_chunk(
    rel_name: str, first_line: int, lines: list[bytes], deflate_kept: bool
) -> ChunkResult:
    return detect_chunk(_WORKER_DETECTOR[0], rel_name, first_line, lines, deflate_kept)


class WorkerPool:
    """Forked worker processes that share one detector (inherited copy-on-write, never pickled).

    Create it once per job and reuse it for every file: forking once, early, is cheaper and
    safer than forking per file from a process whose other threads may hold locks.
    """

    def __init__(self, detector: DocumentDetector, workers: int) -> None:
        self.workers = workers
        ctx = multiprocessing.get_context("fork")
        self._pool = ctx.Pool(workers, initializer=_init_worker, initargs=(detector,))

    def submit(
        self, rel_name: str, first_line: int, lines: list[bytes], deflate_kept: bool = False
    ) -> Any:
        """Detect one chunk in a worker; `.get()` on the result waits for it."""
        return self._pool.apply_async(_worker_chunk, (rel_name, first_line, lines, deflate_kept))

    def close(self) -> None:
        """Stop the workers (pending chunks are dropped)."""
        self._pool.terminate()
        self._pool.join()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_workers(workers: int) -> int:
    """0 means all cores."""
    return workers if workers > 0 else (os.cpu_count() or 1)


def _chunks(src: Path, chunk_lines: int) -> Iterator[tuple[int, list[bytes]]]:
    lines: list[bytes] = []
    size = 0
    first = 0
    for raw in iter_lines(src):
        lines.append(raw)
        size += len(raw)
        if len(lines) >= chunk_lines or size >= CHUNK_BYTES:
            yield first, lines
            first += len(lines)
            lines, size = [], 0
    if lines:
        yield first, lines


class _FileWriter:
    """Writes one file's report and cleaned copy to temp names, then renames into place."""

    def __init__(self, task: FileTask) -> None:
        self.task = task
        self.result = FileResult(rel_name=task.rel_name)
        self.start = time.perf_counter()
        self.report_tmp = atomic_temp(task.report_path)
        self.report_fh = None
        self.cleaned_tmp: Path | None = None
        self.cleaned_fh = None
        # gzip copies are assembled from parts the chunks' workers compressed
        self.cleaned_gz: GzipFromParts | None = None
        self.close_cleaned: Callable[[], object] = lambda: None
        if task.cleaned_path is not None:
            task.cleaned_path.parent.mkdir(parents=True, exist_ok=True)
            self.cleaned_tmp = atomic_temp(task.cleaned_path)
            compression = compression_of(task.src)
            if compression == ".gz":
                self.cleaned_gz = GzipFromParts(open(self.cleaned_tmp, "wb"))  # noqa: SIM115
                self.close_cleaned = self.cleaned_gz.close
            else:
                cm = open_binary_write(self.cleaned_tmp, compression)
                self.cleaned_fh = cm.__enter__()
                self.close_cleaned = lambda: cm.__exit__(None, None, None)

    @property
    def deflate_kept(self) -> bool:
        """Whether chunks must come back with their kept lines compressed."""
        return self.cleaned_gz is not None

    def add(self, first_line: int, lines: list[bytes], chunk: ChunkResult) -> None:
        r = self.result
        r.lines += len(lines)
        r.bytes += sum(len(x) for x in lines)
        r.malformed += chunk.malformed
        r.missing_key += chunk.missing_key
        r.undecodable += chunk.undecodable
        r.scanned += chunk.scanned
        bad = set()
        for offset, reports in chunk.reports:
            bad.add(offset)
            if self.report_fh is None:
                self.task.report_path.parent.mkdir(parents=True, exist_ok=True)
                self.report_fh = open(self.report_tmp, "w", encoding="utf-8")  # noqa: SIM115
            for rep in reports:
                self.report_fh.write(json.dumps(rep, ensure_ascii=False) + "\n")
                r.matches += 1
                r.per_eval[rep["eval_key"]] = r.per_eval.get(rep["eval_key"], 0) + 1
        r.contaminated_lines += len(bad)
        kept = (raw for offset, raw in enumerate(lines) if offset not in bad)
        if self.cleaned_gz is not None:
            assert chunk.kept_deflated is not None, "chunk submitted without deflate_kept"
            self.cleaned_gz.write_part(chunk.kept_deflated, kept)
        elif self.cleaned_fh is not None:
            for raw in kept:  # zstandard's writer has no writelines
                self.cleaned_fh.write(raw)

    def finish(self) -> FileResult:
        task, r = self.task, self.result
        if self.cleaned_tmp is not None:
            self.close_cleaned()
            os.replace(self.cleaned_tmp, task.cleaned_path)  # type: ignore[arg-type]
        marker = task.report_path.with_name(
            task.report_path.name.removesuffix(".report.jsonl") + ".clean"
        )
        if self.report_fh is not None:
            self.report_fh.close()
            os.replace(self.report_tmp, task.report_path)
            marker.unlink(missing_ok=True)
        else:
            task.report_path.unlink(missing_ok=True)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_bytes(b"")
        r.seconds = time.perf_counter() - self.start
        return r

    def abort(self) -> FileResult:
        if self.report_fh is not None:
            self.report_fh.close()
        self.report_tmp.unlink(missing_ok=True)
        if self.cleaned_tmp is not None:
            try:
                self.close_cleaned()
            finally:
                self.cleaned_tmp.unlink(missing_ok=True)
        self.result.cancelled = True
        self.result.seconds = time.perf_counter() - self.start
        return self.result


def process_files(
    tasks: list[FileTask],
    detector: DocumentDetector,
    options: DetectOptions,
    cancel: Callable[[], bool] | None = None,
    pool: WorkerPool | None = None,
) -> Iterator[FileResult]:
    """Process files in order, chunks in parallel across files; yield each file's result.

    Without `pool`, a pool of `options.workers` processes lives for this call only.
    """
    keep_freed_memory()
    if pool is None:
        workers = resolve_workers(options.workers)
        if workers > 1:
            with WorkerPool(detector, workers) as own:
                yield from process_files(tasks, detector, options, cancel, own)
            return
    if pool is None:
        for task in tasks:
            writer = _FileWriter(task)
            for first, lines in _chunks(task.src, options.chunk_lines):
                if cancel is not None and cancel():
                    yield writer.abort()
                    return
                chunk = detect_chunk(detector, task.rel_name, first, lines, writer.deflate_kept)
                writer.add(first, lines, chunk)
            yield writer.finish()
        return
    window = pool.workers * 3
    # (writer, is_last_chunk_of_file, first, lines, async result) in submission order
    pending: deque = deque()
    writers_open: list[_FileWriter] = []

    def result_of(fut: Any) -> ChunkResult:
        # Checks `cancel` while a chunk is still running, so a stop does not wait for the
        # chunks in flight (a spot notice leaves two minutes).
        while True:
            try:
                return fut.get(timeout=CANCEL_POLL_SECONDS)
            except multiprocessing.TimeoutError:
                if cancel is not None and cancel():
                    raise _Cancelled from None

    def drain(limit: int) -> Iterator[FileResult]:
        while len(pending) > limit:
            writer, last, first, lines, fut = pending.popleft()
            writer.add(first, lines, result_of(fut))
            if last:
                writers_open.remove(writer)
                yield writer.finish()

    try:
        for task in tasks:
            writer = _FileWriter(task)
            writers_open.append(writer)
            chunk_iter = _chunks(task.src, options.chunk_lines)
            nxt = next(chunk_iter, None)
            if nxt is None:
                empty = ChunkResult(
                    [], kept_deflated=deflate_part(b"") if writer.deflate_kept else None
                )
                pending.append((writer, True, 0, [], _Done(empty)))
            while nxt is not None:
                if cancel is not None and cancel():
                    raise _Cancelled
                first, lines = nxt
                nxt = next(chunk_iter, None)
                fut = pool.submit(task.rel_name, first, lines, writer.deflate_kept)
                pending.append((writer, nxt is None, first, lines, fut))
                yield from drain(window)
        yield from drain(0)
    except _Cancelled:
        # Chunks already submitted finish in the workers; their results are dropped.
        for writer in writers_open:
            yield writer.abort()


class _Cancelled(Exception):
    pass


class _Done:
    def __init__(self, value: ChunkResult) -> None:
        self.value = value

    def get(self, timeout: float | None = None) -> ChunkResult:
        return self.value


def process_file(
    src: Path,
    rel_name: str,
    detector: DocumentDetector,
    options: DetectOptions,
    report_path: Path,
    cleaned_path: Path | None,
    cancel: Callable[[], bool] | None = None,
    pool: WorkerPool | None = None,
) -> FileResult:
    """Detect one input file; write its report (or `.clean` marker) and cleaned copy.

    Outputs are written to temporary names and renamed when complete, so a cancelled or
    failed file leaves nothing behind (`FileResult.cancelled` is then True).
    """
    task = FileTask(Path(src), rel_name, Path(report_path), cleaned_path)
    results = list(process_files([task], detector, options, cancel, pool))
    return results[-1]
