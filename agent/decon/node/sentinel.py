"""The run sentinel of SPEC section 7: `runs/{RUN_ID}/_SUCCESS` or `runs/{RUN_ID}/_FAILED_UPLOAD`.

`_SUCCESS` is written last and only once (a conditional PUT); `_FAILED_UPLOAD` carries the same
fields with `status: "failed_upload"` and `last_error`, and is replaced by `_SUCCESS` when a
rerun succeeds. The storage passed around here is the *runs* area:
`open_storage(cfg.output_prefix("runs"), cfg.aws)`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from decon.storage import Storage, StorageError

SUCCESS = "_SUCCESS"
FAILED_UPLOAD = "_FAILED_UPLOAD"
FILE_COUNTS = ("assigned", "done", "contaminated", "failed")


@dataclass
class Sentinel:
    """The JSON body of `_SUCCESS` / `_FAILED_UPLOAD`."""

    run_id: str
    job_id: str
    instance_id: str
    host_index: int
    host_count: int
    finalized_at: str
    status: str  # success | failed_upload
    completion_status: str  # normal | interrupted
    exit_code: int | None  # None: no job outcome was recorded
    reason: str
    files: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILE_COUNTS, 0))
    artifacts: list[str] = field(default_factory=list)
    last_error: str | None = None  # only in _FAILED_UPLOAD

    @property
    def name(self) -> str:
        """The object name this sentinel is stored under."""
        return SUCCESS if self.status == "success" else FAILED_UPLOAD

    def to_json(self) -> bytes:
        data = asdict(self)
        if data["last_error"] is None:
            del data["last_error"]
        return (json.dumps(data, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, body: bytes, where: str = "sentinel") -> Sentinel:
        """Parse a sentinel; unknown extra keys are ignored, missing ones are an error."""
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StorageError(f"{where}: not a decon sentinel (invalid JSON: {exc})") from None
        if not isinstance(data, dict):
            raise StorageError(f"{where}: not a decon sentinel (not a JSON object)")
        known = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.name not in data and f.name != "last_error"]
        if missing:
            raise StorageError(f"{where}: not a decon sentinel (missing {', '.join(missing)})")
        return cls(**{k: v for k, v in data.items() if k in known})


def file_counts(progress: dict[str, Any]) -> dict[str, int]:
    """The sentinel's `files` block from the job's progress record (missing counts are 0)."""
    out = {}
    for name in FILE_COUNTS:
        value = progress.get(name, 0)
        out[name] = value if isinstance(value, int) and not isinstance(value, bool) else 0
    return out


def sentinel_key(run_id: str, name: str) -> str:
    return f"{run_id}/{name}"


def read_sentinel(storage: Storage, run_id: str) -> Sentinel | None:
    """The run's `_SUCCESS` if present, else its `_FAILED_UPLOAD`, else None."""
    for name in (SUCCESS, FAILED_UPLOAD):
        key = sentinel_key(run_id, name)
        if storage.exists(key):
            try:
                body = storage.get_bytes(key)
            except StorageError as exc:
                if exc.code == "NoSuchKey":  # removed between the two calls
                    continue
                raise
            return Sentinel.from_json(body, storage.uri(key))
    return None


def success_exists(storage: Storage, run_id: str) -> bool:
    return storage.exists(sentinel_key(run_id, SUCCESS))


def write_success(storage: Storage, sentinel: Sentinel) -> bool:
    """Write `_SUCCESS` only if absent; False when another finalizer already wrote it."""
    return storage.put_bytes(
        sentinel_key(sentinel.run_id, SUCCESS), sentinel.to_json(), if_absent=True
    )


def write_failed_upload(storage: Storage, sentinel: Sentinel) -> None:
    """Write (or replace) `_FAILED_UPLOAD`."""
    storage.put_bytes(sentinel_key(sentinel.run_id, FAILED_UPLOAD), sentinel.to_json())


def clear_failed_upload(storage: Storage, run_id: str) -> None:
    storage.delete(sentinel_key(run_id, FAILED_UPLOAD))
