from __future__ import annotations

import threading
import time

from decon.jobrun.budget import DiskBudget


def test_budget_blocks_until_released() -> None:
    budget = DiskBudget(100)
    assert budget.acquire(60)
    got = threading.Event()

    def second() -> None:
        budget.acquire(60)
        got.set()

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.2)
    assert not got.is_set()
    budget.release(60)
    t.join(5)
    assert got.is_set() and budget.in_use == 60 and budget.peak == 60


def test_oversized_request_runs_alone() -> None:
    budget = DiskBudget(10)
    assert budget.acquire(50)  # nothing else in use: allowed
    assert not budget.acquire(1, give_up=lambda: True)
    budget.release(50)
    assert budget.acquire(1)


def test_give_up_while_waiting() -> None:
    budget = DiskBudget(10)
    budget.acquire(10)
    flag = threading.Event()
    threading.Timer(0.2, flag.set).start()
    assert budget.acquire(5, give_up=flag.is_set, poll=0.05) is False
