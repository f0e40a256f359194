"""The read-back: ``GET /b2b/ledger?after=POSITION&limit=N`` (docs/openapi.yaml).

What this port's supplier loaded into its ledger, in load order, so that a
run can grade order, double loading and a credit never before its invoice
from outside.  Read-only: one query on the ledger table, on a connection
opened ``mode=ro`` in a worker thread (the ledger's writer is not touched).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

from aiohttp import web

from simulator.vocabulary.certs import is_icc_certificate
from simulator.vocabulary.codes.refusals import (
    CLIENT_NOT_ICC,
    CURSOR_INVALID,
    NOT_FOUND,
    PAGE_LIMIT_INVALID,
)
from simulator.vocabulary.http_problems import problem_response
from simulator.vocabulary.registry import SupplierEntry
from simulator.vocabulary.tls import peer_certificate

LEDGER_PATH = "/b2b/ledger"
DEFAULT_LIMIT = 500
MAX_LIMIT = 1000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ledger_handler(db: Path, supplier_of: Callable[[web.Request], SupplierEntry | None]) -> Handler:
    """The read-back's handler for the stub whose SQLite file is ``db``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        supplier = supplier_of(request)
        if supplier is None:
            return problem_response(NOT_FOUND, "no supplier is served on this port")
        client = peer_certificate(request)
        if client is None or not is_icc_certificate(client):
            return problem_response(CLIENT_NOT_ICC, "only the ICC may read the ledger back")
        after = _whole(request.query.get("after", "0"))
        if after is None:
            return problem_response(CURSOR_INVALID, "`after` must be a whole number, 0 or more")
        limit = _whole(request.query.get("limit", str(DEFAULT_LIMIT)))
        if limit is None or not 1 <= limit <= MAX_LIMIT:
            return problem_response(PAGE_LIMIT_INVALID, f"`limit` must be 1 to {MAX_LIMIT}")
        rows = await asyncio.to_thread(_page, db, supplier.org_number, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        entries = [
            {"position": p, "envelope_id": e, "message_id": m, "loaded_at_ms": t}
            for p, e, m, t in rows
        ]
        following = entries[-1]["position"] if more and entries else None
        return web.json_response({"entries": entries, "next": following})

    return handle


def _whole(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _page(db: Path, org_number: str, after: int, limit: int) -> list[tuple[int, str, str, int]]:
    if not db.exists():
        return []
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)) as con:
        try:
            rows = con.execute(
                "SELECT position, envelope_id, message_id, loaded_at_ms FROM ledger "
                "WHERE org_number = ? AND position > ? ORDER BY position LIMIT ?",
                (org_number, after, limit),
            ).fetchall()
        except sqlite3.OperationalError:
            return []  # no ledger table yet
    return [(int(p), str(e), str(m), int(t)) for p, e, m, t in rows]
