"""Tests of supplier_stub.ledger when SQLite fails: a failed step leaves no trace.

A full disk (or any SQLite error) inside the store-and-load transaction, or
inside the gap timer's write, rolls the transaction back; the sequencer's step
must be undone with it, so that when the ICC retries the same envelope (or the
timer ticks again) the ledger ends exactly as if the failed attempt had never
happened: in order, nothing ``late``, no gap rows that are not real.

Errors are injected by a connection wrapper that raises at a chosen statement
(or at the COMMIT), and for real by ``PRAGMA max_page_count`` (SQLITE_FULL).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import pytest

from simulator.vocabulary.envelope import Envelope, to_xml
from simulator.vocabulary.messages import MessageMeta, MessageType, now_ms
from simulator.vocabulary.xmlsafe import serialize
from supplier_stub.ledger import Ledger
from supplier_stub.store import EnvelopeStore, ReceiptStatus

T = TypeVar("T")
P = ParamSpec("P")

ORG = "5560000001"
CERT = "ab" * 32
URL = "https://127.0.0.1:9443/b2b/envelopes"
T0 = 1_700_000_000_000
FULL = "database or disk is full"
_NS = (
    'xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2" '
    'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"'
)


def document(kind: MessageType, doc_id: str, credits: str = "") -> bytes:
    """A minimal UBL document of ``kind``; a credit note credits the invoice ``credits``."""
    root = {
        MessageType.INKOPSORDER: "Order",
        MessageType.SJALVFAKTURA: "Invoice",
        MessageType.KREDIT: "CreditNote",
    }[kind]
    refs = ""
    if kind is MessageType.KREDIT:
        refs = (
            "<cac:OrderReference><cbc:ID>O-1</cbc:ID></cac:OrderReference>"
            "<cac:BillingReference><cac:InvoiceDocumentReference>"
            f"<cbc:ID>{credits}</cbc:ID><cbc:IssueDate>2024-01-01</cbc:IssueDate>"
            "</cac:InvoiceDocumentReference></cac:BillingReference>"
        )
    ns = f"urn:oasis:names:specification:ubl:schema:xsd:{root}-2"
    return f'<{root} xmlns="{ns}" {_NS}><cbc:ID>{doc_id}</cbc:ID>{refs}</{root}>'.encode()


def envelope(seq: int, kind: MessageType = MessageType.INKOPSORDER, credits: str = "") -> Envelope:
    """Message number ``seq`` of ORG, produced at T0 + seq ms."""
    prefix = {MessageType.INKOPSORDER: "O", MessageType.SJALVFAKTURA: "F"}.get(kind, "K")
    return Envelope.create(
        MessageMeta.new(kind, ORG, seq, produced_at_ms=T0 + seq, message_id=f"m{seq}"),
        document(kind, f"{prefix}-{seq}", credits),
        receiver_cert_sha256=CERT,
        receiver_url=URL,
    )


class Clock:
    """A clock the test moves by hand (epoch ms)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@dataclass
class Fault:
    """Raise SQLITE_FULL at the first ``times`` statements matching ``pattern`` (None: every
    one); the pattern "COMMIT" means the commit."""

    pattern: str
    times: int | None = 1
    struck: int = 0

    def strikes(self, sql: str) -> bool:
        if (self.times is not None and self.struck >= self.times) or not re.search(
            self.pattern, sql
        ):
            return False
        self.struck += 1
        return True


class FaultyConnection:
    """A sqlite3 connection that fails where its fault says; otherwise the real one."""

    def __init__(self, db: sqlite3.Connection, fault: Fault | None) -> None:
        self._db = db
        self._fault = fault

    def _check(self, sql: str) -> None:
        if self._fault is not None and self._fault.strikes(sql):
            raise sqlite3.OperationalError(FULL)

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        self._check(sql)
        return self._db.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        self._check(sql)
        return self._db.executemany(sql, rows)

    def executescript(self, script: str) -> sqlite3.Cursor:
        return self._db.executescript(script)

    def __enter__(self) -> FaultyConnection:
        self._db.__enter__()
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        if t is None and self._db.in_transaction:
            try:
                self._check("COMMIT")
            except sqlite3.OperationalError:
                self._db.rollback()  # as sqlite3 does when its COMMIT fails
                raise
        self._db.__exit__(t, v, tb)


