"""A byte budget for local disk: files in flight reserve their estimated footprint first."""

from __future__ import annotations

import threading
from collections.abc import Callable


class DiskBudget:
    """At most `limit` bytes reserved at once. A single file larger than the whole budget may
    still run, alone, so an oversized file cannot stall the job forever."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self._cond = threading.Condition()

    def acquire(
        self, amount: int, give_up: Callable[[], bool] = lambda: False, poll: float = 0.2
    ) -> bool:
        """Block until `amount` fits; False when `give_up()` turns true while waiting."""
        with self._cond:
            while not (self.in_use + amount <= self.limit or self.in_use == 0):
                if give_up():
                    return False
                self._cond.wait(poll)
            if give_up():
                return False
            self.in_use += amount
            self.peak = max(self.peak, self.in_use)
            return True

    def release(self, amount: int) -> None:
        with self._cond:
            self.in_use = max(0, self.in_use - amount)
            self._cond.notify_all()
