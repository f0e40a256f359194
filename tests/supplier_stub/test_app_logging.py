"""supplier_stub.app: each refusal is logged once, with its code, peer, org and port.

Real mutual TLS on 127.0.0.1; what the stub answers is tested in test_app.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from ka_producer.documents import DocumentFactory, seller_profile
from simulator.lab.pki import cert_sha256, init_pki, numbered_suppliers
from simulator.lab.ports import free_ports
from simulator.vocabulary.envelope import Envelope
from simulator.vocabulary.httpguard import SlowClientLimits
from simulator.vocabulary.messages import MessageMeta, MessageType
from simulator.vocabulary.registry import Registry, SupplierEntry
from simulator.vocabulary.signing import EnvelopeSigner
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import client_context
from supplier_stub.app import ENVELOPE_PATH, StubConfig, SupplierStub

SUPPLIERS = numbered_suppliers(2)
#: A string in every body these tests send: it must never reach a log line.
MARKER = "BODY-MARKER-7f3a"
LOGGERS = ("supplier_stub", "simulator.vocabulary.httpguard", "simulator.vocabulary.http_problems")


@dataclass(frozen=True)
class Pki:
    state: StateDir
    registry: Path
    entry: SupplierEntry  # supplier 0, served by the stub
    other: str  # supplier 1's organisation number (its certificate is not the ICC's)

    @property
    def port(self) -> int:
        port = urlsplit(self.entry.url).port
        assert port is not None
        return port


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("stublog")
    state = StateDir(base / "state")
    init_pki(state, SUPPLIERS)
    (port,) = free_ports(1)
    org = SUPPLIERS[0].org_number
    entry = SupplierEntry(
        org_number=org,
        name=SUPPLIERS[0].name,
        url=f"https://127.0.0.1:{port}{ENVELOPE_PATH}",
        cert_sha256=cert_sha256(state.supplier_cert(org)),
    )
    registry = base / "registry.json"
    Registry([entry]).save(registry)
    return Pki(state, registry, entry, SUPPLIERS[1].org_number)


@dataclass
class Running:
    pki: Pki
    session: aiohttp.ClientSession

    def icc(self) -> ssl.SSLContext:
        s = self.pki.state
        return client_context(
            s.icc_cert, s.icc_key, s.ca_cert, pin_sha256=self.pki.entry.cert_sha256
        )

    async def post(
        self,
        body: bytes,
        *,
        content_type: str = "application/xml",
        ctx: ssl.SSLContext | None = None,
    ) -> int:
        async with self.session.post(
            self.pki.entry.url,
            data=body,
            headers={"Content-Type": content_type},
            ssl=ctx or self.icc(),
        ) as resp:
            await resp.read()
            return resp.status


StartStub = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def start_stub(pki: Pki, tmp_path: Path) -> StartStub:
    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Running]:
        config = StubConfig(
            registry=pki.registry, state=pki.state, db=tmp_path / "inbox.sqlite", **overrides
        )
        stub = SupplierStub(config)
        await stub.start()
        try:
            async with aiohttp.ClientSession() as session:
                yield Running(pki, session)
        finally:
            await stub.stop()

    return start


def refusals(caplog: pytest.LogCaptureFixture, code: str) -> list[logging.LogRecord]:
    """Records of the stub (and its HTTP guard) that name ``code``."""
    return [
        r for r in caplog.records if r.name.startswith(LOGGERS) and f"code={code}" in r.getMessage()
    ]


def assert_logged_once(
    caplog: pytest.LogCaptureFixture, code: str, pki: Pki, *, org: bool = True
) -> str:
    """One line at INFO or WARNING names the code, the peer and the port (and the org)."""
    (record,) = refusals(caplog, code)
    line = record.getMessage()
    assert record.levelno in (logging.INFO, logging.WARNING)
    assert f"port={pki.port}" in line
    assert "peer=('127.0.0.1'," in line
    if org:
        assert f"org={pki.entry.org_number}" in line
    for record in caplog.records:
        assert MARKER not in record.getMessage()
        assert "PRIVATE KEY" not in record.getMessage()
    return line


class TestRefusalsBeforeTheEnvelope:
    async def test_unsupported_media_type(
        self, start_stub: StartStub, caplog: pytest.LogCaptureFixture
    ) -> None:
        """415: logged once with its code, peer, org and port; not the body."""
        async with start_stub() as run:
            with caplog.at_level(logging.INFO):
                assert await run.post(MARKER.encode(), content_type="text/plain") == 415
        assert_logged_once(caplog, "UNSUPPORTED_MEDIA_TYPE", run.pki)

    async def test_body_too_large(
        self, start_stub: StartStub, caplog: pytest.LogCaptureFixture
    ) -> None:
        """413: logged once."""
        async with start_stub(max_body=1024) as run:
            with caplog.at_level(logging.INFO):
                assert await run.post((MARKER * 200).encode()) == 413
        line = assert_logged_once(caplog, "BODY_TOO_LARGE", run.pki)
        assert "1024" in line

    async def test_client_not_icc(
        self, start_stub: StartStub, caplog: pytest.LogCaptureFixture
    ) -> None:
        """403 CLIENT_NOT_ICC (a supplier's certificate as client): logged once at WARNING."""
        async with start_stub() as run:
            s, other = run.pki.state, run.pki.other
            ctx = client_context(
                s.supplier_cert(other),
                s.supplier_key(other),
                s.ca_cert,
                pin_sha256=run.pki.entry.cert_sha256,
            )
            with caplog.at_level(logging.INFO):
                assert await run.post(MARKER.encode(), ctx=ctx) == 403
        assert_logged_once(caplog, "CLIENT_NOT_ICC", run.pki)
        (record,) = refusals(caplog, "CLIENT_NOT_ICC")
        assert record.levelno == logging.WARNING

    async def test_document_invalid(
        self, start_stub: StartStub, caplog: pytest.LogCaptureFixture
    ) -> None:
        """422 DOCUMENT_INVALID: logged once with the failed rule ids."""

        async def check(document: bytes) -> list[str]:
            return ["BR-01"]

        async with start_stub(document_check=check) as run:
            entry, state = run.pki.entry, run.pki.state
            doc = DocumentFactory(7).order(seller_profile(entry.org_number, "Test AB"))
            envelope = Envelope.create(
                MessageMeta.new(MessageType.INKOPSORDER, entry.org_number, 1),
                doc.xml,
                receiver_cert_sha256=entry.cert_sha256,
                receiver_url=entry.url,
            )
            signer = EnvelopeSigner(state.icc_key.read_bytes(), state.icc_cert.read_bytes())
            with caplog.at_level(logging.INFO):
                assert await run.post(signer.sign(envelope)) == 422
        (record,) = refusals(caplog, "DOCUMENT_INVALID")
        assert f"org={entry.org_number}" in record.getMessage()
        assert "BR-01" in record.getMessage()


async def _trickle(pki: Pki, head: bytes, drip: bytes, max_s: float = 10.0) -> bytes:
    """Send ``head``, then ``drip`` a byte per 0.1 s until the stub hangs up; what it sent."""
    s = pki.state
    ctx = client_context(s.icc_cert, s.icc_key, s.ca_cert, pin_sha256=pki.entry.cert_sha256)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", pki.port, ssl=ctx, server_hostname="127.0.0.1"
    )
    hung_up = asyncio.ensure_future(reader.read(65536))
    start = time.monotonic()
    try:
        writer.write(head)
        for byte in drip * 1000:
            if hung_up.done() or time.monotonic() - start > max_s:
                break
            writer.write(bytes([byte]))
            try:
                await writer.drain()
            except (ConnectionError, ssl.SSLError):
                break
            await asyncio.sleep(0.1)
        try:
            return await asyncio.wait_for(hung_up, timeout=max_s)
        except (ConnectionError, ssl.SSLError):
            return b""
    finally:
        hung_up.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


