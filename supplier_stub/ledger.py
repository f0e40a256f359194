"""The supplier's ledger: stored envelopes loaded in the producer's order.

Delivery may reorder messages (retries, competing workers, replays), so the
stub does what the AF description asks of a supplier: it sorts each
supplier's messages back into KA's order before loading them.  KA numbers
each supplier's messages 1, 2, 3, … (``sequence``) and stamps them
(``produced_at_ms``); with KA's clock running forwards, sequence order is
(timestamp, sequence) order, and the sequence is what shows a gap.

* A message loads when its predecessor (``sequence - 1``) has loaded; a
  message that arrives early is **held**, and when the predecessor arrives
  everything now contiguous loads, in order.
* A credit note also waits for the invoice(s) it credits (its
  ``BillingReference/InvoiceDocumentReference/ID``), of the same supplier.
* Nothing waits longer than ``gap_timeout``: then the held messages load in
  order and the problem is recorded in ``gaps`` (missing sequence numbers, or
  a credit loaded before its invoice).  A message that arrives after its
  place was given up loads at once, marked ``late``.
* A message (KA message id) loads once, whatever envelopes carry it.

:class:`Sequencer` is the ordering logic alone (no I/O, time passed in);
:class:`Ledger` persists its decisions in the store's SQLite file and, after
a restart, rebuilds the held messages from the stored envelopes that were
never loaded.  Its sequencer runs on the store's one thread, so that storing
an envelope and loading it is one trip there and one transaction; what has
loaded is looked up in the ledger table, not kept in memory.  docs/supplier.md
explains it for supplier developers.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from simulator.vocabulary.envelope import Envelope, from_xml
from simulator.vocabulary.errors import B2BSimError, ConfigError
from simulator.vocabulary.messages import MessageType, now_ms
from simulator.vocabulary.ubl_names import PREFIXES
from simulator.vocabulary.xmlsafe import parse_xml
from supplier_stub.store import EnvelopeStore, Receipt, ReceiptStatus, store_rows

__all__ = [
    "DEFAULT_GAP_TIMEOUT",
    "LEDGER_SCHEMA",
    "Batch",
    "Item",
    "Ledger",
    "Load",
    "Problem",
    "ProblemKind",
    "Sequencer",
    "document_refs",
]

log = logging.getLogger(__name__)

#: Seconds a held message waits for its predecessor (or a credit for its invoice).
DEFAULT_GAP_TIMEOUT = 5.0

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    org_number     TEXT NOT NULL,
    envelope_id    TEXT NOT NULL UNIQUE,
    message_id     TEXT NOT NULL,
    message_type   TEXT NOT NULL,
    document_id    TEXT NOT NULL,
    produced_at_ms INTEGER NOT NULL,
    sequence       INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    loaded_at_ms   INTEGER NOT NULL,
    late           INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_supplier ON ledger (org_number, position);
CREATE INDEX IF NOT EXISTS ledger_by_message ON ledger (org_number, message_id);
CREATE INDEX IF NOT EXISTS ledger_by_document ON ledger (org_number, document_id);
CREATE TABLE IF NOT EXISTS gaps (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    org_number     TEXT NOT NULL,
    kind           TEXT NOT NULL,
    first_missing  INTEGER,
    last_missing   INTEGER,
    invoice_ids    TEXT,
    envelope_id    TEXT NOT NULL,
    detected_at_ms INTEGER NOT NULL
);
"""

_NS = PREFIXES
_CREDITED = "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID"


class ProblemKind(StrEnum):
    GAP = "gap"  # messages missing when the gap timeout ran out
    CREDIT_BEFORE_INVOICE = "credit_before_invoice"  # its invoice had not loaded in time


@dataclass(frozen=True, slots=True)
class Item:
    """What the ledger needs of one stored envelope."""

    envelope_id: str
    message_id: str
    org_number: str
    message_type: MessageType
    document_id: str  # the UBL document's own cbc:ID ("" if it has none)
    credits: tuple[str, ...]  # a credit note: the invoice ids it credits
    produced_at_ms: int
    sequence: int
    received_at_ms: int  # when the stub stored it: the hold starts here

    @classmethod
    def of(cls, envelope: Envelope, received_at_ms: int) -> Item:
        document_id, credits = document_refs(envelope.message_type, envelope.document)
        return cls(
            envelope_id=envelope.envelope_id,
            message_id=envelope.message_id,
            org_number=envelope.org_number,
            message_type=envelope.message_type,
            document_id=document_id,
            credits=credits,
            produced_at_ms=envelope.produced_at_ms,
            sequence=envelope.sequence,
            received_at_ms=received_at_ms,
        )


