"""KA's outbox and record: what KA is about to send, on disk before it is sent.

Two files, both documented in docs/files.md:

* the **outbox** (``ka-outbox.sqlite``): every message KA recorded, with its
  headers and, until the broker confirmed it, its body; and the last sequence
  number given to each supplier.  A restarted KA reads it back: it continues
  each supplier's sequence, re-sends what was recorded but not confirmed
  (same message id, so the ICC and the supplier see a duplicate), and does not
  publish a message id it already recorded;
* the **record** (``produced.jsonl``, optional): one ``recorded`` line per
  message, written and fsynced before its SEND, and one ``sent`` line once
  the broker confirmed it.  So the record is a superset of what reached the
  broker, and a message recorded but never confirmed can be named.

A batch is recorded in one SQLite transaction (sequence numbers with it) and
then one fsync of the record; only then is it sent.  One KA at a time may use
an outbox (a lock file beside it).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.messages import MessageMeta, now_ms
from simulator.vocabulary.sqlite_worker import SqliteWorker

__all__ = ["RECORDED", "SENT", "KaOutbox", "Outgoing", "Restored"]

#: The ``state`` of a record line: KA is about to send the message / the broker stored it.
RECORDED = "recorded"
SENT = "sent"

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    message_id TEXT PRIMARY KEY,
    org_number TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    headers TEXT NOT NULL,
    body TEXT,
    record TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    sent_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS messages_unsent ON messages (sent_at_ms) WHERE sent_at_ms IS NULL;
CREATE TABLE IF NOT EXISTS sequences (
    org_number TEXT PRIMARY KEY,
    last_sequence INTEGER NOT NULL
);
"""


@dataclass
class Outgoing:
    """One message on its way: ``record`` is its record line (None: not KA's own
    message, e.g. an injected poison message: sent, never recorded)."""

    message_id: str
    headers: dict[str, str]
    body: str
    record: dict[str, Any] | None = None
    stored: bool = False  # already in the outbox (restored after a restart)


@dataclass
class Restored:
    """What an outbox held when KA started."""

    sequences: dict[str, int] = field(default_factory=dict)
    known: dict[str, MessageMeta] = field(default_factory=dict)
    unsent: list[Outgoing] = field(default_factory=list)


class KaOutbox:
    """The outbox at ``path`` (None: in memory, nothing survives) and the record at ``log``."""

    def __init__(self, path: Path | None, log: Path | None) -> None:
        self.path = path
        self.log_path = log
        self._db = SqliteWorker(
            path if path is not None else Path(":memory:"),
            schema=SCHEMA,
            owner="KaOutbox",
            thread_name="ka-outbox",
            synchronous="FULL",
        )
        self._log: IO[str] | None = None
        self._lock: IO[bytes] | None = None

    async def open(self) -> Restored:
        """Take the outbox (one KA at a time), open the record, read back what survives."""
        if self.path is not None:
            self._take_lock(self.path)
        await self._db.open()
        restored = await self._db.call(_restore)
        if self.log_path is not None:
            _end_cut_line(self.log_path)
            if restored.unsent:
                _record_missing(self.log_path, restored.unsent)
            self._log = self.log_path.open("a", encoding="utf-8")
        return restored

    def _take_lock(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = Path(f"{path}.lock").open("ab")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ConfigError(
                f"another KA is using the outbox {path}",
                hint="stop it first, or give each KA its own --outbox FILE",
            ) from None
        self._lock = lock

    async def record(self, batch: list[Outgoing]) -> None:
        """Store ``batch`` (and its suppliers' sequences) durably, then record it (fsync)."""
        if not batch:
            return
        # In memory nothing is read back after a restart: the bodies (KA's unconfirmed list
        # has them to resend) would only leave their rows' pages unused once confirmed.
        await self._db.call(_insert, batch, now_ms(), keep_bodies=self.path is not None)
        if self._log is not None:
            lines = "".join(json.dumps(o.record) + "\n" for o in batch)
            log = self._log
            await self._db.call(lambda _db: _append(log, lines, sync=True))

    async def mark_sent(self, message_ids: list[str]) -> None:
        """The broker confirmed these: forget their bodies, and say so in the record."""
        if not message_ids:
            return
        at = now_ms()
        await self._db.call(_mark_sent, message_ids, at)
        if self._log is not None:
            lines = "".join(
                json.dumps({"state": SENT, "message_id": m, "at_ms": at}) + "\n"
                for m in message_ids
            )
            log = self._log
            await self._db.call(lambda _db: _append(log, lines, sync=False))

    async def close(self) -> None:
        await self._db.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None


def _restore(db: sqlite3.Connection) -> Restored:
    restored = Restored()
    for org, last in db.execute("SELECT org_number, last_sequence FROM sequences"):
        restored.sequences[str(org)] = int(last)
    rows = db.execute(
        "SELECT message_id, headers, body, record, sent_at_ms FROM messages ORDER BY rowid"
    )
    for message_id, headers_json, body, record_json, sent_at_ms in rows:
        headers = json.loads(headers_json)
        restored.known[str(message_id)] = MessageMeta.from_headers(headers)
        if sent_at_ms is None and body is not None:
            restored.unsent.append(
                Outgoing(str(message_id), headers, str(body), json.loads(record_json), stored=True)
            )
    return restored


def _insert(
    db: sqlite3.Connection, batch: list[Outgoing], at_ms: int, *, keep_bodies: bool = True
) -> None:
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT OR IGNORE INTO messages (message_id, org_number, sequence, headers, body, "
            "record, recorded_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    o.message_id,
                    str(o.record["org_number"]),
                    int(o.record["sequence"]),
                    json.dumps(o.headers),
                    o.body if keep_bodies else None,
                    json.dumps(o.record),
                    at_ms,
                )
                for o in batch
                if o.record is not None
            ],
        )
        db.executemany(
            "INSERT INTO sequences (org_number, last_sequence) VALUES (?, ?) "
            "ON CONFLICT (org_number) DO UPDATE SET "
            "last_sequence = max(last_sequence, excluded.last_sequence)",
            [(o.record["org_number"], o.record["sequence"]) for o in batch if o.record],
        )


def _mark_sent(db: sqlite3.Connection, message_ids: list[str], at_ms: int) -> None:
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "UPDATE messages SET sent_at_ms = ?, body = NULL WHERE message_id = ?",
            [(at_ms, m) for m in message_ids],
        )


def _append(log: IO[str], lines: str, *, sync: bool) -> None:
    log.write(lines)
    log.flush()
    if sync:
        os.fsync(log.fileno())


def _end_cut_line(log: Path) -> None:
    """End a last line that a crash cut short, so that the next line stands on its own."""
    try:
        with log.open("rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
    except FileNotFoundError:
        return
    with log.open("a", encoding="utf-8") as out:
        _append(out, "\n", sync=True)


def _record_missing(log: Path, unsent: list[Outgoing]) -> None:
    """Record the restored messages the record lacks (KA died between outbox and record)."""
    recorded: set[str] = set()
    if log.exists():
        with log.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
                if isinstance(entry, dict) and entry.get("state", RECORDED) == RECORDED:
                    recorded.add(str(entry.get("message_id")))
    missing = [o for o in unsent if o.message_id not in recorded and o.record is not None]
    if missing:
        with log.open("a", encoding="utf-8") as out:
            _append(out, "".join(json.dumps(o.record) + "\n" for o in missing), sync=True)
