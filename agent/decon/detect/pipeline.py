"""File-level detection: per-document detection over chunks of lines, per-file outputs.

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
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decon.detect.detector import DocumentDetector
from decon.detect.io import (
    GzipFromParts,
    LineReader,
    UnreadableFile,
    atomic_temp,
    compression_of,
    deflate_part,
    extract_text,
    open_binary_write,
    strip_data_suffix,
)
from decon.detect.match import Findings
from decon.detect.options import DetectOptions
from decon.detect.report import report_line

CHUNK_BYTES = 4 << 20
# A batch's arrays (the simple mode's prefilter) take several times its texts' size: batches
# of about this many characters keep them small (cache-friendly, and memory is reused rather
# than faulted in).
BATCH_CHARS = 1 << 20
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
    with_text: int = 0  # lines whose content key holds a string
    scanned: int = 0  # lines that passed the prefilter and were fully tokenized
    per_eval: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cancelled: bool = False
    keys_seen: list[str] = field(default_factory=list)  # keys of lines without the content key
    error: str = ""  # why the file failed (unreadable, wrong content key); no outputs then

    @property
    def contaminated(self) -> bool:
        return self.contaminated_lines > 0

    def counts(self) -> dict[str, int]:
        """The per-file line counts reported in logs, summaries and manifests."""
        return {
            "lines": self.lines,
            "with_text": self.with_text,
            "malformed": self.malformed,
            "missing_key": self.missing_key,
            "undecodable": self.undecodable,
            "matches": self.matches,
            "contaminated_lines": self.contaminated_lines,
        }


KEYS_SHOWN = 6


def content_problem(result: FileResult, content_key: str, max_keyless_fraction: float) -> str:
    """Why a file's lines cannot be trusted to have been checked, or "".

    A file fails when none of its lines has a string at `content_key` (a wrong key, or not
    JSON lines at all), or when more than `max_keyless_fraction` of its JSON lines lack it."""
    r = result
    if r.with_text == 0 and r.missing_key:
        keys = ", ".join(r.keys_seen[:KEYS_SHOWN]) or "none"
        return (
            f"{r.rel_name}: no line has a string at content key {content_key!r} "
            f"({r.missing_key} lines without it; keys found: {keys})"
        )
    if r.with_text == 0 and (r.malformed or r.undecodable):
        return (
            f"{r.rel_name}: no line is a JSON object ({r.malformed} malformed, "
            f"{r.undecodable} not UTF-8)"
        )
    objects = r.with_text + r.missing_key
    if r.missing_key and r.missing_key / objects > max_keyless_fraction:
        keys = ", ".join(r.keys_seen[:KEYS_SHOWN])
        return (
            f"{r.rel_name}: {r.missing_key} of {objects} lines have no string at content key "
            f"{content_key!r} (more than detect.max_keyless_fraction="
            f"{max_keyless_fraction:g}; keys found: {keys})"
        )
    return ""


@dataclass
class FileTask:
    """One input file and where its outputs go."""

    src: Path
    rel_name: str
    report_path: Path
    cleaned_path: Path | None = None


# -- chunk work (runs in workers) ------------------------------------------------------------


@dataclass
class ChunkResult:
    """Per-chunk outcome: report lines by line offset, counters, and (when asked for) the
    kept lines compressed by `deflate_part`."""

    reports: list[tuple[int, list[dict[str, Any]]]]
    malformed: int = 0
    missing_key: int = 0
    undecodable: int = 0
    with_text: int = 0
    scanned: int = 0
    kept_deflated: bytes | None = None
    keys_seen: list[str] = field(default_factory=list)
    error: str = ""  # the file could not be read past this chunk


def detect_chunk(
    detector: DocumentDetector,
    rel_name: str,
    first_line: int,
    lines: list[bytes],
    deflate_kept: bool = False,
) -> ChunkResult:
    """Detect every line of a chunk (pure apart from CPU), its texts in batches of about
    `BATCH_CHARS` characters. `deflate_kept` also compresses the lines a purified gzip copy
    keeps, so that compression runs in the workers rather than in the one process that
    writes the file.
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
                for key in got.keys:
                    if len(result.keys_seen) < KEYS_SHOWN and key not in result.keys_seen:
                        result.keys_seen.append(key)
            elif got.problem == "undecodable":
                result.undecodable += 1
            continue
        result.with_text += 1
        offsets.append(offset)
        texts.append(got.text)
        doc_ids.append(got.doc_id)
    findings: list[Findings] = []
    for batch in _batches(texts, BATCH_CHARS):
        findings += detector.detect_batch(batch)
    for offset, doc_id, found in zip(offsets, doc_ids, findings, strict=True):
        result.scanned += found.scanned
        if found.matches:
            line_no = first_line + offset
            result.reports.append(
                (offset, [report_line(m, rel_name, line_no, doc_id) for m in found.matches])
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


def _init_worker(detector: DocumentDetector, parent: int) -> None:
    die_with_parent(parent)
    keep_freed_memory()
    _WORKER_DETECTOR[:] = [detector]


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this worker as soon as its parent dies. A worker that outlived
    a killed job would finish its chunk, fail to send it back and print a BrokenPipeError
    traceback into the journal. (The signal follows the thread that forked the worker, so a
    pool lives no longer than the thread that made it.) A no-op without Linux's prctl."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(0)


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
        self._pool = ctx.Pool(workers, initializer=_init_worker, initargs=(detector, os.getpid()))

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


@dataclass
class _Chunk:
    """Consecutive lines of one file; `read_to` is how far into the file on disk they end.
    A file that cannot be read to its end gives a last chunk with no lines and an `error`."""

    first: int
    lines: list[bytes]
    read_to: int
    error: str = ""


def _chunks(src: Path, chunk_lines: int) -> Iterator[_Chunk]:
    reader = LineReader(src, keep_bom=True)
    lines: list[bytes] = []
    size = 0
    first = 0
    try:
        for raw in reader:
            lines.append(raw)
            size += len(raw)
            if len(lines) >= chunk_lines or size >= CHUNK_BYTES:
                yield _Chunk(first, lines, reader.position())
                first += len(lines)
                lines, size = [], 0
    except UnreadableFile as exc:
        # the lines read before the damage are not worth a partial result: the file fails
        yield _Chunk(first, [], reader.position(), str(exc))
        return
    if lines:
        yield _Chunk(first, lines, reader.position())


class _FileWriter:
    """Writes one file's report and cleaned copy to temp names, then renames into place."""

    def __init__(self, task: FileTask, options: DetectOptions) -> None:
        self.task = task
        self.options = options
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
        r.with_text += chunk.with_text
        r.scanned += chunk.scanned
        for key in chunk.keys_seen:
            if len(r.keys_seen) < KEYS_SHOWN and key not in r.keys_seen:
                r.keys_seen.append(key)
        if chunk.error:
            r.error = r.error or chunk.error
            return
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
        r.error = r.error or content_problem(
            r, self.options.content_key, self.options.max_keyless_fraction
        )
        if r.error:
            return self.fail()
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

    def fail(self) -> FileResult:
        """No outputs for a failed file, and none left from an earlier run: a failed file
        must never look clean."""
        self.abort()
        self.result.cancelled = False
        task = self.task
        task.report_path.unlink(missing_ok=True)
        task.report_path.with_name(
            task.report_path.name.removesuffix(".report.jsonl") + ".clean"
        ).unlink(missing_ok=True)
        if task.cleaned_path is not None:
            task.cleaned_path.unlink(missing_ok=True)
        return self.result

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
    on_progress: Callable[[FileResult, int], None] | None = None,
) -> Iterator[FileResult]:
    """Process files in order, chunks in parallel across files; yield each file's result.

    A file that fails (unreadable, or its lines lack the content key) is yielded with
    `error` set and has no outputs. `on_progress(result so far, bytes of the file on disk
    done)` is called after each chunk. Without `pool`, a pool of `options.workers` processes
    lives for this call only.
    """
    keep_freed_memory()
    if pool is None:
        workers = resolve_workers(options.workers)
        if workers > 1:
            with WorkerPool(detector, workers) as own:
                yield from process_files(tasks, detector, options, cancel, own, on_progress)
            return

    def add(writer: _FileWriter, chunk: _Chunk, result: ChunkResult) -> None:
        writer.add(chunk.first, chunk.lines, result)
        if on_progress is not None:
            on_progress(writer.result, chunk.read_to)

    if pool is None:
        for task in tasks:
            writer = _FileWriter(task, options)
            for chunk in _chunks(task.src, options.chunk_lines):
                if cancel is not None and cancel():
                    yield writer.abort()
                    return
                if chunk.error:
                    result = ChunkResult([], error=chunk.error)
                else:
                    result = detect_chunk(
                        detector, task.rel_name, chunk.first, chunk.lines, writer.deflate_kept
                    )
                add(writer, chunk, result)
            yield writer.finish()
        return
    window = pool.workers * 3
    # (writer, is_last_chunk_of_file, chunk, async result) in submission order
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
            writer, last, chunk, fut = pending.popleft()
            add(writer, chunk, result_of(fut))
            if last:
                writers_open.remove(writer)
                yield writer.finish()

    try:
        for task in tasks:
            writer = _FileWriter(task, options)
            writers_open.append(writer)
            chunk_iter = _chunks(task.src, options.chunk_lines)
            nxt = next(chunk_iter, None)
            if nxt is None:
                empty = ChunkResult(
                    [], kept_deflated=deflate_part(b"") if writer.deflate_kept else None
                )
                pending.append((writer, True, _Chunk(0, [], 0), _Done(empty)))
            while nxt is not None:
                if cancel is not None and cancel():
                    raise _Cancelled
                chunk, nxt = nxt, next(chunk_iter, None)
                if chunk.error:
                    # in submission order, so the file's earlier chunks are added first
                    fut: Any = _Done(ChunkResult([], error=chunk.error))
                else:
                    fut = pool.submit(task.rel_name, chunk.first, chunk.lines, writer.deflate_kept)
                pending.append((writer, nxt is None, chunk, fut))
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
    failed file leaves nothing behind (`FileResult.cancelled` is then True, or
    `FileResult.error` says why the file failed).
    """
    task = FileTask(Path(src), rel_name, Path(report_path), cleaned_path)
    results = list(process_files([task], detector, options, cancel, pool))
    return results[-1]
