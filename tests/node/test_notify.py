import contextlib
import os
import socket
import time

from decon.node.notify import Notifier, watchdog_interval


def test_datagrams_reach_a_real_unix_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        notifier = Notifier()
        assert notifier.ready("starting")
        assert server.recv(4096) == b"READY=1\nSTATUS=starting"
        assert notifier.watchdog()
        assert server.recv(4096) == b"WATCHDOG=1"
        assert notifier.status("3/4 files, ünïcode ✓")
        assert server.recv(4096) == "STATUS=3/4 files, ünïcode ✓".encode()


def test_abstract_namespace_socket(monkeypatch):
    name = f"decon-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert Notifier().status("abstract")
        assert server.recv(4096) == b"STATUS=abstract"


def test_disabled_notifier_ignores_the_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        notifier = Notifier(enabled=False)
        assert not notifier.enabled and notifier.status("x") is False


def test_no_socket_is_a_quiet_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.status("x") is False


def test_vanished_socket_does_not_raise(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert Notifier().status("x") is False


def test_full_queue_drops_instead_of_blocking(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    with open("/proc/sys/net/unix/max_dgram_qlen") as fh:
        queue_len = int(fh.read())
    sends = max(100, queue_len * 2 + 10)  # sure to overflow a queue nobody reads
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        notifier = Notifier()
        started = time.monotonic()
        results = [notifier.status(f"n={n}") for n in range(sends)]
        elapsed = time.monotonic() - started
        assert elapsed < 5.0, f"{sends} sends took {elapsed:.1f}s (a blocking send?)"
        delivered = results.index(False)
        assert delivered >= 1 and not any(results[delivered:])  # full stays full
        server.setblocking(False)
        got = []
        with contextlib.suppress(BlockingIOError):
            while True:
                got.append(server.recv(4096))
        assert got == [f"STATUS=n={n}".encode() for n in range(delivered)]
        assert notifier.watchdog()  # room again once read


def test_watchdog_interval_is_half_of_watchdog_usec_for_its_own_process() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "4000000"}, 7) == 2.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "7"}, 7) == 2.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "8"}, 7) is None
    assert watchdog_interval({}, 7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "5s"}, 7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "10"}, 7) == 0.05
