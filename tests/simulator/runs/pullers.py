"""Supplier pullers written for the tests, independently of ``supplier_stub/``.

A :class:`Puller` is an aiohttp client over mutual TLS (the supplier's
certificate of the state directory, trusting its AF test CA) that fetches from
an ICC's outbox (docs/pull.md), verifies each envelope with signxml directly,
keeps its own ledger and serves the read-back (GET /b2b/ledger), on a thread of
its own (``with Puller(state, org, outbox_url(port)) as p: … p.readback``).
Like a supplier's own rules might, every one of them refuses the first credit
note it gets; and each "restarts" (pauses 3.5 s, then starts again from its
saved cursor) after its third acknowledgement.  The correct one passes every
check of a puller (:data:`PULL_CHECKS`); the broken ones get one thing wrong
each (:data:`MODES`).  Import it as ``from tests.simulator.runs.pullers import
Puller``.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509
from lxml import etree
from signxml.verifier import XMLVerifier

from simulator.lab.ports import free_ports
from simulator.vocabulary.codes.refusals import DOCUMENT_INVALID
from simulator.vocabulary.state import StateDir

__all__ = ["MODES", "PULL_CHECKS", "Puller"]

NS = {"sbd": "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"}
#: ``correct``; ``overack`` acknowledges beyond the page it got; ``impatient`` retries a
#: 503 after 0.2 s whatever its Retry-After; ``silent`` acknowledges past what it refuses
#: without reporting it.
MODES = ("correct", "overack", "impatient", "silent")
#: The checks of a puller, graded from the outbox's side (simulator/runs/pull_grading.py).
PULL_CHECKS = frozenset(
    {
        "pull.ack_only_fetched",
        "pull.refetch_after_lost_ack",
        "pull.refusals_reported",
        "pull.honours_retry_after",
        "pull.resumes_from_cursor",
    }
)


class Puller:
    """A supplier's puller and its read-back server.

    ``mode``: ``correct``; ``overack`` acknowledges beyond the page it got;
    ``impatient`` retries a 503 after 0.2 s whatever its Retry-After;
    ``silent`` acknowledges past what it refuses without reporting it.
    """

    LIMIT = 2

    def __init__(self, state: StateDir, org_number: str, url: str, mode: str = "correct") -> None:
        if mode not in MODES:
            raise ValueError(f"no puller mode {mode!r}: one of {MODES}")
        self.mode, self.org, self.url = mode, org_number, url
        cert, key = state.supplier_cert(org_number), state.supplier_key(org_number)
        self.icc = x509.load_pem_x509_certificate(state.icc_cert.read_bytes())
        self.client = ssl.create_default_context(cafile=str(state.ca_cert))
        self.client.load_cert_chain(cert, key)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_cert_chain(cert, key)
        server.load_verify_locations(cafile=state.ca_cert)
        self.server = server
        self.cursor = 0  # saved after each acknowledged page
        self.stored: set[str] = set()
        self.ledger: list[tuple[str, str]] = []
        self.refused_credit = False
        self.acks = 0
        self.port = 0
        self._stop = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def readback(self) -> str:
        return f"https://127.0.0.1:{self.port}/b2b/ledger"

    def __enter__(self) -> Puller:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        self._task = asyncio.run_coroutine_threadsafe(self._pull(), self._loop)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._task.result(20)
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/b2b/ledger", self._ledger)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        (self.port,) = free_ports(1)
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.server).start()

    async def _ledger(self, request: web.Request) -> web.Response:
        after, limit = int(request.query.get("after", 0)), int(request.query.get("limit", 500))
        entries = [
            {"position": i, "envelope_id": e, "message_id": m, "loaded_at_ms": 1_700_000_000 + i}
            for i, (e, m) in enumerate(self.ledger, 1)
            if i > after
        ]
        page = entries[:limit]
        more = len(entries) > limit
        return web.json_response({"entries": page, "next": page[-1]["position"] if more else None})

    async def _pull(self) -> None:
        while not self._stop.is_set():
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.client),
                timeout=aiohttp.ClientTimeout(total=10),
            ) as http:
                restart = await self._session(http)
            if restart:  # the puller "restarts": away for a while, then from its saved cursor
                await asyncio.sleep(3.5)

    async def _session(self, http: aiohttp.ClientSession) -> bool:
        """Poll until stopped (False) or until it is time to restart (True)."""
        while not self._stop.is_set():
            try:
                query = {"after": str(self.cursor), "limit": str(self.LIMIT)}
                async with http.get(self.url, params=query) as resp:
                    doc = await resp.json(content_type=None)
                    if await self._told_to_wait(resp):
                        continue
                if resp.status == 400 and doc.get("code") == "CURSOR_INVALID":
                    self.cursor = 0
                    continue
                if resp.status != 200 or not doc["envelopes"]:
                    await asyncio.sleep(0.1)
                    continue
                refused = [r for e in doc["envelopes"] if (r := self._store(e)) is not None]
                up_to = doc["envelopes"][-1]["cursor"]
                if await self._ack(http, up_to, refused) and self.acks == 3:
                    return True
            except (aiohttp.ClientError, OSError, TimeoutError):
                await asyncio.sleep(0.5)  # the ICC is away, or the acknowledgement was lost
        return False

    async def _told_to_wait(self, resp: aiohttp.ClientResponse) -> bool:
        if resp.status not in (429, 503):
            return False
        wait = 0.2 if self.mode == "impatient" else float(resp.headers.get("Retry-After", 1))
        await asyncio.sleep(wait)
        return True

    async def _ack(self, http: aiohttp.ClientSession, up_to: int, refused: list[Any]) -> bool:
        body: dict[str, Any] = {"up_to": up_to + (2 if self.mode == "overack" else 0)}
        if refused and self.mode != "silent":
            body["refused"] = refused
        async with http.post(self.url + "/ack", json=body) as resp:
            if await self._told_to_wait(resp):
                return False
            status = resp.status
        if status == 400 and self.mode == "overack":  # beyond any cursor issued yet
            async with http.post(self.url + "/ack", json={**body, "up_to": up_to}) as again:
                status = again.status
        if status != 204:
            return False
        self.cursor = up_to  # saved only once acknowledged
        self.acks += 1
        return True

    def _store(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """Verify and store one envelope, once; the refusal to report, if it refuses it."""
        body = base64.b64decode(item["envelope"])
        XMLVerifier().verify(body, x509_cert=self.icc, expect_references=1)
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
        scopes = {
            s.findtext("sbd:Type", namespaces=NS): s.findtext(
                "sbd:InstanceIdentifier", namespaces=NS
            )
            for s in root.iterfind(".//sbd:Scope", NS)
        }
        assert scopes.get("ORG_NUMBER") == self.org
        envelope_id = str(item["envelope_id"])
        if envelope_id in self.stored:
            return None  # fetched again: a duplicate, loaded once
        if item["message_type"] == "KREDIT" and not self.refused_credit:
            self.refused_credit = True  # our own rule refuses it, for good
            self.stored.add(envelope_id)
            return {
                "cursor": item["cursor"],
                "envelope_id": envelope_id,
                "code": DOCUMENT_INVALID,
                "reason": "the credit note names no invoice we know",
            }
        self.stored.add(envelope_id)
        self.ledger.append((envelope_id, str(scopes.get("MESSAGE_ID"))))
        return None
