"""The ICC bridge against the real broker and a real supplier stub over mutual TLS."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from icc_bridge import Bridge, BridgeConfig, RetryPolicy, envelope_id_for
from ka_producer import Producer
from ka_producer.documents import DocumentFactory, seller_profile
from simulator.lab.broker import parse_broker_url
from simulator.lab.pki import SupplierIdentity, cert_sha256, init_pki, numbered_suppliers
from simulator.lab.ports import free_ports
from simulator.runs.stub_records import stored_messages
from simulator.vocabulary.messages import (
    DLQ_CODE,
    DLQ_REASON,
    Header,
    MessageMeta,
    MessageType,
    dead_letter_queue,
)
from simulator.vocabulary.registry import Registry, SupplierEntry
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.stomp_io import Frame, StompConnection
from supplier_stub import StubConfig, SupplierStub

pytestmark = [pytest.mark.broker, pytest.mark.integration]

SUPPLIERS = numbered_suppliers(2)
UNREGISTERED = "5560360793"  # a valid organisation number no registry here knows


def free_port() -> int:
    return free_ports(1)[0]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    """A state directory with the test PKI for two suppliers."""
    state = StateDir(tmp_path_factory.mktemp("bridge") / "state").ensure()
    init_pki(state, SUPPLIERS)
    return state


def registry_for(
    state: StateDir,
    suppliers: list[SupplierIdentity],
    path: Path,
    pins: dict[str, str] | None = None,
) -> Path:
    """A registry with each supplier on a free port (pins may override fingerprints)."""
    pins = pins or {}
    Registry(
        SupplierEntry(
            org_number=s.org_number,
            name=s.name,
            url=f"https://127.0.0.1:{free_port()}/b2b/envelopes",
            cert_sha256=pins.get(s.org_number, cert_sha256(state.supplier_cert(s.org_number))),
        )
        for s in suppliers
    ).save(path)
    return path


class Chain:
    """A queue of its own, a stub, and bridges started on demand."""

    def __init__(self, state: StateDir, broker_url: str, tmp: Path, registry: Path) -> None:
        self.state, self.broker_url, self.tmp, self.registry = state, broker_url, tmp, registry
        self.queue = f"/queue/test.bridge.{uuid.uuid4().hex[:8]}"
        self.db = tmp / "stub.sqlite"
        self.stub: SupplierStub | None = None
        self._bridges: list[tuple[asyncio.Task[None], asyncio.Event]] = []

    async def start_stub(self) -> None:
        self.stub = SupplierStub(StubConfig(registry=self.registry, state=self.state, db=self.db))
        await self.stub.start()

    async def stop_stub(self) -> None:
        if self.stub is not None:
            await self.stub.stop()
            self.stub = None

    def start_bridge(self, retry: RetryPolicy | None = None) -> asyncio.Event:
        stop = asyncio.Event()
        config = BridgeConfig(
            broker_url=self.broker_url,
            registry=self.registry,
            ca_cert=self.state.ca_cert,
            icc_cert=self.state.icc_cert,
            icc_key=self.state.icc_key,
            queue=self.queue,
            events_log=self.tmp / "icc.jsonl",
            retry=retry or RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.1),
        )
        self._bridges.append((asyncio.create_task(Bridge(config).run(stop)), stop))
        return stop

    async def stop_bridges(self) -> None:
        for task, stop in self._bridges:
            stop.set()
            await asyncio.wait_for(task, 15)
        self._bridges.clear()

    def stored(self) -> list[str]:
        return [m for m, *_ in stored_messages(self.db)]

    async def wait_stored(self, count: int, timeout: float = 20) -> list[str]:
        async with asyncio.timeout(timeout):
            # The stub's SQLite file is the only signal: poll it.
            while len(stored := self.stored()) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        return stored

    async def dead_letters(self, count: int, timeout: float = 20) -> list[Frame]:
        """Consume ``count`` dead letters from this queue's DLQ."""
        host, port = parse_broker_url(self.broker_url)
        conn = StompConnection(host, port)
        await conn.connect()
        await conn.subscribe(dead_letter_queue(self.queue))
        frames: list[Frame] = []
        try:
            async with asyncio.timeout(timeout):
                while len(frames) < count:
                    frame = await conn.frames.get()
                    await conn.ack(frame)
                    frames.append(frame)
        finally:
            await conn.disconnect()
        return frames


@pytest.fixture
async def chain(pki: StateDir, broker_url: str, tmp_path: Path) -> AsyncIterator[Chain]:
    c = Chain(pki, broker_url, tmp_path, registry_for(pki, SUPPLIERS, tmp_path / "registry.json"))
    try:
        yield c
    finally:
        await c.stop_bridges()
        await c.stop_stub()