@dataclass(frozen=True, slots=True)
class Load:
    item: Item
    late: bool  # loaded after a later message of its supplier


@dataclass(frozen=True, slots=True)
class Problem:
    org_number: str
    kind: ProblemKind
    envelope_id: str  # the message loaded despite the problem
    missing: tuple[int, int] | None = None  # GAP: first and last missing sequence
    invoice_ids: tuple[str, ...] = ()  # CREDIT_BEFORE_INVOICE: invoices not loaded


@dataclass(slots=True)
class Batch:
    """What one step of the sequencer decided, in load order."""

    loads: list[Load] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    duplicates: list[Item] = field(default_factory=list)  # messages already loaded or held

    def extend(self, other: Batch) -> None:
        self.loads += other.loads
        self.problems += other.problems
        self.duplicates += other.duplicates


def document_refs(message_type: MessageType, document: bytes) -> tuple[str, tuple[str, ...]]:
    """A document's own id and, for a credit note, the ids of the invoices it credits.

    Lenient: what is not there is ``""`` or ``()`` (the stub has already
    checked the envelope; the document rules are optional).
    """
    try:
        root = parse_xml(document)
    except B2BSimError:
        return "", ()
    own = (root.findtext("cbc:ID", default="", namespaces=_NS) or "").strip()
    credits: tuple[str, ...] = ()
    if message_type is MessageType.KREDIT:
        ids = ((el.text or "").strip() for el in root.findall(_CREDITED, _NS))
        credits = tuple(dict.fromkeys(i for i in ids if i))
    return own, credits


def _seq_key(item: Item) -> tuple[int, int]:
    return (item.sequence, item.produced_at_ms)


class History(Protocol):
    """What loaded before: the sequencer keeps only what it holds, so its memory
    does not grow with the messages loaded.

    Asked once per offered message that is not held (by message id, so a
    replay under any sequence number is caught) and about invoices only for
    credit notes.
    """

    def loaded(self, org_number: str, message_id: str) -> bool:
        """Whether this message has loaded."""
        ...

    def invoice_loaded(self, org_number: str, invoice_id: str) -> bool:
        """Whether a self-billing invoice with this document id has loaded."""
        ...

    def record(self, load: Load) -> None:
        """A message has just loaded (called in load order)."""
        ...


@dataclass(slots=True)
class MemoryHistory:
    """A History in memory (for the sequencer alone and its tests): grows with every load."""

    message_ids: set[tuple[str, str]] = field(default_factory=set)
    invoices: set[tuple[str, str]] = field(default_factory=set)

    def loaded(self, org_number: str, message_id: str) -> bool:
        return (org_number, message_id) in self.message_ids

    def invoice_loaded(self, org_number: str, invoice_id: str) -> bool:
        return (org_number, invoice_id) in self.invoices

    def record(self, load: Load) -> None:
        item = load.item
        self.message_ids.add((item.org_number, item.message_id))
        if item.message_type is MessageType.SJALVFAKTURA and item.document_id:
            self.invoices.add((item.org_number, item.document_id))


@dataclass(slots=True)
class _Supplier:
    next_seq: int = 1  # the sequence that loads next
    held: list[Item] = field(default_factory=list)  # sequence >= next_seq, sorted
    late_credits: list[Item] = field(default_factory=list)  # late, waiting for an invoice
    held_ids: set[str] = field(default_factory=set)  # message ids in held and late_credits