class TestSlowClients:
    LIMITS = SlowClientLimits(handshake=1.0, headers=0.5, body=0.5)

    async def test_slow_head_is_logged(
        self, start_stub: StartStub, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A head sent byte by byte: cut off without an answer, logged once."""
        async with start_stub(limits=self.LIMITS) as run:
            with caplog.at_level(logging.INFO):
                head = f"POST {ENVELOPE_PATH} HTTP/1.1\r\nHost: x\r\n".encode()
                assert await _trickle(run.pki, head, b"X-Slow: aaaa\r\n") == b""
        line = assert_logged_once(caplog, "REQUEST_TIMEOUT", run.pki, org=False)
        assert "head" in line

    async def test_slow_body_gets_no_answer_and_is_logged(
        self, start_stub: StartStub, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A body sent byte by byte: the connection is aborted (no 408 is sent), logged once."""
        async with start_stub(limits=self.LIMITS) as run:
            head = (
                f"POST {ENVELOPE_PATH} HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/xml\r\nContent-Length: 100000\r\n\r\n"
            ).encode()
            with caplog.at_level(logging.INFO):
                assert await _trickle(run.pki, head, MARKER.encode()) == b""
        line = assert_logged_once(caplog, "REQUEST_TIMEOUT", run.pki, org=False)
        assert "body" in line


class TestRouterRefusals:
    async def test_unknown_path_and_wrong_method(
        self, start_stub: StartStub, caplog: pytest.LogCaptureFixture
    ) -> None:
        """404 for another path and 405 for another method: each logged once, with the port."""
        async with start_stub() as run:
            base = run.pki.entry.url.rsplit("/b2b/", 1)[0]
            with caplog.at_level(logging.INFO):
                async with run.session.get(f"{base}/nope", ssl=run.icc()) as resp:
                    assert resp.status == 404
                async with run.session.put(run.pki.entry.url, ssl=run.icc()) as resp:
                    assert resp.status == 405
        assert "/nope" in assert_logged_once(caplog, "NOT_FOUND", run.pki, org=False)
        assert_logged_once(caplog, "METHOD_NOT_ALLOWED", run.pki, org=False)
