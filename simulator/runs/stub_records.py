"""The conductor's one reader of the supplier stub's SQLite file (and of the ICC's pull outbox).

Their tables are documented files (docs/files.md): the stub's inbox
(``envelopes``, ``arrivals``) and ledger (``ledger``, ``gaps``), and the ICC's
``outbox`` of pull suppliers.  Every query of the conductor on them is here;
the connections are read-only (``mode=ro``), so nothing here can change a
component's file.  A file or table that is not there yet (a component creates
them when it starts) reads as empty.

Two readings of "cannot be read": the figures of a run (reconciliation, the
runner, the bench) count only a missing file or table as empty and let any
other database error through; what people look at (timeline, report, live
view) shows nothing for a file that cannot be read at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "OUTBOX_DB",
    "STUB_DB",
    "StubNews",
    "duplicate_arrivals",
    "envelope_of",
    "latest_envelope",
    "ledger_count",
    "ledger_stamps",
    "loaded_messages",
    "news_since",
    "outbox_served",
    "stored_envelopes",
    "stored_messages",
    "timeline_envelopes",
]

#: The stub's SQLite file in a run directory.
STUB_DB = "supplier-stub.sqlite"
#: The ICC's outbox of pull suppliers in a run directory.
OUTBOX_DB = "icc-outbox.sqlite"
#: Where a stored envelope is: (file in the run directory, table), inbox first.
_ENVELOPE_TABLES = ((STUB_DB, "envelopes"), (OUTBOX_DB, "outbox"))

Row = tuple[Any, ...]


@contextmanager
def _readonly(db: Path, timeout: float = 5.0) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=timeout)) as con:
        yield con


def _figures(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[Row]:
    """Rows for a run's figures: none if the file or the table is not there yet."""
    if not db.exists():
        return []
    with _readonly(db) as con:
        try:
            return list(con.execute(sql, params))
        except sqlite3.OperationalError:
            return []


def _shown(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[Row]:
    """Rows for a view: none if the file or table is not there or cannot be read."""
    if not db.exists():
        return []
    with _readonly(db) as con:
        try:
            return list(con.execute(sql, params))
        except sqlite3.Error:
            return []  # the component had not created its tables yet


def _blob(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value or b"")


# --- the figures of a run ------------------------------------------------------


def stored_messages(db: Path) -> list[tuple[str, str, int, int]]:
    """(message_id, org_number, sequence, received_at_ms) of each stored envelope."""
    rows = _figures(
        db,
        "SELECT message_id, org_number, sequence, received_at_ms FROM envelopes "
        "ORDER BY received_at_ms, rowid",
    )
    return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]


def loaded_messages(db: Path) -> list[tuple[str, str, int, int]]:
    """(message_id, org_number, produced_at_ms, sequence) of each ledger row, in load order."""
    rows = _figures(
        db,
        "SELECT message_id, org_number, produced_at_ms, sequence FROM ledger ORDER BY position",
    )
    return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]


def duplicate_arrivals(db: Path) -> int:
    """Arrivals the stub answered as duplicates."""
    rows = _figures(db, "SELECT count(*) FROM arrivals WHERE outcome = 'duplicate'")
    return int(rows[0][0]) if rows else 0


def latest_envelope(db: Path, org_number: str) -> bytes | None:
    """The last envelope a supplier stored (what an attacker would replay), or None."""
    rows = _figures(
        db,
        "SELECT envelope FROM envelopes WHERE org_number = ? ORDER BY rowid DESC LIMIT 1",
        (org_number,),
    )
    return bytes(rows[0][0]) if rows else None


def ledger_count(db: Path) -> int:
    """Rows in the ledger (0 before the stub has created it)."""
    rows = _figures(db, "SELECT count(*) FROM ledger")
    return int(rows[0][0]) if rows else 0


# --- what people look at -------------------------------------------------------


def timeline_envelopes(db: Path) -> list[Row]:
    """(message_id, envelope_id, org_number, message_type, sequence, received_at_ms) of
    each stored envelope, as stored (unconverted)."""
    return _shown(
        db,
        "SELECT message_id, envelope_id, org_number, message_type, sequence, "
        "received_at_ms FROM envelopes",
    )


