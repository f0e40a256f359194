"""The ICC's outbox: signed envelopes held for suppliers that pull (SQLite).

For a supplier whose ``delivery_mode`` is ``pull`` the bridge does not POST
the envelope: it appends it here, durably, and only then acks the broker
message.  The pull API (:mod:`icc_bridge.pull_api`) hands a supplier its own
rows, a page at a time after a cursor, and marks them acknowledged when the
supplier says it has stored them.

* The **cursor** is the row's ``INTEGER PRIMARY KEY AUTOINCREMENT``: it only
  grows, and a supplier's rows are appended in the order its lane delivered
  them (broker order), so cursor order is per-supplier delivery order.
* An envelope id is stored **once** (``UNIQUE``; insert-or-ignore): a broker
  redelivery after a crash between insert and ack adds nothing.
* A row handed out in a page is marked served (``served_at_ms``): an
  acknowledgement may list as refused only envelopes the supplier was served.
* Acknowledged rows are marked (``acked_at_ms``), not deleted, so the run
  can be reconciled; :meth:`Outbox.prune` deletes old acknowledged rows.

SQLite calls block, so they run on one dedicated thread (a
:class:`~simulator.vocabulary.sqlite_worker.SqliteWorker`); the event loop
only awaits them.  The schema is documented in docs/pull.md.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from simulator.vocabulary.errors import ConfigError, CursorError
from simulator.vocabulary.messages import now_ms
from simulator.vocabulary.sqlite_worker import SqliteWorker

__all__ = ["OUTBOX_SCHEMA", "Outbox", "OutboxRow", "Page"]

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    cursor         INTEGER PRIMARY KEY AUTOINCREMENT,
    envelope_id    TEXT NOT NULL UNIQUE,
    org_number     TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    message_type   TEXT NOT NULL,
    sequence       INTEGER NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    acked_at_ms    INTEGER,
    envelope       BLOB NOT NULL,
    served_at_ms   INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_by_supplier ON outbox (org_number, cursor);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One held envelope (``envelope`` is the signed XML, as a push would send it)."""

    cursor: int
    envelope_id: str
    org_number: str
    message_id: str
    message_type: str
    sequence: int
    created_at_ms: int
    envelope: bytes


@dataclass(frozen=True, slots=True)
class Page:
    """Unacknowledged rows after a cursor, in cursor order."""

    rows: list[OutboxRow]
    next_cursor: int  # the last row's cursor, or the cursor asked for if empty
    more: bool  # more unacknowledged rows follow


