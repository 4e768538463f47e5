"""systemd notify protocol (READY=1, STATUS=, WATCHDOG=1, STOPPING=1) via $NOTIFY_SOCKET.

Works with no socket at all (outside systemd every call is a no-op).
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends datagrams to the notify socket named by `NOTIFY_SOCKET` (or `address`)."""

    def __init__(self, address: str | None = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        if addr.startswith("@"):  # abstract namespace
            addr = "\0" + addr[1:]
        self.address = addr or None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` lines in one datagram; False when there is nowhere to send.

        Never blocks: when the receiver's queue is full (systemd busy or gone) the datagram is
        dropped and this returns False, so a stuck notify socket cannot hang the caller.
        """
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.connect(self.address)
                sock.send("\n".join(assignments).encode())
            return True
        except OSError:  # includes BlockingIOError (queue full) and a vanished socket
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))
