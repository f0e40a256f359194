"""Tests of supplier_stub.ledger: loading in the producer's order, holds, gaps, restarts.

The ledger runs with an injected clock (milliseconds set by the test) and a
real SQLite store in a temporary directory; the ordering rules alone are
tested in test_sequencer.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from simulator.runs.reconcile import out_of_order_rows, reconcile
from simulator.runs.stub_records import loaded_messages
from simulator.vocabulary.envelope import Envelope, to_xml
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.messages import MessageMeta, MessageType
from simulator.vocabulary.xmlsafe import parse_xml, serialize
from supplier_stub.ledger import Ledger
from supplier_stub.store import EnvelopeStore, ReceiptStatus

ORG = "5560000001"
OTHER = "5560000019"
CERT = "ab" * 32
URL = "https://127.0.0.1:9443/b2b/envelopes"
T0 = 1_700_000_000_000
_NS = (
    'xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2" '
    'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"'
)


def order_doc(doc_id: str) -> bytes:
    """A minimal UBL Order with the id ``doc_id``."""
    return (
        f'<Order xmlns="urn:oasis:names:specification:ubl:schema:xsd:Order-2" {_NS}>'
        f"<cbc:ID>{doc_id}</cbc:ID></Order>"
    ).encode()


def invoice_doc(doc_id: str) -> bytes:
    """A minimal UBL Invoice with the id ``doc_id``."""
    return (
        f'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" {_NS}>'
        f"<cbc:ID>{doc_id}</cbc:ID></Invoice>"
    ).encode()


def credit_doc(doc_id: str, *invoices: str) -> bytes:
    """A minimal UBL CreditNote with the id ``doc_id`` crediting ``invoices``."""
    refs = "".join(
        "<cac:BillingReference><cac:InvoiceDocumentReference>"
        f"<cbc:ID>{inv}</cbc:ID><cbc:IssueDate>2024-01-01</cbc:IssueDate>"
        "</cac:InvoiceDocumentReference></cac:BillingReference>"
        for inv in invoices
    )
    return (
        f'<CreditNote xmlns="urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2" {_NS}>'
        f"<cbc:ID>{doc_id}</cbc:ID><cac:OrderReference><cbc:ID>O-1</cbc:ID>"
        f"</cac:OrderReference>{refs}</CreditNote>"
    ).encode()


def envelope(
    seq: int,
    *,
    org: str = ORG,
    kind: MessageType = MessageType.INKOPSORDER,
    document: bytes | None = None,
    message_id: str | None = None,
) -> Envelope:
    """Supplier ``org``'s message number ``seq``, produced at T0 + seq ms."""
    return Envelope.create(
        MessageMeta.new(
            kind, org, seq, produced_at_ms=T0 + seq, message_id=message_id or f"{org}-m{seq}"
        ),
        document if document is not None else order_doc(f"O-{seq}"),
        receiver_cert_sha256=CERT,
        receiver_url=URL,
    )


