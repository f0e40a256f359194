"""End-to-end tests of supplier_stub.app: real mutual TLS on 127.0.0.1, a real SQLite inbox."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import socket
import sqlite3
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from icc_bridge.delivery import PushClient
from simulator.lab.pki import (
    cert_sha256,
    init_pki,
    load_certificate,
    load_private_key,
    numbered_suppliers,
)
from simulator.vocabulary.codes.refusals import ENVELOPE_STALE, INTERNAL
from simulator.vocabulary.envelope import Envelope, normalise_document, to_xml
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.messages import MessageMeta, MessageType, now_ms
from simulator.vocabulary.problems import PROBLEM_BASE, PROBLEM_MEDIA_TYPE
from simulator.vocabulary.registry import Registry, SupplierEntry
from simulator.vocabulary.rulesets import SHIPPED_RULES_DIR
from simulator.vocabulary.signing import EnvelopeSigner
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import client_context
from simulator.vocabulary.xmlsafe import serialize
from supplier_stub.app import ENVELOPE_PATH, StubConfig, SupplierStub
from supplier_stub.faults import set_disk_full

#: Strings a problem body must never carry.
LEAKS = ("Traceback", "PRIVATE KEY", 'File "')
#: An absolute file path (not the path part of a URL).
FILE_PATH = re.compile(r"(?<![\w:/.])/(?:tmp|home|work|usr|var|etc|root|opt)/")
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>
"""


def _rules_dir() -> Path:
    """The official rule sets (and examples) shipped in the package."""
    return SHIPPED_RULES_DIR


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port(entry: SupplierEntry) -> int:
    port = urlsplit(entry.url).port
    assert port is not None
    return port


@dataclass(frozen=True)
class Pki:
    """The module's test PKI, registry and UBL Order; supplier A is orgs[0], B is orgs[1]."""

    state: StateDir
    registry: Path
    entries: dict[str, SupplierEntry]
    orgs: list[str]
    order: bytes
    other_client: tuple[Path, Path]  # a non-ICC client certificate and key from the AF CA

    @property
    def a(self) -> SupplierEntry:
        return self.entries[self.orgs[0]]

    @property
    def b(self) -> SupplierEntry:
        return self.entries[self.orgs[1]]


