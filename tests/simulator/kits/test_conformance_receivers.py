"""The conformance kit against receivers written here, from the docs, independently of our stub.

Each receiver is a small aiohttp server behind mutual TLS that verifies
envelopes with lxml, cryptography and signxml directly (not ``supplier_stub``
and not ``simulator.vocabulary.verifier``), as a supplier would write it from
docs/envelope.md and docs/conformance.md.  The correct one passes every case;
each deliberately broken one fails exactly the case(s) of its flaw.  (The
reference stub passing every case is tests/simulator/kits/test_conformance.py.)
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import re
import shutil
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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

from simulator import cli
from simulator.kits.conformance import ConformanceReport, ConformanceTarget, Grade, run_conformance
from simulator.kits.conformance_cases import CASES
from simulator.lab.pki import init_pki, numbered_suppliers
from simulator.vocabulary.state import StateDir

REPO = Path(__file__).resolve().parents[3]
ENV = "urn:b2bsim:envelope:1"
SBD = "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"env": ENV, "sbd": SBD, "ds": DS}
ICC_ORG_ID = "NTRSE-2021002114"  # docs/conformance.md: the ICC's organizationIdentifier
WINDOW = dt.timedelta(seconds=600)  # docs/security.md: "600 s is a sensible value"
MAX_BODY = 2 * 1024 * 1024
PATH = "/b2b/envelopes"
SHA2 = (
    frozenset({SignatureMethod.ECDSA_SHA256}),
    frozenset({DigestAlgorithm.SHA256}),
)
WITH_SHA1 = (
    frozenset({SignatureMethod.ECDSA_SHA256, SignatureMethod.ECDSA_SHA1}),
    frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA1}),
)


@dataclass(frozen=True)
class Flaws:
    """What a broken receiver gets wrong (all False: the correct receiver)."""

    raw_identity: bool = False  # (a) duplicate only if the raw bytes are the same
    name_only_signer: bool = False  # (b) verifies with the embedded certificate, checks its name
    accept_sha1: bool = False  # (c) SHA-1 signature and digest methods allowed
    no_time_window: bool = False  # (d) CreationDateAndTime never checked


def _problem(status: int, code: str) -> web.Response:
    return web.json_response(
        {"type": "about:blank", "status": status, "code": code},
        status=status,
        content_type="application/problem+json",
    )


def _is_icc(cert: x509.Certificate) -> bool:
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    ids = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)]
    return cns == ["ICC"] and ids == [ICC_ORG_ID]


class Refused(Exception):
    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status, self.code = status, code


class Receiver:
    """A supplier's push endpoint written from the docs, with optional ``flaws``."""

    def __init__(self, state: StateDir, org_number: str, port: int, flaws: Flaws) -> None:
        self.state, self.org, self.flaws = state, org_number, flaws
        self.url = f"https://127.0.0.1:{port}{PATH}"
        self.port = port
        self.ca = x509.load_pem_x509_certificate(state.ca_cert.read_bytes())
        own = x509.load_pem_x509_certificate(state.supplier_cert(org_number).read_bytes())
        self.own_sha256 = hashlib.sha256(own.public_bytes(serialization.Encoding.DER)).hexdigest()
        self.stored: dict[str, str] = {}  # envelope id -> identity of its content
        self._runner: web.AppRunner | None = None

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.state.supplier_cert(self.org), self.state.supplier_key(self.org))
        ctx.load_verify_locations(cafile=str(self.state.ca_cert))
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(PATH, self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._tls()).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der or not _is_icc(x509.load_der_x509_certificate(der)):
            return _problem(403, "CLIENT_NOT_ICC")
        if request.content_type != "application/xml":
            return _problem(415, "UNSUPPORTED_MEDIA_TYPE")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _problem(413, "BODY_TOO_LARGE")
        try:
            envelope_id, identity = self._open(body)
        except Refused as refusal:
            return _problem(refusal.status, refusal.code)
        known = self.stored.get(envelope_id)
        if known is None:
            self.stored[envelope_id] = identity
            return web.json_response({"status": "accepted", "envelope_id": envelope_id}, status=201)
        if known == identity:
            return web.json_response({"status": "duplicate", "envelope_id": envelope_id})
        return _problem(409, "ENVELOPE_CONFLICT")

    def _open(self, body: bytes) -> tuple[str, str]:
        """Verify ``body``; the envelope id and the identity its duplicates are judged by."""
        if re.search(rb"<!DOCTYPE", body, re.IGNORECASE):
            raise Refused(400, "XML_DOCTYPE")
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        try:
            root = etree.fromstring(body, parser)
        except etree.XMLSyntaxError:
            raise Refused(400, "XML_MALFORMED") from None
        if root.tag != f"{{{ENV}}}Envelope":
            raise Refused(400, "ENVELOPE_MALFORMED")
        signatures = root.findall(".//ds:Signature", NS)
        if not signatures:
            raise Refused(403, "SIGNATURE_MISSING")
        if len(signatures) > 1 or root[-1] is not signatures[0]:
            raise Refused(403, "SIGNATURE_WRAPPING")
        signer = self._signer(signatures[0])
        methods, digests = WITH_SHA1 if self.flaws.accept_sha1 else SHA2
        try:
            verified = XMLVerifier().verify(
                body,
                x509_cert=signer.public_bytes(serialization.Encoding.PEM).decode(),
                expect_config=SignatureConfiguration(
                    signature_methods=methods, digest_algorithms=digests, expect_references=1
                ),
            )
        except SignXMLException:
            raise Refused(403, "SIGNATURE_INVALID") from None
        assert not isinstance(verified, list)  # expect_references=1: one result
        signed = verified.signed_xml  # read only what the signature covers
        if signed is None:
            raise Refused(403, "SIGNATURE_INVALID")
        header = signed.find("sbd:StandardBusinessDocument/sbd:StandardBusinessDocumentHeader", NS)
        if header is None:
            raise Refused(400, "ENVELOPE_MALFORMED")
        scopes = {
            s.findtext("sbd:Type", namespaces=NS): s.findtext(
                "sbd:InstanceIdentifier", namespaces=NS
            )
            for s in header.findall("sbd:BusinessScope/sbd:Scope", NS)
        }
        if (scopes.get("ORG_NUMBER"), scopes.get("RECEIVER_CERT_SHA256")) != (
            self.org,
            self.own_sha256,
        ) or (scopes.get("RECEIVER_URL") or "").rstrip("/") != self.url:
            raise Refused(421, "WRONG_ADDRESSEE")
        ident = header.find("sbd:DocumentIdentification", NS)
        assert ident is not None
        created = dt.datetime.fromisoformat(ident.findtext("sbd:CreationDateAndTime", "", NS))
        if not self.flaws.no_time_window and abs(dt.datetime.now(dt.UTC) - created) > WINDOW:
            raise Refused(422, "ENVELOPE_STALE")
        document = header.getnext()
        if document is None:
            raise Refused(400, "ENVELOPE_MALFORMED")
        content = body if self.flaws.raw_identity else etree.tostring(document, method="c14n")
        return ident.findtext("sbd:InstanceIdentifier", "", NS), hashlib.sha256(content).hexdigest()

    def _signer(self, signature: etree._Element) -> x509.Certificate:
        """The embedded signing certificate, if it is the ICC's from the AF CA and not revoked."""
        text = signature.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", "", NS)
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
        except ValueError:
            raise Refused(403, "SIGNER_UNTRUSTED") from None
        if not _is_icc(cert):
            raise Refused(403, "SIGNER_UNTRUSTED")
        if not self.flaws.name_only_signer:
            try:
                cert.verify_directly_issued_by(self.ca)
            except (ValueError, TypeError, CryptoInvalidSignature):
                raise Refused(403, "SIGNER_UNTRUSTED") from None
            now = dt.datetime.now(dt.UTC)
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                raise Refused(403, "SIGNER_UNTRUSTED")
        crl = x509.load_pem_x509_crl((self.state.pki / "crl.pem").read_bytes())  # every time
        if not crl.is_signature_valid(self.ca.public_key()):  # type: ignore[arg-type]
            raise Refused(403, "SIGNER_REVOKED")
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise Refused(403, "SIGNER_REVOKED")
        return cert


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
    state = StateDir(tmp_path_factory.mktemp("receivers") / "state")
    (supplier,) = numbered_suppliers(1)
    init_pki(state, [supplier])
    return Setup(state, supplier.org_number)


