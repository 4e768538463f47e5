"""What every storage offers: `Storage` (the interface) and `ObjectInfo` (one listed object)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a local file, as manifests record an uploaded object."""
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key (relative to the storage prefix) and size in bytes."""

    key: str
    size: int


class Storage(Protocol):
    """What callers may rely on; `S3Storage` and `LocalStorage` implement it."""

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Store `data` at `key`; with `if_absent`, only if nothing is there (False if it was)."""
        ...

    def put_file(self, key: str, path: str | Path) -> None:
        """Upload the file at `path` to `key`: one object, visible only when complete (one PUT,
        or a multipart upload above the multipart threshold)."""
        ...

    def put_file_if_absent(self, key: str, path: str | Path) -> bool:
        """Upload the file at `path` to `key` in one conditional PUT (at most S3's 5 GB for
        one PUT): only if nothing is there, False if something was (one writer wins)."""
        ...

    def get_file(
        self, key: str, path: str | Path, cancel: Callable[[], bool] | None = None
    ) -> None:
        """Download `key` to `path` (written to a temporary name, then renamed); raises
        TransferCancelled when `cancel()` turns true on the way."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The content of `key`; StorageError(code="NoSuchKey") when it does not exist."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object exists at `key` (a HEAD request)."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; no error when it does not exist."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order."""
        ...

    def uri(self, key: str = "") -> str:
        """The full URI of `key` (`s3://bucket/prefix/key` or an absolute local path)."""
        ...
