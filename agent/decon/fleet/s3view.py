"""Read-only view of an S3 prefix or a local directory, for `decon status` and `decon review`.

A stand-in with the read half of `decon.storage.Storage` (`list`, `get_bytes`, `exists`, `uri`)
until that module is on main; then `open_area` becomes `decon.storage.open_storage`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from decon.config import AwsSection
from decon.errors import UserError


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the area's prefix
    size: int


class Area(Protocol):
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def uri(self, key: str = "") -> str: ...


def open_area(uri: str, aws: AwsSection, *, attempts: int = 3) -> Area:
    """An `s3://bucket/prefix/` or a local directory (`/path` or `file:///path`)."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise UserError(f"{uri}: no bucket in S3 URI")
        return S3Area(parsed.netloc, parsed.path.lstrip("/"), aws, attempts)
    if parsed.scheme in ("", "file"):
        return LocalArea(Path(parsed.path if parsed.scheme == "file" else uri))
    raise UserError(f"{uri}: unsupported location (use s3://bucket/prefix/ or a directory)")


class S3Area:
    def __init__(self, bucket: str, prefix: str, aws: AwsSection, attempts: int) -> None:
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.client = boto3.client(
            "s3",
            region_name=aws.region,
            endpoint_url=aws.endpoint_url,
            config=BotoConfig(retries={"max_attempts": attempts, "mode": "standard"}),
        )

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _fail(self, op: str, key: str, exc: Exception) -> UserError:
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            why = f"{err.get('Code', '?')}: {err.get('Message', '')}".rstrip(": ")
        else:
            why = str(exc)
        return UserError(f"{self.uri(key)}: {op} failed: {why}")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    yield ObjectInfo(obj["Key"][len(self.prefix) :], obj["Size"])
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("list", prefix, exc) from None

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("read", key, exc) from None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._fail("head", key, exc) from None
        except BotoCoreError as exc:
            raise self._fail("head", key, exc) from None


class LocalArea:
    def __init__(self, root: Path) -> None:
        self.root = root

    def uri(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            raise UserError(f"{self.root}: not a directory")
        found = []
        for path in self.root.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix):
                found.append(ObjectInfo(key, path.stat().st_size))
        yield from sorted(found, key=lambda o: o.key)

    def get_bytes(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except OSError as exc:
            raise UserError(f"{self.root / key}: cannot read: {exc.strerror or exc}") from None

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()
