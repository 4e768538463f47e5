"""The job's counters, shared by the pipeline threads, and their three renderings: the
systemd Status line, progress.json (read by the finalizer for the sentinel) and the heartbeat."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from decon.eventlog import iso_utc
from decon.jobrun.heartbeat import FileCounts, HeartbeatRecord

MB = 1 << 20


@dataclass
class FailedFile:
    rel: str
    location: str
    stage: str  # download | detect | upload | plan
    error: str


@dataclass
class Progress:
    """Counts for this host's shard. `done` includes files finished by earlier runs."""

    assigned: int = 0
    done: int = 0
    contaminated: int = 0
    failed: int = 0
    skipped: int = 0  # done before this run started
    bytes_total: int = 0  # input bytes of the files to process in this run
    bytes_done: int = 0  # input bytes detected in this run
    matches: int = 0
    failed_files: list[FailedFile] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def file_assigned(self, size: int) -> None:
        """One more file for this host (queue distribution: as it is received)."""
        with self._lock:
            self.assigned += 1
            self.bytes_total += size

    def file_already_done(self) -> None:
        """One more assigned file that an earlier run finished (a redelivered message)."""
        with self._lock:
            self.assigned += 1
            self.skipped += 1
            self.done += 1

    def file_done(self, contaminated: bool, size: int, matches: int) -> None:
        with self._lock:
            self.done += 1
            self.contaminated += int(contaminated)
            self.matches += matches
            self.bytes_done += size

    def file_failed(self, failed: FailedFile) -> None:
        with self._lock:
            self.failed += 1
            self.failed_files.append(failed)

    def rate_mb_s(self, now: float | None = None) -> float:
        elapsed = (now or time.monotonic()) - self.started
        return self.bytes_done / MB / elapsed if elapsed > 0 else 0.0

    def status_line(self) -> str:
        """`12/40 files, 3 contaminated, 45 MB/s` (+ `, 1 failed` when any failed)."""
        with self._lock:
            text = f"{self.done}/{self.assigned} files, {self.contaminated} contaminated"
            if self.failed:
                text += f", {self.failed} failed"
        return text + f", {self.rate_mb_s():.0f} MB/s"

    def to_progress_json(self) -> dict[str, Any]:
        """progress.json: the sentinel's counts plus the failed files for the manifest."""
        with self._lock:
            return {
                "assigned": self.assigned,
                "done": self.done,
                "contaminated": self.contaminated,
                "failed": self.failed,
                "skipped": self.skipped,
                "bytes_done": self.bytes_done,
                "bytes_total": self.bytes_total,
                "failed_files": [vars(f) for f in self.failed_files],
                "updated_at": iso_utc(),
            }

    def heartbeat(
        self,
        run_id: str,
        job_id: str,
        instance_id: str,
        host_index: int,
        host_count: int,
        state: str,
    ) -> HeartbeatRecord:
        with self._lock:
            files = FileCounts(self.assigned, self.done, self.contaminated, self.failed)
            bytes_done, bytes_total = self.bytes_done, self.bytes_total
        return HeartbeatRecord(
            run_id=run_id,
            job_id=job_id,
            instance_id=instance_id,
            host_index=host_index,
            host_count=host_count,
            updated_at=iso_utc(),
            state=state,
            files=files,
            bytes_done=bytes_done,
            bytes_total=bytes_total,
            rate_mb_s=round(self.rate_mb_s(), 3),
        )
