"""An exclusive lock on a lock file, shared by every process of the machine.

``fcntl.flock`` on an open file: the kernel releases it when the holder
closes the file or dies, so a crashed holder never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_POLL_SECONDS = 0.1


@contextlib.contextmanager
def exclusive_lock(
    path: Path,
    *,
    timeout: float,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block.

    If another process holds it, ``on_wait`` is called once and the lock is
    polled until it is free, for at most ``timeout`` seconds; then
    :class:`TimeoutError` is raised (the caller says who holds it and why).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _acquire(fd, path, timeout=timeout, on_wait=on_wait)
        yield
    finally:
        os.close(fd)  # releases the lock


def _acquire(fd: int, path: Path, *, timeout: float, on_wait: Callable[[], None] | None) -> None:
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            return
        if not waited:
            waited = True
            if on_wait is not None:
                on_wait()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{path} stayed locked for more than {timeout:g} s")
        time.sleep(_POLL_SECONDS)
