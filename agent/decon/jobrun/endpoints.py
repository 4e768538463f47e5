"""The job's edges: where input files come from (an S3 prefix or a local directory) and where
outputs go (the reports and cleaned prefixes), each operation with retries."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import botocore.exceptions

from decon.config import Config
from decon.errors import UserError
from decon.jobrun.inputs import InputFile
from decon.jobrun.transfer import RetryPolicy, S3Transfers
from decon.storage import StorageError, open_storage, split_s3_uri


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
        self.retry = RetryPolicy.from_config(cfg)
        self.transfers = transfers

    def list(self) -> list[InputFile]:
        try:
            infos = self.retry.call(lambda: list(self.storage.list()))
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


class S3Outputs:
    """The reports/ and cleaned/ prefixes of the job (SPEC section 6)."""

    def __init__(self, cfg: Config, transfers: S3Transfers) -> None:
        self.reports_uri = cfg.output_prefix("reports")
        self.cleaned_uri = cfg.output_prefix("cleaned")
        for key, uri in (("reports", self.reports_uri), ("cleaned", self.cleaned_uri)):
            if not uri.startswith("s3://"):
                raise UserError(f"output.{key}: must be an s3:// prefix, got {uri!r}")
        self.reports = open_storage(self.reports_uri, cfg.aws, attempts=1)
        self.retry = RetryPolicy.from_config(cfg)
        self.transfers = transfers

    def done_keys(self) -> set[str]:
        """Every key under reports/ (relative): a report or `.clean` marker means done."""
        try:
            return {o.key for o in self.retry.call(lambda: list(self.reports.list()))}
        except Exception as exc:
            message = describe_s3_error(exc, "output.reports", self.reports_uri)
            if message:
                raise UserError(message) from None
            raise

    def is_done(self, report: str, marker: str) -> bool:
        """True when the file's report or `.clean` marker exists."""
        return any(self.retry.call(lambda k=k: self.reports.exists(k)) for k in (report, marker))

    def report_uri(self, name: str) -> str:
        return self.reports_uri + name

    def cleaned_uri_of(self, name: str) -> str:
        return self.cleaned_uri + name
