"""The run log of SPEC section 9: one UTC line per event, to the log file and to stdout.

[UTC 2026-11-23T14:30:12Z] STATE: FINALIZE_START run_id=... completion_status=normal
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any, TextIO


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso_utc(when: dt.datetime | None = None) -> str:
    """`2026-11-23T14:30:12Z` for `when` (default: now)."""
    return (when or utc_now()).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_utc(text: str) -> dt.datetime:
    """Parse an ISO 8601 time such as `2026-11-23T14:30:12Z`; no zone given means UTC.

    Raises ValueError when `text` is not an ISO 8601 time.
    """
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def one_line(exc: BaseException) -> str:
    """An error for a log line: its type and message on one line, at most 500 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def format_fields(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value)
        if text == "" or any(c.isspace() or c in "\"'" for c in text):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


class EventLog:
    """Appends event lines to `path` (if given) and writes them to `stream` (the journal)."""

    def __init__(self, path: str | Path | None, stream: TextIO | None = None) -> None:
        self.path = Path(path) if path else None
        self.stream = stream if stream is not None else sys.stdout

    def event(self, state: str, **fields: Any) -> str:
        """Log `STATE: <state> k=v ...`; returns the line written."""
        tail = format_fields(fields)
        return self.line(f"STATE: {state}" + (f" {tail}" if tail else ""))

    def line(self, text: str) -> str:
        """Log one free-form line with the UTC prefix (hook output, notes)."""
        line = f"[UTC {iso_utc()}] {text}"
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
            except OSError as exc:
                print(f"[UTC {iso_utc()}] cannot write {self.path}: {exc}", file=sys.stderr)
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass
        return line
