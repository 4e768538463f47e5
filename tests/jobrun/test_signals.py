from __future__ import annotations

import os
import signal
import time

import pytest

from decon.jobrun.signals import StopRequest, exit_code_for_signal, install_handlers


@pytest.fixture
def restore_handlers():  # type: ignore[no-untyped-def]
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def wait(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_first_signal_requests_stop_second_exits_at_once(restore_handlers) -> None:  # type: ignore[no-untyped-def]
    stop = StopRequest()
    firsts: list[int] = []
    exits: list[int] = []
    install_handlers(stop, on_first=firsts.append, exit_now=exits.append)
    os.kill(os.getpid(), signal.SIGTERM)
    wait(stop)
    assert stop() and stop.signum == signal.SIGTERM and firsts == [signal.SIGTERM] and exits == []
    os.kill(os.getpid(), signal.SIGINT)
    wait(lambda: exits)
    assert exits == [130] and firsts == [signal.SIGTERM] and stop.signum == signal.SIGTERM


def test_exit_codes_are_128_plus_signal() -> None:
    assert exit_code_for_signal(signal.SIGTERM) == 143
    assert exit_code_for_signal(signal.SIGINT) == 130


def test_forked_child_does_not_run_the_stop_logic(restore_handlers) -> None:  # type: ignore[no-untyped-def]
    """Detection workers are forked from the job: SIGTERM kills them, SIGINT is ignored."""
    stop = StopRequest()
    firsts: list[int] = []
    install_handlers(stop, on_first=firsts.append, exit_now=lambda code: None)
    for sig, expect_killed in ((signal.SIGTERM, True), (signal.SIGINT, False)):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(read_fd)
            os.write(write_fd, b"r")
            time.sleep(1.0)
            os._exit(7)
        os.close(write_fd)
        os.read(read_fd, 1)
        os.close(read_fd)
        os.kill(pid, sig)
        _, status = os.waitpid(pid, 0)
        if expect_killed:
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
        else:
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 7
    assert not stop() and firsts == []
