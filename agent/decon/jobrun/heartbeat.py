"""The heartbeat object `runs/{RUN_ID}/heartbeat.json`: written by `decon run` as it goes,
read by `decon status` from a laptop."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from decon.eventlog import parse_iso_utc

HEARTBEAT_NAME = "heartbeat.json"


@dataclass
class FileCounts:
    assigned: int = 0
    done: int = 0
    contaminated: int = 0
    failed: int = 0


@dataclass
class HeartbeatRecord:
    """The content of `runs/{RUN_ID}/heartbeat.json`."""

    run_id: str
    job_id: str
    instance_id: str
    host_index: int
    host_count: int
    updated_at: str  # ISO 8601 UTC, e.g. 2026-11-23T14:30:12Z
    state: str = "running"  # running | stopping | done
    files: FileCounts = field(default_factory=FileCounts)
    bytes_done: int = 0
    bytes_total: int = 0
    rate_mb_s: float = 0.0

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> HeartbeatRecord:
        """Parse a heartbeat; raises ValueError on anything malformed."""
        try:
            raw: dict[str, Any] = json.loads(data)
            if not isinstance(raw, dict):
                raise TypeError("not a JSON object")
            raw["files"] = FileCounts(**raw.get("files", {}))
            return cls(**raw)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"bad heartbeat: {exc}") from None

    def age_seconds(self, now: dt.datetime) -> float:
        return (now - parse_iso_utc(self.updated_at)).total_seconds()
