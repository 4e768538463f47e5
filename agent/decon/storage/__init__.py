"""The storage edge: an S3 prefix or a local directory behind one small interface.

    store = open_storage("s3://bucket/prefix/", cfg.aws)      # or "/data/out", "file:///data/out"
    store.put_bytes("run-1/_SUCCESS", body, if_absent=True)   # False: the key already existed
    for obj in store.list("run-1/"):
        print(obj.key, obj.size, store.uri(obj.key))

Keys are relative to the storage's prefix and use '/'. Every failure is raised as a
`StorageError` (a `UserError`, so a command prints it as one line) that says which URI, which
operation and why; `is_transient(exc)` tells a retry loop whether trying again can help.

Retries: a caller that retries itself (the job, the finalizer) opens its storage with
`attempts=1` and calls it under its `RetryPolicy` (decon.storage.retry); others get botocore's
standard retries (`attempts` requests in all).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlparse

from decon.config import AwsSection
from decon.storage.base import ObjectInfo, Storage, file_digest
from decon.storage.errors import (
    StorageError,
    TransferCancelled,
    describe_s3_error,
    error_code,
    is_storage_trouble,
    is_transient,
    named_for_user,
    split_s3_uri,
)
from decon.storage.local import LocalStorage
from decon.storage.retry import RetryPolicy
from decon.storage.s3 import S3Storage, TransferSettings, aws_client, s3_client

__all__ = [
    "LocalStorage",
    "ObjectInfo",
    "RetryPolicy",
    "S3Storage",
    "Storage",
    "StorageError",
    "TransferCancelled",
    "TransferSettings",
    "aws_client",
    "describe_s3_error",
    "error_code",
    "file_digest",
    "is_storage_trouble",
    "is_transient",
    "named_for_user",
    "open_storage",
    "s3_client",
    "split_s3_uri",
]


def open_storage(
    uri: str,
    aws: AwsSection,
    *,
    attempts: int = 3,
    transfer: TransferSettings | None = None,
    client: Any = None,
) -> Storage:
    """`s3://bucket/prefix/` -> S3Storage (on `client`, or a new one with botocore retries
    pinned to `attempts`); a local path or `file://` URI -> LocalStorage."""
    if uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(uri)
        return S3Storage(client or s3_client(aws, attempts=attempts), bucket, prefix, transfer)
    if uri.startswith("file://"):
        return LocalStorage(unquote(urlparse(uri).path))
    if "://" in uri:
        raise StorageError(f"{uri}: unsupported storage URI (use s3:// or a local path)")
    if not uri:
        raise StorageError("storage URI is empty", code="InvalidURI")
    return LocalStorage(uri)
