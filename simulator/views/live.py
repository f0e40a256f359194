"""A run directory, read as it grows: the live events of a run, for the live view.

:class:`RunTailer` reads only what is new at each :meth:`RunTailer.poll`: new
complete lines of the JSONL files (``produced.jsonl``, every ``icc*.jsonl``,
``attacks.jsonl``) and new rows, by rowid, of the supplier stub's SQLite
tables (``arrivals``, ``ledger``, ``gaps``), opened read-only.  A half-written
line waits for the next poll; a file or table that does not exist yet is
simply not there yet.  Nothing here talks to a component or blocks one.

Each poll returns :class:`LiveEvent` records, in the order read:

==================  =========================================  =====================
kind                meaning                                    from
==================  =========================================  =====================
``produced``        KA published the message                   ``produced.jsonl``
``consumed``        an ICC worker took it from the broker      ``icc*.jsonl``
``retry``           a push failed in a way that may pass       ``icc*.jsonl``
``delivered``       the ICC got the supplier's 2xx receipt     ``icc*.jsonl``
``dead_lettered``   the ICC gave up: the message is in the DLQ ``icc*.jsonl``
``outboxed``        held in the ICC's outbox for a pull         ``icc*.jsonl``
``reordered``       injected: delivered before its predecessor ``icc*.jsonl``
``duplicated``      injected: pushed a second time             ``icc*.jsonl``
``received``        the supplier stored it (detail: accepted,  ``arrivals``
                    duplicate or conflict)
``held``            stored but not loaded yet: it waits for    ``envelopes`` − ``ledger``
                    its predecessor (KA's order); or, once     ``ledger``
                    loaded, it was held: for how long, for
                    which predecessors (those loaded before
                    it that arrived after it)
``released``        loaded after a hold seen live (``held``)   ``ledger``
``loaded``          loaded into the supplier's ledger, at its  ``ledger``
                    position
``gap``             the supplier gave up waiting for a gap     ``gaps``
``refused``         an attack the supplier refused, with code  ``attacks.jsonl``
``finished``        the run wrote ``result.json``: its verdict ``result.json``
==================  =========================================  =====================

Besides the events, the tailer keeps each message's current state
(:class:`~simulator.views.live_records.MessageState`: where it is, its ledger
position, what befell it and its history of events), the counters
(:class:`~simulator.views.live_records.Counters`) and, once the run has
finished, its :attr:`RunTailer.verdict` (passed, the expectations, the error).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from simulator.runs.stub_records import STUB_DB, news_since
from simulator.views.live_records import Counters, JsonlTail, LiveEvent, MessageState
from simulator.views.timeline import int_or_none
from simulator.vocabulary.messages import now_ms

__all__ = ["RunTailer"]

#: Earlier ledger rows of a supplier looked at for what a loaded message waited for.
_LOOK_BACK = 64

#: The ICC events that are taken as they are (docs/files.md).
_ICC_EVENTS = frozenset(
    {"consumed", "retry", "delivered", "dead_lettered", "outboxed", "reordered", "duplicated"}
)


class RunTailer:
    """Turns one run directory into live events, incrementally; see the module doc.

    ``held_after_ms``: a stored message not loaded this long after it arrived
    counts as held back for ordering.  ``clock`` gives the time in epoch ms.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        held_after_ms: int = 400,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.run_dir = run_dir
        self.held_after_ms = held_after_ms
        self.clock = clock
        self.counters = Counters()
        self.messages: dict[str, MessageState] = {}
        self.finished = False
        self.verdict: dict[str, Any] | None = None  # result.json's, once finished
        self._produced_log = JsonlTail(run_dir / "produced.jsonl")
        self._attacks = JsonlTail(run_dir / "attacks.jsonl")
        self._icc: dict[Path, JsonlTail] = {}
        self._rowids = {"arrivals": 0, "ledger": 0, "gaps": 0}
        self._by_envelope: dict[str, str] = {}  # envelope id → message id
        self._waiting: dict[str, int] = {}  # message id → stored at (not loaded yet)
        self._produced: set[str] = set()
        self._consumed: set[str] = set()
        self._delivered: set[str] = set()
        self._received: set[str] = set()
        self._loaded: set[str] = set()
        self._held: set[str] = set()
        self._ledgers: dict[str, list[tuple[str, int | None]]] = {}  # org → (id, received)
        self._dead: set[str] = set()

    @property
    def db(self) -> Path:
        return self.run_dir / STUB_DB

    def poll(self) -> list[LiveEvent]:
        """Everything new since the last poll, in the order read."""
        if self.finished:
            return []
        events: list[LiveEvent] = []
        for r in self._produced_log.read():
            if r.get("state") != "sent":  # KA's record also says when the broker confirmed
                events.append(self._on_produced(r))
        for path in sorted(self.run_dir.glob("icc*.jsonl")):
            tail = self._icc.setdefault(path, JsonlTail(path))
            events.extend(e for r in tail.read() if (e := self._on_icc(r)) is not None)
        events.extend(self._from_stub())
        events.extend(self._on_attack(r) for r in self._attacks.read())
        events.extend(self._held_now())
        if (self.run_dir / "result.json").exists():
            events.append(self._finish())
        for e in events:
            m = self.messages.get(e.message_id)
            if m is not None:
                m.record(e)
        return events

    # --- JSONL ---------------------------------------------------------------
    def _state(self, message_id: str, record: dict[str, Any]) -> MessageState:
        m = self.messages.get(message_id)
        if m is None:
            m = self.messages[message_id] = MessageState(message_id)
        m.message_type = m.message_type or str(record.get("message_type") or "")
        m.org_number = m.org_number or str(record.get("org_number") or "")
        if m.sequence is None:
            m.sequence = int_or_none(record.get("sequence"))
        envelope_id = str(record.get("envelope_id") or "")
        if envelope_id:
            m.envelope_id = m.envelope_id or envelope_id
            self._by_envelope.setdefault(envelope_id, message_id)
        return m

    def _event(self, kind: str, m: MessageState, at_ms: int | None, **extra: Any) -> LiveEvent:
        return LiveEvent(
            kind,
            at_ms if at_ms is not None else self.clock(),
            m.message_id,
            m.envelope_id,
            m.message_type,
            m.org_number,
            m.sequence,
            **extra,
        )

    def _on_produced(self, r: dict[str, Any]) -> LiveEvent:
        m = self._state(str(r.get("message_id") or "?"), r)
        m.produced_at_ms = int_or_none(r.get("produced_at_ms"))
        m.from_ka = True
        if m.station == "ka":
            m.station = "queue"
        if m.message_id not in self._produced:
            self._produced.add(m.message_id)
            self.counters.produced += 1
            self.counters.consumed += m.message_id in self._consumed
        return self._event("produced", m, m.produced_at_ms)

    def _on_icc(self, r: dict[str, Any]) -> LiveEvent | None:
        kind = str(r.get("event") or "")
        if kind not in _ICC_EVENTS:
            return None
        message_id = str(r.get("message_id") or r.get("envelope_id") or "?")
        m = self._state(message_id, r)
        at = int_or_none(r.get("at_ms"))
        detail, code = str(r.get("detail") or ""), str(r.get("code") or "")
        if kind not in ("reordered", "duplicated"):
            self._taken(message_id)
        if kind == "consumed":
            m.consumed += 1
            if m.station in ("ka", "queue"):
                m.station = "icc"
        elif kind == "retry":
            m.retries += 1
            m.detail = detail
            self.counters.retries += 1
        elif kind == "delivered":
            m.delivered = True
            m.pulled = m.pulled or detail == "pulled"
            self._delivered.add(message_id)
            self.counters.delivered = len(self._delivered)
            if m.station in ("ka", "queue", "icc"):
                m.station = "supplier"
        elif kind == "dead_lettered":
            m.code, m.detail, m.station = code, detail, "dead"
            self._dead.add(message_id)
            self.counters.dead_lettered = len(self._dead)
        elif kind == "reordered":
            m.reordered = True
        return self._event(
            kind,
            m,
            at,
            status=int_or_none(r.get("status")),
            code=code,
            detail=detail,
            attempt=int_or_none(r.get("attempt")),
        )

    def _taken(self, message_id: str) -> None:
        """The message has left KA's queue (an ICC took it; or we see it further on)."""
        if message_id not in self._consumed:
            self._consumed.add(message_id)
            self.counters.consumed += message_id in self._produced

    def _on_attack(self, r: dict[str, Any]) -> LiveEvent:
        self.counters.refused += 1
        return LiveEvent(
            "refused",
            int_or_none(r.get("at_ms")) or self.clock(),
            org_number=str(r.get("org_number") or ""),
            status=int_or_none(r.get("status")),
            code=str(r.get("code") or ""),
            detail=f"attack {r.get('attack')}: expected {r.get('expected')}",
        )

    # --- SQLite --------------------------------------------------------------
    def _from_stub(self) -> Iterator[LiveEvent]:
        news = news_since(self.db, self._rowids)
        if news is None:
            return  # the stub is creating or locking its file: next poll
        for row in news.arrivals:
            yield self._on_arrival(row)
        for row in news.ledger:
            yield from self._on_loaded(row)
        for row in news.gaps:
            yield self._on_gap(row)

    def _message_of(self, envelope_id: str, message_id: object) -> str:
        known = self._by_envelope.get(envelope_id) or (str(message_id) if message_id else "")
        return known or envelope_id

    def _on_arrival(self, row: tuple[Any, ...]) -> LiveEvent:
        _, envelope_id, org, at, outcome, message_id, mtype, seq = row
        record = {"envelope_id": envelope_id, "org_number": org, "message_type": mtype}
        record["sequence"] = seq
        m = self._state(self._message_of(str(envelope_id), message_id), record)
        self._taken(m.message_id)
        at_ms = int_or_none(at)
        if outcome == "accepted":
            self._received.add(m.message_id)
            self.counters.received = len(self._received)
            if m.station not in ("ledger", "dead"):
                m.station = "supplier"
                self._waiting.setdefault(m.message_id, at_ms or self.clock())
        elif outcome == "duplicate":
            m.duplicates += 1
            self.counters.duplicates += 1
        return self._event("received", m, at_ms, detail=str(outcome))

    def _on_loaded(self, row: tuple[Any, ...]) -> Iterator[LiveEvent]:
        position, envelope_id, org, at, message_id, mtype, seq, late, received = row
        record = {"envelope_id": envelope_id, "org_number": org, "message_type": mtype}
        record["sequence"] = seq
        m = self._state(self._message_of(str(envelope_id), message_id), record)
        self._taken(m.message_id)
        m.station, m.late = "ledger", m.late or bool(late)
        m.position = int(position)
        self._waiting.pop(m.message_id, None)
        self._loaded.add(m.message_id)
        self.counters.loaded = len(self._loaded)
        loaded_ms, received_ms = int_or_none(at), int_or_none(received)
        yield from self._hold_of(m, str(org), received_ms, loaded_ms)
        yield self._event("loaded", m, loaded_ms, detail="late" if late else "")

    def _hold_of(
        self, m: MessageState, org: str, received_ms: int | None, loaded_ms: int | None
    ) -> Iterator[LiveEvent]:
        """Was ``m`` held back for KA's order?  It was if a message loaded before it in its
        supplier's ledger arrived after it (that is what it waited for), or if it waited
        long enough to be seen waiting (:meth:`_held_now`)."""
        ledger = self._ledgers.setdefault(org, [])
        waited = [
            other
            for other, arrived in ledger[-_LOOK_BACK:]
            if received_ms is not None and arrived is not None and arrived > received_ms
        ]
        ledger.append((m.message_id, received_ms))
        if not waited and not m.held:
            return
        seen_live = m.held
        m.held, m.waited_for = True, waited
        if received_ms is not None and loaded_ms is not None:
            m.held_ms = max(0, loaded_ms - received_ms)
        if m.message_id not in self._held:
            self._held.add(m.message_id)
            self.counters.held = len(self._held)
        numbers = ", ".join(f"#{self.messages[w].sequence}" for w in waited)
        why = (
            f"until {numbers} arrived: KA produced {'it' if len(waited) == 1 else 'them'} first"
            if waited
            else "until the supplier stopped waiting for its predecessor"
        )
        took = f"{m.held_ms} ms " if m.held_ms is not None else ""
        kind = "released" if seen_live else "held"
        yield self._event(kind, m, received_ms, detail=f"held back {took}{why}")

    def _on_gap(self, row: tuple[Any, ...]) -> LiveEvent:
        _, envelope_id, org, at, kind, first, last = row
        missing = f"sequence {first}" if first == last else f"sequences {first}–{last}"
        return LiveEvent(
            "gap",
            int_or_none(at) or self.clock(),
            envelope_id=str(envelope_id),
            org_number=str(org),
            code=str(kind).upper(),
            detail=f"gave up waiting for {missing}" if first is not None else str(kind),
        )

    def _held_now(self) -> Iterator[LiveEvent]:
        """Stored messages that have waited long enough to count as held back."""
        now = self.clock()
        for message_id, since in list(self._waiting.items()):
            m = self.messages[message_id]
            if m.held or now - since < self.held_after_ms:
                continue
            m.held = True
            self._held.add(message_id)
            self.counters.held = len(self._held)
            yield self._event("held", m, now, detail="waits for its predecessor (KA's order)")

    def _finish(self) -> LiveEvent:
        """The run ended: what is neither stored nor dead-lettered is lost."""
        self.finished = True
        self.counters.lost = len(self._produced - self._received - self._dead)
        self.verdict = _verdict(self.run_dir / "result.json")
        return LiveEvent("finished", self.clock(), detail=f"{self.counters.lost} lost")


def _verdict(path: Path) -> dict[str, Any] | None:
    """The verdict in a run's ``result.json``: passed, error, expectations, rerun."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict):
        return None
    keys = ("passed", "error", "expectations", "rerun", "scenario")
    return {k: result.get(k) for k in keys}
