"""The finalize lock: flock(2) on `node.lock_file` through filelock's UnixFileLock, the same
lock that shell `flock /var/lock/decon.finalize.lock ...` takes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import Timeout, UnixFileLock

from decon.eventlog import EventLog


def _lock(path: Path) -> UnixFileLock:
    # No soft-lock fallback: a lock shell flock cannot see would not serialise with it.
    return UnixFileLock(path, fallback_to_soft=False)


@contextmanager
def finalize_lock(path: Path, log: EventLog) -> Iterator[None]:
    """Hold the lock for the block; a second finalizer logs that it waits, then waits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.line(f"waiting for {path}: another finalizer is running")
        log.event("FINALIZE_WAITING", lock=path, pid=os.getpid())
        started = time.monotonic()
        lock.acquire()
        waited = time.monotonic() - started
        log.event("FINALIZE_LOCKED", lock=path, waited_seconds=f"{waited:.1f}", pid=os.getpid())
    try:
        yield
    finally:
        lock.release()


def lock_is_held(path: Path) -> bool:
    """Whether another process holds the finalize lock (a probe: taken and let go at once)."""
    if not path.exists():
        return False
    lock = _lock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False
