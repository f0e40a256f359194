"""What the live view sends a page: its frames, and each browser's bounded buffer of them.

A page gets, over Server-Sent Events, JSON frames of these types:

* ``snapshot``: the whole state (the run, the step, the counters, every message,
  the latest events; once finished the timeline and the verdict);
* ``update``: new events, the messages they touched and the counters; the last
  one has ``finished``, the ``timeline`` and the ``verdict`` (``result.json``'s:
  passed, the expectations, the error, the command that re-runs it);
* ``step``: teaching mode's step (its index, the total, ``what`` and ``watch``,
  and whether it waits for Next);
* ``bye``: the server stops; the page says so and does not reconnect.

A page draws a message where its ``station`` is, and the ledger in the order of
each message's ``position`` (the ledger's own order), whatever order frames come in.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from simulator.views.live import RunTailer
from simulator.views.live_records import LiveEvent
from simulator.views.timeline import build_timeline

__all__ = ["Client", "snapshot_frame", "timeline_json", "update_frame"]


class Client:
    """One browser's stream: a bounded buffer, oldest frames dropped when it lags."""

    def __init__(self, limit: int) -> None:
        self.frames: deque[str] = deque(maxlen=limit)
        self.wake = asyncio.Event()
        self.lagged = False

    def push(self, frame: str) -> None:
        if len(self.frames) == self.frames.maxlen:
            self.lagged = True  # the oldest frame falls out: a snapshot replaces them all
        self.frames.append(frame)
        self.wake.set()


def update_frame(
    tailer: RunTailer, events: list[LiveEvent], seq: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``update`` frame of ``events`` (numbered after ``seq``), and their records."""
    records = [{"n": seq + i, **e.to_json()} for i, e in enumerate(events, 1)]
    touched = {e.message_id: tailer.messages.get(e.message_id) for e in events if e.message_id}
    frame: dict[str, Any] = {
        "type": "update",
        "events": records,
        "messages": [m.to_json() for m in touched.values() if m is not None],
        "counters": tailer.counters.to_json(),
    }
    if tailer.finished:
        frame["finished"] = True
        frame["timeline"] = timeline_json(tailer.run_dir)
        frame["verdict"] = tailer.verdict
    return frame, records


def snapshot_frame(
    tailer: RunTailer | None,
    run: dict[str, Any],
    step: dict[str, Any] | None,
    events: Iterable[dict[str, Any]],
    timeline: dict[str, Any] | None,
) -> dict[str, Any]:
    """The whole state, for a page that connects (or fell behind)."""
    t = tailer
    return {
        "type": "snapshot",
        "run": run,
        "step": step,
        "counters": t.counters.to_json() if t else None,
        "messages": [m.to_json() for m in t.messages.values()] if t else [],
        "events": list(events),
        "finished": bool(t and t.finished),
        "timeline": timeline,
        "verdict": t.verdict if t else None,
    }


def timeline_json(run_dir: Path) -> dict[str, Any]:
    """The after-run timeline for the page (:meth:`Timeline.to_json`)."""
    return build_timeline(run_dir).to_json()