class Sequencer:
    """Per-supplier ordering; every method takes the time and returns what to load.

    Memory: what is held, and one small record per supplier; what has loaded
    is asked of ``history`` (the ledger's table, for the Ledger).
    """

    def __init__(self, gap_timeout_ms: int, history: History | None = None) -> None:
        self.gap_timeout_ms = gap_timeout_ms
        self.history: History = history if history is not None else MemoryHistory()
        self._suppliers: dict[str, _Supplier] = {}
        self._holding: set[str] = set()  # suppliers with something held

    def restore(self, org_number: str, *, next_seq: int) -> None:
        """Set a supplier's next sequence from what the ledger already holds (after a restart)."""
        s = self._supplier(org_number)
        s.next_seq = max(s.next_seq, next_seq)

    @property
    def held(self) -> int:
        """How many messages wait, over all suppliers."""
        suppliers = list(self._suppliers.values())  # may be read from another thread
        return sum(len(s.held) + len(s.late_credits) for s in suppliers)

    def offer(self, item: Item, now: int) -> Batch:
        """A newly stored message: load it and what it unblocks, or hold it."""
        out = Batch()
        s = self._supplier(item.org_number)
        if item.message_id in s.held_ids or self.history.loaded(item.org_number, item.message_id):
            out.duplicates.append(item)
            return out
        s.held_ids.add(item.message_id)  # until it loads
        if item.sequence < s.next_seq:
            if self._waits_for_invoice(s, item):
                s.late_credits.append(item)
            else:
                self._load(s, item, out, late=True)
        else:
            bisect.insort(s.held, item, key=_seq_key)
        self._drain(s, out)
        self._expire_supplier(s, now, out)
        self._mark(item.org_number, s)
        return out

    def expire(self, now: int) -> Batch:
        """Load what has waited ``gap_timeout`` or longer, recording each problem."""
        out = Batch()
        for org in sorted(self._holding):
            s = self._suppliers[org]
            self._expire_supplier(s, now, out)
            self._mark(org, s)
        return out

    def _supplier(self, org_number: str) -> _Supplier:
        s = self._suppliers.get(org_number)
        if s is None:
            s = self._suppliers[org_number] = _Supplier()
        return s

    def _mark(self, org: str, s: _Supplier) -> None:
        if s.held or s.late_credits:
            self._holding.add(org)
        else:
            self._holding.discard(org)

    def _missing_invoices(self, s: _Supplier, item: Item) -> tuple[str, ...]:
        return tuple(i for i in item.credits if not self.history.invoice_loaded(item.org_number, i))

    def _waits_for_invoice(self, s: _Supplier, item: Item) -> bool:
        return bool(self._missing_invoices(s, item))

    def _due(self, item: Item, now: int) -> bool:
        return now - item.received_at_ms >= self.gap_timeout_ms

    def _load(self, s: _Supplier, item: Item, out: Batch, *, late: bool) -> None:
        load = Load(item, late)
        out.loads.append(load)
        s.held_ids.discard(item.message_id)
        self.history.record(load)
        if item.message_type is MessageType.SJALVFAKTURA and item.document_id:
            waiting = [c for c in s.late_credits if not self._waits_for_invoice(s, c)]
            for credit in waiting:
                s.late_credits.remove(credit)
                self._load(s, credit, out, late=True)

    def _drain(self, s: _Supplier, out: Batch) -> None:
        """Load the held messages that now follow on, in order."""
        while s.held:
            head = s.held[0]
            if head.sequence > s.next_seq or self._waits_for_invoice(s, head):
                return
            s.held.pop(0)
            self._load(s, head, out, late=head.sequence < s.next_seq)
            s.next_seq = max(s.next_seq, head.sequence + 1)

    def _expire_supplier(self, s: _Supplier, now: int, out: Batch) -> None:
        for credit in [c for c in s.late_credits if self._due(c, now)]:
            s.late_credits.remove(credit)
            missing = self._missing_invoices(s, credit)
            out.problems.append(
                Problem(
                    credit.org_number,
                    ProblemKind.CREDIT_BEFORE_INVOICE,
                    credit.envelope_id,
                    invoice_ids=missing,
                )
            )
            self._load(s, credit, out, late=True)
        last_due = max((i for i, it in enumerate(s.held) if self._due(it, now)), default=-1)
        if last_due < 0:
            return
        forced, s.held = s.held[: last_due + 1], s.held[last_due + 1 :]
        for item in forced:
            if item.sequence > s.next_seq:
                out.problems.append(
                    Problem(
                        item.org_number,
                        ProblemKind.GAP,
                        item.envelope_id,
                        missing=(s.next_seq, item.sequence - 1),
                    )
                )
            missing = self._missing_invoices(s, item)
            if missing:
                out.problems.append(
                    Problem(
                        item.org_number,
                        ProblemKind.CREDIT_BEFORE_INVOICE,
                        item.envelope_id,
                        invoice_ids=missing,
                    )
                )
            self._load(s, item, out, late=item.sequence < s.next_seq)
            s.next_seq = max(s.next_seq, item.sequence + 1)
        self._drain(s, out)


