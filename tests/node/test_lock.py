"""The finalize lock is flock(2): it serialises with shell `flock` and with other processes."""

import subprocess
import time
from io import StringIO
from pathlib import Path

from decon.eventlog import EventLog
from decon.node.lock import finalize_lock, lock_is_held


def test_held_lock_blocks_shell_flock_and_is_released_after(tmp_path: Path) -> None:
    path = tmp_path / "lock" / "decon.finalize.lock"
    with finalize_lock(path, EventLog(None, StringIO())):
        assert subprocess.run(["flock", "-n", str(path), "true"]).returncode == 1
    assert subprocess.run(["flock", "-n", str(path), "true"]).returncode == 0
    assert path.exists()  # left in place, so every waiter locks the same inode


def test_waits_for_a_shell_flock_holder_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "decon.finalize.lock"
    path.touch()
    holder = subprocess.Popen(["flock", str(path), "sleep", "1.5"])
    try:
        deadline = time.monotonic() + 10
        while not lock_is_held(path):
            assert time.monotonic() < deadline, "the shell flock never took the lock"
            time.sleep(0.05)
        stream = StringIO()
        started = time.monotonic()
        with finalize_lock(path, EventLog(None, stream)):
            waited = time.monotonic() - started
    finally:
        holder.wait(timeout=10)
    assert waited > 0.3
    text = stream.getvalue()
    assert "another finalizer is running" in text
    assert "STATE: FINALIZE_WAITING" in text and "STATE: FINALIZE_LOCKED" in text
    assert not lock_is_held(path)


def test_no_lock_file_is_not_held(tmp_path: Path) -> None:
    assert not lock_is_held(tmp_path / "missing.lock")
    assert not (tmp_path / "missing.lock").exists()  # the probe creates nothing
