"""The job's edges: where input files come from and where outputs go (the reports and cleaned
areas), each an S3 prefix or a local directory, every operation under the job's retry policy."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from decon.config import AwsSection, RunSection
from decon.errors import UserError
from decon.jobrun.inputs import InputFile
from decon.storage import (
    RetryPolicy,
    Storage,
    TransferSettings,
    file_digest,
    named_for_user,
    open_storage,
    s3_client,
)

T = TypeVar("T")
# (what was tried, e.g. "upload s3://...", attempt that failed, its error, wait before the next)
OnRetry = Callable[[str, int, BaseException, float], None]


@dataclass
class JobStorage:
    """The job's storage: areas opened on one shared S3 client (botocore retries off, a pool
    with room for every part of every file in flight), each call under the job's policy and
    each retry reported to `on_retry`."""

    aws: AwsSection
    transfer: TransferSettings
    retry: RetryPolicy
    pool_connections: int = 10
    on_retry: OnRetry | None = None

    def __post_init__(self) -> None:
        self._client: Any = None

    @classmethod
    def for_job(
        cls, run: RunSection, aws: AwsSection, on_retry: OnRetry | None = None
    ) -> JobStorage:
        threads = run.transfer_threads * (run.download_concurrency + run.upload_concurrency)
        return cls(
            aws,
            TransferSettings.for_job(run),
            RetryPolicy.job_transfers(run),
            max(threads + 4, 10),
            on_retry,
        )

    def open(self, uri: str) -> Storage:
        if uri.startswith("s3://") and self._client is None:
            self._client = s3_client(
                self.aws,
                attempts=1,
                connect_timeout=10,
                max_pool_connections=self.pool_connections,
            )
        return open_storage(uri, self.aws, client=self._client, transfer=self.transfer)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run `fn` under the policy; each retry is reported as `what`."""

        def note(attempt: int, exc: BaseException, wait: float) -> None:
            if self.on_retry is not None:
                self.on_retry(what, attempt, exc, wait)

        return self.retry.call(fn, on_retry=note)


class InputSource(Protocol):
    uri: str
    is_local: bool  # local inputs are read in place and never deleted

    def list(self) -> list[InputFile]: ...

    def fetch(self, item: InputFile, dest: Path, cancel: Callable[[], bool]) -> Path: ...


class S3Source:
    """Input objects under an s3:// prefix, downloaded by the transfer manager."""

    is_local = False

    def __init__(self, uri: str, io: JobStorage) -> None:
        self.uri = uri if uri.endswith("/") else uri + "/"
        self.storage = io.open(self.uri)
        self.io = io

    def list(self) -> list[InputFile]:
        with named_for_user("input.uri", self.uri):
            infos = self.io.call(f"list {self.uri}", lambda: list(self.storage.list()))
        return [InputFile(o.key, o.size, self.storage.uri(o.key)) for o in infos]

    def fetch(self, item: InputFile, dest: Path, cancel: Callable[[], bool]) -> Path:
        self.io.call(
            f"download {item.location}", lambda: self.storage.get_file(item.rel, dest, cancel)
        )
        return dest


class LocalSource:
    """Input files under a local directory (demos, tests, a mounted volume)."""

    is_local = True

    def __init__(self, uri: str) -> None:
        self.root = Path(uri.removeprefix("file://"))
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


def open_source(uri: str, io: JobStorage) -> InputSource:
    """`input.uri`: an s3:// prefix or a local directory."""
    if not uri:
        raise UserError("input.uri: not set (an s3:// prefix or a local directory)")
    if uri.startswith("s3://"):
        return S3Source(uri, io)
    return LocalSource(uri)


class JobOutputs:
    """The reports/ and cleaned/ areas of the job (SPEC section 6): S3 prefixes, or local
    directories (a single machine writing to a local disk or a NAS), with the same layout.
    Each object appears complete or not at all (S3 PUT or multipart upload; a local rename)."""

    def __init__(self, reports_uri: str, cleaned_uri: str, io: JobStorage) -> None:
        self.reports_uri = reports_uri
        self.cleaned_uri = cleaned_uri
        self.reports = io.open(reports_uri)
        self.cleaned = io.open(cleaned_uri)
        self.io = io

    def done_keys(self) -> set[str]:
        """Every key under reports/ (relative): a report or `.clean` marker means done."""
        with named_for_user("output.reports", self.reports_uri):
            listed = self.io.call(f"list {self.reports_uri}", lambda: list(self.reports.list()))
        return {o.key for o in listed}

    def is_done(self, report: str, marker: str) -> bool:
        """True when the file's report or `.clean` marker exists."""
        return any(
            self.io.call(f"head {self.reports_uri}{k}", lambda k=k: self.reports.exists(k))
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
        if path is None:
            self.io.call(f"put {uri}", lambda: area.put_bytes(name, b""))
            return uri, 0, hashlib.sha256(b"").hexdigest()
        size, digest = file_digest(path)
        self.io.call(f"upload {uri}", lambda: area.put_file(name, path))
        return uri, size, digest
