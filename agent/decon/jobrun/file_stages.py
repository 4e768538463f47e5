"""The file stages of `decon run`: download -> detect -> upload, overlapping across files.

    feeder thread     reserves disk for the next file, hands it to the download pool
    download pool     `run.download_concurrency` files at once (each multipart, threaded)
    detect loop       the calling thread, one file at a time (detection itself may use
                      processes, `detect.workers`)
    upload pool       `run.upload_concurrency` files at once: the cleaned copy first, then the
                      report or `.clean` marker LAST (each one object, visible only when
                      complete), so "done" always means "every output is in the output
                      area" (S3, or a local directory)

Disk: a file's reservation (input + outputs estimate) is taken before its download and given
back when its local copies are deleted, so at most `run.max_disk_mb` is in use.

Stop (`stop()` true): no new file starts, queued and downloading files are abandoned, the file
being detected is cancelled and nothing of it is published, files already detected finish
uploading (flush).
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from decon.eventlog import EventLog, one_line
from decon.jobrun.budget import DiskBudget
from decon.jobrun.detect_step import Detector, DetectResult
from decon.jobrun.endpoints import InputSource, JobOutputs
from decon.jobrun.inputs import FilePlan
from decon.jobrun.progress import FailedFile, Progress
from decon.node.state import NodeState
from decon.storage import TransferCancelled

OUTPUT_ALLOWANCE = 1 << 20  # reserved per file for the report, beyond the input-sized estimate


@dataclass(frozen=True)
class StageSettings:
    download_concurrency: int = 4
    upload_concurrency: int = 4
    max_disk_bytes: int = 20 << 30
    purify: bool = False


@dataclass
class Fetched:
    """A file leaving the download stage."""

    plan: FilePlan
    reserved: int
    path: Path | None = None
    error: BaseException | None = None
    abandoned: bool = False


_END = object()


class FileOutcomes(Protocol):
    """Told when a file is finished (every output written) or given back (failed, abandoned):
    queue distribution deletes or releases the file's message."""

    def done(self, fp: FilePlan) -> None: ...

    def released(self, fp: FilePlan) -> None: ...


class Publisher:
    """Uploads one file's outputs in order and records each object in the node state."""

    def __init__(self, outputs: JobOutputs, state: NodeState) -> None:
        self.outputs = outputs
        self.state = state

    def publish(
        self,
        fp: FilePlan,
        contaminated: bool,
        report: Path,
        cleaned: Path | None,
        counts: dict[str, int] | None = None,
    ) -> list[str]:
        """Cleaned copy (contaminated files only, as Decon does), then report or marker (its
        manifest entry carries the input's line `counts`)."""
        uris = []
        if contaminated and cleaned is not None and cleaned.exists():
            uri, size, digest = self.outputs.put_cleaned(fp.cleaned, cleaned)
            self.state.record_upload(uri, size, digest)
            uris.append(uri)
        if contaminated:
            uri, size, digest = self.outputs.put_report(fp.report, report)
        else:
            uri, size, digest = self.outputs.put_report(fp.marker, None)
        self.state.record_upload(uri, size, digest, counts)
        uris.append(uri)
        return uris


