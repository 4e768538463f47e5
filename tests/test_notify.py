import socket

from decon.node.notify import Notifier


def test_datagrams_reach_a_real_unix_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(2)
        notifier = Notifier(path)
        assert notifier.ready("starting")
        assert server.recv(4096) == b"READY=1\nSTATUS=starting"
        assert notifier.watchdog()
        assert server.recv(4096) == b"WATCHDOG=1"


def test_no_socket_is_a_quiet_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.status("x") is False


def test_vanished_socket_does_not_raise(tmp_path):
    assert Notifier(str(tmp_path / "gone.sock")).status("x") is False