def _issue_client_cert(state: StateDir, out: Path) -> tuple[Path, Path]:
    """A client certificate (EKU clientAuth) from the AF CA whose subject is not the ICC's."""
    ca_cert = load_certificate(state.ca_cert)
    ca_key = load_private_key(state.ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Not the ICC")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = out / "other.pem", out / "other.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A PKI with two suppliers, each on its own free port, and their registry file."""
    base = tmp_path_factory.mktemp("stub")
    state = StateDir(base / "state")
    suppliers = numbered_suppliers(2)
    init_pki(state, suppliers)
    entries = {
        s.org_number: SupplierEntry(
            org_number=s.org_number,
            name=s.name,
            url=f"https://127.0.0.1:{_free_port()}{ENVELOPE_PATH}",
            cert_sha256=cert_sha256(state.supplier_cert(s.org_number)),
        )
        for s in suppliers
    }
    registry = base / "registry.json"
    Registry(entries.values()).save(registry)
    order = (_rules_dir() / "examples" / "Order_Example.xml").read_bytes()
    return Pki(
        state=state,
        registry=registry,
        entries=entries,
        orgs=[s.org_number for s in suppliers],
        order=order,
        other_client=_issue_client_cert(state, base),
    )


@dataclass(frozen=True)
class Reply:
    """One HTTP answer, read in full."""

    status: int
    content_type: str
    text: str

    def json(self) -> dict[str, Any]:
        data = json.loads(self.text)
        assert isinstance(data, dict)
        return data


@dataclass
class Running:
    """A started stub, an ICC-like client and a view of the stub's SQLite inbox."""

    pki: Pki
    stub: SupplierStub
    db: Path
    session: aiohttp.ClientSession

    def icc_context(self, entry: SupplierEntry) -> ssl.SSLContext:
        state = self.pki.state
        return client_context(
            state.icc_cert, state.icc_key, state.ca_cert, pin_sha256=entry.cert_sha256
        )

    async def post(
        self,
        entry: SupplierEntry,
        body: bytes,
        *,
        content_type: str = "application/xml",
        ssl_context: ssl.SSLContext | None = None,
    ) -> Reply:
        """POST ``body`` to ``entry``'s URL as the ICC (or with ``ssl_context``)."""
        ctx = ssl_context or self.icc_context(entry)
        async with self.session.post(
            entry.url, data=body, headers={"Content-Type": content_type}, ssl=ctx
        ) as resp:
            return Reply(resp.status, resp.content_type, await resp.text())

    def rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.db)) as db:
            return db.execute(sql, args).fetchall()

    def count(self, table: str) -> int:
        assert table in {"envelopes", "arrivals"}
        ((n,),) = self.rows(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
        return int(n)


StartStub = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def start_stub(pki: Pki, tmp_path: Path) -> StartStub:
    """Start a stub (extra StubConfig fields as keywords) in this test's event loop."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Running]:
        db = tmp_path / "inbox.sqlite"
        config = StubConfig(registry=pki.registry, state=pki.state, db=db, **overrides)
        stub = SupplierStub(config)
        await stub.start()
        try:
            async with aiohttp.ClientSession() as session:
                yield Running(pki, stub, db, session)
        finally:
            await stub.stop()

    return start


@pytest.fixture
async def running(start_stub: StartStub) -> AsyncIterator[Running]:
    """A stub with the default configuration, serving both suppliers."""
    async with start_stub() as run:
        yield run


def envelope_for(
    pki: Pki,
    entry: SupplierEntry,
    *,
    document: bytes | None = None,
    envelope_id: str | None = None,
    cert: str | None = None,
    url: str | None = None,
) -> Envelope:
    """An INKOPSORDER envelope addressed to ``entry`` (fields overridable)."""
    return Envelope.create(
        MessageMeta.new(MessageType.INKOPSORDER, entry.org_number, 1),
        document if document is not None else pki.order,
        receiver_cert_sha256=cert or entry.cert_sha256,
        receiver_url=url or entry.url,
        envelope_id=envelope_id,
    )


def sign(pki: Pki, envelope: Envelope) -> bytes:
    """``envelope`` signed by the ICC."""
    state = pki.state
    return EnvelopeSigner(state.icc_key.read_bytes(), state.icc_cert.read_bytes()).sign(envelope)


def assert_problem(reply: Reply, status: int, code: str) -> dict[str, Any]:
    """``reply`` is an RFC 9457 problem with this status and code, leaking nothing."""
    assert reply.status == status, reply.text
    assert reply.content_type == PROBLEM_MEDIA_TYPE
    body = reply.json()
    assert {"type", "title", "status", "code", "detail"} <= set(body)
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == PROBLEM_BASE + code
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert_no_leak(reply.text)
    return body


def assert_no_leak(text: str) -> None:
    """No traceback, key material or file path in ``text``."""
    for leak in LEAKS:
        assert leak not in text
    assert not FILE_PATH.search(text), text


class TestAccepted:
    """A correct envelope is stored exactly once."""

    async def test_signed_envelope_is_accepted(self, running: Running) -> None:
        """A signed, correctly addressed envelope gets 201 and one stored row."""
        pki = running.pki
        envelope = envelope_for(pki, pki.a)
        raw = sign(pki, envelope)
        reply = await running.post(pki.a, raw)
        assert reply.status == 201, reply.text
        assert reply.content_type == "application/json"
        body = reply.json()
        assert set(body) == {"envelope_id", "received_at", "status"}
        assert body["envelope_id"] == envelope.envelope_id
        assert body["status"] == "accepted"
        received = dt.datetime.fromisoformat(body["received_at"])
        assert received.tzinfo is not None
        assert abs(dt.datetime.now(dt.UTC) - received) < dt.timedelta(minutes=1)
        rows = running.rows(
            "SELECT envelope_id, org_number, message_id, message_type, document_sha256, "
            "envelope FROM envelopes"
        )
        digest = hashlib.sha256(normalise_document(pki.order)).hexdigest()
        assert rows == [
            (
                envelope.envelope_id,
                pki.a.org_number,
                envelope.message_id,
                "INKOPSORDER",
                digest,
                raw,
            )
        ]
        assert running.rows("SELECT envelope_id, outcome FROM arrivals") == [
            (envelope.envelope_id, "accepted")
        ]

    async def test_same_envelope_again_is_duplicate(self, running: Running) -> None:
        """The same envelope twice: 201, then 200 duplicate; one row, two arrivals."""
        pki = running.pki
        envelope = envelope_for(pki, pki.a)
        raw = sign(pki, envelope)
        first = await running.post(pki.a, raw)
        second = await running.post(pki.a, raw)
        assert first.status == 201, first.text
        assert second.status == 200, second.text
        assert second.json()["status"] == "duplicate"
        assert second.json()["envelope_id"] == envelope.envelope_id
        assert second.json()["received_at"] == first.json()["received_at"]
        assert running.count("envelopes") == 1
        assert running.rows("SELECT outcome FROM arrivals ORDER BY id") == [
            ("accepted",),
            ("duplicate",),
        ]

    async def test_both_suppliers_are_served(self, running: Running) -> None:
        """Each supplier's port accepts envelopes addressed to that supplier."""
        pki = running.pki
        for entry in (pki.a, pki.b):
            reply = await running.post(entry, sign(pki, envelope_for(pki, entry)))
            assert reply.status == 201, reply.text
        stored = running.rows("SELECT org_number FROM envelopes ORDER BY org_number")
        assert stored == sorted([(pki.a.org_number,), (pki.b.org_number,)])


class TestConflict:
    """An envelope id reused for another document."""

    async def test_same_id_other_document_is_conflict(self, running: Running) -> None:
        """Same envelope id, different document: 409 ENVELOPE_CONFLICT, original kept."""
        pki = running.pki
        original = envelope_for(pki, pki.a)
        raw = sign(pki, original)
        changed_doc = pki.order.replace(b"112233", b"112234")
        assert changed_doc != pki.order
        changed = envelope_for(pki, pki.a, document=changed_doc, envelope_id=original.envelope_id)
        assert (await running.post(pki.a, raw)).status == 201
        reply = await running.post(pki.a, sign(pki, changed))
        body = assert_problem(reply, 409, "ENVELOPE_CONFLICT")
        assert body["envelope_id"] == original.envelope_id
        assert running.rows("SELECT envelope FROM envelopes") == [(raw,)]
        assert running.rows("SELECT outcome FROM arrivals ORDER BY id") == [
            ("accepted",),
            ("conflict",),
        ]


class TestAddressee:
    """Envelopes addressed to another organisation, certificate or URL."""

    async def test_envelope_for_a_posted_to_b(self, running: Running) -> None:
        """An envelope for supplier A sent to B's port: 421 WRONG_ADDRESSEE, nothing stored."""
        pki = running.pki
        reply = await running.post(pki.b, sign(pki, envelope_for(pki, pki.a)))
        assert_problem(reply, 421, "WRONG_ADDRESSEE")
        assert running.count("envelopes") == 0
        assert running.count("arrivals") == 0

    async def test_wrong_certificate_fingerprint(self, running: Running) -> None:
        """A's organisation and URL but B's certificate fingerprint: 421."""
        pki = running.pki
        envelope = envelope_for(pki, pki.a, cert=pki.b.cert_sha256)
        reply = await running.post(pki.a, sign(pki, envelope))
        body = assert_problem(reply, 421, "WRONG_ADDRESSEE")
        assert "certificate" in body["detail"]
        assert running.count("envelopes") == 0

    async def test_wrong_url(self, running: Running) -> None:
        """A's organisation and certificate but B's URL: 421."""
        pki = running.pki
        envelope = envelope_for(pki, pki.a, url=pki.b.url)
        reply = await running.post(pki.a, sign(pki, envelope))
        body = assert_problem(reply, 421, "WRONG_ADDRESSEE")
        assert "URL" in body["detail"]
        assert running.count("envelopes") == 0


class TestSignature:
    """Envelopes whose signature is broken or missing."""

    async def test_tampered_payload(self, running: Running) -> None:
        """One character of the payload changed after signing: 403 with a SIGNATURE_* code."""
        pki = running.pki
        raw = sign(pki, envelope_for(pki, pki.a))
        needle = b"Information text for the whole order"
        assert raw.count(needle) == 1
        tampered = raw.replace(needle, needle[:-1] + b"R")
        reply = await running.post(pki.a, tampered)
        assert reply.status == 403, reply.text
        body = reply.json()
        assert body["code"].startswith("SIGNATURE_")
        assert_problem(reply, 403, body["code"])
        assert running.count("envelopes") == 0

    async def test_unsigned_envelope(self, running: Running) -> None:
        """An envelope without ds:Signature: 403 SIGNATURE_MISSING."""
        pki = running.pki
        unsigned = serialize(to_xml(envelope_for(pki, pki.a)))
        reply = await running.post(pki.a, unsigned)
        assert_problem(reply, 403, "SIGNATURE_MISSING")
        assert running.count("envelopes") == 0

    async def test_signed_by_a_supplier(self, running: Running) -> None:
        """Signed by supplier B (AF CA, not the ICC): 403 SIGNER_UNTRUSTED."""
        pki = running.pki
        state = pki.state
        b = pki.b.org_number
        signer = EnvelopeSigner(
            state.supplier_key(b).read_bytes(), state.supplier_cert(b).read_bytes()
        )
        reply = await running.post(pki.a, signer.sign(envelope_for(pki, pki.a)))
        assert_problem(reply, 403, "SIGNER_UNTRUSTED")
        assert running.count("envelopes") == 0


class TestRequestShape:
    """Bodies refused before the envelope is read."""

    async def test_text_plain(self, running: Running) -> None:
        """Content-Type text/plain: 415 UNSUPPORTED_MEDIA_TYPE."""
        pki = running.pki
        raw = sign(pki, envelope_for(pki, pki.a))
        reply = await running.post(pki.a, raw, content_type="text/plain")
        assert_problem(reply, 415, "UNSUPPORTED_MEDIA_TYPE")
        assert running.count("envelopes") == 0

    async def test_body_over_limit(self, start_stub: StartStub) -> None:
        """A body one byte over StubConfig.max_body: 413 problem, nothing stored."""
        async with start_stub(max_body=64 * 1024) as run:
            pki = run.pki
            body = b"<a>" + b"x" * (64 * 1024) + b"</a>"
            reply = await run.post(pki.a, body)
            assert reply.status == 413, reply.text
            assert_problem(reply, 413, reply.json()["code"])
            assert reply.json()["code"] in {"BODY_TOO_LARGE", "XML_TOO_LARGE"}
            assert run.count("envelopes") == 0

    async def test_doctype_billion_laughs(self, running: Running) -> None:
        """A DOCTYPE with nested entities: 400 XML_DOCTYPE."""
        reply = await running.post(running.pki.a, BILLION_LAUGHS)
        assert_problem(reply, 400, "XML_DOCTYPE")
        assert running.count("envelopes") == 0

    @pytest.mark.parametrize(
        "garbage",
        [b"\xff\xfe\x00garbage\x80\x81", b"not xml at all", b"<unclosed>", b""],
        ids=["binary", "text", "unclosed", "empty"],
    )
    async def test_garbage(self, running: Running, garbage: bytes) -> None:
        """Bytes that are not XML: 400 with an XML_* code."""
        reply = await running.post(running.pki.a, garbage)
        assert reply.status == 400, reply.text
        code = reply.json()["code"]
        assert code.startswith("XML_")
        assert_problem(reply, 400, code)
        assert running.count("envelopes") == 0

    async def test_well_formed_non_envelope(self, running: Running) -> None:
        """A bare UBL Order (no envelope around it): a 4xx problem, nothing stored."""
        reply = await running.post(running.pki.a, running.pki.order)
        assert 400 <= reply.status < 500, reply.text
        assert_problem(reply, reply.status, reply.json()["code"])
        assert running.count("envelopes") == 0


class TestClientCertificate:
    """Only the ICC may deliver."""

    async def test_supplier_certificate_as_client(self, running: Running) -> None:
        """Supplier B's certificate (it may act as a client, for pull) is not the ICC's: 403."""
        pki = running.pki
        state = pki.state
        b = pki.b.org_number
        ctx = client_context(
            state.supplier_cert(b),
            state.supplier_key(b),
            state.ca_cert,
            pin_sha256=pki.a.cert_sha256,
        )
        raw = sign(pki, envelope_for(pki, pki.a))
        reply = await running.post(pki.a, raw, ssl_context=ctx)
        assert_problem(reply, 403, "CLIENT_NOT_ICC")
        assert running.count("envelopes") == 0

    async def test_non_icc_client_certificate(self, running: Running) -> None:
        """A client certificate from the AF CA that is not the ICC's: 403 CLIENT_NOT_ICC."""
        pki = running.pki
        cert, key = pki.other_client
        ctx = client_context(cert, key, pki.state.ca_cert, pin_sha256=pki.a.cert_sha256)
        reply = await running.post(pki.a, sign(pki, envelope_for(pki, pki.a)), ssl_context=ctx)
        assert_problem(reply, 403, "CLIENT_NOT_ICC")
        assert running.count("envelopes") == 0
        assert running.count("arrivals") == 0

    async def test_no_client_certificate(self, running: Running) -> None:
        """A client without a certificate fails in TLS and gets no answer."""
        pki = running.pki
        ctx = ssl.create_default_context(cafile=str(pki.state.ca_cert))
        raw = sign(pki, envelope_for(pki, pki.a))
        with pytest.raises(aiohttp.ClientError):
            await running.post(pki.a, raw, ssl_context=ctx)
        assert running.count("envelopes") == 0


class TestDocumentCheck:
    """The document_check hook."""

    async def test_failing_check_refuses(self, start_stub: StartStub) -> None:
        """A check returning ["BR-01"]: 422 DOCUMENT_INVALID with rule_ids, nothing stored."""
        seen: list[bytes] = []

        async def check(document: bytes) -> list[str]:
            seen.append(document)
            return ["BR-01"]

        async with start_stub(document_check=check) as run:
            pki = run.pki
            envelope = envelope_for(pki, pki.a)
            reply = await run.post(pki.a, sign(pki, envelope))
            body = assert_problem(reply, 422, "DOCUMENT_INVALID")
            assert body["rule_ids"] == ["BR-01"]
            assert body["envelope_id"] == envelope.envelope_id
            assert seen == [normalise_document(pki.order)]
            assert run.count("envelopes") == 0

    async def test_passing_check_accepts(self, start_stub: StartStub) -> None:
        """A check returning no rule ids lets the envelope through: 201."""

        async def check(document: bytes) -> list[str]:
            return []

        async with start_stub(document_check=check) as run:
            pki = run.pki
            reply = await run.post(pki.a, sign(pki, envelope_for(pki, pki.a)))
            assert reply.status == 201, reply.text
            assert run.count("envelopes") == 1


class TestStartup:
    """Starting and stopping the stub."""

    async def test_port_taken(self, pki: Pki, tmp_path: Path) -> None:
        """B's port taken: start raises B2BSimError naming it, and A's port is closed again."""
        port_a, port_b = _port(pki.a), _port(pki.b)
        stub = SupplierStub(StubConfig(registry=pki.registry, state=pki.state, db=tmp_path / "x"))
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as blocker:
            blocker.bind(("127.0.0.1", port_b))
            blocker.listen(1)
            with pytest.raises(B2BSimError) as caught:
                await stub.start()
        assert f"127.0.0.1:{port_b}" in str(caught.value)
        assert pki.b.org_number in str(caught.value)
        for port in (port_a, port_b):
            with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0

    async def test_certificate_not_registered(self, pki: Pki, tmp_path: Path) -> None:
        """B's registered fingerprint is wrong: start raises B2BSimError, A's port is closed."""
        wrong_b = SupplierEntry(
            org_number=pki.b.org_number,
            name=pki.b.name,
            url=pki.b.url,
            cert_sha256=pki.a.cert_sha256,
        )
        registry = tmp_path / "registry.json"
        Registry([pki.a, wrong_b]).save(registry)
        stub = SupplierStub(StubConfig(registry=registry, state=pki.state, db=tmp_path / "x"))
        try:
            with pytest.raises(B2BSimError, match=pki.b.org_number):
                await stub.start()
            for entry in (pki.a, pki.b):
                with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
                    assert probe.connect_ex(("127.0.0.1", _port(entry))) != 0
        finally:
            await stub.stop()

    async def test_stop_closes_ports(self, pki: Pki, tmp_path: Path) -> None:
        """After stop() nothing listens on the suppliers' ports."""
        stub = SupplierStub(StubConfig(registry=pki.registry, state=pki.state, db=tmp_path / "x"))
        urls = await stub.start()
        assert sorted(urls) == sorted(e.url for e in pki.entries.values())
        await stub.stop()
        for entry in pki.entries.values():
            port = _port(entry)
            with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0


class TestDiskFullFault:
    """`fault supplier disk-full`: the stub's database refuses to grow, then grows again."""

    async def test_full_disk_refuses_then_the_retry_loads_in_order(
        self, start_stub: StartStub, tmp_path: Path
    ) -> None:
        """With the disk full a delivery gets a 5xx and nothing of it is stored; freed, the
        ICC's retry of the same envelope is stored and loaded in order, nothing late."""
        faults = tmp_path / "faults.json"
        async with start_stub(faults=faults) as running:
            pki = running.pki
            raws = [
                sign(
                    pki,
                    Envelope.create(
                        MessageMeta.new(MessageType.INKOPSORDER, pki.a.org_number, n),
                        pki.order,
                        receiver_cert_sha256=pki.a.cert_sha256,
                        receiver_url=pki.a.url,
                    ),
                )
                for n in (1, 2, 3)
            ]
            assert (await running.post(pki.a, raws[0])).status == 201
            set_disk_full(faults, True)
            for _ in range(2):
                assert_problem(await running.post(pki.a, raws[1]), 500, INTERNAL)
            assert running.count("envelopes") == 1
            assert running.count("arrivals") == 1
            set_disk_full(faults, False)
            for raw in raws[1:]:
                reply = await running.post(pki.a, raw)
                assert reply.status == 201, reply.text
            assert running.rows("SELECT sequence, late FROM ledger ORDER BY position") == [
                (1, 0),
                (2, 0),
                (3, 0),
            ]
            assert running.rows("SELECT count(*) FROM gaps") == [(0,)]


class TestSkewedClock:
    """A stale envelope's refusal says which side's clock is off and by how much."""

    async def test_future_envelope_names_the_clocks_up_to_the_iccs_reason(
        self, start_stub: StartStub
    ) -> None:
        """312 s ahead with 300 s allowed: the problem detail says so, and the ICC's push
        client carries it into what becomes the DLQ reason (``CODE: detail``)."""
        async with start_stub(max_skew=300) as running:
            pki = running.pki
            ahead = dataclasses.replace(envelope_for(pki, pki.a), created_at_ms=now_ms() + 312_400)
            raw = sign(pki, ahead)
            body = assert_problem(await running.post(pki.a, raw), 422, ENVELOPE_STALE)
            detail = body["detail"]
            assert ahead.envelope_id in detail
            assert "312 s in the future by the receiver's clock (allowed skew 300 s; " in detail
            assert detail.endswith(
                "): the sender's clock is ahead, or the receiver's behind — check NTP on both"
            )
            state = pki.state
            client = PushClient(
                ca_cert=state.ca_cert, icc_cert=state.icc_cert, icc_key=state.icc_key
            )
            await client.start()
            try:
                attempt = await client.push(pki.a, raw)
            finally:
                await client.close()
            assert attempt.status == 422
            # the same detail, but for the receiver's clock, read again for this request
            prefix, _, rest = detail.partition("the receiver's clock read ")
            assert attempt.detail.startswith(f"{ENVELOPE_STALE}: {prefix}")
            assert attempt.detail.endswith(rest[rest.index(")") :])
            assert running.count("envelopes") == 0
