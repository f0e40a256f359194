"""A supplier's puller written for the tests from docs/pull.md, independently of our stub.

The puller is a small aiohttp client that fetches from an outbox (the pull
conformance kit's, or a scenario run's ICC) over mutual TLS with the
supplier's certificate of the state directory, verifies each envelope with
lxml, cryptography and signxml directly (not ``supplier_stub``, not
``simulator.vocabulary.verifier``), acknowledges with the ``refused`` list
and serves its ledger as the read-back (docs/openapi.yaml).  A cursor the
outbox does not know (``400 CURSOR_INVALID``: a new outbox, e.g. the next
run's) makes it start again from 0, as docs/pull.md says; after one it may
"restart" once and refuse one document by its own rules, so that a scenario
run exercises every check of a puller.  :class:`Flaws` break it on purpose.

Used by tests/simulator/kits/test_conformance_pullers.py (the kit's grades)
and tests/simulator/kits/test_plan_pull.py (a pull plan, kit and scenario);
:class:`PullerThread` runs one in a thread of its own, for code that blocks.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import re
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import SignXMLException
from signxml.verifier import SignatureConfiguration, XMLVerifier

from simulator.vocabulary.state import StateDir

ENV = "urn:b2bsim:envelope:1"
SBD = "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"env": ENV, "sbd": SBD, "ds": DS}
ICC_ORG_ID = "NTRSE-2021002114"
WINDOW = dt.timedelta(seconds=600)
MAX_BODY = 2 * 1024 * 1024
LIMIT = 100
POLL = 0.05
#: How long a "restart" keeps the puller away (a pause the run's grading sees as one: 3 s).
RESTART_PAUSE = 3.5
SHA2 = (frozenset({SignatureMethod.ECDSA_SHA256}), frozenset({DigestAlgorithm.SHA256}))


@dataclass(frozen=True)
class Flaws:
    """What a broken puller gets wrong (all False: the correct puller)."""

    ack_beyond: bool = False  # acknowledges after + limit, whatever it fetched
    no_refusals: bool = False  # acknowledges everything, never lists a refusal
    ignore_retry_after: bool = False  # retries at its own pace after 429/503
    forget_lost_ack: bool = False  # moves its cursor on even when the ack failed
    no_signature_check: bool = False  # reads the envelope without verifying its signature


class Refused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code)
        self.code, self.reason = code, reason


def _is_icc(cert: x509.Certificate) -> bool:
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    ids = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)]
    return cns == ["ICC"] and ids == [ICC_ORG_ID]


@dataclass
class Puller:
    """A supplier's puller written from docs/pull.md, with optional ``flaws``."""

    state: StateDir
    org: str
    outbox: str
    flaws: Flaws = Flaws()
    # After a CURSOR_INVALID (a new outbox), "restart" once at this acknowledgement: away
    # RESTART_PAUSE seconds, then on from the saved cursor (None: never).
    restart_after_reset: int | None = None
    # After a CURSOR_INVALID, its own rules refuse the first envelope of this message type
    # (DOCUMENT_INVALID), for good, as a supplier's business rules might (None: never).
    refuse_after_reset: str | None = None
    own_refusals: set[str] = field(default_factory=set)
    cursor: int = 0
    resets: int = 0
    acks_since_reset: int = 0
    stored: dict[str, str] = field(default_factory=dict)  # envelope id -> document digest
    ledger: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ca = x509.load_pem_x509_certificate(self.state.ca_cert.read_bytes())
        own = x509.load_pem_x509_certificate(self.state.supplier_cert(self.org).read_bytes())
        self.own_sha256 = hashlib.sha256(own.public_bytes(serialization.Encoding.DER)).hexdigest()

    def client_tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.state.ca_cert))
        ctx.load_cert_chain(self.state.supplier_cert(self.org), self.state.supplier_key(self.org))
        return ctx

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.client_tls(), force_close=True),
            timeout=aiohttp.ClientTimeout(total=10),
        ) as http:
            while not stop.is_set():
                wait = await self._round(http)
                if wait:
                    await asyncio.sleep(wait)

    async def _round(self, http: aiohttp.ClientSession) -> float:
        """One page: fetch, judge, acknowledge; how long to wait before the next."""
        after = self.cursor
        try:
            async with http.get(self.outbox, params={"after": after, "limit": LIMIT}) as resp:
                if resp.status in (429, 503):
                    retry = resp.headers.get("Retry-After", "")
                    honour = retry.isdigit() and not self.flaws.ignore_retry_after
                    return float(retry) if honour else POLL
                if resp.status == 400 and await self._unknown_cursor(resp):
                    self.cursor, self.resets, self.acks_since_reset = 0, self.resets + 1, 0
                    return 0.0
                if resp.status != 200:
                    return POLL
                page = await resp.json()
        except (aiohttp.ClientError, TimeoutError):
            return POLL
        if not page["envelopes"]:
            return POLL
        refused = [r for entry in page["envelopes"] if (r := self._judge(entry)) is not None]
        last = page["envelopes"][-1]["cursor"]
        up_to = after + LIMIT if self.flaws.ack_beyond else last
        try:
            async with http.post(
                self.outbox + "/ack", json={"up_to": up_to, "refused": refused}
            ) as resp:
                acked = resp.status == 204
        except (aiohttp.ClientError, TimeoutError):
            acked = False
        if acked or self.flaws.forget_lost_ack:
            self.cursor = last
        if not acked:
            return POLL
        self.acks_since_reset += 1
        if self.resets and self.acks_since_reset == self.restart_after_reset:
            return RESTART_PAUSE
        return 0.0 if page["more"] else POLL

    def _judge(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """Receive one envelope of a page; its entry of the ``refused`` list, if refused."""
        try:
            if self._own_rule_refuses(entry):
                raise Refused("DOCUMENT_INVALID", "our own rules refuse this document")
            self._receive(base64.b64decode(entry["envelope"]))
        except Refused as refusal:
            if not self.flaws.no_refusals:
                return {
                    "cursor": entry["cursor"],
                    "envelope_id": entry["envelope_id"],
                    "code": refusal.code,
                    "reason": refusal.reason,
                }
        return None

    def _own_rule_refuses(self, entry: dict[str, Any]) -> bool:
        envelope_id = str(entry["envelope_id"])
        if envelope_id in self.own_refusals:
            return True  # fetched again: refused again
        first = self.resets and not self.own_refusals and envelope_id not in self.stored
        if first and entry["message_type"] == self.refuse_after_reset:
            self.own_refusals.add(envelope_id)
            return True
        return False

    @staticmethod
    async def _unknown_cursor(resp: aiohttp.ClientResponse) -> bool:
        try:
            doc = await resp.json(content_type=None)
        except ValueError:
            return False
        return isinstance(doc, dict) and doc.get("code") == "CURSOR_INVALID"

    def _receive(self, body: bytes) -> None:
        """Verify, store once by envelope id, load once; Refused if it must not be."""
        envelope_id, digest, message_id = self._open(body)
        known = self.stored.get(envelope_id)
        if known is None:
            self.stored[envelope_id] = digest
            self.ledger.append(
                {
                    "position": len(self.ledger) + 1,
                    "envelope_id": envelope_id,
                    "message_id": message_id,
                    "loaded_at_ms": int(time.time() * 1000),
                }
            )
        elif known != digest:
            raise Refused("ENVELOPE_CONFLICT", "another document under a known envelope id")

    def _open(self, body: bytes) -> tuple[str, str, str]:
        if len(body) > MAX_BODY:
            raise Refused("BODY_TOO_LARGE", "over 2 MiB")
        if re.search(rb"<!DOCTYPE", body, re.IGNORECASE):
            raise Refused("XML_DOCTYPE", "a DOCTYPE")
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        try:
            root = etree.fromstring(body, parser)
        except etree.XMLSyntaxError:
            raise Refused("XML_MALFORMED", "not XML") from None
        if root.tag != f"{{{ENV}}}Envelope":
            raise Refused("ENVELOPE_MALFORMED", "not an envelope")
        signed = root if self.flaws.no_signature_check else self._verified(root, body)
        header = signed.find("sbd:StandardBusinessDocument/sbd:StandardBusinessDocumentHeader", NS)
        if header is None:
            raise Refused("ENVELOPE_MALFORMED", "no header")
        scopes = {
            s.findtext("sbd:Type", namespaces=NS): s.findtext(
                "sbd:InstanceIdentifier", namespaces=NS
            )
            for s in header.findall("sbd:BusinessScope/sbd:Scope", NS)
        }
        if (scopes.get("ORG_NUMBER"), scopes.get("RECEIVER_CERT_SHA256")) != (
            self.org,
            self.own_sha256,
        ) or (scopes.get("RECEIVER_URL") or "").rstrip("/") != self.outbox:
            raise Refused("WRONG_ADDRESSEE", "not for us")
        ident = header.find("sbd:DocumentIdentification", NS)
        assert ident is not None
        created = dt.datetime.fromisoformat(ident.findtext("sbd:CreationDateAndTime", "", NS))
        if abs(dt.datetime.now(dt.UTC) - created) > WINDOW:
            raise Refused("ENVELOPE_STALE", "outside the window")
        document = header.getnext()
        assert document is not None
        digest = hashlib.sha256(etree.tostring(document, method="c14n")).hexdigest()
        envelope_id = ident.findtext("sbd:InstanceIdentifier", "", NS)
        return envelope_id, digest, scopes.get("MESSAGE_ID") or ""

    def _verified(self, root: etree._Element, body: bytes) -> etree._Element:
        """What the ICC's signature covers (Refused if it is not the ICC's, or not whole)."""
        signatures = root.findall(".//ds:Signature", NS)
        if not signatures:
            raise Refused("SIGNATURE_MISSING", "unsigned")
        if len(signatures) > 1 or root[-1] is not signatures[0]:
            raise Refused("SIGNATURE_WRAPPING", "the signature is not the root's last child")
        signer = self._signer(signatures[0])
        try:
            verified = XMLVerifier().verify(
                body,
                x509_cert=signer.public_bytes(serialization.Encoding.PEM).decode(),
                expect_config=SignatureConfiguration(
                    signature_methods=SHA2[0], digest_algorithms=SHA2[1], expect_references=1
                ),
            )
        except SignXMLException as exc:
            raise Refused("SIGNATURE_INVALID", str(exc)[:80]) from None
        assert not isinstance(verified, list)
        signed = verified.signed_xml
        assert signed is not None
        return signed

    def _signer(self, signature: etree._Element) -> x509.Certificate:
        text = signature.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", "", NS)
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
            cert.verify_directly_issued_by(self.ca)
        except (ValueError, TypeError, CryptoInvalidSignature):
            raise Refused("SIGNER_UNTRUSTED", "not from the AF CA") from None
        if not _is_icc(cert):
            raise Refused("SIGNER_UNTRUSTED", "not the ICC")
        crl = x509.load_pem_x509_crl((self.state.pki / "crl.pem").read_bytes())
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise Refused("SIGNER_REVOKED", "on AF's CRL")
        return cert

    async def ledger_page(self, request: web.Request) -> web.Response:
        after = int(request.query.get("after", "0"))
        limit = int(request.query.get("limit", "500"))
        entries = [e for e in self.ledger if e["position"] > after][:limit]
        last = entries[-1]["position"] if entries else None
        more = last is not None and last < len(self.ledger)
        return web.json_response({"entries": entries, "next": last if more else None})


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def readback(puller: Puller) -> AsyncIterator[str]:
    """The puller's ledger as GET /b2b/ledger, over mutual TLS with its own certificate."""
    state = puller.state
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(state.supplier_cert(puller.org), state.supplier_key(puller.org))
    ctx.load_verify_locations(cafile=str(state.ca_cert))
    ctx.verify_mode = ssl.CERT_REQUIRED
    app = web.Application()
    app.router.add_get("/b2b/ledger", puller.ledger_page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    try:
        yield f"https://127.0.0.1:{port}/b2b/ledger"
    finally:
        await runner.cleanup()


class PullerThread:
    """``puller`` polling in a thread of its own, with its read-back; a context manager.

    For code that blocks (``b2bsim plan run``): the puller keeps polling across
    the kit's outbox and the scenario runs' outboxes, as a real one would.
    """

    def __init__(self, puller: Puller) -> None:
        self.puller = puller
        self.readback = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stop: asyncio.Event | None = None
        self._served: Any = None

    def __enter__(self) -> PullerThread:
        ready = threading.Event()

        async def serve() -> None:
            self._stop = asyncio.Event()
            async with readback(self.puller) as url:
                self.readback = url
                ready.set()
                await self.puller.run(self._stop)

        self._thread.start()
        self._served = asyncio.run_coroutine_threadsafe(serve(), self._loop)
        assert ready.wait(10), "the puller's read-back did not start"
        return self

    def __exit__(self, *_: object) -> None:
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        self._served.result(20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