def ledger_stamps(db: Path) -> list[Row]:
    """(message_id, loaded_at_ms, late) of each ledger row, in load order."""
    return _shown(db, "SELECT message_id, loaded_at_ms, late FROM ledger ORDER BY position")


def outbox_served(run_dir: Path, org_number: str) -> list[Row]:
    """What the ICC's outbox of a run held for pull supplier ``org_number``, in cursor
    order: (cursor, envelope_id, message_id, message_type, created_at_ms, served_at_ms,
    acked_at_ms, envelope bytes); none if the outbox is not there or cannot be read."""
    rows = _shown(
        run_dir / OUTBOX_DB,
        "SELECT cursor, envelope_id, message_id, message_type, created_at_ms, served_at_ms, "
        "acked_at_ms, envelope FROM outbox WHERE org_number = ? ORDER BY cursor",
        (org_number,),
    )
    return [(*row[:7], _blob(row[7])) for row in rows]


def envelope_of(run_dir: Path, envelope_id: str) -> bytes | None:
    """The stored envelope (signed XML as received) of ``envelope_id``, if any.

    Looks in the supplier stub's inbox, then in the ICC's outbox (pull).
    """
    for name, table in _ENVELOPE_TABLES:
        rows = _shown(
            run_dir / name,
            f"SELECT envelope FROM {table} WHERE envelope_id = ?",  # noqa: S608 (fixed names)
            (envelope_id,),
        )
        for (blob,) in rows:
            if isinstance(blob, bytes | str):
                return _blob(blob)
    return None


def stored_envelopes(run_dir: Path) -> Iterator[tuple[str, bytes]]:
    """(envelope id, envelope bytes) of every stored envelope (inbox, then the pull outbox),
    each envelope id once; read as they are needed."""
    seen: set[str] = set()
    for name, table in _ENVELOPE_TABLES:
        db = run_dir / name
        if not db.exists():
            continue
        with _readonly(db) as con:
            try:
                rows = con.execute(f"SELECT envelope_id, envelope FROM {table}")  # noqa: S608
                for envelope_id, blob in rows:
                    if envelope_id in seen:
                        continue
                    seen.add(str(envelope_id))
                    yield str(envelope_id), _blob(blob)
            except sqlite3.Error:
                continue


@dataclass
class StubNews:
    """The stub's rows since the last look, per table (rows as stored)."""

    arrivals: list[Row] = field(default_factory=list)
    ledger: list[Row] = field(default_factory=list)
    gaps: list[Row] = field(default_factory=list)


#: Table → the query of its rows after a cursor (its first column), in order.
_NEWS = {
    "arrivals": "SELECT a.id, a.envelope_id, a.org_number, a.at_ms, a.outcome, "
    "e.message_id, e.message_type, e.sequence FROM arrivals a "
    "LEFT JOIN envelopes e ON e.envelope_id = a.envelope_id "
    "WHERE a.id > ? ORDER BY a.id",
    "ledger": "SELECT position, envelope_id, org_number, loaded_at_ms, message_id, "
    "message_type, sequence, late, received_at_ms FROM ledger WHERE position > ? "
    "ORDER BY position",
    "gaps": "SELECT id, envelope_id, org_number, detected_at_ms, kind, first_missing, "
    "last_missing FROM gaps WHERE id > ? ORDER BY id",
}


def news_since(db: Path, cursors: dict[str, int]) -> StubNews | None:
    """The rows of ``arrivals``, ``ledger`` and ``gaps`` after each table's cursor in
    ``cursors`` (its id or position), read in one go, waiting at most half a second for
    the stub's lock; ``cursors`` moves to the last row read of each table.

    Empty if the file is not there yet (a table not there yet reads as empty); None if
    the stub is creating or locking its file (try again on the next look).
    """
    news = StubNews()
    if not db.exists():
        return news
    try:
        with _readonly(db, timeout=0.5) as con:
            for table, sql in _NEWS.items():
                try:
                    rows = list(con.execute(sql, (cursors.get(table, 0),)))
                except sqlite3.OperationalError:
                    continue  # no such table yet
                if rows:
                    cursors[table] = int(rows[-1][0])
                setattr(news, table, rows)
    except sqlite3.Error:
        return None
    return news
