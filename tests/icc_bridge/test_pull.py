"""Pull mode against the real broker over real mutual TLS: outbox, pull API, the stub's puller."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from icc_bridge import Bridge, BridgeConfig, RetryPolicy, envelope_id_for
from icc_bridge.outbox import Outbox
from icc_bridge.pull_api import PullApi, PullApiConfig
from ka_producer import Producer
from ka_producer.documents import DocumentFactory, seller_profile
from simulator.lab.pki import cert_sha256, init_pki, numbered_suppliers
from simulator.lab.ports import free_ports
from simulator.runs.stub_records import duplicate_arrivals, loaded_messages, stored_messages
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.messages import MessageType
from simulator.vocabulary.registry import DeliveryMode, Registry, SupplierEntry
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import client_context
from supplier_stub import StubConfig, SupplierStub
from supplier_stub.puller import Puller

pytestmark = [pytest.mark.broker, pytest.mark.integration]

SUPPLIERS = numbered_suppliers(3)
PULL_A, PULL_B, PUSH_C = (s.org_number for s in SUPPLIERS)


def free_port() -> int:
    return free_ports(1)[0]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    """A state directory with the test PKI for three suppliers."""
    state = StateDir(tmp_path_factory.mktemp("pull") / "state").ensure()
    init_pki(state, SUPPLIERS)
    return state


class PullChain:
    """A queue of its own, an ICC (bridge + pull API) and a stub, started on demand."""

    def __init__(self, state: StateDir, broker_url: str, tmp: Path) -> None:
        self.state, self.broker_url, self.tmp = state, broker_url, tmp
        self.queue = f"/queue/test.pull.{uuid.uuid4().hex[:8]}"
        self.outbox = tmp / "icc-outbox.sqlite"
        self.db = tmp / "stub.sqlite"
        self.events = tmp / "icc.jsonl"
        self.pull_url = f"https://127.0.0.1:{free_port()}/b2b/outbox"
        self.registry = tmp / "registry.json"
        modes = {PULL_A: DeliveryMode.PULL, PULL_B: DeliveryMode.PULL, PUSH_C: DeliveryMode.PUSH}
        Registry(
            SupplierEntry(
                org_number=s.org_number,
                name=s.name,
                url=self.pull_url
                if modes[s.org_number] is DeliveryMode.PULL
                else f"https://127.0.0.1:{free_port()}/b2b/envelopes",
                cert_sha256=cert_sha256(state.supplier_cert(s.org_number)),
                delivery_mode=modes[s.org_number],
            )
            for s in SUPPLIERS
        ).save(self.registry)
        self.api: PullApi | None = None
        self.stub: SupplierStub | None = None
        self._bridge: tuple[asyncio.Task[None], asyncio.Event] | None = None

    async def start_icc(self) -> None:
        self.api = PullApi(
            PullApiConfig(
                outbox=self.outbox,
                registry=self.registry,
                ca_cert=self.state.ca_cert,
                icc_cert=self.state.icc_cert,
                icc_key=self.state.icc_key,
                port=int(self.pull_url.split(":")[2].split("/")[0]),
                events_log=self.events,
            )
        )
        assert await self.api.start() == self.pull_url
        stop = asyncio.Event()
        config = BridgeConfig(
            broker_url=self.broker_url,
            registry=self.registry,
            ca_cert=self.state.ca_cert,
            icc_cert=self.state.icc_cert,
            icc_key=self.state.icc_key,
            queue=self.queue,
            events_log=self.events,
            outbox=self.outbox,
            retry=RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.1),
        )
        self._bridge = (asyncio.create_task(Bridge(config).run(stop)), stop)

    async def start_stub(self) -> SupplierStub:
        self.stub = SupplierStub(
            StubConfig(registry=self.registry, state=self.state, db=self.db, poll_interval=0.05)
        )
        await self.stub.start()
        return self.stub

    async def stop(self) -> None:
        if self.stub is not None:
            await self.stub.stop()
            self.stub = None
        if self._bridge is not None:
            task, stop = self._bridge
            stop.set()
            await asyncio.wait_for(task, 15)
            self._bridge = None
        if self.api is not None:
            await self.api.stop()
            self.api = None

    async def publish(self, orgs: list[str]) -> list[str]:
        factory = DocumentFactory(11)
        ids = []
        async with Producer(self.broker_url, queue=self.queue) as ka:
            for org in orgs:
                doc = factory.order(seller_profile(org, "Test AB"))
                ids.append((await ka.publish(MessageType.INKOPSORDER, org, doc.xml)).message_id)
        return ids

    def held(self, org: str | None = None) -> int:
        """Unacknowledged outbox rows (read-only peek at the ICC's file)."""
        if not self.outbox.exists():
            return 0
        con = sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True)
        try:
            sql = "SELECT count(*) FROM outbox WHERE acked_at_ms IS NULL"
            rows = con.execute(sql + " AND org_number = ?", (org,)) if org else con.execute(sql)
            return int(rows.fetchone()[0])
        except sqlite3.OperationalError:
            return 0
        finally:
            con.close()

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        lines = self.events.read_text(encoding="utf-8").splitlines()
        return [e for e in map(json.loads, lines) if e["event"] == kind]

    async def until(self, check: Any, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            # Files are the components' only signal here: poll them.
            while not check():  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    def client(self, org: str | None) -> aiohttp.ClientSession:
        """A session presenting ``org``'s certificate (None: no client certificate)."""
        if org is None:
            ctx = ssl.create_default_context(cafile=str(self.state.ca_cert))
        else:
            ctx = client_context(
                self.state.supplier_cert(org), self.state.supplier_key(org), self.state.ca_cert
            )
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))