@asynccontextmanager
async def receiver(setup: Setup, flaws: Flaws = Flaws()) -> AsyncIterator[Receiver]:
    r = Receiver(setup.state, setup.org_number, _free_port(), flaws)
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


def target(setup: Setup, url: str, **changes: Any) -> ConformanceTarget:
    state = setup.state
    base = ConformanceTarget(
        url=url,
        target_ca=state.ca_cert,
        org_number=setup.org_number,
        client_cert=state.icc_cert,
        client_key=state.icc_key,
        signer_cert=state.icc_cert,
        signer_key=state.icc_key,
        state=state,
        seed=11,
        burst=40,
    )
    return replace(base, **changes)


def grades(report: ConformanceReport) -> dict[str, Grade]:
    return {r.case_id: r.grade for r in report.results}


class TestCorrectReceiver:
    async def test_passes_every_case(self, setup: Setup) -> None:
        """Written from the docs without our code, it passes the whole plan: nothing not graded."""
        async with receiver(setup) as r:
            report = await run_conformance(target(setup, r.url))
        assert [x.case_id for x in report.results] == [c.id for c in CASES]
        assert report.passed, [(x.case_id, x.reason) for x in report.results if not x.passed]
        assert report.not_graded == []
        by_id = {x.case_id: x for x in report.results}
        assert by_id["resigned-redelivery"].reason == "HTTP 200 duplicate"
        assert by_id["signer-foreign-ca"].reason.startswith("HTTP 403 SIGNER_UNTRUSTED")
        assert by_id["signer-revoked"].reason.startswith("HTTP 403 SIGNER_REVOKED")
        assert by_id["signer-rotated"].reason.startswith("HTTP 201 accepted")
        burst = by_id["month-end-burst"]
        assert burst.metrics["envelopes"] == burst.metrics["accepted"] == 40
        assert 0 < burst.metrics["p50_ms"] <= burst.metrics["p99_ms"]
        assert "40 of 40 accepted" in burst.reason
        assert "p99" in burst.reason
        # Stored: three valid, duplicate's and redelivery's one each, conflict's first,
        # out-of-order's two, the rotated signer's one, and the burst: nothing refused.
        assert len(r.stored) == 9 + 40


