"""Stop requests: the first SIGTERM/SIGINT asks the job to stop cleanly, a second exits at once."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_code_for_signal(signum: int) -> int:
    """128 + signal number, the shell's convention: 143 for SIGTERM, 130 for SIGINT."""
    return 128 + signum


class StopRequest:
    """A thread-safe stop flag that remembers which signal (if any) set it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self._event.is_set()

    def request(self, signum: int | None = None) -> None:
        if not self._event.is_set():
            self.signum = signum
        self._event.set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


def install_handlers(
    stop: StopRequest,
    on_first: Callable[[int], None] = lambda _: None,
    exit_now: Callable[[int], None] = os._exit,
) -> None:
    """First signal: `stop.request`, then `on_first(signum)`. Second: `exit_now(128+signum)`
    without cleanup (every S3 object is all-or-nothing, so nothing partial is published)."""

    owner = os.getpid()

    def handle(signum: int, _frame: object) -> None:
        if os.getpid() != owner:  # a forked child that ran no at-fork reset (see below)
            _child_defaults()
            if signum == signal.SIGTERM:
                os.kill(os.getpid(), signum)
            return
        if stop():
            print(f"decon run: second {signal.Signals(signum).name}, exiting now", file=sys.stderr)
            exit_now(exit_code_for_signal(signum))
            return
        stop.request(signum)
        on_first(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handle)
    _register_child_reset()


def _child_defaults() -> None:
    """In a forked detection worker: the parent coordinates the stop, so SIGINT (Ctrl-C
    reaches the whole process group) is ignored and SIGTERM kills at once, at the C level,
    without waiting for the interpreter (Pool.terminate relies on it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


_child_reset_registered: list[bool] = []


def _register_child_reset() -> None:
    if not _child_reset_registered:  # os.register_at_fork cannot be undone: register once
        os.register_at_fork(after_in_child=_child_defaults)
        _child_reset_registered.append(True)
