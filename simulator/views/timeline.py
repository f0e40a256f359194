"""Each message's way through the chain, hop by hop, read from a run directory.

A run leaves one record of every hop in its files (docs/files.md):

==============  ==========================================  ===========================
stamp           meaning                                     from
==============  ==========================================  ===========================
``produced``    KA published it (KA's clock, may be skewed)  ``produced.jsonl``
``consumed``    an ICC worker took it from the broker        ``icc-N.jsonl`` ``consumed``
``received``    the supplier stored the envelope            ``envelopes.received_at_ms``
``delivered``   the ICC got the supplier's 2xx receipt      ``icc-N.jsonl`` ``delivered``
``loaded``      the supplier loaded it into its ledger      ``ledger.loaded_at_ms``
==============  ==========================================  ===========================

The supplier stores an envelope before it answers, so ``received`` comes
before ``delivered``.  The hops are therefore measured as:

* ``broker``: produced → consumed (time on KA's queue);
* ``delivery``: consumed → received (envelope, signature, HTTPS, retries; for a
  pull supplier, the wait until it pulled);
* ``receipt``: received → delivered (the supplier's answer back to the ICC);
* ``ledger``: received → loaded (held until KA's order allows it);
* ``total``: produced → loaded.

Nothing here talks to a component; the SQLite files are read with
:mod:`simulator.runs.stub_records` (read-only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from simulator.runs.reconcile import produced_records, read_jsonl
from simulator.runs.stub_records import STUB_DB, envelope_of, ledger_stamps, timeline_envelopes

N = TypeVar("N", int, float)

__all__ = [
    "HOPS",
    "HOP_LABELS",
    "HopStats",
    "MessageTimeline",
    "Timeline",
    "build_timeline",
    "envelope_of",
    "int_or_none",
    "percentile",
]

#: Hop name → (from stamp, to stamp).
HOPS: dict[str, tuple[str, str]] = {
    "broker": ("produced", "consumed"),
    "delivery": ("consumed", "received"),
    "receipt": ("received", "delivered"),
    "ledger": ("received", "loaded"),
    "total": ("produced", "loaded"),
}
HOP_LABELS: dict[str, str] = {
    "broker": "KA → ICC (broker)",
    "delivery": "ICC → supplier (HTTPS)",
    "receipt": "supplier → ICC (receipt)",
    "ledger": "supplier → ledger (ordering)",
    "total": "KA → ledger (end to end)",
}
STAMPS = ("produced", "consumed", "received", "delivered", "loaded")


@dataclass
class MessageTimeline:
    """One message: its identity, the time of each hop (epoch ms) and what befell it."""

    message_id: str
    message_type: str = ""
    org_number: str = ""
    sequence: int | None = None
    envelope_id: str = ""
    produced: int | None = None
    consumed: int | None = None
    received: int | None = None
    delivered: int | None = None
    loaded: int | None = None
    consumed_times: int = 0  # >1: the broker redelivered it (a worker died, a NACK)
    retries: int = 0
    duplicated: bool = False  # the ICC pushed it twice (injected fault)
    reordered: bool = False  # the ICC delivered it before its predecessor (injected fault)
    pulled: bool = False  # a pull supplier fetched it from the ICC's outbox
    late: bool = False  # loaded after a later message of its supplier
    ledger_rows: int = 0  # >1: loaded twice (double ingestion)
    dead_letter_code: str = ""
    dead_letter_reason: str = ""

    def stamp(self, name: str) -> int | None:
        value: int | None = getattr(self, name)
        return value

    def hop(self, name: str) -> int | None:
        """The latency of hop ``name`` in ms (None when a stamp is missing)."""
        start, end = HOPS[name]
        a, b = self.stamp(start), self.stamp(end)
        return None if a is None or b is None else b - a

    def hops(self) -> dict[str, int | None]:
        return {name: self.hop(name) for name in HOPS}

    @property
    def outcome(self) -> str:
        """loaded, dead_lettered, stored (not loaded), or lost."""
        if self.loaded is not None:
            return "loaded"
        if self.dead_letter_code:
            return "dead_lettered"
        if self.received is not None:
            return "stored"
        return "lost"

    @property
    def notable(self) -> bool:
        """Something went wrong or was injected: worth showing first."""
        return (
            self.outcome != "loaded"
            or self.late
            or self.ledger_rows > 1
            or self.retries > 0
            or self.consumed_times > 1
            or self.duplicated
            or self.reordered
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "message_type": self.message_type,
            "org_number": self.org_number,
            "sequence": self.sequence,
            "envelope_id": self.envelope_id,
            "outcome": self.outcome,
            **{f"{s}_at_ms": self.stamp(s) for s in STAMPS},
            "hops_ms": self.hops(),
            "consumed_times": self.consumed_times,
            "retries": self.retries,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "pulled": self.pulled,
            "late": self.late,
            "ledger_rows": self.ledger_rows,
            "dead_letter_code": self.dead_letter_code,
            "dead_letter_reason": self.dead_letter_reason,
        }


@dataclass(frozen=True)
class HopStats:
    """Latency percentiles of one hop over every message that has both stamps."""

    hop: str
    count: int
    p50: int | None
    p95: int | None
    p99: int | None
    max: int | None


@dataclass
class Timeline:
    """Every message of a run, in KA's order (produced time, then sequence)."""

    messages: list[MessageTimeline] = field(default_factory=list)

    def stats(self) -> dict[str, HopStats]:
        out = {}
        for name in HOPS:
            values = sorted(v for m in self.messages if (v := m.hop(name)) is not None)
            out[name] = HopStats(
                name,
                len(values),
                percentile(values, 50),
                percentile(values, 95),
                percentile(values, 99),
                values[-1] if values else None,
            )
        return out

    def start_ms(self) -> int | None:
        stamps = [s for m in self.messages for n in STAMPS if (s := m.stamp(n)) is not None]
        return min(stamps) if stamps else None

    def by_id(self) -> dict[str, MessageTimeline]:
        return {m.message_id: m for m in self.messages}

    def to_json(self, limit: int = 500) -> dict[str, Any]:
        """For the live page: hop statistics and up to ``limit`` messages (problems first)."""
        msgs = self.messages
        notable = [m for m in msgs if m.notable][:limit]
        chosen = {m.message_id for m in notable}
        for m in msgs:
            if len(chosen) >= limit:
                break
            chosen.add(m.message_id)
        stats = self.stats()
        return {
            "hops": [{"hop": h, "label": HOP_LABELS[h], **asdict(stats[h])} for h in HOPS],
            "start_ms": self.start_ms(),
            "count": len(msgs),
            "messages": [m.to_json() for m in msgs if m.message_id in chosen],
        }


