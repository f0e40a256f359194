"""The supplier's ledger: stored envelopes loaded in the producer's order.

The stub does what the AF description asks of a supplier: it sorts each
supplier's messages back into KA's order before loading them.  The ordering
rules are :mod:`supplier_stub.sequencer`'s (a message waits for its
predecessor, a credit note for its invoice, nothing longer than
``gap_timeout``); :class:`Ledger` persists what the sequencer decides in the
store's SQLite file (loads in ``ledger``, problems in ``gaps``) and, after a
restart, rebuilds the held messages from the stored envelopes that were
never loaded.  Its sequencer runs on the store's one thread, so that storing
an envelope and loading it is one trip there and one transaction; what has
loaded is looked up in the ledger table, not kept in memory.  docs/supplier.md
explains it for supplier developers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import threading
from collections.abc import Callable, Iterator

from lxml import etree

from simulator.vocabulary.envelope import Envelope, parse_envelope
from simulator.vocabulary.errors import B2BSimError, ConfigError
from simulator.vocabulary.messages import MessageType, now_ms
from simulator.vocabulary.xmlsafe import parse_xml
from supplier_stub.sequencer import Batch, Item, Load, MemoryHistory, Sequencer
from supplier_stub.store import EnvelopeStore, Receipt, ReceiptStatus, store_rows

__all__ = ["DEFAULT_GAP_TIMEOUT", "LEDGER_SCHEMA", "Ledger"]

log = logging.getLogger(__name__)

#: An envelope waiting for the store's thread, and what became of it there.
_Arrival = tuple[Envelope, bytes, Item]
_Outcome = tuple[Receipt, Batch] | Exception

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
        # Group commit: envelopes waiting for the store's thread, and the call that takes them.
        self._arrivals_lock = threading.Lock()
        self._arrivals: list[_Arrival] = []
        self._job: asyncio.Future[list[_Outcome]] | None = None

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

    async def receive(
        self,
        envelope: Envelope,
        raw: bytes,
        received_at_ms: int,
        *,
        document: etree._Element | None = None,
    ) -> Receipt:
        """Store ``envelope`` once and, if it is new, load it (and what it unblocks) or hold it.

        One trip to the store's thread and one transaction
        (:meth:`_store_and_load`), shared with the envelopes that arrive
        while the thread is busy (group commit: :meth:`_commit_arrivals`);
        each is answered only after the transaction that holds it committed.
        ``document``: the envelope's document as parsed when the envelope was
        opened (:meth:`~simulator.vocabulary.signing.EnvelopeVerifier.open_parsed`),
        so that it is not parsed again; without it, it is parsed here.
        """
        item = Item.of(envelope, received_at_ms, document)
        with self._arrivals_lock:
            index = len(self._arrivals)
            self._arrivals.append((envelope, raw, item))
            job = self._job
            if job is None:  # no call queued that has not yet taken the arrivals: queue one
                job = self._job = self._store.call(self._commit_arrivals)
        # Shielded: a cancelled request must not cancel the others' shared call.
        outcome = (await asyncio.shield(job))[index]
        if isinstance(outcome, BaseException):
            raise outcome
        receipt, batch = outcome
        self._log(batch)
        return receipt

    def _commit_arrivals(self, db: sqlite3.Connection) -> list[_Outcome]:
        """On the store's thread: take every arrival so far, store and load them in one
        transaction; if that fails (a full disk), each again in its own, as if alone."""
        with self._arrivals_lock:
            arrivals, self._arrivals, self._job = self._arrivals, [], None
        if len(arrivals) > 1:
            try:
                return list(self._store_and_load_all(db, arrivals))
            except Exception:  # rolled back, the sequencer's step undone: nothing happened
                log.debug("group commit of %d failed; one by one", len(arrivals), exc_info=True)
        outcomes: list[_Outcome] = []
        for arrival in arrivals:
            try:
                outcomes.append(self._store_and_load_all(db, [arrival])[0])
            except Exception as exc:  # this one only: the ICC retries it
                outcomes.append(exc)
        return outcomes

    def _store_and_load_all(
        self, db: sqlite3.Connection, arrivals: list[_Arrival]
    ) -> list[tuple[Receipt, Batch]]:
        """In one transaction: store each envelope once by id, offer it, write what loads.

        The envelopes, their arrivals and what the ledger decided are committed
        together (or not at all): if the transaction fails (a full disk), the
        sequencer's step is undone too, so the ICC's retry finds it as before.
        """
        done: list[tuple[Receipt, Batch]] = []
        with self._sequencer.step(), db:  # the COMMIT is inside the sequencer's step
            db.execute("BEGIN IMMEDIATE")
            for envelope, raw, item in arrivals:
                done.append(self._store_and_load(db, envelope, raw, item))
        return done

    def _store_and_load(
        self, db: sqlite3.Connection, envelope: Envelope, raw: bytes, item: Item
    ) -> tuple[Receipt, Batch]:
        """Store one envelope once by id and, if new, offer it and write what loads
        (in the caller's transaction and sequencer step)."""
        receipt = store_rows(db, envelope, raw, item.received_at_ms)
        if receipt.status is not ReceiptStatus.ACCEPTED or not self._open:
            # Known already; or closing: a new envelope stays stored, loads on the next open.
            return receipt, Batch()
        now = self._clock()
        with self._history.step(db):
            batch = self._sequencer.offer(item, now)
        write_rows(db, batch, now)
        return receipt, batch

    async def expire(self) -> None:
        """Load what has waited the gap timeout (the timer calls this)."""
        await self._step(self._sequencer.expire)

    async def _step(self, decide: Callable[[int], Batch]) -> None:
        """Run one sequencer step and write what it decided, on the store's thread.

        All or nothing: if writing fails, the sequencer's step is undone (what
        was due stays held, to load at the next tick).
        """

        def step(db: sqlite3.Connection) -> Batch:
            now = self._clock()
            with self._sequencer.step():
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
        failing = False  # said once when it starts failing (a full disk), once when it recovers
        while True:
            await asyncio.sleep(interval)
            try:
                await self.expire()
            except Exception as exc:  # keep the timer alive; what was due stays held
                if not failing:
                    log.error(
                        "ledger: loading held messages failed (%s); they stay held and stored, "
                        "retried every %g s: free disk space if the disk is full",
                        exc,
                        interval,
                        exc_info=not isinstance(exc, sqlite3.Error),
                    )
                failing = True
            else:
                if failing:
                    log.info("ledger: loading held messages works again")
                failing = False

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
            parsed = parse_envelope(parse_xml(bytes(raw), max_bytes=len(raw) + 1))
        except B2BSimError as exc:
            log.error("ledger: stored envelope %s cannot be read again: %s", envelope_id, exc)
            continue
        items.append(Item.of(parsed.envelope, int(received_at_ms), parsed.document))
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