class Outbox:
    """The outbox file; ``await open()``, then ``put``/``page``/``ack``, ``await close()``.

    Several processes may open the same file (the bridge and a pull API):
    SQLite's WAL mode and a busy timeout let them share it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = SqliteWorker(
            path,
            schema=OUTBOX_SCHEMA,
            owner="Outbox",
            thread_name="icc-outbox",
            synchronous="FULL",  # an outboxed envelope survives a power cut
            timeout=10.0,
        )

    async def open(self) -> None:
        try:
            await self._worker.open()
            await self._worker.call(_add_served_column)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the ICC outbox {self.path}: {exc}",
                hint="pass --outbox FILE in a writable directory",
            ) from None

    async def close(self) -> None:
        await self._worker.close()

    # --- the bridge's side --------------------------------------------------
    async def put(
        self,
        *,
        envelope_id: str,
        org_number: str,
        message_id: str,
        message_type: str,
        sequence: int,
        envelope: bytes,
    ) -> bool:
        """Append a signed envelope (committed when this returns); False if already held."""
        row = (envelope_id, org_number, message_id, message_type, sequence, now_ms(), envelope)
        return await self._worker.call(self._put_sync, row)

    @staticmethod
    def _put_sync(db: sqlite3.Connection, row: tuple[object, ...]) -> bool:
        cur = db.execute(
            "INSERT OR IGNORE INTO outbox (envelope_id, org_number, message_id, message_type, "
            "sequence, created_at_ms, envelope) VALUES (?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        return cur.rowcount == 1

    # --- the pull API's side ------------------------------------------------
    async def page(self, org_number: str, after: int, limit: int) -> Page:
        """Up to ``limit`` unacknowledged rows of ``org_number`` with cursor > ``after``.

        CursorError if ``after`` is beyond the last cursor ever issued to the
        supplier (e.g. its cursor comes from another outbox): start from 0.
        """
        return await self._worker.call(self._page_sync, org_number, after, limit)

    def _page_sync(self, db: sqlite3.Connection, org: str, after: int, limit: int) -> Page:
        self._check_cursor(db, org, after)
        found = db.execute(
            "SELECT cursor, envelope_id, org_number, message_id, message_type, sequence, "
            "created_at_ms, envelope FROM outbox "
            "WHERE org_number = ? AND cursor > ? AND acked_at_ms IS NULL "
            "ORDER BY cursor LIMIT ?",
            (org, after, limit + 1),
        ).fetchall()
        rows = [
            OutboxRow(int(c), e, o, m, t, int(s), int(at), bytes(b))
            for c, e, o, m, t, s, at, b in found[:limit]
        ]
        if rows:  # exactly the rows of the page: org's unacknowledged ones in (after, last]
            db.execute(
                "UPDATE outbox SET served_at_ms = COALESCE(served_at_ms, ?) "
                "WHERE org_number = ? AND cursor > ? AND cursor <= ? AND acked_at_ms IS NULL",
                (now_ms(), org, after, rows[-1].cursor),
            )
        return Page(rows, rows[-1].cursor if rows else after, len(found) > limit)

    async def ack(self, org_number: str, up_to: int) -> list[OutboxRow]:
        """Mark ``org_number``'s rows up to cursor ``up_to`` acknowledged; returns those newly so.

        CursorError if ``up_to`` was never issued to the supplier.
        """
        return await self._worker.call(self._ack_sync, org_number, up_to)

    def _ack_sync(self, db: sqlite3.Connection, org: str, up_to: int) -> list[OutboxRow]:
        with db:
            db.execute("BEGIN IMMEDIATE")
            self._check_cursor(db, org, up_to)
            found = db.execute(
                "SELECT cursor, envelope_id, org_number, message_id, message_type, sequence, "
                "created_at_ms FROM outbox "
                "WHERE org_number = ? AND cursor <= ? AND acked_at_ms IS NULL ORDER BY cursor",
                (org, up_to),
            ).fetchall()
            db.execute(
                "UPDATE outbox SET acked_at_ms = ? "
                "WHERE org_number = ? AND cursor <= ? AND acked_at_ms IS NULL",
                (now_ms(), org, up_to),
            )
        return [
            OutboxRow(int(c), e, o, m, t, int(s), int(at), b"") for c, e, o, m, t, s, at in found
        ]

    async def served(self, org_number: str, cursors: list[int]) -> dict[int, OutboxRow]:
        """Those of ``cursors`` that are ``org_number``'s and were served to it, by cursor
        (``acked_at_ms`` tells nothing here: see :meth:`unacked`)."""
        return await self._worker.call(self._served_sync, org_number, cursors)

    @staticmethod
    def _served_sync(db: sqlite3.Connection, org: str, cursors: list[int]) -> dict[int, OutboxRow]:
        out: dict[int, OutboxRow] = {}
        for cursor in cursors:
            found = db.execute(
                "SELECT cursor, envelope_id, org_number, message_id, message_type, sequence, "
                "created_at_ms, envelope FROM outbox "
                "WHERE cursor = ? AND org_number = ? AND served_at_ms IS NOT NULL",
                (cursor, org),
            ).fetchone()
            if found is not None:
                c, e, o, m, t, s, at, b = found
                out[int(c)] = OutboxRow(int(c), e, o, m, t, int(s), int(at), bytes(b))
        return out

    async def check(self, org_number: str, cursor: int) -> None:
        """CursorError if ``cursor`` was never issued to ``org_number``."""
        await self._worker.call(self._check_cursor, org_number, cursor)

    async def unacked(self, org_number: str, up_to: int) -> list[int]:
        """The cursors of ``org_number``'s unacknowledged rows up to ``up_to``."""
        return await self._worker.call(self._unacked_sync, org_number, up_to)

    @staticmethod
    def _unacked_sync(db: sqlite3.Connection, org: str, up_to: int) -> list[int]:
        found = db.execute(
            "SELECT cursor FROM outbox WHERE org_number = ? AND cursor <= ? "
            "AND acked_at_ms IS NULL ORDER BY cursor",
            (org, up_to),
        ).fetchall()
        return [int(c) for (c,) in found]

    @staticmethod
    def _check_cursor(db: sqlite3.Connection, org: str, cursor: int) -> None:
        (last,) = db.execute(
            "SELECT COALESCE(MAX(cursor), 0) FROM outbox WHERE org_number = ?", (org,)
        ).fetchone()
        if cursor > int(last):
            raise CursorError(
                f"cursor {cursor} was never issued to supplier {org}; its latest is {last}",
                hint="start again from cursor 0 (envelopes already stored are answered "
                "as duplicates)",
            )

    # --- housekeeping -------------------------------------------------------
    async def pending(self, org_number: str | None = None) -> int:
        """How many rows wait for an acknowledgement (of one supplier, or all)."""
        return await self._worker.call(self._pending_sync, org_number)

    @staticmethod
    def _pending_sync(db: sqlite3.Connection, org: str | None) -> int:
        sql = "SELECT COUNT(*) FROM outbox WHERE acked_at_ms IS NULL"
        args: tuple[str, ...] = ()
        if org is not None:
            sql, args = sql + " AND org_number = ?", (org,)
        (count,) = db.execute(sql, args).fetchone()
        return int(count)

    async def prune(self, older_than_ms: int) -> int:
        """Delete acknowledged rows acked before ``older_than_ms``; returns how many."""
        return await self._worker.call(self._prune_sync, older_than_ms)

    @staticmethod
    def _prune_sync(db: sqlite3.Connection, older_than_ms: int) -> int:
        cur = db.execute(
            "DELETE FROM outbox WHERE acked_at_ms IS NOT NULL AND acked_at_ms < ? "
            # each supplier's newest row stays: it is what makes its cursor valid
            "AND cursor NOT IN (SELECT MAX(cursor) FROM outbox GROUP BY org_number)",
            (older_than_ms,),
        )
        return cur.rowcount


def _add_served_column(db: sqlite3.Connection) -> None:
    """An outbox file made before ``served_at_ms`` existed gets the column."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    if "served_at_ms" not in columns:
        db.execute("ALTER TABLE outbox ADD COLUMN served_at_ms INTEGER")
