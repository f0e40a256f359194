"""The pull conformance kit against pullers written here, from the docs, independently of our stub.

Each puller is a small aiohttp client that fetches from the kit's outbox
over mutual TLS (docs/pull.md), verifies each envelope with lxml,
cryptography and signxml directly (not ``supplier_stub``, not
``simulator.vocabulary.verifier``), acknowledges with the ``refused`` list
and serves its ledger as the read-back (docs/openapi.yaml).  The correct one
passes every pull case; each deliberately broken one fails exactly its own.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import SignXMLException
from signxml.verifier import SignatureConfiguration, XMLVerifier

from simulator.kits.conformance import ConformanceReport, Grade
from simulator.kits.conformance_pull import PullSetup, run_pull_conformance
from simulator.kits.conformance_pull_cases import PULL_CASES, REFUSING
from simulator.kits.conformance_pull_kit import PullTarget
from simulator.lab.pki import init_pki, numbered_suppliers
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
    flaws: Flaws
    cursor: int = 0
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
                if resp.status != 200:
                    return POLL
                page = await resp.json()
        except (aiohttp.ClientError, TimeoutError):
            return POLL
        if not page["envelopes"]:
            return POLL
        refused, last = [], after
        for entry in page["envelopes"]:
            try:
                self._receive(base64.b64decode(entry["envelope"]))
            except Refused as refusal:
                if not self.flaws.no_refusals:
                    refused.append(
                        {
                            "cursor": entry["cursor"],
                            "envelope_id": entry["envelope_id"],
                            "code": refusal.code,
                            "reason": refusal.reason,
                        }
                    )
            last = entry["cursor"]
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
        return 0.0 if page["more"] else POLL

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


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Setup:
    state: StateDir
    org_number: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    state = StateDir(tmp_path_factory.mktemp("pullers") / "state")
    (supplier,) = numbered_suppliers(1)
    init_pki(state, [supplier])
    return Setup(state, supplier.org_number)


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
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    try:
        yield f"https://127.0.0.1:{port}/b2b/ledger"
    finally:
        await runner.cleanup()


async def run_kit(
    setup: Setup, flaws: Flaws = Flaws(), *, with_readback: bool = False, **changes: Any
) -> tuple[ConformanceReport, Puller]:
    """The kit on a free port and the puller it prints instructions for, until the report."""
    port = _free_port()
    puller = Puller(setup.state, setup.org_number, f"https://127.0.0.1:{port}/b2b/outbox", flaws)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    def listening(info: PullSetup) -> None:
        assert info.url == puller.outbox
        tasks.append(asyncio.create_task(puller.run(stop)))

    options: dict[str, Any] = {"seed": 5, "burst": 40, "timeout": 5.0, **changes}
    try:
        async with readback(puller) as url:
            target = PullTarget(
                state=setup.state,
                org_number=setup.org_number,
                host="127.0.0.1",
                port=port,
                readback=url if with_readback else None,
                **options,
            )
            report = await run_pull_conformance(target, listening=listening)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return report, puller


def failed(report: ConformanceReport) -> set[str]:
    return {r.case_id for r in report.results if r.grade is Grade.FAILED}


#: The envelope cases whose envelopes must be listed as refused (docs/conformance.md).
MUST_REFUSE = {
    "conflict",
    "tampered",
    "unsigned",
    "untrusted-signer",
    "signer-foreign-ca",
    "signature-wrapping",
    "sha1-signature",
    "sha1-digest",
    "timestamp-future",
    "replay-after-a-day",
    "misaddressed-org",
    "misaddressed-cert",
    "misaddressed-url",
    "hostile-xml",
    "xxe-external-entity",
    "external-dtd",
    "oversized-body",
    "signer-revoked",
}


#: The cases whose envelopes only a signature check refuses.
SIGNATURE_CASES = {
    "tampered",
    "unsigned",
    "untrusted-signer",
    "signer-foreign-ca",
    "signature-wrapping",
    "sha1-signature",
    "sha1-digest",
    "signer-revoked",
}


def test_the_plan_sorts_every_envelope_case() -> None:
    """What must be refused is the guide's list; the rest of the envelope cases are acknowledged."""
    assert frozenset(MUST_REFUSE) == REFUSING


