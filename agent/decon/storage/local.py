"""Files under a local directory behind the storage interface (demos, a single machine, a NAS)."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from decon.storage.base import ObjectInfo
from decon.storage.errors import StorageError


class LocalStorage:
    """Files under a local directory; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()

    def _path(self, key: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if any(p == ".." for p in parts):
            raise StorageError(f"{self.root}: key {key!r} leaves the storage directory")
        return self.root.joinpath(*parts)

    def uri(self, key: str = "") -> str:
        text = str(self._path(key))
        return text + "/" if (not key or key.endswith("/")) else text

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if if_absent:
                # O_EXCL decides the race; the content follows (readers may briefly see it empty).
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                return True
            self._atomic_write(path, lambda fh: fh.write(data))
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._error(exc, path, "write") from exc
        return True

    def put_file(self, key: str, path: str | Path) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with Path(path).open("rb") as src:
                self._atomic_write(target, lambda fh: shutil.copyfileobj(src, fh))
        except OSError as exc:
            raise self._error(exc, target, "write") from exc

    def put_file_if_absent(self, key: str, path: str | Path) -> bool:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # A hard link of a complete copy decides the race: readers never see it partial.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                with os.fdopen(fd, "wb") as fh, Path(path).open("rb") as src:
                    shutil.copyfileobj(src, fh)
                os.link(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._error(exc, target, "write") from exc
        return True

    def get_file(
        self, key: str, path: str | Path, cancel: Callable[[], bool] | None = None
    ) -> None:
        source, path = self._path(key), Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with source.open("rb") as src:
                self._atomic_write(path, lambda fh: shutil.copyfileobj(src, fh))
        except OSError as exc:
            raise self._error(exc, source, "read") from exc

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise self._error(exc, path, "read") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise self._error(exc, path, "delete") from exc

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            return
        found = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # another writer's temporary file
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(ObjectInfo(key, full.stat().st_size))
        yield from sorted(found, key=lambda o: o.key)

    @staticmethod
    def _atomic_write(path: Path, write: Any) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _error(exc: OSError, path: Path, op: str) -> StorageError:
        code = (
            "NoSuchKey"
            if isinstance(exc, FileNotFoundError)
            else errno.errorcode.get(exc.errno or 0, "OSError")
        )
        transient = exc.errno in (errno.EAGAIN, errno.EINTR, errno.EBUSY)
        return StorageError(
            f"{path}: {op} failed: {exc.strerror or exc}", code=code, transient=transient
        )
