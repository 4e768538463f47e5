"""The one retry policy: each caller's schedule, the deadline, which errors are retried."""

import datetime as dt

import pytest

from decon.config import NodeSection, RunSection
from decon.storage import RetryPolicy, StorageError

T0 = dt.datetime(2026, 11, 23, 14, 0, tzinfo=dt.UTC)


class Clock:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = T0
        self.waits: list[float] = []

    def __call__(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += dt.timedelta(seconds=seconds)


def failing(errors: list[BaseException], result: str = "ok"):  # type: ignore[no-untyped-def]
    calls = []

    def fn() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


def test_job_schedule_doubles_up_to_the_cap_and_retries_transient_errors_only() -> None:
    policy = RetryPolicy.job_transfers(
        RunSection(retry_attempts=6, retry_base_seconds=1.0, retry_max_seconds=5.0)
    )
    clock = Clock()
    seen = []
    fn, calls = failing([StorageError("503", transient=True) for _ in range(5)])
    assert policy.call(fn, on_retry=lambda *a: seen.append(a[0]), sleep=clock.sleep) == "ok"
    assert clock.waits == [1.0, 2.0, 4.0, 5.0, 5.0] and len(calls) == 6
    assert seen == [1, 2, 3, 4, 5]

    fn, calls = failing([StorageError("AccessDenied", transient=False)])
    with pytest.raises(StorageError, match="AccessDenied"):
        policy.call(fn, sleep=clock.sleep)
    assert len(calls) == 1  # a permanent error is not retried


def test_job_schedule_gives_up_after_its_attempts_with_the_last_error() -> None:
    policy = RetryPolicy.job_transfers(RunSection(retry_attempts=3))
    clock = Clock()
    errors: list[BaseException] = [ConnectionResetError(f"reset {n}") for n in range(5)]
    fn, calls = failing(errors)
    with pytest.raises(ConnectionResetError, match="reset 2"):
        policy.call(fn, sleep=clock.sleep)
    assert len(calls) == 3 and clock.waits == [1.0, 2.0]


def test_finalizer_schedule_retries_any_storage_error_1_to_32_s() -> None:
    policy = RetryPolicy.finalizer_uploads(NodeSection())
    clock = Clock()
    fn, calls = failing([StorageError("AccessDenied") for _ in range(10)])
    with pytest.raises(StorageError):
        policy.call(fn, clock=clock, sleep=clock.sleep)
    assert len(calls) == 7 and clock.waits == [1, 2, 4, 8, 16, 32]


def test_finalizer_schedule_never_sleeps_past_the_deadline() -> None:
    policy = RetryPolicy.finalizer_uploads(NodeSection())
    clock = Clock()
    fn, calls = failing([StorageError("503", transient=True) for _ in range(10)])
    deadline = T0 + dt.timedelta(seconds=10)
    with pytest.raises(StorageError):
        policy.call(fn, deadline=deadline, clock=clock, sleep=clock.sleep)
    assert clock.waits == [1, 2, 4] and len(calls) == 4  # 7 + 8 s would end past 10 s
    assert clock.now <= deadline
