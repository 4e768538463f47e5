"""The storage edge: an S3 prefix or a local directory behind one small interface.

    store = open_storage("s3://bucket/prefix/", cfg.aws)      # or "/data/out", "file:///data/out"
    store.put_bytes("run-1/_SUCCESS", body, if_absent=True)   # False: the key already existed
    for obj in store.list("run-1/"):
        print(obj.key, obj.size, store.uri(obj.key))

Keys are relative to the storage's prefix and use '/'. Every failure is raised as a
`StorageError` (a `UserError`, so a command prints it as one line) that says which URI, which
operation and why; `is_transient(exc)` tells a retry loop whether trying again can help.

Retries: `s3_client` pins botocore's own retries (`attempts`, standard mode), so a caller that
retries itself (the finalizer) passes `attempts=1` and the two layers never multiply.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import ConnectTimeoutError as BotoConnectTimeoutError

from decon.config import AwsSection
from decon.errors import UserError

# Files up to this size go up in one PUT (atomic, one request to retry); bigger ones use the
# transfer manager's multipart upload.
SINGLE_PUT_LIMIT = 64 * 1024 * 1024

TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "TooManyRequestsException",
        "ConditionalRequestConflict",  # 409 on racing conditional writes: S3 says retry
    }
)

PERMANENT_MESSAGES = {
    "NoSuchBucket": "bucket does not exist",
    "AccessDenied": "access denied",
    "AllAccessDisabled": "access denied (all access to this object has been disabled)",
    "InvalidAccessKeyId": "the AWS access key id is not valid for this endpoint",
    "SignatureDoesNotMatch": "the AWS secret key does not match the access key id",
    "InvalidBucketName": "invalid bucket name",
    "ExpiredToken": "the AWS session token has expired",
}


class StorageError(UserError):
    """A storage operation failed. `code` is the S3 error code (or the OS error name)."""

    def __init__(self, message: str, *, code: str = "", transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key (relative to the storage prefix) and size in bytes."""

    key: str
    size: int


