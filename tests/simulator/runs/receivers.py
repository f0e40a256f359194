"""Supplier receivers written for the tests, independently of ``supplier_stub/``.

A :class:`Receiver` is a small aiohttp server over mutual TLS (its certificate
and the CA it trusts from the state directory AF gives a supplier) that
verifies each envelope with signxml/lxml/cryptography directly, keeps a ledger
of its own and serves the read-back of docs/openapi.yaml (``GET
/b2b/ledger?after=POSITION&limit=N``).  The correct one loads each message
once in the order received and answers a re-signed re-send ``duplicate``;
the broken ones get one thing wrong each (:data:`MODES`).  Import it as
``from tests.simulator.runs.receivers import Receiver``.  :func:`hand_started_stub`
is the reference stub started as a supplier would start it, by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from lxml import etree
from signxml.verifier import XMLVerifier

from simulator.lab.ports import free_ports
from simulator.vocabulary.state import StateDir

__all__ = ["MODES", "HandStartedStub", "Receiver", "hand_started_stub"]

SBD = "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"
NS = {"sbd": SBD}
#: ``correct``; ``conflict`` answers 409 to a re-signed re-send (same envelope id and
#: document, other bytes); ``double`` loads every re-send again; ``disorder`` loads
#: by envelope id instead of in the order received; ``garbage`` answers its read-back
#: with JSON that is not a ledger page.
MODES = ("correct", "conflict", "double", "disorder", "garbage")


class Receiver:
    """A supplier endpoint for ``org_number`` over mutual TLS, with a ledger and its
    read-back, on a thread of its own (``with Receiver(state, org) as r: … r.url``)."""

    def __init__(self, state: StateDir, org_number: str, mode: str = "correct") -> None:
        if mode not in MODES:
            raise ValueError(f"no receiver mode {mode!r}: one of {MODES}")
        self.mode, self.org = mode, org_number
        self.icc_pem = state.icc_cert.read_bytes()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(state.supplier_cert(org_number), state.supplier_key(org_number))
        ctx.load_verify_locations(cafile=state.ca_cert)
        self.ctx = ctx
        self.seen: dict[str, tuple[str, bytes]] = {}  # envelope id → (document digest, bytes)
        self.ledger: list[tuple[str, str]] = []  # (envelope id, message id), as loaded
        self.arrivals: list[str] = []  # envelope ids, as they arrived (re-sends included)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/b2b/envelopes"

    @property
    def readback(self) -> str:
        return f"https://127.0.0.1:{self.port}/b2b/ledger"

    @property
    def resends(self) -> int:
        """Envelopes that arrived again (the ICC's re-sends, re-signed or not)."""
        return len(self.arrivals) - len(set(self.arrivals))

    def __enter__(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/b2b/envelopes", self._receive)
        app.router.add_get("/b2b/ledger", self._ledger)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        (self.port,) = free_ports(1)
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ctx).start()

    async def _receive(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert", None) if request.transport else None
        if not peer:
            return web.json_response({"code": "CLIENT_NOT_ICC"}, status=403)
        body = await request.read()
        if b"<!DOCTYPE" in body:
            return web.json_response({"code": "XML_DOCTYPE"}, status=400)
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        root = etree.fromstring(body, parser)
        icc = x509.load_pem_x509_certificate(self.icc_pem)
        try:  # with the ICC's own certificate, never the one the envelope embeds
            XMLVerifier().verify(body, x509_cert=icc, expect_references=1)
        except Exception:
            return web.json_response({"code": "SIGNATURE_INVALID"}, status=403)
        envelope_id = root.findtext(
            ".//sbd:DocumentIdentification/sbd:InstanceIdentifier", namespaces=NS
        )
        scopes = {
            s.findtext("sbd:Type", namespaces=NS): s.findtext(
                "sbd:InstanceIdentifier", namespaces=NS
            )
            for s in root.iterfind(".//sbd:Scope", NS)
        }
        if scopes.get("ORG_NUMBER") != self.org:
            return web.json_response({"code": "WRONG_ADDRESSEE"}, status=421)
        document = root.find("sbd:StandardBusinessDocument", NS)[1]  # type: ignore[index]
        digest = hashlib.sha256(etree.tostring(document, method="c14n", exclusive=True)).hexdigest()
        assert envelope_id is not None
        message_id = str(scopes.get("MESSAGE_ID"))
        self.arrivals.append(envelope_id)
        earlier = self.seen.get(envelope_id)
        if earlier is not None:
            if earlier[0] != digest or (self.mode == "conflict" and earlier[1] != body):
                return web.json_response({"code": "ENVELOPE_CONFLICT"}, status=409)
            if self.mode == "double":
                self.ledger.append((envelope_id, message_id))
            return web.json_response({"status": "duplicate", "envelope_id": envelope_id})
        self.seen[envelope_id] = (digest, body)
        self.ledger.append((envelope_id, message_id))
        return web.json_response({"status": "accepted", "envelope_id": envelope_id}, status=201)

    async def _ledger(self, request: web.Request) -> web.Response:
        if self.mode == "garbage":
            return web.json_response({"entries": "all of them", "next": "soon"})
        after, limit = int(request.query.get("after", 0)), int(request.query.get("limit", 500))
        rows = sorted(self.ledger) if self.mode == "disorder" else list(self.ledger)
        entries = [
            {
                "position": i,
                "envelope_id": e,
                "message_id": m,
                "loaded_at_ms": 1_700_000_000_000 + i,
            }
            for i, (e, m) in enumerate(rows, 1)
            if i > after
        ]
        page = entries[:limit]
        more = len(entries) > limit
        return web.json_response({"entries": page, "next": page[-1]["position"] if more else None})


@dataclass(frozen=True)
class HandStartedStub:
    """The reference stub as a supplier starts it by hand (``b2bsim serve supplier-stub``)
    from the state directory AF gave it: one supplier, its endpoint and read-back."""

    state: Path
    url: str
    org: str

    @property
    def readback(self) -> str:
        return self.url.replace("/envelopes", "/ledger")

    def endpoint_args(self) -> list[str]:
        """The options of ``b2bsim run`` that put supplier 1 at this stub."""
        return [
            *("--endpoint", self.url, "--endpoint-ca", str(self.state / "pki" / "ca.pem")),
            *("--org-number", self.org, "--readback", self.readback),
        ]


@contextlib.contextmanager
def hand_started_stub(tmp_path: Path) -> Iterator[HandStartedStub]:
    """``b2bsim pki init --suppliers 1`` then ``b2bsim serve supplier-stub``; stopped after.

    A free port can be taken by another process before the stub binds it: then the
    stub exits before it is ready, and it is started again on other ports (3 tries).
    """
    for attempt in range(3):
        state = tmp_path / f"af-state-{attempt}" if attempt else tmp_path / "af-state"
        (base,) = free_ports(1)
        cli = [sys.executable, "-m", "simulator.cli", "--state", str(state)]
        subprocess.run(
            [*cli, "pki", "init", "--suppliers", "1", "--base-port", str(base - 1)],
            check=True,
            capture_output=True,
        )
        log = state / "stub.log"
        with log.open("w") as err:
            stub = subprocess.Popen(
                [*cli, "serve", "supplier-stub", "--db", str(state / "stub.sqlite")],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert stub.stdout is not None
        line = stub.stdout.readline()
        if line:
            break
        stub.wait(20)
        stub.stdout.close()
    else:
        raise AssertionError(f"the supplier stub did not start: {log.read_text()[-2000:]}")
    try:
        ready = json.loads(line)
        registry = json.loads((state / "registry.json").read_text())
        yield HandStartedStub(state, ready["urls"][0], str(registry["suppliers"][0]["org_number"]))
    finally:
        stub.send_signal(signal.SIGTERM)
        stub.wait(20)
        stub.stdout.close()
