"""What a benchmark reads about processes and latencies: CPU time, peak memory, percentiles.

CPU time is ``utime + stime`` of ``/proc/PID/stat`` (the process's own
threads, not its children); peak memory is ``VmHWM`` of ``/proc/PID/status``
(the high-water mark of the resident set).  Both are Linux only; a process
that is gone reads as ``None``.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from simulator.views.timeline import percentile

__all__ = [
    "LatencySummary",
    "cpu_seconds",
    "machine_facts",
    "peak_rss_mb",
    "summarise",
]

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds ``pid`` has used so far (None if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident set (VmHWM) of ``pid`` in MiB (None if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of one latency, in milliseconds."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "max": self.max,
        }


def summarise(values_ms: Iterable[float]) -> LatencySummary:
    """Nearest-rank p50/p95/p99 and the maximum of some latencies (ms)."""
    ordered = sorted(values_ms)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return LatencySummary(
        count=len(ordered),
        p50=rounded(percentile(ordered, 50)),
        p95=rounded(percentile(ordered, 95)),
        p99=rounded(percentile(ordered, 99)),
        max=rounded(ordered[-1]) if ordered else None,
    )


def machine_facts() -> dict[str, str | int]:
    """The machine a benchmark ran on: cores, CPU model, Python, kernel."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count() or 0,
        "cpu_model": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
