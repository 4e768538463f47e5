"""TEMPORARY stand-ins for `decon.storage` and `decon.detect.pipeline.output_names`, which are
built on other branches. Same interfaces; this file is deleted when those land on main."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions

# -- decon.storage -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix


def s3_client(aws, *, attempts: int = 3, connect_timeout: float = 10, read_timeout: float = 60):  # type: ignore[no-untyped-def]
    cfg = botocore.config.Config(
        retries={"total_max_attempts": attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=50,
    )
    return boto3.client(
        "s3", region_name=aws.region, endpoint_url=aws.endpoint_url or None, config=cfg
    )


def is_transient(exc: BaseException) -> bool:
    if isinstance(
        exc,
        botocore.exceptions.ConnectionError
        | botocore.exceptions.HTTPClientError
        | botocore.exceptions.IncompleteReadError
        | botocore.exceptions.ReadTimeoutError
        | ConnectionError
        | TimeoutError,
    ):
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or code in {"SlowDown", "RequestTimeout", "InternalError", "503"}
    name = type(exc).__name__
    return bool(re.search(r"IncompleteRead|ProtocolError|ResponseStreamingError", name))


class Storage:
    def __init__(self, uri: str, aws, *, attempts: int = 3) -> None:  # type: ignore[no-untyped-def]
        self.bucket, prefix = split_s3_uri(uri)
        self.prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        self.client = s3_client(aws, attempts=attempts)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, **extra)
        return True

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self.prefix + key)

    def get_file(self, key: str, path: Path) -> None:
        self.client.download_file(self.bucket, self.prefix + key, str(path))

    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
            return True
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        for page in pages:
            for obj in page.get("Contents", []):
                yield ObjectInfo(obj["Key"][len(self.prefix) :], obj["Size"])


def open_storage(uri: str, aws, *, attempts: int = 3) -> Storage:  # type: ignore[no-untyped-def]
    return Storage(uri, aws, attempts=attempts)


# -- decon.detect.pipeline.output_names ---------------------------------------------------------

COMPRESSIONS = (".gz", ".zst", ".zstd", ".bz2", ".xz")
DATA_SUFFIXES = (".jsonl", ".json")


def compression_of(name: str) -> str:
    for ext in COMPRESSIONS:
        if name.endswith(ext):
            return ext
    return ""


def strip_data_suffix(rel: str) -> str:
    stem = rel[: len(rel) - len(compression_of(rel))]
    for suffix in DATA_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


@dataclass(frozen=True)
class OutputNames:
    basename: str
    report: str
    clean_marker: str
    cleaned: str


def output_names(rel_name: str) -> OutputNames:
    rel = rel_name.lstrip("/")
    base = strip_data_suffix(rel)
    ext = compression_of(rel)
    return OutputNames(base, f"{base}.report.jsonl", f"{base}.clean", f"{base}.clean.jsonl{ext}")


def is_data_file(name: str) -> bool:
    ext = compression_of(name)
    stem = name[: len(name) - len(ext)] if ext else name
    return stem.endswith(DATA_SUFFIXES)
