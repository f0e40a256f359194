"""Child processes that never outlive the simulator."""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that has Linux SIGKILL the child when its parent dies.

    The kernel ties this to the *thread* that forked the child: fork from a
    thread that lives as long as the child should (the main thread).
    """
    parent = os.getpid()

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def cmdline(pid: int) -> list[str] | None:
    """The command line of a running process, or None (gone, zombie or exiting)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X") or not raw:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\x00") if part]


def pid_alive(pid: int) -> bool:
    """Whether any thread of ``pid`` still runs (a zombie leader may have live threads)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X") or threads > 1
