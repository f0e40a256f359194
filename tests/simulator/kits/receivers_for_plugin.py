"""A supplier's receiver for the pytest plugin's tests, run as a process of its own.

Written from the docs, independently of ``supplier_stub/`` and of
``simulator/`` (it imports neither): aiohttp behind mutual TLS (the client must
present a certificate of the AF test CA), the envelope's signature verified
with the ICC's certificate (signxml), its addressee checked, receipts as
docs/openapi.yaml says (201 ``accepted`` the first time, 200 ``duplicate`` for
the same envelope id and document), and the read-back ``GET /b2b/ledger``.

``--mode conflict`` is the broken receiver of issue 15: it answers 409 to a
re-sent envelope whose bytes differ (the ICC's redelivery after a crash: same
envelope id and document, a new signature and creation time).

To make a redelivery after a crash happen, the receiver stores new envelopes
number 2 and 3 and holds their answer ``--hold`` seconds: an ICC worker killed
meanwhile never hears it, and the restarted one re-sends them.  Every answer
is written to ``--log`` (one JSON line each).  Prints one JSON line
``{"url", "readback"}`` when it listens; stops on SIGTERM.

    python receivers_for_plugin.py --cert C --key K --ca CA --icc ICC --org N --log F
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import socket
import ssl
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from lxml import etree
from signxml.verifier import XMLVerifier

SBD = "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"
NS = {"sbd": SBD}
HELD = (2, 3)  # the new envelopes (by arrival) whose answer is held


class Receiver:
    def __init__(self, args: argparse.Namespace) -> None:
        self.mode, self.org, self.hold = args.mode, args.org, args.hold
        self.icc = x509.load_pem_x509_certificate(Path(args.icc).read_bytes())
        self.log = Path(args.log)
        self.stored: dict[str, tuple[str, bytes, str]] = {}  # id → (doc digest, body, at)
        self.ledger: list[tuple[str, str, int]] = []  # (envelope id, message id, loaded at ms)

    def _write(self, **fields: Any) -> None:
        with self.log.open("a") as f:
            f.write(json.dumps(fields) + "\n")

    async def envelopes(self, request: web.Request) -> web.Response:
        body = await request.read()
        if b"<!DOCTYPE" in body:
            return _problem(400, "XML_DOCTYPE")
        try:
            parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
            root = etree.fromstring(body, parser)
            XMLVerifier().verify(body, x509_cert=self.icc, expect_references=1)
        except Exception:
            return _problem(403, "SIGNATURE_INVALID")
        envelope_id = str(
            root.findtext(".//sbd:DocumentIdentification/sbd:InstanceIdentifier", namespaces=NS)
        )
        scopes = {
            s.findtext("sbd:Type", namespaces=NS): s.findtext(
                "sbd:InstanceIdentifier", namespaces=NS
            )
            for s in root.iterfind(".//sbd:Scope", NS)
        }
        if scopes.get("ORG_NUMBER") != self.org:
            return _problem(421, "WRONG_ADDRESSEE")
        sbd = root.find("sbd:StandardBusinessDocument", NS)
        document = sbd[1] if sbd is not None and len(sbd) > 1 else None
        if document is None:
            return _problem(400, "ENVELOPE_INVALID")
        digest = hashlib.sha256(etree.tostring(document, method="c14n", exclusive=True)).hexdigest()
        message_id = str(scopes.get("MESSAGE_ID"))
        sha = hashlib.sha256(body).hexdigest()
        earlier = self.stored.get(envelope_id)
        if earlier is not None:
            if earlier[0] != digest or (self.mode == "conflict" and earlier[1] != body):
                self._write(envelope_id=envelope_id, message_id=message_id, status=409, body=sha)
                return _problem(409, "ENVELOPE_CONFLICT")
            self._write(envelope_id=envelope_id, message_id=message_id, status=200, body=sha)
            return _receipt(envelope_id, earlier[2], "duplicate", 200)
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.stored[envelope_id] = (digest, body, at)
        self.ledger.append((envelope_id, message_id, int(time.time() * 1000)))
        self._write(envelope_id=envelope_id, message_id=message_id, status=201, body=sha)
        if len(self.stored) in HELD:
            await asyncio.sleep(self.hold)  # stored: the ICC worker may die before the answer
        return _receipt(envelope_id, at, "accepted", 201)

    async def read_back(self, request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
            limit = max(1, min(int(request.query.get("limit", "500")), 1000))
        except ValueError:
            return _problem(400, "BAD_QUERY")
        entries = [
            {"position": i, "envelope_id": e, "message_id": m, "loaded_at_ms": at}
            for i, (e, m, at) in enumerate(self.ledger, 1)
            if i > after
        ]
        page = entries[:limit]
        more = len(entries) > limit
        return web.json_response({"entries": page, "next": page[-1]["position"] if more else None})


def _problem(status: int, code: str) -> web.Response:
    return web.json_response(
        {"type": "about:blank", "status": status, "code": code},
        status=status,
        content_type="application/problem+json",
    )


def _receipt(envelope_id: str, at: str, status: str, code: int) -> web.Response:
    return web.json_response(
        {"envelope_id": envelope_id, "received_at": at, "status": status}, status=code
    )


async def serve(args: argparse.Namespace) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: only clients of the AF test CA
    ctx.load_cert_chain(args.cert, args.key)
    ctx.load_verify_locations(cafile=args.ca)
    receiver = Receiver(args)
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/b2b/envelopes", receiver.envelopes)
    app.router.add_get("/b2b/ledger", receiver.read_back)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock, ssl_context=ctx).start()
    base = f"https://127.0.0.1:{port}/b2b"
    print(json.dumps({"url": f"{base}/envelopes", "readback": f"{base}/ledger"}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    for name in ("--cert", "--key", "--ca", "--icc", "--org", "--log"):
        p.add_argument(name, required=True)
    p.add_argument("--mode", choices=("correct", "conflict"), default="correct")
    p.add_argument("--hold", type=float, default=4.0)
    asyncio.run(serve(p.parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