class Storage(Protocol):
    """What callers may rely on; `S3Storage` and `LocalStorage` implement it."""

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Store `data` at `key`; with `if_absent`, only if nothing is there (False if it was)."""
        ...

    def put_file(self, key: str, path: str | Path) -> None:
        """Upload the file at `path` to `key` (one atomic PUT, or multipart for big files)."""
        ...

    def put_file_if_absent(self, key: str, path: str | Path) -> bool:
        """Upload the file at `path` to `key` in one conditional PUT (at most S3's 5 GB for
        one PUT): only if nothing is there, False if something was (one writer wins)."""
        ...

    def get_file(self, key: str, path: str | Path) -> None:
        """Download `key` to `path` (written to a temporary name, then renamed)."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The content of `key`; StorageError(code="NoSuchKey") when it does not exist."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object exists at `key`."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; no error when it does not exist."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order."""
        ...

    def uri(self, key: str = "") -> str:
        """The full URI of `key` (`s3://bucket/prefix/key` or an absolute local path)."""
        ...


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> ("bucket", "some/key"); a StorageError for anything else."""
    if not uri.startswith("s3://"):
        raise StorageError(f"{uri}: not an s3:// URI", code="InvalidURI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise StorageError(f"{uri}: no bucket name in S3 URI", code="InvalidURI")
    return bucket, key


def open_storage(uri: str, aws: AwsSection, *, attempts: int = 3) -> Storage:
    """`s3://bucket/prefix/` -> S3Storage; a local path or `file://` URI -> LocalStorage."""
    if uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(uri)
        client = s3_client(aws, attempts=attempts)
        return S3Storage(client, bucket, prefix)
    if uri.startswith("file://"):
        return LocalStorage(unquote(urlparse(uri).path))
    if "://" in uri:
        raise StorageError(f"{uri}: unsupported storage URI (use s3:// or a local path)")
    if not uri:
        raise StorageError("storage URI is empty", code="InvalidURI")
    return LocalStorage(uri)


def s3_client(
    aws: AwsSection,
    *,
    attempts: int = 3,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
) -> Any:
    """A boto3 S3 client (see `aws_client`)."""
    return aws_client(
        "s3", aws, attempts=attempts, connect_timeout=connect_timeout, read_timeout=read_timeout
    )


def aws_client(
    service: str,
    aws: AwsSection,
    *,
    attempts: int = 3,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
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
        # Path-style works for every S3-compatible store and for bucket names with dots.
        s3={"addressing_style": "path"} if endpoint and service == "s3" else None,
    )
    return boto3.session.Session().client(service, endpoint_url=endpoint, config=config)


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: 5xx, throttling, timeouts, resets, refused connections."""
    if isinstance(exc, StorageError):
        return exc.transient
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 or status == 429 or code in TRANSIENT_CODES
    if isinstance(
        exc,
        EndpointConnectionError
        | ConnectionClosedError
        | ReadTimeoutError
        | BotoConnectTimeoutError
        | BotoConnectionError,
    ):
        return True
    if isinstance(exc, BotoCoreError):
        # IncompleteRead / ResponseStreamingError and friends: the body was cut short.
        return "Incomplete" in type(exc).__name__ or "Streaming" in type(exc).__name__
    return isinstance(exc, ConnectionError | TimeoutError)


def error_code(exc: BaseException) -> str:
    """The S3 error code of `exc` ("AccessDenied", "503", "EndpointConnectionError", ...)."""
    if isinstance(exc, StorageError):
        return exc.code
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return str(err.get("Code") or status or "ClientError")
    return type(exc).__name__


def _storage_error(exc: Exception, uri: str, op: str) -> StorageError:
    code = error_code(exc)
    if isinstance(exc, NoCredentialsError):
        text = "no AWS credentials found (instance profile, environment or ~/.aws)"
    elif isinstance(exc, ClientError):
        detail = str(exc.response.get("Error", {}).get("Message") or "").strip()
        known = PERMANENT_MESSAGES.get(code)
        text = f"{known} ({code})" if known else f"{code}: {detail or 'request failed'}"
    else:
        text = f"{code}: {exc}"
    return StorageError(f"{uri}: {op} failed: {text}", code=code, transient=is_transient(exc))


class S3Storage:
    """Objects under `s3://{bucket}/{prefix}`."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

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
            raise _storage_error(exc, self.uri(key), "put") from exc
        except BotoCoreError as exc:
            raise _storage_error(exc, self.uri(key), "put") from exc
        return True

    def put_file(self, key: str, path: str | Path) -> None:
        path = Path(path)
        try:
            size = path.stat().st_size
            if size <= SINGLE_PUT_LIMIT:
                with path.open("rb") as body:
                    self.client.put_object(
                        Bucket=self.bucket, Key=self._key(key), Body=body, ContentLength=size
                    )
            else:
                self.client.upload_file(str(path), self.bucket, self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error(exc, self.uri(key), "upload") from exc
        except OSError as exc:
            raise StorageError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        except Exception as exc:  # the transfer manager wraps errors in its own types
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ClientError | BotoCoreError):
                raise _storage_error(cause, self.uri(key), "upload") from exc
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
            raise _storage_error(exc, self.uri(key), "upload") from exc
        except BotoCoreError as exc:
            raise _storage_error(exc, self.uri(key), "upload") from exc
        except OSError as exc:
            raise StorageError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        return True

    def get_file(self, key: str, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            self.client.download_file(self.bucket, self._key(key), str(tmp))
            os.replace(tmp, path)
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error(exc, self.uri(key), "download") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error(exc, self.uri(key), "get") from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise _storage_error(exc, self.uri(key), "head") from exc
        except BotoCoreError as exc:
            raise _storage_error(exc, self.uri(key), "head") from exc
        return True

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error(exc, self.uri(key), "delete") from exc

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"][len(self.prefix) :], int(item["Size"]))
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error(exc, self.uri(prefix), "list") from exc


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

    def get_file(self, key: str, path: str | Path) -> None:
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
