"""On-instance state under `node.state_dir` (default /var/lib/decon), shared by the
wrapper, the spot watcher and the finalizer.

    run-id               the current RUN_ID (SPEC section 6); a manual rerun finalizes it
    outcome.json         the job's outcome, written by the wrapper when the job exits
    spot-notice.json     the spot notice, written by the watcher (the finalizer's deadline)
    wrapper.pid          the wrapper's PID (the watcher signals it to stop the job)
    progress.json        the job's file counts (assigned/done/contaminated/failed), for sentinel
    uploads.jsonl        objects the job uploaded ({"uri", "size", "sha256"}, and "lines": the
                         line counts of a report's or marker's input), for manifest.json
    outbox/              artifacts waiting to be uploaded to runs/{RUN_ID}/
    work/                scratch space of the job (`Config.work_dir`, unless run.work_dir)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from decon.eventlog import parse_iso_utc

RUN_ID_RE = re.compile(r"^run-\d{8}-\d{6}Z-[A-Za-z0-9._-]+$")


def make_run_id(instance_id: str | None, when: dt.datetime | None = None) -> str:
    """`run-YYYYMMDD-HHMMSSZ-<instance id or host name>`."""
    when = (when or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    host = instance_id or socket.gethostname().split(".")[0] or "localhost"
    host = re.sub(r"[^A-Za-z0-9._-]", "-", host)
    return f"run-{when:%Y%m%d-%H%M%S}Z-{host}"


@dataclass
class Outcome:
    """How the job ended, as the wrapper saw it."""

    completion_status: str  # normal | interrupted
    exit_code: int
    reason: str

    @classmethod
    def from_exit(cls, exit_code: int, reason: str | None = None) -> Outcome:
        status = "normal" if exit_code == 0 else "interrupted"
        if reason is None:
            if exit_code == 0:
                reason = "job exited 0"
            elif exit_code < 0:
                reason = f"job killed by signal {-exit_code}"
            else:
                reason = f"job exited {exit_code}"
        return cls(status, exit_code, reason)


@dataclass
class SpotNotice:
    """A spot instance-action notice: action (terminate|stop|hibernate) and its time."""

    action: str
    time: str  # ISO 8601 UTC, as IMDS gives it

    def when(self) -> dt.datetime:
        return parse_iso_utc(self.time)


class NodeState:
    """Typed access to the files of `node.state_dir`."""

    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir)

    @property
    def run_id_file(self) -> Path:
        return self.dir / "run-id"

    @property
    def outbox(self) -> Path:
        return self.dir / "outbox"

    @property
    def wrapper_pid_file(self) -> Path:
        return self.dir / "wrapper.pid"

    @property
    def outcome_file(self) -> Path:
        return self.dir / "outcome.json"

    def run_id(self) -> str | None:
        """The current run id, or None when no run has started on this node."""
        try:
            value = self.run_id_file.read_text().strip()
        except FileNotFoundError:
            return None
        return value or None

    def start_run(self, instance_id: str | None, when: dt.datetime | None = None) -> str:
        """Make a new run id, store it, clear the previous run's outcome and notice."""
        run_id = make_run_id(instance_id, when)
        self._write(self.run_id_file, run_id + "\n")
        for name in ("outcome.json", "spot-notice.json", "progress.json", "uploads.jsonl"):
            (self.dir / name).unlink(missing_ok=True)
        return run_id

    def write_outcome(self, outcome: Outcome) -> None:
        self._write_json("outcome.json", asdict(outcome))

    def outcome(self) -> Outcome | None:
        data = self._read_json("outcome.json")
        return Outcome(**data) if data else None

    def write_notice(self, notice: SpotNotice) -> None:
        self._write_json("spot-notice.json", asdict(notice))

    def notice(self) -> SpotNotice | None:
        data = self._read_json("spot-notice.json")
        return SpotNotice(**data) if data else None

    def clear_notice(self) -> None:
        """Forget the spot notice (one left from an earlier boot)."""
        (self.dir / "spot-notice.json").unlink(missing_ok=True)

    def write_progress(self, progress: dict[str, Any]) -> None:
        """The job's counts: {"assigned", "done", "contaminated", "failed", ...}."""
        self._write_json("progress.json", progress)

    def progress(self) -> dict[str, Any]:
        return self._read_json("progress.json") or {}

    def record_upload(
        self, uri: str, size: int, sha256: str, lines: dict[str, int] | None = None
    ) -> None:
        """Append one uploaded object to uploads.jsonl (one line per object, append-only);
        a report or `.clean` marker carries its input file's line counts (`lines`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        entry: dict[str, Any] = {"uri": uri, "size": size, "sha256": sha256}
        if lines is not None:
            entry["lines"] = lines
        line = json.dumps(entry, sort_keys=True)
        with (self.dir / "uploads.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def uploads(self) -> list[dict[str, Any]]:
        try:
            lines = (self.dir / "uploads.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line after a crash
        return out

    def _read_json(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir / name).read_text())
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def _write_json(self, name: str, data: dict[str, Any]) -> None:
        self._write(self.dir / name, json.dumps(data, sort_keys=True) + "\n")

    def _write(self, path: Path, text: str) -> None:
        """Atomic replace, so a reader never sees half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