BROKEN = [
    (Flaws(raw_identity=True), {"resigned-redelivery"}),
    (Flaws(name_only_signer=True), {"signer-foreign-ca"}),
    (Flaws(accept_sha1=True), {"sha1-signature", "sha1-digest"}),
    (Flaws(no_time_window=True), {"timestamp-future", "replay-after-a-day"}),
]


class TestBrokenReceivers:
    @pytest.mark.parametrize(
        ("flaws", "expected"),
        BROKEN,
        ids=["409-on-redelivery", "foreign-ca-signer", "sha1", "no-time-window"],
    )
    async def test_fails_exactly_its_cases(
        self, setup: Setup, flaws: Flaws, expected: set[str]
    ) -> None:
        """Each flaw fails its case(s) and nothing else; the failure says what to change."""
        async with receiver(setup, flaws) as r:
            report = await run_conformance(target(setup, r.url))
        got = grades(report)
        assert {i for i, g in got.items() if g is Grade.FAILED} == expected
        assert {i for i, g in got.items() if g is Grade.NOT_GRADED} == set()
        assert not report.passed
        rules = {c.id: c for c in CASES}
        for result in report.failures:
            case = rules[result.case_id]
            assert result.advice == f"fix: {case.fix}; see docs/conformance.md#{case.rule}"
            assert case.fix
            assert case.rule

    async def test_redelivery_failure_names_the_production_consequence(self, setup: Setup) -> None:
        """The 409 answer to the ICC's redelivery is explained as a dead letter in production."""
        async with receiver(setup, Flaws(raw_identity=True)) as r:
            report = await run_conformance(target(setup, r.url, case_ids=("resigned-redelivery",)))
        (result,) = report.results
        assert "HTTP 409 ENVELOPE_CONFLICT" in result.reason
        assert "dead-letters that message in production" in result.reason

    async def test_accepted_refusals_say_the_endpoint_took_it(self, setup: Setup) -> None:
        """A receiver that takes SHA-1 is told it took what it must refuse."""
        async with receiver(setup, Flaws(accept_sha1=True)) as r:
            report = await run_conformance(target(setup, r.url, case_ids=("sha1-digest",)))
        (result,) = report.results
        assert "got HTTP 201 accepted: the endpoint took a signature over a SHA-1 digest" in (
            result.reason
        )