class Clock:
    """A clock the test moves by hand (epoch ms)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """All rows of ``sql`` on the database at ``db``."""
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EnvelopeStore]:
    """An open store in a fresh directory."""
    s = EnvelopeStore(tmp_path / "stub.sqlite")
    await s.open()
    yield s
    await s.close()


async def deliver(ledger: Ledger, env: Envelope, at_ms: int) -> None:
    """Hand ``env`` to the ledger as the app does: stored once, loaded or held if new."""
    await ledger.receive(env, serialize(to_xml(env)), at_ms)


@contextlib.asynccontextmanager
async def opened_ledger(path: Path, clock: Clock) -> AsyncIterator[Ledger]:
    """A ledger (gap timeout 5 s) over the store at ``path``, closed with its store after."""
    store = EnvelopeStore(path)
    await store.open()
    try:
        ledger = Ledger(store, gap_timeout=5, clock=clock)
        await ledger.open()
        yield ledger
        await ledger.close()
    finally:
        await store.close()


class TestLedger:
    """The ledger's tables in the store's SQLite file."""

    async def test_loads_are_rows_in_order(self, store: EnvelopeStore) -> None:
        """3,1,2 arriving gives ledger rows 1,2,3; 2 and 3 load when 2 arrives."""
        clock = Clock()
        ledger = Ledger(store, gap_timeout=5, clock=clock)
        await ledger.open()
        for n in (3, 1, 2):
            clock.now += 1
            await deliver(ledger, envelope(n), clock.now)
        assert rows(
            store.path,
            "SELECT sequence, message_id, document_id, late FROM ledger ORDER BY position",
        ) == [(1, f"{ORG}-m1", "O-1", 0), (2, f"{ORG}-m2", "O-2", 0), (3, f"{ORG}-m3", "O-3", 0)]
        assert rows(store.path, "SELECT loaded_at_ms FROM ledger ORDER BY position") == [
            (T0 + 2,),
            (T0 + 3,),
            (T0 + 3,),
        ]

    async def test_gap_is_recorded_and_late_marked(self, store: EnvelopeStore) -> None:
        """A gap row is written at the timeout; the late message's row says late."""
        clock = Clock()
        ledger = Ledger(store, gap_timeout=5, clock=clock)
        await ledger.open()
        await deliver(ledger, envelope(1), clock.now)
        await deliver(ledger, envelope(3), clock.now)
        clock.now += 5_000
        await ledger.expire()
        assert rows(
            store.path,
            "SELECT org_number, kind, first_missing, last_missing, detected_at_ms FROM gaps",
        ) == [(ORG, "gap", 2, 2, T0 + 5_000)]
        await deliver(ledger, envelope(2), clock.now)
        assert rows(store.path, "SELECT sequence, late FROM ledger ORDER BY position") == [
            (1, 0),
            (3, 0),
            (2, 1),
        ]

    async def test_restart_rebuilds_held_state(self, tmp_path: Path) -> None:
        """Held messages survive a restart: the missing one then releases them, once each."""
        path = tmp_path / "stub.sqlite"
        clock = Clock()
        first = EnvelopeStore(path)
        await first.open()
        ledger = Ledger(first, gap_timeout=5, clock=clock)
        await ledger.open()
        for n in (1, 3, 4):
            await deliver(ledger, envelope(n), clock.now)
        assert ledger.held == 2
        await ledger.close()
        await first.close()

        second = EnvelopeStore(path)
        await second.open()
        try:
            again = Ledger(second, gap_timeout=5, clock=clock)
            await again.open()
            assert again.held == 2
            await deliver(again, envelope(2), clock.now)
            assert again.held == 0
            await again.close()
        finally:
            await second.close()
        assert rows(path, "SELECT sequence FROM ledger ORDER BY position") == [
            (1,),
            (2,),
            (3,),
            (4,),
        ]
        assert rows(path, "SELECT count(*) FROM gaps") == [(0,)]

    async def test_restart_loads_what_is_overdue(self, tmp_path: Path) -> None:
        """A held message whose wait ran out while the stub was down loads on open."""
        path = tmp_path / "stub.sqlite"
        clock = Clock()
        first = EnvelopeStore(path)
        await first.open()
        ledger = Ledger(first, gap_timeout=5, clock=clock)
        await ledger.open()
        await deliver(ledger, envelope(2), clock.now)
        await ledger.close()
        await first.close()
        clock.now += 60_000
        second = EnvelopeStore(path)
        await second.open()
        try:
            again = Ledger(second, gap_timeout=5, clock=clock)
            await again.open()
            await again.close()
        finally:
            await second.close()
        assert rows(path, "SELECT sequence FROM ledger") == [(2,)]
        assert rows(path, "SELECT first_missing, last_missing FROM gaps") == [(1, 1)]

    async def test_stored_but_unoffered_is_picked_up(self, store: EnvelopeStore) -> None:
        """An envelope stored without reaching the ledger (a crash) loads on the next open."""
        await store.store(envelope(1), serialize(to_xml(envelope(1))), T0)
        ledger = Ledger(store, gap_timeout=5, clock=Clock())
        await ledger.open()
        assert rows(store.path, "SELECT sequence FROM ledger") == [(1,)]

    async def test_reopen_never_loads_twice(self, store: EnvelopeStore) -> None:
        """Opening the ledger again over a loaded store adds no rows."""
        clock = Clock()
        ledger = Ledger(store, gap_timeout=5, clock=clock)
        await ledger.open()
        await deliver(ledger, envelope(1), clock.now)
        await ledger.close()
        await Ledger(store, gap_timeout=5, clock=clock).open()
        assert rows(store.path, "SELECT count(*) FROM ledger") == [(1,)]

    async def test_same_message_in_two_envelopes_loads_once(self, store: EnvelopeStore) -> None:
        """Two envelopes with one KA message id give one ledger row."""
        clock = Clock()
        ledger = Ledger(store, gap_timeout=5, clock=clock)
        await ledger.open()
        await deliver(ledger, envelope(1), clock.now)
        await deliver(ledger, envelope(1), clock.now)  # new envelope id, same message
        await deliver(ledger, envelope(1), clock.now)
        assert rows(store.path, "SELECT count(*) FROM envelopes") == [(3,)]
        assert rows(store.path, "SELECT count(*) FROM ledger") == [(1,)]

    async def test_envelope_id_is_unique_in_the_ledger(self, store: EnvelopeStore) -> None:
        """The database itself refuses a second ledger row for an envelope."""
        ledger = Ledger(store, gap_timeout=5, clock=Clock())
        await ledger.open()
        await deliver(ledger, envelope(1), T0)
        with pytest.raises(sqlite3.IntegrityError):
            await store.call(
                lambda db: db.execute(
                    "INSERT INTO ledger (org_number, envelope_id, message_id, message_type, "
                    "document_id, produced_at_ms, sequence, received_at_ms, loaded_at_ms, late) "
                    "SELECT org_number, envelope_id, 'x', message_type, document_id, "
                    "produced_at_ms, sequence, received_at_ms, loaded_at_ms, late FROM ledger"
                )
            )

    async def test_credit_problem_is_recorded(self, store: EnvelopeStore) -> None:
        """A credit loaded without its invoice writes a credit_before_invoice row."""
        clock = Clock()
        ledger = Ledger(store, gap_timeout=5, clock=clock)
        await ledger.open()
        credit = envelope(1, kind=MessageType.KREDIT, document=credit_doc("K-1", "F-7"))
        await deliver(ledger, credit, clock.now)
        assert rows(store.path, "SELECT count(*) FROM ledger") == [(0,)]
        clock.now += 5_000
        await ledger.expire()
        assert rows(store.path, "SELECT kind, invoice_ids, envelope_id FROM gaps") == [
            ("credit_before_invoice", "F-7", credit.envelope_id)
        ]

    async def test_timer_loads_held_messages(self, store: EnvelopeStore) -> None:
        """With the timer started, a held message loads by itself after a short timeout."""
        ledger = Ledger(store, gap_timeout=0.02)
        await ledger.open()
        ledger.start()
        try:
            await deliver(ledger, envelope(2), T0)  # received long ago: due now
            for _ in range(400):  # the timer ticks every 10 ms here: 2 s is ample
                if not ledger.held:
                    break
                await asyncio.sleep(0.005)
        finally:
            await ledger.close()
        assert rows(store.path, "SELECT sequence FROM ledger") == [(2,)]

    async def test_receive_stores_and_loads_together(self, store: EnvelopeStore) -> None:
        """receive() stores a new envelope and loads it; the same envelope again adds nothing."""
        clock = Clock()
        ledger = Ledger(store, gap_timeout=5, clock=clock)
        await ledger.open()
        env = envelope(1)
        first = await ledger.receive(env, serialize(to_xml(env)), clock.now)
        again = await ledger.receive(env, serialize(to_xml(env)), clock.now + 1)
        assert (first.status, again.status) == (ReceiptStatus.ACCEPTED, ReceiptStatus.DUPLICATE)
        assert rows(store.path, "SELECT count(*) FROM envelopes") == [(1,)]
        assert rows(store.path, "SELECT sequence FROM ledger") == [(1,)]
        assert rows(store.path, "SELECT outcome FROM arrivals ORDER BY id") == [
            ("accepted",),
            ("duplicate",),
        ]

    async def test_arrivals_while_the_store_is_busy_share_one_transaction(
        self, store: EnvelopeStore
    ) -> None:
        """Group commit: five envelopes arriving while the store's thread is busy are stored
        and loaded in one transaction, in order; each is answered once it is committed."""
        ledger = Ledger(store, gap_timeout=5, clock=Clock())
        await ledger.open()
        statements: list[str] = []
        await store.call(lambda db: db.set_trace_callback(statements.append))
        free = threading.Event()
        busy = store.call(lambda _db: free.wait(10))
        committed: list[int] = []

        async def one(n: int) -> None:
            env = envelope(n)
            await ledger.receive(env, serialize(to_xml(env)), T0)
            committed.append(rows(store.path, "SELECT count(*) FROM ledger")[0][0])

        waiting = [asyncio.ensure_future(one(n)) for n in (5, 3, 1, 2, 4)]
        await asyncio.sleep(0.01)
        free.set()
        await busy
        await asyncio.gather(*waiting)
        await store.call(lambda db: db.set_trace_callback(None))
        assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == [
            "BEGIN IMMEDIATE",
            "COMMIT",
        ]
        assert committed == [5] * 5  # seen from another connection by the time each returns
        assert rows(store.path, "SELECT sequence FROM ledger ORDER BY position") == [
            (n,) for n in range(1, 6)
        ]

    async def test_receive_reads_the_document_tree_it_is_given(self, store: EnvelopeStore) -> None:
        """receive(document=tree) takes the document's ids from the tree handed over."""
        ledger = Ledger(store, gap_timeout=5, clock=Clock())
        await ledger.open()
        env = envelope(1, kind=MessageType.SJALVFAKTURA, document=invoice_doc("F-1"))
        tree = parse_xml(invoice_doc("F-from-the-tree"))
        await ledger.receive(env, serialize(to_xml(env)), T0, document=tree)
        assert rows(store.path, "SELECT document_id FROM ledger") == [("F-from-the-tree",)]

    async def test_restart_reads_ids_from_the_stored_envelopes(self, tmp_path: Path) -> None:
        """A credit held for its invoice over a restart still waits for it, then times out."""
        path = tmp_path / "stub.sqlite"
        clock = Clock()
        credit = envelope(1, kind=MessageType.KREDIT, document=credit_doc("K-1", "F-0"))
        async with opened_ledger(path, clock) as ledger:
            await ledger.receive(credit, serialize(to_xml(credit)), clock.now)
            assert ledger.held == 1
        async with opened_ledger(path, clock) as again:
            assert again.held == 1  # rebuilt from the stored envelope: it credits F-0
            clock.now += 5_000
            await again.expire()
            assert again.held == 0
        assert rows(path, "SELECT document_id FROM ledger") == [("K-1",)]
        assert rows(path, "SELECT kind, invoice_ids FROM gaps") == [
            ("credit_before_invoice", "F-0")
        ]

    async def test_after_restart_loaded_messages_are_known_from_the_table(
        self, tmp_path: Path
    ) -> None:
        """After a restart a replayed old message loads no second time, and a credit for
        an invoice loaded before the restart loads at once: both answered by the ledger table."""
        path = tmp_path / "stub.sqlite"
        clock = Clock()
        async with opened_ledger(path, clock) as ledger:
            invoice = envelope(1, kind=MessageType.SJALVFAKTURA, document=invoice_doc("F-1"))
            for env in (invoice, envelope(2)):
                await ledger.receive(env, serialize(to_xml(env)), clock.now)
        async with opened_ledger(path, clock) as again:
            replay = envelope(2)  # a new envelope id for message 2
            credit = envelope(3, kind=MessageType.KREDIT, document=credit_doc("K-1", "F-1"))
            for env in (replay, credit):
                await again.receive(env, serialize(to_xml(env)), clock.now)
            assert again.held == 0
        assert rows(path, "SELECT sequence FROM ledger ORDER BY position") == [(1,), (2,), (3,)]
        assert rows(path, "SELECT count(*) FROM envelopes") == [(4,)]

    @pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
    async def test_bad_gap_timeout_is_a_config_error(
        self, store: EnvelopeStore, bad: float
    ) -> None:
        """A negative or non-finite gap timeout is refused with a ConfigError."""
        with pytest.raises(ConfigError, match="gap timeout"):
            Ledger(store, gap_timeout=bad)


