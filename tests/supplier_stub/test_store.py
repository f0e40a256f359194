"""Unit tests of supplier_stub.store: the SQLite inbox, without HTTP or TLS."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from simulator.vocabulary.envelope import Envelope, normalise_document
from simulator.vocabulary.messages import MessageMeta, MessageType
from supplier_stub.store import EnvelopeStore, ReceiptStatus, document_digest

ORG = "5560000001"
CERT = "ab" * 32
URL = "https://127.0.0.1:9443/b2b/envelopes"
ORDER = (
    b'<Order xmlns="urn:oasis:names:specification:ubl:schema:xsd:Order-2" '
    b'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">'
    b"<cbc:ID>%d</cbc:ID></Order>"
)


def envelope(number: int = 1, envelope_id: str | None = None) -> Envelope:
    """An order envelope whose document carries ``number``."""
    return Envelope.create(
        MessageMeta.new(MessageType.INKOPSORDER, ORG, number),
        ORDER % number,
        receiver_cert_sha256=CERT,
        receiver_url=URL,
        envelope_id=envelope_id,
    )


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EnvelopeStore]:
    """An open store in a fresh directory (created by open())."""
    s = EnvelopeStore(tmp_path / "sub" / "inbox.sqlite")
    await s.open()
    yield s
    await s.close()


class TestReceipts:
    """Accepted, duplicate and conflict."""

    async def test_first_is_accepted(self, store: EnvelopeStore) -> None:
        """A new envelope is accepted and stored with its metadata and raw bytes."""
        env = envelope()
        receipt = await store.store(env, b"<raw/>", 1_000)
        assert receipt.status is ReceiptStatus.ACCEPTED
        assert receipt.envelope_id == env.envelope_id
        assert receipt.received_at_ms == 1_000
        assert rows(
            store.path,
            "SELECT envelope_id, org_number, message_type, sequence, document_sha256, "
            "received_at_ms, envelope FROM envelopes",
        ) == [
            (
                env.envelope_id,
                ORG,
                "INKOPSORDER",
                1,
                document_digest(env.document),
                1_000,
                b"<raw/>",
            )
        ]

    async def test_same_document_is_duplicate(self, store: EnvelopeStore) -> None:
        """The same id and document again is a duplicate with the first arrival's time."""
        env = envelope()
        await store.store(env, b"<raw/>", 1_000)
        receipt = await store.store(env, b"<raw again/>", 2_000)
        assert receipt.status is ReceiptStatus.DUPLICATE
        assert receipt.received_at_ms == 1_000
        assert rows(store.path, "SELECT envelope FROM envelopes") == [(b"<raw/>",)]
        assert rows(store.path, "SELECT outcome, at_ms FROM arrivals ORDER BY id") == [
            ("accepted", 1_000),
            ("duplicate", 2_000),
        ]

    async def test_other_document_is_conflict(self, store: EnvelopeStore) -> None:
        """The same id with another document is a conflict; the first stays."""
        first = envelope(1)
        await store.store(first, b"<first/>", 1_000)
        receipt = await store.store(envelope(2, envelope_id=first.envelope_id), b"<x/>", 2_000)
        assert receipt.status is ReceiptStatus.CONFLICT
        assert rows(store.path, "SELECT envelope, sequence FROM envelopes") == [(b"<first/>", 1)]
        assert rows(store.path, "SELECT outcome FROM arrivals ORDER BY id") == [
            ("accepted",),
            ("conflict",),
        ]

    async def test_distinct_envelopes_are_all_stored(self, store: EnvelopeStore) -> None:
        """Different ids are stored separately, even with the same document."""
        for _ in range(3):
            assert (await store.store(envelope(), b"<r/>", 1)).status is ReceiptStatus.ACCEPTED
        assert rows(store.path, "SELECT count(*) FROM envelopes") == [(3,)]


class TestLifecycle:
    """Opening, closing and reopening."""

    async def test_reopen_keeps_envelopes(self, tmp_path: Path) -> None:
        """After close and reopen, a stored envelope is a duplicate."""
        path = tmp_path / "inbox.sqlite"
        env = envelope()
        first = EnvelopeStore(path)
        await first.open()
        await first.store(env, b"<raw/>", 1_000)
        await first.close()
        second = EnvelopeStore(path)
        await second.open()
        try:
            receipt = await second.store(env, b"<raw/>", 2_000)
        finally:
            await second.close()
        assert receipt.status is ReceiptStatus.DUPLICATE
        assert receipt.received_at_ms == 1_000

    async def test_store_before_open(self, tmp_path: Path) -> None:
        """Storing into a store that was never opened raises RuntimeError."""
        store = EnvelopeStore(tmp_path / "inbox.sqlite")
        try:
            with pytest.raises(RuntimeError, match="open"):
                await store.store(envelope(), b"<raw/>", 1)
        finally:
            await store.close()


class TestDigest:
    """document_digest."""

    def test_digest_is_sha256_hex(self) -> None:
        """The digest is 64 lower-case hex digits and differs for different documents."""
        a = document_digest(normalise_document(ORDER % 1))
        b = document_digest(normalise_document(ORDER % 2))
        assert len(a) == 64
        assert a == a.lower()
        assert a != b


class TestRefuseGrowth:
    """The disk-full fault: the database may not grow (supplier_stub/faults.py)."""

    async def test_full_then_freed(self, store: EnvelopeStore) -> None:
        """While growth is refused, an envelope that needs space is not stored, and nothing
        of it remains; refused twice and freed once, the database grows again."""
        await store.store(envelope(1), b"<raw/>", 1_000)
        await store.refuse_growth(True)
        await store.refuse_growth(True)  # twice is once: the limit is not lowered again
        big = b"<raw>" + b"x" * 20_000 + b"</raw>"  # more than any page has free
        with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
            await store.store(envelope(2), big, 2_000)
        assert rows(store.path, "SELECT count(*) FROM envelopes") == [(1,)]
        assert rows(store.path, "SELECT count(*) FROM arrivals") == [(1,)]
        await store.refuse_growth(False)
        receipt = await store.store(envelope(2), big, 3_000)
        assert receipt.status is ReceiptStatus.ACCEPTED
        for n in range(3, 40):  # the limit is gone, not just raised by a little
            await store.store(envelope(n), big, 3_000 + n)
        assert rows(store.path, "SELECT count(*) FROM envelopes") == [(39,)]

    async def test_freeing_a_disk_never_filled_changes_nothing(self, store: EnvelopeStore) -> None:
        """refuse_growth(False) without a fault leaves SQLite's own limit as it was."""
        before = await store.call(lambda db: db.execute("PRAGMA max_page_count").fetchone())
        await store.refuse_growth(False)
        after = await store.call(lambda db: db.execute("PRAGMA max_page_count").fetchone())
        assert after == before