class FaultyStore(EnvelopeStore):
    """An EnvelopeStore whose connection fails once where ``fault`` says."""

    fault: Fault | None = None

    def call(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Any:
        def faulty(db: sqlite3.Connection, *a: Any, **k: Any) -> T:
            return fn(FaultyConnection(db, self.fault), *a, **k)  # type: ignore[arg-type]

        return super().call(faulty, *args, **kwargs)


# A scenario is a list of steps: an envelope delivered, a wait (ms), or a tick of the timer.
Step = Envelope | int | str
EXPIRE = "expire"


async def play(
    path: Path, steps: list[Step], *, failing: int | None = None, fault: str = ""
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    """Run ``steps`` on a fresh ledger; step ``failing`` fails once at ``fault``, then is
    retried (the ICC sends the same envelope again; the timer ticks again).  Returns the
    ledger rows, the gap rows and how many messages are held at the end."""
    clock = Clock()
    store = FaultyStore(path)
    await store.open()
    try:
        ledger = Ledger(store, gap_timeout=5, clock=clock)
        await ledger.open()
        for i, step in enumerate(steps):
            attempts = 2 if i == failing else 1
            for attempt in range(attempts):
                store.fault = Fault(fault) if i == failing and attempt == 0 else None
                error = None
                try:
                    await run_step(ledger, clock, step)
                except sqlite3.OperationalError as exc:
                    error = str(exc)
                expected = FULL if i == failing and attempt == 0 else None
                assert error == expected, f"step {i}, attempt {attempt}, fault {fault!r}"
        held = ledger.held
        await ledger.close()
    finally:
        await store.close()
    return ledger_rows(path), gap_rows(path), held


async def run_step(ledger: Ledger, clock: Clock, step: Step) -> None:
    if isinstance(step, Envelope):
        await ledger.receive(step, serialize(to_xml(step)), clock.now)
    elif isinstance(step, int):
        clock.now += step
    else:
        await ledger.expire()


def ledger_rows(path: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(
            "SELECT sequence, message_id, envelope_id, received_at_ms, loaded_at_ms, late "
            "FROM ledger ORDER BY position"
        ).fetchall()


def gap_rows(path: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(
            "SELECT kind, first_missing, last_missing, invoice_ids, envelope_id, detected_at_ms "
            "FROM gaps ORDER BY id"
        ).fetchall()


INVOICE_1 = envelope(1, MessageType.SJALVFAKTURA)
CREDIT_2 = envelope(2, MessageType.KREDIT, credits="F-1")
CREDIT_3 = envelope(3, MessageType.KREDIT, credits="F-1")
E = {n: envelope(n) for n in range(1, 5)}
LEDGER_INSERT = r"^INSERT OR IGNORE INTO ledger"
GAP_INSERT = r"^INSERT INTO gaps"
INVOICE_LOOKUP = r"AND document_id = \?"

CASES: dict[str, tuple[list[Step], int, str]] = {
    # name: (steps, the step that fails once, where)
    "in order, load fails": ([E[1], E[2], E[3]], 1, LEDGER_INSERT),
    "in order, commit fails": ([E[1], E[2], E[3]], 1, "COMMIT"),
    "releases held, load fails": ([E[1], E[3], E[2], E[4]], 2, LEDGER_INSERT),
    "releases held, commit fails": ([E[1], E[3], E[2], E[4]], 2, "COMMIT"),
    "store fails": ([E[1], E[3], E[2], E[4]], 2, r"^INSERT INTO envelopes"),
    "arrival row fails": ([E[1], E[3], E[2], E[4]], 2, r"^INSERT INTO arrivals"),
    "invoice releases its credit, load fails": ([CREDIT_2, INVOICE_1], 1, LEDGER_INSERT),
    # 2 loads, then looking up credit 3's invoice fails half-way through the step
    "fails mid-decision": ([INVOICE_1, CREDIT_3, E[2]], 2, INVOICE_LOOKUP),
    "timer, gap row fails": ([E[1], E[3], 5_000, EXPIRE, E[2]], 3, GAP_INSERT),
    "timer, load fails": ([E[1], E[3], 5_000, EXPIRE, E[2]], 3, LEDGER_INSERT),
    "timer, commit fails": ([E[1], E[3], 5_000, EXPIRE, E[2]], 3, "COMMIT"),
    "timer, credit's gap row fails": ([CREDIT_2, 5_000, EXPIRE, INVOICE_1], 2, GAP_INSERT),
}


class TestFailedStepIsUndone:
    """With the fault gone, the retry leaves the ledger as if the failure never happened."""

    @pytest.mark.parametrize("case", CASES)
    async def test_retry_gives_the_ledger_of_a_run_without_the_fault(
        self, tmp_path: Path, case: str
    ) -> None:
        """Same ledger rows (order, late flags), same gap rows, nothing left held."""
        steps, failing, fault = CASES[case]
        expected = await play(tmp_path / "clean.sqlite", steps)
        got = await play(tmp_path / "faulty.sqlite", steps, failing=failing, fault=fault)
        assert got == expected
        rows, _, held = got
        assert held == 0
        assert {r[1] for r in rows} == {f"m{n}" for n in range(1, len(rows) + 1)}


class TestTimerOnAFullDisk:
    async def test_says_once_that_it_fails_and_once_that_it_works_again(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Ticks failing for a while log one error, not one per tick; then the held message
        loads with its gap row, and one line says so."""
        store = FaultyStore(tmp_path / "stub.sqlite")
        await store.open()
        ledger = Ledger(store, gap_timeout=0.02)
        await ledger.open()
        caplog.set_level(logging.INFO, logger="supplier_stub.ledger")
        try:
            await ledger.receive(E[2], serialize(to_xml(E[2])), now_ms())  # held for 20 ms
            assert ledger.held == 1
            store.fault = fault = Fault(GAP_INSERT, times=None)
            ledger.start()
            for _ in range(400):
                if fault.struck >= 5:
                    break
                await asyncio.sleep(0.005)
            assert fault.struck >= 5
            assert ledger.held == 1
            store.fault = None
            for _ in range(400):
                if not ledger.held:
                    break
                await asyncio.sleep(0.005)
            assert ledger.held == 0
        finally:
            await ledger.close()
            await store.close()
        said = [r for r in caplog.records if "loading held messages" in r.getMessage()]
        assert [r.levelno for r in said] == [logging.ERROR, logging.INFO]
        assert FULL in said[0].getMessage()
        assert not said[0].exc_info
        assert gap_rows(store.path)[0][:3] == ("gap", 1, 1)


async def page_limit(store: EnvelopeStore, limit: int | None) -> None:
    """Cap the database at its current size (a full disk), or lift the cap."""

    def cap(db: sqlite3.Connection) -> None:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages if limit is None else limit}")

    await store.call(cap)


async def max_pages(store: EnvelopeStore) -> int:
    return int((await store.call(lambda db: db.execute("PRAGMA max_page_count").fetchone()))[0])


class TestRealDiskFull:
    """SQLITE_FULL from SQLite itself: the database may not grow (PRAGMA max_page_count)."""

    async def test_timer_write_fails_then_loads_in_order(self, tmp_path: Path) -> None:
        """The timer's write fails on a full database; once space returns it writes the same."""
        held = [envelope(n) for n in range(3, 200)]
        steps: list[Step] = [E[1], *held, 5_000, EXPIRE]
        expected = await play(tmp_path / "clean.sqlite", steps)
        clock = Clock()
        store = EnvelopeStore(tmp_path / "full.sqlite")
        await store.open()
        try:
            ledger = Ledger(store, gap_timeout=5, clock=clock)
            await ledger.open()
            for step in steps[:-2]:
                await run_step(ledger, clock, step)
            unlimited = await max_pages(store)
            await page_limit(store, None)
            clock.now += 5_000
            with pytest.raises(sqlite3.OperationalError, match=FULL):
                await ledger.expire()
            await page_limit(store, unlimited)
            await ledger.expire()
            held_after = ledger.held
            await ledger.close()
        finally:
            await store.close()
        path = tmp_path / "full.sqlite"
        assert (ledger_rows(path), gap_rows(path), held_after) == expected
        assert [r[0] for r in expected[0]] == [1, *range(3, 200)]

    async def test_receive_fails_while_loading_then_retry_loads_in_order(
        self, tmp_path: Path
    ) -> None:
        """The envelope that releases 200 held ones is stored but their loads do not fit: the
        transaction fails; once space returns the ICC's retry loads all in order, none late."""
        held = [envelope(n) for n in range(2, 202)]
        steps: list[Step] = [*held, E[1]]
        expected = await play(tmp_path / "clean.sqlite", steps)
        clock = Clock()
        path = tmp_path / "full.sqlite"
        store = EnvelopeStore(path)
        await store.open()
        try:
            ledger = Ledger(store, gap_timeout=5, clock=clock)
            await ledger.open()
            for step in held:
                await run_step(ledger, clock, step)
            unlimited = await max_pages(store)
            await store.call(_free_pages, 8)  # room for the envelope, not for 201 loads
            await page_limit(store, None)
            statements: list[str] = []
            await store.call(lambda db: db.set_trace_callback(statements.append))
            with pytest.raises(sqlite3.OperationalError, match=FULL):
                await run_step(ledger, clock, E[1])
            await store.call(lambda db: db.set_trace_callback(None))
            # it failed where the sequencer had decided already: writing the loads
            assert any(s.startswith("INSERT INTO envelopes") for s in statements)
            assert statements[-1].startswith("INSERT OR IGNORE INTO ledger"), statements[-3:]
            await page_limit(store, unlimited)
            await run_step(ledger, clock, E[1])  # the ICC's retry
            held_after = ledger.held
            await ledger.close()
        finally:
            await store.close()
        assert (ledger_rows(path), gap_rows(path), held_after) == expected
        assert [(r[0], r[5]) for r in expected[0]] == [(n, 0) for n in range(1, 202)]


def _free_pages(db: sqlite3.Connection, pages: int) -> None:
    """Leave about ``pages`` free pages inside the file (what a dropped table leaves)."""
    size = db.execute("PRAGMA page_size").fetchone()[0]
    db.execute("CREATE TABLE ballast (b BLOB)")
    db.execute("INSERT INTO ballast VALUES (zeroblob(?))", ((pages - 1) * size,))
    db.execute("DROP TABLE ballast")


async def _busy(store: EnvelopeStore) -> tuple[asyncio.Future[Any], Any]:
    """Occupy the store's thread until the returned event is set (arrivals then wait)."""
    import threading

    free = threading.Event()
    busy = store.call(lambda _db: free.wait(10))
    return busy, free


class TestGroupCommit:
    """Envelopes arriving while the store's thread is busy share one transaction."""

    async def test_a_failed_group_is_tried_one_by_one(self, tmp_path: Path) -> None:
        """The group's transaction fails once: each envelope is then stored alone, all load."""
        store = FaultyStore(tmp_path / "stub.sqlite")
        await store.open()
        try:
            ledger = Ledger(store, gap_timeout=5, clock=Clock())
            await ledger.open()
            busy, free = await _busy(store)
            store.fault = Fault(r"^INSERT INTO arrivals", times=1)
            waiting = [
                asyncio.ensure_future(ledger.receive(E[n], serialize(to_xml(E[n])), T0))
                for n in (1, 2, 3, 4)
            ]
            await asyncio.sleep(0.01)
            free.set()
            await busy
            receipts = await asyncio.gather(*waiting)
            assert store.fault.struck == 1
            assert [r.status.value for r in receipts] == ["accepted"] * 4
            await ledger.close()
        finally:
            await store.close()
        assert [(r[0], r[5]) for r in ledger_rows(store.path)] == [(n, 0) for n in (1, 2, 3, 4)]

    async def test_only_the_envelope_that_fails_alone_is_refused(self, tmp_path: Path) -> None:
        """The group fails, then the first envelope fails alone too: it alone gets the error;
        the others are stored (held behind it) and load when the ICC sends it again."""
        store = FaultyStore(tmp_path / "stub.sqlite")
        await store.open()
        try:
            ledger = Ledger(store, gap_timeout=5, clock=Clock())
            await ledger.open()
            busy, free = await _busy(store)
            store.fault = Fault(r"^INSERT INTO arrivals", times=2)
            waiting = [
                asyncio.ensure_future(ledger.receive(E[n], serialize(to_xml(E[n])), T0))
                for n in (1, 2, 3)
            ]
            await asyncio.sleep(0.01)
            free.set()
            await busy
            outcomes = await asyncio.gather(*waiting, return_exceptions=True)
            assert isinstance(outcomes[0], sqlite3.OperationalError)
            assert [getattr(o, "status", None) for o in outcomes[1:]] == [
                ReceiptStatus.ACCEPTED,
                ReceiptStatus.ACCEPTED,
            ]
            assert ledger_rows(store.path) == []
            assert ledger.held == 2
            store.fault = None
            await ledger.receive(E[1], serialize(to_xml(E[1])), T0)  # the ICC's retry
            assert ledger.held == 0
            await ledger.close()
        finally:
            await store.close()
        assert [(r[0], r[5]) for r in ledger_rows(store.path)] == [(1, 0), (2, 0), (3, 0)]
