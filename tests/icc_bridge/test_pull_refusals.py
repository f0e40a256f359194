"""A pulled envelope the stub's puller refuses reaches the DLQ, not "lost" (real broker).

The stub's registry is stale on purpose: it has the supplier at an old URL, so
the envelope (addressed to the ICC's outbox URL, as the ICC's registry says)
is refused ``WRONG_ADDRESSEE`` by the same receive path a push goes through.
Before the "refused" list, the puller acknowledged past it silently and
reconciliation counted the message lost.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from icc_bridge import Bridge, BridgeConfig, PullApi, PullApiConfig, RetryPolicy
from ka_producer import Producer
from ka_producer.documents import DocumentFactory, seller_profile
from simulator.kits.dlq import DeadLetterQueue
from simulator.lab.pki import cert_sha256, init_pki, numbered_suppliers
from simulator.lab.ports import free_ports
from simulator.runs.reconcile import reconcile
from simulator.vocabulary.codes.dead_letters import PULL_REFUSED
from simulator.vocabulary.messages import MessageType
from simulator.vocabulary.registry import DeliveryMode, Registry, SupplierEntry
from simulator.vocabulary.state import StateDir
from supplier_stub import StubConfig, SupplierStub

pytestmark = [pytest.mark.broker, pytest.mark.integration]

(SUPPLIER,) = numbered_suppliers(1)
ORG = SUPPLIER.org_number


def registry(state: StateDir, path: Path, url: str) -> Path:
    entry = SupplierEntry(
        org_number=ORG,
        name=SUPPLIER.name,
        url=url,
        cert_sha256=cert_sha256(state.supplier_cert(ORG)),
        delivery_mode=DeliveryMode.PULL,
    )
    Registry([entry]).save(path)
    return path


async def test_envelopes_the_puller_refuses_are_dead_lettered_not_lost(
    broker_url: str, tmp_path: Path
) -> None:
    state = StateDir(tmp_path / "state").ensure()
    init_pki(state, [SUPPLIER])
    (port,) = free_ports(1)
    url = f"https://127.0.0.1:{port}/b2b/outbox"
    icc_registry = registry(state, tmp_path / "icc-registry.json", url)
    stale = registry(state, tmp_path / "stub-registry.json", url.replace("outbox", "old-outbox"))
    queue = f"/queue/test.pullrefused.{uuid.uuid4().hex[:8]}"
    outbox, events, db = tmp_path / "outbox.sqlite", tmp_path / "icc.jsonl", tmp_path / "stub.db"
    bridge = Bridge(
        BridgeConfig(
            broker_url=broker_url,
            registry=icc_registry,
            ca_cert=state.ca_cert,
            icc_cert=state.icc_cert,
            icc_key=state.icc_key,
            queue=queue,
            events_log=events,
            outbox=outbox,
            retry=RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.1),
        )
    )
    api = PullApi(
        PullApiConfig(
            outbox=outbox,
            registry=icc_registry,
            ca_cert=state.ca_cert,
            icc_cert=state.icc_cert,
            icc_key=state.icc_key,
            port=port,
            events_log=events,
            dead_letter=bridge.dead_letter_pulled,
        )
    )
    stub = SupplierStub(
        StubConfig(registry=stale, state=state, db=db, pull_url=url, poll_interval=0.05)
    )
    stop = asyncio.Event()
    await api.start()
    task = asyncio.create_task(bridge.run(stop))
    produced = tmp_path / "produced.jsonl"
    try:
        factory = DocumentFactory(5)
        async with Producer(broker_url, queue=queue, produced_log=produced) as ka:
            for _ in range(2):
                doc = factory.order(seller_profile(ORG, "Test AB"))
                await ka.publish(MessageType.INKOPSORDER, ORG, doc.xml)
        await stub.start()
        async with asyncio.timeout(30):
            while len(_events(events, "dead_lettered")) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await stub.stop()
        async with DeadLetterQueue(broker_url, queue) as dlq:
            letters = await dlq.letters()
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await api.stop()
    dead = _events(events, "dead_lettered")
    assert {e["code"] for e in dead} == {PULL_REFUSED}
    assert all(str(e["detail"]).startswith("WRONG_ADDRESSEE: ") for e in dead)
    assert [(d.code, d.org_number) for d in letters] == [(PULL_REFUSED, ORG)] * 2
    assert letters[0].reason.startswith("WRONG_ADDRESSEE: ")
    assert "<Order" in letters[0].body  # KA's document again: it can be replayed
    figures = reconcile(produced, [events], db)
    assert (figures.produced, figures.lost, figures.dead_lettered) == (2, 0, 2)
    assert _events(events, "delivered") == []


def _events(path: Path, kind: str) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [e for e in map(json.loads, path.read_text().splitlines()) if e["event"] == kind]
