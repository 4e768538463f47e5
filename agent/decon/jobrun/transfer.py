"""S3 transfers of whole files through boto3's transfer manager, with retries.

Retries happen in one layer, here: botocore's own retries are pinned to one attempt and the
transfer manager retries a part's body read at most `PART_READ_ATTEMPTS` times, so the layers do
not multiply. Every transient error (5xx, throttling, connection reset, timeout, truncated body)
is retried with exponential backoff; anything else fails at once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.config
import tenacity
from boto3.exceptions import RetriesExceededError
from boto3.s3.transfer import TransferConfig

from decon.config import Config
from decon.storage import is_transient, split_s3_uri

T = TypeVar("T")
MB = 1 << 20
PART_READ_ATTEMPTS = 3


def is_transient_error(exc: BaseException) -> bool:
    """`is_transient`, seeing through the transfer manager's wrappers (S3UploadFailedError
    hides the ClientError in its context; RetriesExceededError keeps `last_exception`)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TransferCancelled):
            return False
        if isinstance(current, RetriesExceededError) or is_transient(current):
            return True
        current = current.__cause__ or current.__context__
    return False


class TransferCancelled(Exception):
    """A download was abandoned because the job is stopping."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 30.0

    @classmethod
    def from_config(cls, cfg: Config) -> RetryPolicy:
        r = cfg.run
        return cls(r.retry_attempts, r.retry_base_seconds, r.retry_max_seconds)

    def call(
        self,
        fn: Callable[[], T],
        on_retry: Callable[[int, BaseException, float], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """Run `fn`, retrying transient errors; the last error propagates."""

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                wait = state.next_action.sleep if state.next_action else 0.0
                on_retry(state.attempt_number, state.outcome.exception(), wait)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_exponential(
                multiplier=self.base_seconds, min=self.base_seconds, max=self.max_seconds
            ),
            retry=tenacity.retry_if_exception(is_transient_error),
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        )
        return retrying(fn)


def transfer_config(cfg: Config) -> TransferConfig:
    r = cfg.run
    return TransferConfig(
        multipart_threshold=r.multipart_threshold_mb * MB,
        multipart_chunksize=r.multipart_chunk_mb * MB,
        max_concurrency=r.transfer_threads,
        num_download_attempts=PART_READ_ATTEMPTS,
        use_threads=True,
    )


def transfer_client(cfg: Config) -> Any:
    """An S3 client for the transfer manager: botocore retries off (this module retries), a
    connection pool large enough for every part of every file in flight."""
    threads = cfg.run.transfer_threads * (cfg.run.download_concurrency + cfg.run.upload_concurrency)
    return boto3.client(
        "s3",
        region_name=cfg.aws.region,
        endpoint_url=cfg.aws.endpoint_url or None,
        config=botocore.config.Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max(threads + 4, 10),
            connect_timeout=10,
            read_timeout=60,
        ),
    )


def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a local file."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(MB):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


class S3Transfers:
    """Downloads and uploads of whole files (multipart, threaded) with one retry layer."""

    def __init__(
        self,
        cfg: Config,
        on_retry: Callable[[str, int, BaseException, float], None] | None = None,
        client: Any = None,
    ) -> None:
        self.client = client or transfer_client(cfg)
        self.config = transfer_config(cfg)
        self.retry = RetryPolicy.from_config(cfg)
        self.on_retry = on_retry

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run `fn` with the retry policy; each retry is reported to `on_retry` as `what`."""

        def note(attempt: int, exc: BaseException, wait: float) -> None:
            if self.on_retry is not None:
                self.on_retry(what, attempt, exc, wait)

        return self.retry.call(fn, on_retry=note)

    def download(self, uri: str, dest: Path, cancel: Callable[[], bool] | None = None) -> int:
        """Fetch `uri` to `dest` (the transfer manager writes a temp file and renames it)."""
        bucket, key = split_s3_uri(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)

        def progress(_: int) -> None:
            if cancel is not None and cancel():
                raise TransferCancelled(uri)

        def once() -> int:
            self.client.download_file(bucket, key, str(dest), Config=self.config, Callback=progress)
            return dest.stat().st_size

        return self.call(f"download {uri}", once)

    def upload(self, path: Path, uri: str) -> tuple[int, str]:
        """Put `path` at `uri` (one object, visible only when complete); (size, sha256)."""
        bucket, key = split_s3_uri(uri)
        size, digest = file_digest(path)

        def once() -> None:
            self.client.upload_file(str(path), bucket, key, Config=self.config)

        self.call(f"upload {uri}", once)
        return size, digest

    def put_bytes(self, data: bytes, uri: str) -> tuple[int, str]:
        bucket, key = split_s3_uri(uri)

        def once() -> None:
            self.client.put_object(Bucket=bucket, Key=key, Body=data)

        self.call(f"put {uri}", once)
        return len(data), hashlib.sha256(data).hexdigest()
