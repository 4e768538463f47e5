"""Objects under an S3 prefix behind the storage interface, and the boto3 clients.

Whole files go through boto3's transfer manager (multipart above the threshold, threaded, one
object visible only when complete); small objects are single requests. botocore's own retries
are set here and only here (`aws_client`): callers that retry with a `RetryPolicy` ask for one
attempt, so the layers never multiply.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from decon.config import AwsSection, RunSection
from decon.storage.base import ObjectInfo
from decon.storage.errors import StorageError, TransferCancelled, error_code, storage_error

MB = 1 << 20
# The transfer manager re-reads a broken part body at most this often (its own small retry
# of a stream, below the caller's policy).
PART_READ_ATTEMPTS = 3


@dataclass(frozen=True)
class TransferSettings:
    """How whole files move: up to `multipart_threshold_mb` one PUT (atomic, one request to
    retry), above it parts of `multipart_chunk_mb` with `threads` in flight per file."""

    multipart_threshold_mb: int = 64
    multipart_chunk_mb: int = 8
    threads: int = 10

    @classmethod
    def for_job(cls, run: RunSection) -> TransferSettings:
        return cls(run.multipart_threshold_mb, run.multipart_chunk_mb, run.transfer_threads)

    def transfer_config(self) -> TransferConfig:
        return TransferConfig(
            multipart_threshold=self.multipart_threshold_mb * MB,
            multipart_chunksize=self.multipart_chunk_mb * MB,
            max_concurrency=self.threads,
            num_download_attempts=PART_READ_ATTEMPTS,
            use_threads=True,
        )


def s3_client(aws: AwsSection, **settings: Any) -> Any:
    """A boto3 S3 client (`aws_client`'s settings)."""
    return aws_client("s3", aws, **settings)


def aws_client(
    service: str,
    aws: AwsSection,
    *,
    attempts: int = 3,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    max_pool_connections: int = 10,
) -> Any:
    """A boto3 client: endpoint from `aws.endpoint_url` or AWS_ENDPOINT_URL, botocore
    retries pinned to `attempts` requests in all (1 = no botocore retries)."""
    endpoint = aws.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    config = BotoConfig(
        region_name=aws.region,
        # botocore's "max_attempts" counts retries (total = value + 1); "total_max_attempts"
        # counts every try, so attempts=1 really means one request and no hidden retries.
        retries={"total_max_attempts": attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
        # Path-style works for every S3-compatible store and for bucket names with dots.
        s3={"addressing_style": "path"} if endpoint and service == "s3" else None,
    )
    return boto3.session.Session().client(service, endpoint_url=endpoint, config=config)


class S3Storage:
    """Objects under `s3://{bucket}/{prefix}`."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        transfer: TransferSettings | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.transfer_config = (transfer or TransferSettings()).transfer_config()

    def _key(self, key: str) -> str:
        return self.prefix + key.lstrip("/")

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except ClientError as exc:
            if if_absent and error_code(exc) in ("PreconditionFailed", "412"):
                return False
            raise storage_error(exc, self.uri(key), "put") from exc
        except BotoCoreError as exc:
            raise storage_error(exc, self.uri(key), "put") from exc
        return True

    def put_file(self, key: str, path: str | Path) -> None:
        path = Path(path)
        try:
            path.stat()  # a missing file fails here, with the OS's reason
            self.client.upload_file(
                str(path), self.bucket, self._key(key), Config=self.transfer_config
            )
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc, self.uri(key), "upload") from exc
        except OSError as exc:
            raise StorageError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        except Exception as exc:  # the transfer manager wraps errors in its own types
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ClientError | BotoCoreError):
                raise storage_error(cause, self.uri(key), "upload") from exc
            raise

    def put_file_if_absent(self, key: str, path: str | Path) -> bool:
        path = Path(path)
        try:
            size = path.stat().st_size
            with path.open("rb") as body:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=body,
                    ContentLength=size,
                    IfNoneMatch="*",
                )
        except ClientError as exc:
            if error_code(exc) in ("PreconditionFailed", "412"):
                return False
            raise storage_error(exc, self.uri(key), "upload") from exc
        except BotoCoreError as exc:
            raise storage_error(exc, self.uri(key), "upload") from exc
        except OSError as exc:
            raise StorageError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        return True

    def get_file(
        self, key: str, path: str | Path, cancel: Callable[[], bool] | None = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")

        def progress(_: int) -> None:
            if cancel is not None and cancel():
                raise TransferCancelled(self.uri(key))

        try:
            self.client.download_file(
                self.bucket,
                self._key(key),
                str(tmp),
                Config=self.transfer_config,
                Callback=progress,
            )
            os.replace(tmp, path)
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc, self.uri(key), "download") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc, self.uri(key), "get") from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise storage_error(exc, self.uri(key), "head") from exc
        except BotoCoreError as exc:
            raise storage_error(exc, self.uri(key), "head") from exc
        return True

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc, self.uri(key), "delete") from exc

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"][len(self.prefix) :], int(item["Size"]))
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc, self.uri(prefix), "list") from exc
