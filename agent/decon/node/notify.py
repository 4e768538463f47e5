"""systemd notify messages (READY=1, STATUS=, WATCHDOG=1, STOPPING=1) through `sdnotify`.

The socket is `$NOTIFY_SOCKET`, read when the notifier is made, as sdnotify does. Outside
systemd (no socket) every call is a no-op that returns False.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import sdnotify


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Half of WATCHDOG_USEC (systemd's WatchdogSec) when systemd expects pings from process
    `pid`, else None."""
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (owner and owner != str(pid)):
        return None
    return max(0.05, int(usec) / 2_000_000)


class Notifier:
    """sdnotify's notifier, never blocking and saying whether a message went out."""

    def __init__(self, enabled: bool = True) -> None:
        self.address = os.environ.get("NOTIFY_SOCKET") or None if enabled else None
        self._systemd: sdnotify.SystemdNotifier | None = None
        if self.address is not None:
            try:  # debug=True: errors are raised to us instead of swallowed
                self._systemd = sdnotify.SystemdNotifier(debug=True)
                # A full socket queue (systemd busy or gone) drops the message rather than
                # hanging the caller.
                self._systemd.socket.setblocking(False)
            except OSError:  # no socket at that address
                self._systemd = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` lines in one datagram; False when it could not be sent."""
        if self._systemd is None:
            return False
        text = "\n".join(assignments)
        try:
            # sdnotify encodes as latin-1; systemd reads UTF-8: hand it the UTF-8 bytes as such.
            self._systemd.notify(text.encode("utf-8").decode("latin-1"))
        except OSError:  # includes BlockingIOError (queue full) and a vanished socket
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))
