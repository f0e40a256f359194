"""Tests of simulator.lab.locks: one holder at a time, a bounded wait."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from simulator.lab.locks import exclusive_lock


def test_second_holder_waits_until_the_first_releases(tmp_path: Path) -> None:
    """A second taker is told it waits, and gets the lock once the first lets go."""
    lock = tmp_path / "sub" / "start.lock"
    order: list[str] = []
    taken = threading.Event()
    waited = threading.Event()

    def told_to_wait() -> None:
        order.append("wait")
        waited.set()

    def second() -> None:
        taken.wait(5)
        with exclusive_lock(lock, timeout=10, on_wait=told_to_wait):
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    with exclusive_lock(lock, timeout=1):
        taken.set()
        assert waited.wait(5)
        order.append("first done")
    thread.join(10)
    assert order == ["wait", "first done", "second"]


def test_wait_is_bounded(tmp_path: Path) -> None:
    """A lock held longer than the timeout raises TimeoutError naming the lock file."""
    lock = tmp_path / "start.lock"
    calls: list[int] = []
    with exclusive_lock(lock, timeout=1):
        begun = time.monotonic()
        with (
            pytest.raises(TimeoutError, match=r"start\.lock"),
            exclusive_lock(lock, timeout=0.3, on_wait=lambda: calls.append(1)),
        ):
            pass
        assert 0.3 <= time.monotonic() - begun < 3
    assert calls == [1]
    with exclusive_lock(lock, timeout=0):  # free again
        pass


def test_free_lock_calls_no_wait(tmp_path: Path) -> None:
    """A free lock is taken at once without on_wait."""
    with exclusive_lock(tmp_path / "l", timeout=0, on_wait=lambda: pytest.fail("waited")):
        assert (tmp_path / "l").exists()
