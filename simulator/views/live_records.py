"""What the live view's tailer keeps: events, each message's state, the run's counters.

:class:`LiveEvent` is one thing that happened (the kinds are listed in
:mod:`simulator.views.live`), :class:`MessageState` where a message is and what
befell it (with its history of events), :class:`Counters` the run's figures, and
:class:`JsonlTail` the incremental reader of a JSONL file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "HISTORY",
    "STATIONS",
    "Counters",
    "JsonlTail",
    "LiveEvent",
    "MessageState",
]

#: Events kept in one message's history.
HISTORY = 24

#: Where a message can be, in the order of the chain ("dead": the dead-letter queue).
STATIONS = ("ka", "queue", "icc", "supplier", "ledger", "dead")


@dataclass
class LiveEvent:
    """One thing that happened to one message (or to the supplier's endpoint)."""

    kind: str
    at_ms: int
    message_id: str = ""
    envelope_id: str = ""
    message_type: str = ""
    org_number: str = ""
    sequence: int | None = None
    status: int | None = None
    code: str = ""
    detail: str = ""
    attempt: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None)}


@dataclass
class MessageState:
    """Where one message is now, and what befell it on the way (``history``: its events)."""

    message_id: str
    message_type: str = ""
    org_number: str = ""
    sequence: int | None = None
    envelope_id: str = ""
    station: str = "ka"
    produced_at_ms: int | None = None
    from_ka: bool = False  # in KA's produced.jsonl (a poison message is not)
    position: int | None = None  # its row in the supplier's ledger: the ledger's order
    consumed: int = 0  # >1: the broker redelivered it
    retries: int = 0
    duplicates: int = 0  # arrivals the supplier answered as duplicates
    held: bool = False  # waited at the supplier for its predecessor
    held_ms: int | None = None  # how long it waited, once loaded
    waited_for: list[str] = field(default_factory=list)  # the predecessors it waited for (ids)
    reordered: bool = False
    late: bool = False
    pulled: bool = False
    delivered: bool = False
    code: str = ""  # the dead letter's code
    detail: str = ""  # the last retry's or the dead letter's reason
    history: list[dict[str, Any]] = field(default_factory=list)

    def record(self, event: LiveEvent) -> None:
        """Keep ``event`` in the history (the first and the latest, if there are many)."""
        if len(self.history) >= HISTORY:
            del self.history[HISTORY // 2]
        entry = {"kind": event.kind, "at_ms": event.at_ms}
        entry.update(
            {
                k: v
                for k in ("status", "code", "detail")
                if (v := getattr(event, k)) not in ("", None)
            }
        )
        self.history.append(entry)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Counters:
    """The run's figures so far (distinct messages)."""

    produced: int = 0
    consumed: int = 0
    delivered: int = 0
    received: int = 0
    loaded: int = 0
    dead_lettered: int = 0
    retries: int = 0
    duplicates: int = 0
    held: int = 0
    refused: int = 0
    lost: int | None = None  # known only once the run has finished

    @property
    def queue_depth(self) -> int:
        """Messages KA produced that no ICC worker has taken yet."""
        return max(0, self.produced - self.consumed)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "queue_depth": self.queue_depth}


class JsonlTail:
    """New complete lines of one JSONL file, from where the last read stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def read(self) -> list[dict[str, Any]]:
        """The records of the lines written since the last call (bad lines are skipped)."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []  # nothing complete yet
        self._offset += end + 1
        out = []
        for line in chunk[: end + 1].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out
