"""The one retry layer for storage and queue calls: a tenacity policy with a schedule per caller.

    job transfers     `run.retry_attempts` tries, transient errors only, waits
                      `run.retry_base_seconds` doubling up to `run.retry_max_seconds`
    finalizer uploads `node.upload_attempts` tries (7), any StorageError (an AccessDenied may be
                      fixed by an operator meanwhile), waits 1, 2, 4 ... s, never past a deadline

botocore's own retries are pinned to one attempt for these callers (`aws_client(attempts=1)`),
so the layers never multiply.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from decon.config import NodeSection, RunSection
from decon.eventlog import utc_now
from decon.storage.errors import StorageError, is_transient

T = TypeVar("T")
# (attempt number that failed, its error, seconds until the next attempt)
OnRetry = Callable[[int, BaseException, float], None]


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, StorageError)


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries of one call; waits `base_seconds * 2**k`, at most `max_seconds`; only
    errors `retry_if` accepts are retried, the last error propagates."""

    attempts: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 30.0
    retry_if: Callable[[BaseException], bool] = is_transient

    @classmethod
    def job_transfers(cls, run: RunSection) -> RetryPolicy:
        return cls(run.retry_attempts, run.retry_base_seconds, run.retry_max_seconds)

    @classmethod
    def finalizer_uploads(cls, node: NodeSection) -> RetryPolicy:
        return cls(node.upload_attempts, node.upload_base_wait_seconds, math.inf, is_storage_error)

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))

    def call(
        self,
        fn: Callable[[], T],
        *,
        on_retry: OnRetry | None = None,
        deadline: dt.datetime | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """Run `fn` under the policy. With a `deadline`, stop rather than sleep past it."""

        def stop(state: tenacity.RetryCallState) -> bool:
            if state.attempt_number >= self.attempts:
                return True
            wake = clock() + dt.timedelta(seconds=self.wait_before(state.attempt_number))
            return deadline is not None and wake > deadline

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                wait = state.next_action.sleep if state.next_action else 0.0
                on_retry(state.attempt_number, state.outcome.exception(), wait)

        retrying = tenacity.Retrying(
            stop=stop,
            wait=lambda state: self.wait_before(state.attempt_number),
            retry=tenacity.retry_if_exception(self.retry_if),
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        )
        return retrying(fn)
