"""supplier_stub.readback: GET /b2b/ledger, the read-back of what the supplier loaded."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from simulator.vocabulary.registry import DeliveryMode, SupplierEntry
from supplier_stub import readback

ORG, OTHER = "5520000000", "5520000018"


def _db(path: Path) -> Path:
    with closing(sqlite3.connect(path)) as con:
        con.execute(
            "CREATE TABLE ledger (position INTEGER PRIMARY KEY AUTOINCREMENT, org_number TEXT, "
            "envelope_id TEXT, message_id TEXT, loaded_at_ms INTEGER)"
        )
        for i in range(1, 6):
            con.execute(
                "INSERT INTO ledger (org_number, envelope_id, message_id, loaded_at_ms) "
                "VALUES (?, ?, ?, ?)",
                (ORG if i != 3 else OTHER, f"e{i}", f"m{i}", 1000 + i),
            )
        con.commit()
    return path


async def _client(
    db: Path, monkeypatch: pytest.MonkeyPatch, *, icc: bool = True
) -> TestClient[web.Request, web.Application]:
    supplier = SupplierEntry(
        ORG, "A", "https://127.0.0.1:1/b2b/envelopes", "0" * 64, DeliveryMode.PUSH
    )
    monkeypatch.setattr(readback, "peer_certificate", lambda _r: object() if icc else None)
    monkeypatch.setattr(readback, "is_icc_certificate", lambda _c: True)
    app = web.Application()
    app.router.add_get(readback.LEDGER_PATH, readback.ledger_handler(db, lambda _r: supplier))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def _get(client: TestClient[web.Request, web.Application], query: str) -> tuple[int, Any]:
    resp = await client.get(f"{readback.LEDGER_PATH}{query}")
    return resp.status, await resp.json(content_type=None)


async def test_pages_through_this_suppliers_ledger_in_load_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await _client(_db(tmp_path / "s.sqlite"), monkeypatch)
    try:
        status, first = await _get(client, "?after=0&limit=2")
        assert status == 200
        assert [e["envelope_id"] for e in first["entries"]] == ["e1", "e2"]
        assert first["next"] == 2
        _, rest = await _get(client, f"?after={first['next']}&limit=2")
        assert [e["position"] for e in rest["entries"]] == [4, 5]  # 3 is another supplier's
        assert rest["next"] is None
        assert rest["entries"][0] == {
            "position": 4,
            "envelope_id": "e4",
            "message_id": "m4",
            "loaded_at_ms": 1004,
        }
    finally:
        await client.close()


async def test_bad_parameters_and_a_client_that_is_not_the_icc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _db(tmp_path / "s.sqlite")
    client = await _client(db, monkeypatch)
    try:
        assert (await _get(client, "?after=-1"))[1]["code"] == "CURSOR_INVALID"
        assert (await _get(client, "?limit=0"))[1]["code"] == "PAGE_LIMIT_INVALID"
        assert (await _get(client, "?limit=abc"))[0] == 400
    finally:
        await client.close()
    client = await _client(db, monkeypatch, icc=False)
    try:
        status, body = await _get(client, "")
        assert (status, body["code"]) == (403, "CLIENT_NOT_ICC")
    finally:
        await client.close()


async def test_no_ledger_yet_is_an_empty_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await _client(tmp_path / "missing.sqlite", monkeypatch)
    try:
        assert await _get(client, "") == (200, {"entries": [], "next": None})
    finally:
        await client.close()
