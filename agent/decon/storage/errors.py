"""How storage failures are named and classified: one `StorageError` type, `is_transient` for
retry decisions, and the one-line user messages for errors a user can fix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from boto3.exceptions import RetriesExceededError
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

from decon.errors import UserError

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


class TransferCancelled(Exception):
    """A download was abandoned because its caller is stopping."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> ("bucket", "some/key"); a StorageError for anything else."""
    if not uri.startswith("s3://"):
        raise StorageError(f"{uri}: not an s3:// URI", code="InvalidURI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise StorageError(f"{uri}: no bucket name in S3 URI", code="InvalidURI")
    return bucket, key


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: 5xx, throttling, timeouts, resets, refused connections,
    truncated bodies. Sees through wrappers (the transfer manager hides the ClientError in an
    exception's cause or context); a cancelled transfer is never transient."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TransferCancelled):
            return False
        if isinstance(current, StorageError):
            return current.transient
        if isinstance(current, RetriesExceededError) or _transient_itself(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _transient_itself(exc: BaseException) -> bool:
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


def is_storage_trouble(exc: BaseException) -> bool:
    """Transient storage trouble (worth a later run), as opposed to a user error. A
    `StorageError` is a `UserError` too, transient or not, so a plain UserError is told apart."""
    if isinstance(exc, UserError) and not isinstance(exc, StorageError):
        return False
    return is_transient(exc)


def error_code(exc: BaseException) -> str:
    """The S3 error code of `exc` ("AccessDenied", "503", "EndpointConnectionError", ...)."""
    if isinstance(exc, StorageError):
        return exc.code
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return str(err.get("Code") or status or "ClientError")
    return type(exc).__name__


def storage_error(exc: BaseException, uri: str, op: str) -> StorageError:
    """`exc` (botocore's) as a StorageError naming `uri` and `op`."""
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


def describe_s3_error(exc: BaseException, what: str, uri: str) -> str | None:
    """One line for a non-transient S3 error a user can fix (`what` names the config key),
    or None."""
    if isinstance(exc, StorageError) and isinstance(exc.__cause__, Exception):
        exc = exc.__cause__  # the botocore error it wraps
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        bucket = split_s3_uri(uri)[0]
        if code == "NoSuchBucket":
            return f"{what}: bucket {bucket!r} does not exist ({uri})"
        if code in ("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId"):
            return f"{what}: access denied to {uri} ({code})"
    if isinstance(exc, NoCredentialsError):
        return f"{what}: no AWS credentials found for {uri}"
    return None


@contextmanager
def named_for_user(what: str, uri: str) -> Iterator[None]:
    """Turn an S3 error a user can fix into one `UserError` line naming `what`; anything else
    propagates unchanged."""
    try:
        yield
    except Exception as exc:
        message = describe_s3_error(exc, what, uri)
        if message:
            raise UserError(message) from None
        raise