@pytest.fixture
async def chain(pki: StateDir, broker_url: str, tmp_path: Path) -> AsyncIterator[PullChain]:
    c = PullChain(pki, broker_url, tmp_path)
    try:
        yield c
    finally:
        await c.stop()


async def get_page(chain: PullChain, org: str, query: str = "") -> tuple[int, Any]:
    async with chain.client(org) as http, http.get(chain.pull_url + query) as resp:
        return resp.status, await resp.json(content_type=None)


class TestOutbox:
    async def test_pull_supplier_messages_are_held_not_pushed(self, chain: PullChain) -> None:
        """A pull supplier's envelopes wait in the outbox, acked on the broker, none delivered."""
        await chain.start_icc()
        ids = await chain.publish([PULL_A] * 3)
        await chain.until(lambda: chain.held(PULL_A) == 3)
        await chain.until(lambda: len(chain.events_of("outboxed")) == 3)
        outboxed = chain.events_of("outboxed")
        assert [e["envelope_id"] for e in outboxed] == [envelope_id_for(i) for i in ids]
        assert chain.events_of("delivered") == []
        assert stored_messages(chain.db) == []

    async def test_redelivered_envelope_is_held_once(self, tmp_path: Path) -> None:
        """Putting the same envelope id twice (a broker redelivery) keeps one row."""
        outbox = Outbox(tmp_path / "o.sqlite")
        await outbox.open()
        try:
            row = {
                "envelope_id": "e1",
                "org_number": PULL_A,
                "message_id": "m1",
                "message_type": "INKOPSORDER",
                "sequence": 1,
                "envelope": b"<x/>",
            }
            assert await outbox.put(**row) is True  # type: ignore[arg-type]
            assert await outbox.put(**row) is False  # type: ignore[arg-type]
            assert await outbox.pending(PULL_A) == 1
        finally:
            await outbox.close()

    async def test_bridge_without_outbox_refuses_pull_registry(self, chain: PullChain) -> None:
        """A registry with pull suppliers and no outbox is a configuration error before start."""
        config = BridgeConfig(
            broker_url=chain.broker_url,
            registry=chain.registry,
            ca_cert=chain.state.ca_cert,
            icc_cert=chain.state.icc_cert,
            icc_key=chain.state.icc_key,
        )
        with pytest.raises(ConfigError, match="outbox"):
            Bridge(config)


