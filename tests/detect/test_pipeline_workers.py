"""Detection pool workers when their parent is killed: gone within 1 s, no traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

PARENT = textwrap.dedent(
    """
    import os, sys, time
    from decon.detect.match import Findings
    from decon.detect.options import DetectOptions
    from decon.detect.pipeline import WorkerPool

    class SlowDetector:
        # Each document takes 0.8 s, so workers are mid-chunk when the parent is killed.
        def __init__(self):
            self.options = DetectOptions(workers=2, content_key="text")
            self.stats = None

        def detect_batch(self, texts):
            time.sleep(0.8 * len(texts))
            return [Findings([], True) for _ in texts]

    pool = WorkerPool(SlowDetector(), 2)
    pending = [pool.submit("f.jsonl", i, [b'{"text": "x"}\\n'] * 3) for i in range(4)]
    print(" ".join(str(p.pid) for p in pool._pool._pool), flush=True)
    time.sleep(60)
    """
)


def gone(pid: int) -> bool:
    """Exited (a zombie nobody reaped yet counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def test_workers_exit_quietly_within_a_second_of_a_kill_9_of_their_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        workers = [int(pid) for pid in proc.stdout.readline().split()]  # type: ignore[union-attr]
        assert len(workers) == 2 and not any(gone(pid) for pid in workers)
        time.sleep(0.3)  # both workers are inside a document now
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(timeout=5)
        while not all(gone(pid) for pid in workers) and time.monotonic() - killed < 5:
            time.sleep(0.01)
        lasted = time.monotonic() - killed
        _, err = proc.communicate(timeout=10)  # EOF once no worker holds stderr any more
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert lasted < 1.0, f"workers outlived their parent by {lasted:.2f} s"
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