def percentile(sorted_values: Sequence[N], p: float) -> N | None:
    """The nearest-rank ``p``-th percentile of already sorted values (None if empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def build_timeline(run_dir: Path) -> Timeline:
    """Read a run directory's files into one timeline record per message.

    Messages KA never logged (poison messages put on the queue beside KA's
    own) appear too when the ICC logged them.  Missing or half-written files
    give missing stamps, never an error.
    """
    messages: dict[str, MessageTimeline] = {}

    def get(message_id: str) -> MessageTimeline:
        m = messages.get(message_id)
        if m is None:
            m = messages[message_id] = MessageTimeline(message_id)
        return m

    for r in produced_records(run_dir / "produced.jsonl"):
        m = get(str(r.get("message_id", "")))
        m.message_type = str(r.get("message_type", ""))
        m.org_number = str(r.get("org_number", ""))
        m.sequence = int_or_none(r.get("sequence"))
        m.produced = _earliest(m.produced, int_or_none(r.get("produced_at_ms")))
    for e in _events(run_dir):
        _apply_event(get(str(e.get("message_id") or e.get("envelope_id") or "?")), e)
    _apply_stub(run_dir / STUB_DB, get)
    return Timeline(sorted(messages.values(), key=_order))


def _events(run_dir: Path) -> Iterator[dict[str, Any]]:
    for log in sorted(run_dir.glob("icc*.jsonl")):
        yield from read_jsonl(log)


def _apply_event(m: MessageTimeline, e: dict[str, Any]) -> None:
    kind, at = e.get("event"), int_or_none(e.get("at_ms"))
    if not m.envelope_id and e.get("envelope_id"):
        m.envelope_id = str(e["envelope_id"])
    for key in ("message_type", "org_number"):
        if not getattr(m, key) and e.get(key):
            setattr(m, key, str(e[key]))
    if m.sequence is None:
        m.sequence = int_or_none(e.get("sequence"))
    if kind == "consumed":
        m.consumed = _earliest(m.consumed, at)
        m.consumed_times += 1
    elif kind == "delivered":
        m.delivered = _earliest(m.delivered, at)
        m.pulled = m.pulled or e.get("detail") == "pulled"
    elif kind == "retry":
        m.retries += 1
    elif kind == "duplicated":
        m.duplicated = True
    elif kind == "reordered":
        m.reordered = True
    elif kind == "dead_lettered":
        m.dead_letter_code = str(e.get("code") or "")
        m.dead_letter_reason = str(e.get("detail") or "")


def _apply_stub(db: Path, get: Callable[[str], MessageTimeline]) -> None:
    for message_id, envelope_id, org, mtype, seq, received in timeline_envelopes(db):
        m = get(str(message_id))
        m.received = _earliest(m.received, int_or_none(received))
        m.envelope_id = m.envelope_id or str(envelope_id)
        m.org_number = m.org_number or str(org)
        m.message_type = m.message_type or str(mtype)
        if m.sequence is None:
            m.sequence = int_or_none(seq)
    for message_id, loaded, late in ledger_stamps(db):
        m = get(str(message_id))
        m.loaded = _earliest(m.loaded, int_or_none(loaded))
        m.late = m.late or bool(late)
        m.ledger_rows += 1


def _order(m: MessageTimeline) -> tuple[int, int, str]:
    first = next((s for n in STAMPS if (s := m.stamp(n)) is not None), 2**62)
    return (m.produced if m.produced is not None else first, m.sequence or 0, m.message_id)


def _earliest(current: int | None, new: int | None) -> int | None:
    if new is None:
        return current
    return new if current is None else min(current, new)


def int_or_none(value: object) -> int | None:
    """``value`` as an int if it is one (or a string of digits), else None; never a bool."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None