class FileStages:
    """Runs files through download, detection and upload. `files` is pulled as the pipeline
    has room, so it may be a queue that yields one file per free slot."""

    def __init__(
        self,
        files: Iterable[FilePlan],
        source: InputSource,
        detector: Detector,
        publisher: Publisher | None,  # None: MAX_FILES_DEBUG, keep results locally
        settings: StageSettings,
        progress: Progress,
        log: EventLog,
        stop: Callable[[], bool],
        scratch: Path,
        on_change: Callable[[], None] = lambda: None,
        outcomes: FileOutcomes | None = None,
    ) -> None:
        self.files = files
        self.outcomes = outcomes
        self.source = source
        self.detector = detector
        self.publisher = publisher
        self.settings = settings
        self.progress = progress
        self.log = log
        self._aborted = threading.Event()
        self.stop = lambda: stop() or self._aborted.is_set()
        self.scratch = scratch
        self.on_change = on_change
        self.budget = DiskBudget(settings.max_disk_bytes)
        self.abandoned: list[str] = []

    # -- local paths --------------------------------------------------------------------------

    def input_path(self, fp: FilePlan) -> Path:
        return self.scratch / "inputs" / fp.input.rel

    def report_path(self, fp: FilePlan) -> Path:
        return self.scratch / "outputs" / "reports" / fp.report

    def marker_path(self, fp: FilePlan) -> Path:
        return self.scratch / "outputs" / "reports" / fp.marker

    def cleaned_path(self, fp: FilePlan) -> Path | None:
        if not self.settings.purify:
            return None
        return self.scratch / "outputs" / "cleaned" / fp.cleaned

    def reservation(self, fp: FilePlan) -> int:
        size = fp.input.size
        local_input = 0 if self.source.is_local else size
        cleaned = size if self.settings.purify else 0
        return local_input + cleaned + OUTPUT_ALLOWANCE

    # -- stages -------------------------------------------------------------------------------

    def run(self) -> None:
        ready: queue.Queue = queue.Queue()
        downloads = ThreadPoolExecutor(self.settings.download_concurrency, "download")
        uploads = ThreadPoolExecutor(self.settings.upload_concurrency, "upload")
        feeder = threading.Thread(
            target=self._feed, args=(ready, downloads), name="feeder", daemon=True
        )
        feeder.start()
        try:
            while True:
                item = ready.get()
                if item is _END:
                    break
                self._detect(item, uploads)
        except BaseException:
            # an unexpected error here: stop feeding, drop what is queued, then re-raise
            self._aborted.set()
            while (item := ready.get()) is not _END:
                self._cleanup(item)
            raise
        finally:
            feeder.join()
            downloads.shutdown(wait=True)
            uploads.shutdown(wait=True)  # flush: every detected file is published

    def _feed(self, ready: queue.Queue, downloads: ThreadPoolExecutor) -> None:
        futures = []
        try:
            for fp in self.files:
                if self.stop():
                    break
                need = self.reservation(fp)
                if not self.budget.acquire(need, self.stop):
                    break
                futures.append(downloads.submit(self._download, fp, need, ready))
        finally:
            for fut in futures:
                fut.exception()  # wait; errors are reported through `ready`
            ready.put(_END)

    def _download(self, fp: FilePlan, reserved: int, ready: queue.Queue) -> None:
        item = Fetched(fp, reserved)
        try:
            if self.stop():
                item.abandoned = True
            else:
                item.path = self.source.fetch(fp.input, self.input_path(fp), self.stop)
        except TransferCancelled:
            item.abandoned = True
        except Exception as exc:
            item.error = exc
        ready.put(item)

    def _detect(self, item: Fetched, uploads: ThreadPoolExecutor) -> None:
        fp = item.plan
        if item.error is not None:
            self._fail(fp, "download", item.error)
            self._cleanup(item)
            return
        if item.abandoned or self.stop() or item.path is None:
            self._abandon(item)
            return
        self.log.event("FILE_START", file=fp.input.rel, bytes=fp.input.size)
        start = time.monotonic()
        try:
            result = self.detector(
                item.path, fp.input.rel, self.report_path(fp), self.cleaned_path(fp), self.stop
            )
        except Exception as exc:
            self._fail(fp, "detect", exc)
            self._cleanup(item)
            return
        if result.cancelled:
            self._abandon(item)
            return
        error = getattr(result, "error", "")
        if error:
            self._fail(fp, "detect", error)
            self._cleanup(item)
            return
        seconds = time.monotonic() - start
        if self.publisher is None:
            self._finish(item, result, seconds, where=str(self.scratch / "outputs"))
            self.budget.release(item.reserved)
            return
        uploads.submit(self._publish, item, result, seconds)

    def _publish(self, item: Fetched, result: DetectResult, seconds: float) -> None:
        fp = item.plan
        contaminated = result.contaminated_lines > 0
        try:
            assert self.publisher is not None
            uris = self.publisher.publish(
                fp, contaminated, self.report_path(fp), self.cleaned_path(fp), line_counts(result)
            )
        except Exception as exc:
            self._fail(fp, "upload", exc)
        else:
            self._finish(item, result, seconds, where=uris[-1])
        finally:
            self._cleanup(item)

    # -- outcomes -----------------------------------------------------------------------------

    def _finish(self, item: Fetched, result: DetectResult, seconds: float, where: str) -> None:
        fp = item.plan
        contaminated = result.contaminated_lines > 0
        self.progress.file_done(contaminated, fp.input.size, result.matches)
        self.log.event(
            "FILE_DONE",
            file=fp.input.rel,
            contaminated=str(contaminated).lower(),
            **line_counts(result),
            seconds=f"{seconds:.2f}",
            output=where,
        )
        if self.outcomes is not None:
            self.outcomes.done(fp)
        self.on_change()

    def _fail(self, fp: FilePlan, stage: str, exc: BaseException | str) -> None:
        error = exc if isinstance(exc, str) else one_line(exc)
        self.progress.file_failed(FailedFile(fp.input.rel, fp.input.location, stage, error))
        self.log.event("FILE_FAILED", file=fp.input.rel, stage=stage, error=error)
        if self.outcomes is not None:
            self.outcomes.released(fp)
        self.on_change()

    def _abandon(self, item: Fetched) -> None:
        self.abandoned.append(item.plan.input.rel)
        if item.path is not None:
            self.log.event("FILE_ABANDONED", file=item.plan.input.rel, why="stopping")
        if self.outcomes is not None:
            self.outcomes.released(item.plan)
        self._cleanup(item)

    def _cleanup(self, item: Fetched) -> None:
        """Delete the file's local copies and give its disk reservation back."""
        fp = item.plan
        try:
            paths = [self.report_path(fp), self.marker_path(fp), self.cleaned_path(fp)]
            if not self.source.is_local:
                paths.append(self.input_path(fp))
            for path in paths:
                if path is not None:
                    path.unlink(missing_ok=True)
        finally:
            self.budget.release(item.reserved)


def line_counts(result: DetectResult) -> dict[str, int]:
    """A result's line counts (lines, matches, malformed, missing_key, undecodable, ...)."""
    counts = getattr(result, "counts", None)
    if counts is not None:
        return counts()
    return {
        "lines": result.lines,
        "matches": result.matches,
        "contaminated_lines": result.contaminated_lines,
        "malformed": result.malformed,
    }


def reset_scratch(scratch: Path) -> None:
    """Start from an empty scratch directory (leftovers of a killed run are never reused)."""
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "inputs").mkdir(parents=True)
    (scratch / "outputs").mkdir(parents=True)