async def publish(chain: Chain, orgs: list[str]) -> list[str]:
    """Publish one order per organisation number; returns the message ids."""
    factory = DocumentFactory(7)
    ids = []
    async with Producer(chain.broker_url, queue=chain.queue) as ka:
        for org in orgs:
            doc = factory.order(seller_profile(org, "Test AB"))
            ids.append((await ka.publish(MessageType.INKOPSORDER, org, doc.xml)).message_id)
    return ids


async def send_raw(chain: Chain, headers: dict[str, str], body: str) -> None:
    host, port = parse_broker_url(chain.broker_url)
    conn = StompConnection(host, port)
    await conn.connect()
    try:
        await conn.send(chain.queue, body, headers, receipt=True)
    finally:
        await conn.disconnect()


class TestDelivery:
    async def test_delivers_every_message_once(self, chain: Chain) -> None:
        """Orders for two suppliers reach the stub once each, with stable envelope ids."""
        await chain.start_stub()
        ids = await publish(chain, [s.org_number for s in SUPPLIERS] * 2)
        chain.start_bridge()
        assert sorted(await chain.wait_stored(4)) == sorted(ids)
        assert chain.stub is not None
        assert envelope_id_for(ids[0]) == envelope_id_for(ids[0]) != envelope_id_for(ids[1])

    async def test_acks_only_after_2xx(self, chain: Chain) -> None:
        """A message the stub never answered stays on the queue and is delivered later."""
        ids = await publish(chain, [SUPPLIERS[0].org_number])
        chain.start_bridge(RetryPolicy(max_attempts=1000, initial_delay=0.05, max_delay=0.1))
        await asyncio.sleep(1.0)  # the stub is down: the bridge keeps retrying, no ack
        await chain.stop_bridges()
        await chain.start_stub()
        chain.start_bridge()
        assert await chain.wait_stored(1) == ids


class TestDeadLetters:
    async def test_poison_messages_go_to_dlq_and_others_flow(self, chain: Chain) -> None:
        """No headers, an unknown type and an unknown supplier are dead-lettered with reasons."""
        await chain.start_stub()
        good = MessageMeta.new(MessageType.INKOPSORDER, SUPPLIERS[0].org_number, 1).headers()
        unknown_type = {**good, Header.MESSAGE_TYPE: "FAKTURA", Header.MESSAGE_ID: "m2"}
        unknown_org = MessageMeta.new(MessageType.INKOPSORDER, UNREGISTERED, 1).headers()
        await send_raw(chain, {"x": "1"}, "<not-even-headers/>")
        await send_raw(chain, unknown_type, "<x/>")
        await send_raw(chain, unknown_org, "<x/>")
        ids = await publish(chain, [SUPPLIERS[0].org_number])
        chain.start_bridge()
        assert await chain.wait_stored(1) == ids
        codes = sorted(f.headers[DLQ_CODE] for f in await chain.dead_letters(3))
        assert codes == ["ENVELOPE_MALFORMED", "UNKNOWN_MESSAGE_TYPE", "UNKNOWN_SUPPLIER"]

    async def test_wrong_certificate_is_refused_not_delivered(
        self, pki: StateDir, broker_url: str, tmp_path: Path
    ) -> None:
        """A supplier presenting another (same-CA) certificate than the pinned one gets nothing."""
        served = registry_for(pki, SUPPLIERS, tmp_path / "served.json")
        other = cert_sha256(pki.supplier_cert(SUPPLIERS[1].org_number))
        pinned = [
            replace(e, cert_sha256=other) if e.org_number == SUPPLIERS[0].org_number else e
            for e in Registry.load(served)
        ]
        Registry(pinned).save(tmp_path / "pinned.json")
        # The stub serves supplier 0 with its real certificate; the ICC pins supplier 1's.
        chain = Chain(pki, broker_url, tmp_path, tmp_path / "pinned.json")
        chain.stub = SupplierStub(StubConfig(registry=served, state=pki, db=chain.db))
        await chain.stub.start()
        try:
            await publish(chain, [SUPPLIERS[0].org_number])
            chain.start_bridge()
            (frame,) = await chain.dead_letters(1)
            assert frame.headers[DLQ_CODE] == "DELIVERY_GAVE_UP"  # retried, never sent
            assert other in frame.headers[DLQ_REASON]  # names the pinned fingerprint
            assert chain.stored() == []
        finally:
            await chain.stop_bridges()
            await chain.stop_stub()

    async def test_unreachable_supplier_is_dead_lettered_after_retries(self, chain: Chain) -> None:
        """With no stub listening, the bridge retries, then dead-letters with the cause."""
        await publish(chain, [SUPPLIERS[0].org_number])
        chain.start_bridge(RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.1))
        (frame,) = await chain.dead_letters(1)
        assert frame.headers[DLQ_CODE] == "DELIVERY_GAVE_UP"
        assert "connect" in frame.headers[DLQ_REASON].lower()
