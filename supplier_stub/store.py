"""The supplier's inbox: every envelope stored exactly once, in SQLite.

Receipt is idempotent by envelope id: the same id with the same document is a
duplicate (answered, never stored again); the same id with another document
is a conflict.  Every arrival, whatever its outcome, is logged too, so the
simulator can count duplicates.  The schema is documented in docs/files.md.

SQLite calls block, so the store runs them on one dedicated thread (a
:class:`~simulator.vocabulary.sqlite_worker.SqliteWorker`): the event loop
only awaits them.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from simulator.vocabulary.envelope import Envelope
from simulator.vocabulary.sqlite_worker import SqliteWorker

T = TypeVar("T")
P = ParamSpec("P")

SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (
    envelope_id     TEXT PRIMARY KEY,
    org_number      TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    message_type    TEXT NOT NULL,
    correlation_id  TEXT NOT NULL,
    produced_at_ms  INTEGER NOT NULL,
    sequence        INTEGER NOT NULL,
    document_sha256 TEXT NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    envelope        BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS envelopes_by_supplier
    ON envelopes (org_number, produced_at_ms, sequence);
CREATE TABLE IF NOT EXISTS arrivals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    envelope_id TEXT NOT NULL,
    org_number  TEXT NOT NULL,
    at_ms       INTEGER NOT NULL,
    outcome     TEXT NOT NULL
);
"""


class ReceiptStatus(StrEnum):
    ACCEPTED = "accepted"  # stored now, for the first time
    DUPLICATE = "duplicate"  # seen before with the same document: not stored again
    CONFLICT = "conflict"  # seen before with a different document: refused


@dataclass(frozen=True, slots=True)
class Receipt:
    envelope_id: str
    status: ReceiptStatus
    received_at_ms: int  # when the envelope was first stored


def document_digest(document: bytes) -> str:
    return hashlib.sha256(document).hexdigest()


class EnvelopeStore:
    """SQLite inbox; open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = SqliteWorker(
            path, schema=SCHEMA, owner="EnvelopeStore", thread_name="stub-sqlite"
        )
        self._max_pages: int | None = None  # SQLite's own limit, while growth is refused

    async def open(self) -> None:
        self._max_pages = None  # a new connection has SQLite's own limit
        await self._worker.open()

    async def close(self) -> None:
        await self._worker.close()

    def call(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> asyncio.Future[T]:
        """Run ``fn(connection, ...)`` on the store's thread (for the ledger's own tables).

        The call is queued at once, so calls run in the order they were made,
        whether or not (and whenever) their futures are awaited.
        """
        return self._worker.call(fn, *args, **kwargs)

    async def refuse_growth(self, refuse: bool) -> None:
        """Make the database refuse to grow, as on a full disk, or lift that (the
        ``disk-full`` fault, supplier_stub/faults.py).

        ``PRAGMA max_page_count`` on the store's connection, set to the pages
        the file has now: a write that needs a new page fails with SQLite's
        own "database or disk is full" (one that fits in the pages there may
        still succeed, as on a real disk).  Lifted, SQLite's own limit is back.
        """
        await self._worker.call(self._refuse_growth_sync, refuse)

    def _refuse_growth_sync(self, db: sqlite3.Connection, refuse: bool) -> None:
        if refuse and self._max_pages is None:
            self._max_pages = int(db.execute("PRAGMA max_page_count").fetchone()[0])
            pages = int(db.execute("PRAGMA page_count").fetchone()[0])
            db.execute(f"PRAGMA max_page_count = {pages}")
        elif not refuse and self._max_pages is not None:
            db.execute(f"PRAGMA max_page_count = {self._max_pages}")
            self._max_pages = None

    async def store(self, envelope: Envelope, raw: bytes, now_ms: int) -> Receipt:
        """Store ``envelope`` once; say whether it was new, a duplicate or a conflict."""
        return await self._worker.call(_store_sync, envelope, raw, now_ms)


def _store_sync(db: sqlite3.Connection, env: Envelope, raw: bytes, now_ms: int) -> Receipt:
    with db:  # one transaction: the insert and its arrival row
        db.execute("BEGIN IMMEDIATE")
        return store_rows(db, env, raw, now_ms)


def store_rows(db: sqlite3.Connection, env: Envelope, raw: bytes, now_ms: int) -> Receipt:
    """Insert ``env`` unless its id is known, and its arrival row, in the caller's transaction."""
    digest = document_digest(env.document)
    row = db.execute(
        "SELECT document_sha256, received_at_ms FROM envelopes WHERE envelope_id = ?",
        (env.envelope_id,),
    ).fetchone()
    if row is None:
        db.execute(
            "INSERT INTO envelopes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                env.envelope_id,
                env.org_number,
                env.message_id,
                env.message_type.value,
                env.correlation_id,
                env.produced_at_ms,
                env.sequence,
                digest,
                now_ms,
                raw,
            ),
        )
        receipt = Receipt(env.envelope_id, ReceiptStatus.ACCEPTED, now_ms)
    elif row[0] == digest:
        receipt = Receipt(env.envelope_id, ReceiptStatus.DUPLICATE, int(row[1]))
    else:
        receipt = Receipt(env.envelope_id, ReceiptStatus.CONFLICT, int(row[1]))
    db.execute(
        "INSERT INTO arrivals (envelope_id, org_number, at_ms, outcome) VALUES (?, ?, ?, ?)",
        (env.envelope_id, env.org_number, now_ms, receipt.status.value),
    )
    return receipt