class Ledger:
    """Loads the store's envelopes in order; ``await open()``, ``start()``, ``await close()``."""

    def __init__(
        self,
        store: EnvelopeStore,
        *,
        gap_timeout: float = DEFAULT_GAP_TIMEOUT,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        if (
            not isinstance(gap_timeout, int | float)
            or not math.isfinite(gap_timeout)
            or (gap_timeout < 0)
        ):
            raise ConfigError(
                f"gap timeout {gap_timeout!r} is not a number of seconds",
                hint="give a gap timeout of 0 or more seconds (0: never hold a message)",
            )
        self.gap_timeout = float(gap_timeout)
        self._store = store
        self._clock = clock
        self._history = _TableHistory()
        self._sequencer = Sequencer(round(gap_timeout * 1000), self._history)
        self._timer: asyncio.Task[None] | None = None
        self._open = False

    @property
    def held(self) -> int:
        """How many stored messages wait to load."""
        return self._sequencer.held

    async def open(self) -> None:
        """Create the ledger's tables and rebuild the held messages from the store."""
        next_seqs, items = await self._store.call(_open_sync)
        for org, next_seq in next_seqs.items():
            self._sequencer.restore(org, next_seq=next_seq)
        self._open = True

        def rebuild(now: int) -> Batch:
            batch = Batch()
            for item in items:
                batch.extend(self._sequencer.offer(item, now))
            batch.extend(self._sequencer.expire(now))
            return batch

        await self._step(rebuild)
        if items:
            log.info(
                "ledger rebuilt: %d stored message(s) picked up, %d held", len(items), self.held
            )

    def start(self) -> None:
        """Start the task that loads held messages when their wait runs out."""
        if self._timer is None:
            self._timer = asyncio.create_task(self._tick(), name="ledger-gap-timer")

    async def close(self) -> None:
        """Stop the timer; held messages stay stored and are picked up on the next open."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        self._open = False

    async def receive(self, envelope: Envelope, raw: bytes, received_at_ms: int) -> Receipt:
        """Store ``envelope`` once and, if it is new, load it (and what it unblocks) or hold it.

        One trip to the store's thread and one transaction: the envelope, its
        arrival and what the ledger decided are committed together.
        """
        receipt, batch = await self._store.call(
            lambda db: self._receive_sync(db, envelope, raw, received_at_ms)
        )
        self._log(batch)
        return receipt

    def _receive_sync(
        self, db: sqlite3.Connection, envelope: Envelope, raw: bytes, received_at_ms: int
    ) -> tuple[Receipt, Batch]:
        with db:
            db.execute("BEGIN IMMEDIATE")
            receipt = store_rows(db, envelope, raw, received_at_ms)
            if receipt.status is not ReceiptStatus.ACCEPTED or not self._open:
                # Closing: a new envelope stays stored and loads on the next open.
                return receipt, Batch()
            now = self._clock()
            with self._history.step(db):
                batch = self._sequencer.offer(Item.of(envelope, received_at_ms), now)
            write_rows(db, batch, now)
        return receipt, batch

    async def expire(self) -> None:
        """Load what has waited the gap timeout (the timer calls this)."""
        await self._step(self._sequencer.expire)

    async def _step(self, decide: Callable[[int], Batch]) -> None:
        """Run one sequencer step and write what it decided, on the store's thread."""

        def step(db: sqlite3.Connection) -> Batch:
            now = self._clock()
            with self._history.step(db):
                batch = decide(now)
            if batch.loads or batch.problems:
                with db:
                    db.execute("BEGIN IMMEDIATE")
                    write_rows(db, batch, now)
            return batch

        self._log(await self._store.call(step))

    async def _tick(self) -> None:
        interval = min(0.1, max(0.01, self.gap_timeout / 10))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.expire()
            except Exception:  # keep the timer alive; the message stays stored
                log.exception("ledger: loading held messages failed")

    @staticmethod
    def _log(batch: Batch) -> None:
        for dup in batch.duplicates:
            log.info(
                "ledger duplicate message_id=%s envelope_id=%s org=%s not loaded again",
                dup.message_id,
                dup.envelope_id,
                dup.org_number,
            )
        for p in batch.problems:
            log.warning(
                "ledger %s org=%s envelope_id=%s missing=%s invoices=%s",
                p.kind,
                p.org_number,
                p.envelope_id,
                f"{p.missing[0]}-{p.missing[1]}" if p.missing else "",
                ",".join(p.invoice_ids),
            )
        if log.isEnabledFor(logging.DEBUG):
            for load in batch.loads:
                log.debug(
                    "loaded message_id=%s org=%s seq=%d late=%s",
                    load.item.message_id,
                    load.item.org_number,
                    load.item.sequence,
                    load.late,
                )


class _TableHistory:
    """The Ledger's History: the ledger table, plus the loads of the step being decided.

    Used only on the store's thread, during :meth:`step`; a step's loads are
    written right after it (write_rows), in the same transaction when it stores.
    """

    def __init__(self) -> None:
        self._db: sqlite3.Connection | None = None
        self._pending = MemoryHistory()

    @contextlib.contextmanager
    def step(self, db: sqlite3.Connection) -> Iterator[None]:
        self._db, self._pending = db, MemoryHistory()
        try:
            yield
        finally:
            self._db = None

    def _row(self, sql: str, *args: str) -> bool:
        assert self._db is not None, "History used outside a step"
        return self._db.execute(sql, args).fetchone() is not None

    def loaded(self, org_number: str, message_id: str) -> bool:
        return self._pending.loaded(org_number, message_id) or self._row(
            "SELECT 1 FROM ledger WHERE org_number = ? AND message_id = ? LIMIT 1",
            org_number,
            message_id,
        )

    def invoice_loaded(self, org_number: str, invoice_id: str) -> bool:
        return self._pending.invoice_loaded(org_number, invoice_id) or self._row(
            "SELECT 1 FROM ledger WHERE org_number = ? AND document_id = ? "
            "AND message_type = ? LIMIT 1",
            org_number,
            invoice_id,
            MessageType.SJALVFAKTURA.value,
        )

    def record(self, load: Load) -> None:
        self._pending.record(load)


def _open_sync(db: sqlite3.Connection) -> tuple[dict[str, int], list[Item]]:
    db.executescript(LEDGER_SCHEMA)
    rows = db.execute("SELECT org_number, MAX(sequence) FROM ledger GROUP BY org_number")
    next_seqs = {str(org): int(top) + 1 for org, top in rows}
    items = []
    unloaded = db.execute(
        "SELECT e.envelope_id, e.envelope, e.received_at_ms FROM envelopes e "
        "WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.envelope_id = e.envelope_id) "
        "ORDER BY e.received_at_ms, e.rowid"
    )
    for envelope_id, raw, received_at_ms in unloaded:
        try:
            envelope = from_xml(parse_xml(bytes(raw), max_bytes=len(raw) + 1))
        except B2BSimError as exc:
            log.error("ledger: stored envelope %s cannot be read again: %s", envelope_id, exc)
            continue
        items.append(Item.of(envelope, int(received_at_ms)))
    return next_seqs, items


def write_rows(db: sqlite3.Connection, batch: Batch, now: int) -> None:
    """Write ``batch``'s loads and problems, in the caller's transaction."""
    if batch.loads:
        db.executemany(
            "INSERT OR IGNORE INTO ledger (org_number, envelope_id, message_id, message_type, "
            "document_id, produced_at_ms, sequence, received_at_ms, loaded_at_ms, late) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    ld.item.org_number,
                    ld.item.envelope_id,
                    ld.item.message_id,
                    ld.item.message_type.value,
                    ld.item.document_id,
                    ld.item.produced_at_ms,
                    ld.item.sequence,
                    ld.item.received_at_ms,
                    now,
                    int(ld.late),
                )
                for ld in batch.loads
            ],
        )
    if batch.problems:
        db.executemany(
            "INSERT INTO gaps (org_number, kind, first_missing, last_missing, invoice_ids, "
            "envelope_id, detected_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    p.org_number,
                    p.kind.value,
                    p.missing[0] if p.missing else None,
                    p.missing[1] if p.missing else None,
                    " ".join(p.invoice_ids) or None,
                    p.envelope_id,
                    now,
                )
                for p in batch.problems
            ],
        )
