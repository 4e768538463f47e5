"""Eval record files as Decon writes them: `{eval}_{split}-{n}.jsonl`, a new file before a
line would take the current one past 5 MB (uncompressed), one `json.dumps` line per record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from decon.detect.io import open_binary_write

CHUNK_BYTES = 5 * 1024 * 1024


class ChunkedWriter:
    """Records of one eval split into numbered chunk files (`.jsonl`, or `.jsonl.gz`)."""

    def __init__(self, directory: Path, base: str, gzip: bool = False) -> None:
        self.directory = directory
        self.base = base
        self.suffix = ".jsonl.gz" if gzip else ".jsonl"
        self.files: list[Path] = []
        self.records = 0
        self._size = 0
        self._ctx: Any = None
        self._fh: IO[bytes] | None = None

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record) + "\n").encode("utf-8")
        if self._fh is None or self._size + len(line) > CHUNK_BYTES:
            self._next_chunk()
        assert self._fh is not None
        self._fh.write(line)
        self._size += len(line)
        self.records += 1

    def _next_chunk(self) -> None:
        self._close_chunk()
        path = self.directory / f"{self.base}-{len(self.files) + 1}{self.suffix}"
        self.files.append(path)
        self._ctx = open_binary_write(path, ".gz" if self.suffix.endswith(".gz") else "")
        self._fh = self._ctx.__enter__()
        self._size = 0

    def _close_chunk(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
        self._ctx = self._fh = None

    def close(self) -> None:
        self._close_chunk()

    def __enter__(self) -> ChunkedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