class TestPuller:
    async def test_stub_pulls_stores_loads_in_order_and_acks(self, chain: PullChain) -> None:
        """The stub's puller fetches, stores and loads in order, then acks; nothing is left."""
        await chain.start_icc()
        ids = await chain.publish([PULL_A] * 3 + [PULL_B])
        await chain.until(lambda: chain.held() == 4)
        await chain.start_stub()
        await chain.until(lambda: len(loaded_messages(chain.db)) == 4 and chain.held() == 0)
        loaded_a = [m for m, org, _, _ in loaded_messages(chain.db) if org == PULL_A]
        assert loaded_a == ids[:3]
        assert [s for _, org, _, s in loaded_messages(chain.db) if org == PULL_A] == [1, 2, 3]
        delivered = {e["message_id"] for e in chain.events_of("delivered")}
        assert delivered == set(ids)
        status, page = await get_page(chain, PULL_A)
        assert (status, page["envelopes"], page["more"]) == (200, [], False)

    async def test_supplier_sees_only_its_own_envelopes(self, chain: PullChain) -> None:
        """Each pull supplier's certificate gets its own envelopes; a push supplier's none."""
        await chain.start_icc()
        ids = await chain.publish([PULL_A, PULL_B, PULL_A])
        await chain.until(lambda: chain.held() == 3)
        _, page_a = await get_page(chain, PULL_A)
        _, page_b = await get_page(chain, PULL_B)
        assert [e["envelope_id"] for e in page_a["envelopes"]] == [
            envelope_id_for(ids[0]),
            envelope_id_for(ids[2]),
        ]
        assert [e["envelope_id"] for e in page_b["envelopes"]] == [envelope_id_for(ids[1])]
        status, problem = await get_page(chain, PUSH_C)
        assert (status, problem["code"]) == (403, "CLIENT_NOT_SUPPLIER")

    async def test_client_without_certificate_is_refused_at_tls(self, chain: PullChain) -> None:
        """A client that presents no certificate never gets an HTTP answer."""
        await chain.start_icc()
        async with chain.client(None) as http:
            with pytest.raises(aiohttp.ClientError):
                async with http.get(chain.pull_url) as resp:
                    await resp.read()

    async def test_crash_before_ack_refetches_and_loads_once(
        self, chain: PullChain, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A puller killed after storing but before acking re-fetches: duplicates, loaded once."""
        await chain.start_icc()
        ids = await chain.publish([PULL_A] * 2)
        await chain.until(lambda: chain.held(PULL_A) == 2)
        acking = asyncio.Event()

        async def die_before_ack(self: Puller, up_to: int) -> None:
            acking.set()
            await asyncio.sleep(3600)  # "killed": the stub stops with this ack unsent

        monkeypatch.setattr(Puller, "ack", die_before_ack)
        await chain.start_stub()
        await asyncio.wait_for(acking.wait(), 20)
        assert sorted(m for m, *_ in stored_messages(chain.db)) == sorted(ids)
        assert chain.stub is not None
        await chain.stub.stop()
        chain.stub = None
        assert chain.held(PULL_A) == 2  # never acknowledged
        monkeypatch.undo()
        await chain.start_stub()
        await chain.until(lambda: chain.held(PULL_A) == 0)
        assert duplicate_arrivals(chain.db) == 2
        assert len(stored_messages(chain.db)) == 2
        assert [m for m, *_ in loaded_messages(chain.db)] == ids


class TestPullApiErrors:
    @pytest.mark.parametrize(
        ("query", "code"),
        [
            ("?after=abc", "CURSOR_INVALID"),
            ("?after=-1", "CURSOR_INVALID"),
            ("?after=999999", "CURSOR_INVALID"),
            ("?limit=0", "PAGE_LIMIT_INVALID"),
            ("?limit=100000", "PAGE_LIMIT_INVALID"),
        ],
    )
    async def test_bad_cursor_or_limit_is_a_400_problem(
        self, chain: PullChain, query: str, code: str
    ) -> None:
        """A cursor the ICC never issued, or a bad page limit, is a 400 problem document."""
        await chain.start_icc()
        async with chain.client(PULL_A) as http, http.get(chain.pull_url + query) as resp:
            assert resp.status == 400
            assert resp.content_type == "application/problem+json"
            assert (await resp.json(content_type=None))["code"] == code

    @pytest.mark.parametrize(
        "body", [b"not json", b"[]", b'{"up_to": "1"}', b'{"up_to": 0, "x": 1}', b'{"up_to": -1}']
    )
    async def test_malformed_ack_is_a_400_problem(self, chain: PullChain, body: bytes) -> None:
        """An acknowledgement that is not exactly {"up_to": cursor} is refused."""
        await chain.start_icc()
        async with (
            chain.client(PULL_A) as http,
            http.post(
                chain.pull_url + "/ack", data=body, headers={"Content-Type": "application/json"}
            ) as resp,
        ):
            assert resp.status == 400
            assert (await resp.json(content_type=None))["code"] == "ACK_INVALID"

    async def test_ack_beyond_issued_cursor_is_refused(self, chain: PullChain) -> None:
        """A supplier cannot acknowledge envelopes it was never given."""
        await chain.start_icc()
        async with (
            chain.client(PULL_A) as http,
            http.post(chain.pull_url + "/ack", json={"up_to": 5}) as resp,
        ):
            assert resp.status == 400
            assert (await resp.json(content_type=None))["code"] == "CURSOR_INVALID"
