"""The job's edges: where input files come from and where outputs go (the reports and cleaned
areas), each an S3 prefix or a local directory, each operation with retries."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import botocore.exceptions

from decon.config import Config
from decon.errors import UserError
from decon.jobrun.inputs import InputFile
from decon.jobrun.transfer import S3Transfers, file_digest
from decon.storage import Storage, StorageError, open_storage, split_s3_uri


class InputSource(Protocol):
    uri: str
    is_local: bool  # local inputs are read in place and never deleted

    def list(self) -> list[InputFile]: ...

    def fetch(self, item: InputFile, dest: Path, cancel: Callable[[], bool]) -> Path: ...


def describe_s3_error(exc: Exception, what: str, uri: str) -> str | None:
    """One line for a non-transient S3 error a user can fix, or None."""
    if isinstance(exc, StorageError) and isinstance(exc.__cause__, Exception):
        exc = exc.__cause__  # decon.storage wraps the botocore error; look at the original
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        bucket = split_s3_uri(uri)[0]
        if code == "NoSuchBucket":
            return f"{what}: bucket {bucket!r} does not exist ({uri})"
        if code in ("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId"):
            return f"{what}: access denied to {uri} ({code})"
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return f"{what}: no AWS credentials found for {uri}"
    return None


class S3Source:
    """Input objects under an s3:// prefix, downloaded by the transfer manager."""

    is_local = False

    def __init__(self, cfg: Config, transfers: S3Transfers) -> None:
        self.uri = cfg.input.uri if cfg.input.uri.endswith("/") else cfg.input.uri + "/"
        self.storage = open_storage(self.uri, cfg.aws, attempts=1)
        self.transfers = transfers

    def list(self) -> list[InputFile]:
        try:
            infos = self.transfers.call(f"list {self.uri}", lambda: list(self.storage.list()))
        except Exception as exc:
            message = describe_s3_error(exc, "input.uri", self.uri)
            if message:
                raise UserError(message) from None
            raise
        return [InputFile(o.key, o.size, self.storage.uri(o.key)) for o in infos]

    def fetch(self, item: InputFile, dest: Path, cancel: Callable[[], bool]) -> Path:
        self.transfers.download(item.location, dest, cancel)
        return dest


class LocalSource:
    """Input files under a local directory (demos, tests, a mounted volume)."""

    is_local = True

    def __init__(self, cfg: Config) -> None:
        self.root = Path(cfg.input.uri.removeprefix("file://"))
        self.uri = str(self.root)
        if not self.root.is_dir():
            raise UserError(f"input.uri: {self.root} is not a directory")

    def list(self) -> list[InputFile]:
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                rel = path.relative_to(self.root).as_posix()
                found.append(InputFile(rel, path.stat().st_size, str(path)))
        return found

    def fetch(self, item: InputFile, dest: Path, cancel: Callable[[], bool]) -> Path:
        return Path(item.location)


def open_source(cfg: Config, transfers: S3Transfers) -> InputSource:
    if not cfg.input.uri:
        raise UserError("input.uri: not set (an s3:// prefix or a local directory)")
    if cfg.input.uri.startswith("s3://"):
        return S3Source(cfg, transfers)
    return LocalSource(cfg)


class JobOutputs:
    """The reports/ and cleaned/ areas of the job (SPEC section 6): S3 prefixes, or local
    directories (a single machine writing to a local disk or a NAS), with the same layout.
    Each object appears complete or not at all (S3 PUT; a local rename)."""

    def __init__(self, cfg: Config, transfers: S3Transfers) -> None:
        self.reports_uri = cfg.output_prefix("reports")
        self.cleaned_uri = cfg.output_prefix("cleaned")
        self.reports = open_storage(self.reports_uri, cfg.aws, attempts=1)
        self.cleaned = open_storage(self.cleaned_uri, cfg.aws, attempts=1)
        self.transfers = transfers

    def done_keys(self) -> set[str]:
        """Every key under reports/ (relative): a report or `.clean` marker means done."""
        try:
            listed = self.transfers.call(
                f"list {self.reports_uri}", lambda: list(self.reports.list())
            )
            return {o.key for o in listed}
        except Exception as exc:
            message = describe_s3_error(exc, "output.reports", self.reports_uri)
            if message:
                raise UserError(message) from None
            raise

    def is_done(self, report: str, marker: str) -> bool:
        """True when the file's report or `.clean` marker exists."""
        return any(
            self.transfers.call(f"head {self.reports_uri}{k}", lambda k=k: self.reports.exists(k))
            for k in (report, marker)
        )

    def put_report(self, name: str, path: Path | None) -> tuple[str, int, str]:
        """A report (`path`) or, with `path` None, an empty `.clean` marker under reports/;
        (uri, size, sha256)."""
        return self._put(self.reports, name, path)

    def put_cleaned(self, name: str, path: Path) -> tuple[str, int, str]:
        """A purified copy under cleaned/; (uri, size, sha256)."""
        return self._put(self.cleaned, name, path)

    def _put(self, area: Storage, name: str, path: Path | None) -> tuple[str, int, str]:
        uri = area.uri(name)
        if uri.startswith("s3://"):
            if path is None:
                size, digest = self.transfers.put_bytes(b"", uri)
            else:
                size, digest = self.transfers.upload(path, uri)
            return uri, size, digest
        if path is None:
            self.transfers.call(f"put {uri}", lambda: area.put_bytes(name, b""))
            return uri, 0, hashlib.sha256(b"").hexdigest()
        self.transfers.call(f"put {uri}", lambda: area.put_file(name, path))
        size, digest = file_digest(path)
        return uri, size, digest