class TestNotGraded:
    async def test_crl_not_reaching_the_endpoint_is_not_graded_never_passed(
        self, setup: Setup
    ) -> None:
        """No CRL the endpoint reads: revocation is not graded, and the plan is not passed."""
        ids = ("valid-order", "signer-revoked")
        async with receiver(setup) as r:
            report = await run_conformance(target(setup, r.url, case_ids=ids, publish_crl=False))
        assert grades(report) == {"valid-order": Grade.PASSED, "signer-revoked": Grade.NOT_GRADED}
        (skipped,) = report.not_graded
        assert "cannot publish a CRL the endpoint reads" in skipped.reason
        assert "--publish-crl" in skipped.reason
        assert not report.passed
        assert report.failures == []
        assert report.to_json()["counts"] == {
            "total": 2,
            "passed": 1,
            "failed": 0,
            "not_graded": 1,
        }
        assert report.to_json()["cases"][1]["result"] == "not graded"
        suite = etree.fromstring(report.to_junit()).find("testsuite")
        assert suite is not None
        assert suite.get("skipped") == "1"
        assert suite.get("failures") == "0"

    async def test_without_the_ca_key_rotation_and_revocation_are_not_graded(
        self, setup: Setup, tmp_path: Path
    ) -> None:
        """A state directory without ca.key (as a supplier may get it): not graded, with why."""
        kit_state = StateDir(tmp_path / "state")
        shutil.copytree(setup.state.root, kit_state.root)
        kit_state.ca_key.unlink()
        ids = ("signer-rotated", "signer-revoked", "client-not-icc")
        async with receiver(setup) as r:
            report = await run_conformance(target(setup, r.url, case_ids=ids, state=kit_state))
        assert grades(report) == {
            "signer-rotated": Grade.NOT_GRADED,
            "signer-revoked": Grade.NOT_GRADED,
            "client-not-icc": Grade.PASSED,  # with a supplier certificate of the PKI instead
        }
        for result in report.not_graded:
            assert "no AF test CA key" in result.reason
            assert result.advice == ""  # advice is for failures; not graded says why instead

    def test_a_remote_target_does_not_get_our_crl(self, setup: Setup) -> None:
        """By default only an endpoint on this machine is assumed to read STATE/pki/crl.pem."""
        assert target(setup, "https://127.0.0.1:8443/b2b").crl_reaches_target
        assert target(setup, "https://localhost:8443/b2b").crl_reaches_target
        assert not target(setup, "https://supplier.example:8443/b2b").crl_reaches_target
        assert target(
            setup, "https://supplier.example:8443/b2b", publish_crl=True
        ).crl_reaches_target

    async def test_cli_exits_1_when_a_case_is_not_graded(
        self, setup: Setup, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Exit 0 only if every case passed: one case not graded makes it 1, and it says so."""
        async with receiver(setup) as r:
            argv = ["--state", str(setup.state.root), "conformance", "--target", r.url]
            argv += ["--target-ca", str(setup.state.ca_cert), "--org-number", setup.org_number]
            argv += ["--case", "valid-order", "--case", "signer-revoked", "--no-publish-crl"]
            code = await _in_thread(argv)
        out = capsys.readouterr().out
        assert code == 1, out
        assert "\nNOT GRADED signer-revoked:" in "\n" + out
        assert "1 passed, 0 failed, 1 not graded — NOT passed" in out


async def _in_thread(argv: list[str]) -> int:
    """The CLI runs its own event loop: run it beside the test's loop, which serves the receiver."""
    return await asyncio.to_thread(cli.main, argv)


class TestDocs:
    def test_every_case_links_a_section_of_the_guide(self) -> None:
        """Each case's rule anchor is a heading of docs/conformance.md, and the guide names it."""
        text = (REPO / "docs" / "conformance.md").read_text()
        anchors = {
            re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{2,4} (.+)$", text, re.MULTILINE)
        }
        for case in CASES:
            assert case.rule in anchors, (case.id, case.rule)
            assert f"`{case.id}`" in text, case.id