class TestReconcileReadsLedger:
    """simulator.runs.reconcile counts what the ledger loaded."""

    def test_out_of_order_rows(self) -> None:
        """Rows below an earlier-loaded row of the same supplier count; other suppliers not."""
        loaded = [
            ("a", ORG, T0 + 1, 1),
            ("c", ORG, T0 + 3, 3),
            ("b", ORG, T0 + 2, 2),
            ("x", OTHER, T0 + 1, 1),
            ("d", ORG, T0 + 4, 4),
        ]
        assert out_of_order_rows(loaded) == 1

    async def test_figures_from_a_ledger(self, store: EnvelopeStore, tmp_path: Path) -> None:
        """ingested, lost, double_ingested and out_of_order come from the ledger rows."""
        clock = Clock()
        ledger = Ledger(store, gap_timeout=5, clock=clock)
        await ledger.open()
        await deliver(ledger, envelope(1), clock.now)
        await deliver(ledger, envelope(3), clock.now)
        clock.now += 5_000
        await ledger.expire()
        await deliver(ledger, envelope(2), clock.now)
        await deliver(ledger, envelope(5), clock.now)  # held: not loaded
        produced = tmp_path / "produced.jsonl"
        produced.write_text("".join(f'{{"message_id": "{ORG}-m{n}"}}\n' for n in range(1, 6)))
        assert [m for m, *_ in loaded_messages(store.path)] == [
            f"{ORG}-m1",
            f"{ORG}-m3",
            f"{ORG}-m2",
        ]
        figures = reconcile(produced, [tmp_path / "icc.jsonl"], store.path)
        assert (figures.ingested, figures.lost, figures.double_ingested) == (3, 2, 0)
        assert figures.out_of_order == 1
        assert figures.lost_ids == [f"{ORG}-m4", f"{ORG}-m5"]