class TestCorrectPuller:
    async def test_passes_every_pull_case_with_the_readback(self, setup: Setup) -> None:
        """Written from the docs without our code, it passes the whole pull plan."""
        report, puller = await run_kit(setup, with_readback=True)
        assert [r.case_id for r in report.results] == [c.id for c in PULL_CASES]
        assert report.passed, [(r.case_id, r.reason) for r in report.results if not r.passed]
        by_id = {r.case_id: r for r in report.results}
        assert by_id["valid-order"].reason == "acknowledged, not listed as refused, loaded once"
        assert by_id["tampered"].reason.startswith("refused SIGNATURE_INVALID")
        assert by_id["signer-foreign-ca"].reason.startswith("refused SIGNER_UNTRUSTED")
        assert by_id["resigned-redelivery"].reason.startswith("acknowledged again (a duplicate)")
        assert "fetched it again" in by_id["lost-ack-503"].reason
        assert "fetched it again" in by_id["lost-ack-dropped"].reason
        burst = by_id["month-end-burst"]
        assert burst.metrics["envelopes"] == burst.metrics["acknowledged"] == 40
        assert 0 < burst.metrics["p50_ms"] <= burst.metrics["p99_ms"]
        # Loaded once each, whatever was fetched again.
        ids = [e["envelope_id"] for e in puller.ledger]
        assert len(ids) == len(set(ids))


BROKEN = [
    (Flaws(ack_beyond=True), {"ack-only-fetched"}),
    (Flaws(no_refusals=True), MUST_REFUSE),
    (Flaws(ignore_retry_after=True), {"retry-after-429", "retry-after-503"}),
    (Flaws(forget_lost_ack=True), {"lost-ack-503", "lost-ack-dropped"}),
    (Flaws(no_signature_check=True), SIGNATURE_CASES),
]


class TestBrokenPullers:
    @pytest.mark.parametrize(
        ("flaws", "expected"),
        BROKEN,
        ids=[
            "acks-beyond-fetched",
            "never-lists-refusals",
            "ignores-retry-after",
            "no-refetch",
            "acks-bad-signatures",
        ],
    )
    async def test_fails_exactly_its_cases(
        self, setup: Setup, flaws: Flaws, expected: set[str]
    ) -> None:
        """Each flaw fails its case(s) and nothing else; each failure says what to change."""
        report, _ = await run_kit(setup, flaws)
        assert failed(report) == expected, [(r.case_id, r.reason) for r in report.failures]
        assert report.not_graded == []
        for result in report.failures:
            assert result.advice.startswith("fix: ")
            assert "; see docs/conformance.md#" in result.advice

    async def test_an_acknowledged_bad_signature_is_accepted_what_must_be_refused(
        self, setup: Setup
    ) -> None:
        report, _ = await run_kit(
            setup, Flaws(no_refusals=True), with_readback=True, case_ids=("tampered",)
        )
        (result,) = report.results
        assert result.reason == (
            "expected 403, got acknowledged, not listed as refused: the puller accepted what "
            "it must refuse, an envelope changed after it was signed"
        )
        assert 'list it in the acknowledgement\'s "refused" list' in result.fix

    async def test_acking_beyond_says_what_it_would_lose(self, setup: Setup) -> None:
        report, _ = await run_kit(setup, Flaws(ack_beyond=True), case_ids=("ack-only-fetched",))
        (result,) = report.results
        assert "acknowledged up to cursor 100, but the kit had served it only up to 1" in (
            result.reason
        )
        assert result.docs == "docs/conformance.md#acknowledge-only-what-you-fetched"

    async def test_a_puller_that_never_comes_is_not_exercised_never_passed(
        self, setup: Setup
    ) -> None:
        port = _free_port()
        target = PullTarget(
            state=setup.state,
            org_number=setup.org_number,
            host="127.0.0.1",
            port=port,
            timeout=0.3,
            case_ids=("valid-order", "retry-after-429"),
        )
        report = await run_pull_conformance(target)
        assert failed(report) == {"valid-order", "retry-after-429"}
        for result in report.results:
            assert result.reason.startswith("not exercised: no puller fetched from https://")

    async def test_a_puller_that_stops_fails_the_rest_never_passes(self, setup: Setup) -> None:
        """The puller goes away after the first case: the rest fail, 'not exercised' once gone."""
        port = _free_port()
        flaws = Flaws()
        puller = Puller(
            setup.state, setup.org_number, f"https://127.0.0.1:{port}/b2b/outbox", flaws
        )
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        ids = ("valid-order", "valid-credit", "duplicate", "retry-after-429")
        target = PullTarget(
            state=setup.state,
            org_number=setup.org_number,
            host="127.0.0.1",
            port=port,
            timeout=1.0,
            case_ids=ids,
        )
        report = await run_pull_conformance(
            target,
            listening=lambda _: tasks.append(asyncio.create_task(puller.run(stop))),
            progress=lambda _: stop.set(),
        )
        await asyncio.gather(*tasks)
        by_id = {r.case_id: r for r in report.results}
        assert by_id["valid-order"].grade is Grade.PASSED
        assert failed(report) == set(ids) - {"valid-order"}
        for case in ("duplicate", "retry-after-429"):
            assert by_id[case].reason == (
                "not exercised: the puller stopped fetching (no request for 1 s)"
            )
        assert report.to_json()["mode"] == "pull"
