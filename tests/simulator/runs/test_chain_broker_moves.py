"""The running chain against a broker that is killed -9 and comes back on another port.

The ICC workers of a chain with ``follow_broker`` and a KA without ``--broker``
follow the embedded broker's broker.json (simulator/vocabulary/broker_source.py);
once no broker answers for ``--broker-give-up`` seconds they exit with one
error line naming every address they tried.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.lab.broker import LocalBroker
from simulator.lab.components import Component
from simulator.lab.network import kill_jvm
from simulator.lab.pki import cert_sha256, init_pki
from simulator.lab.ports import free_ports
from simulator.lab.suppliers import make_suppliers
from simulator.runs.chain import ChainSpec, RunningChain
from simulator.runs.reconcile import read_record, reconcile
from simulator.runs.stub_records import loaded_messages
from simulator.vocabulary.registry import Registry, SupplierEntry
from simulator.vocabulary.state import StateDir

pytestmark = [pytest.mark.broker, pytest.mark.integration]

GIVE_UP = 20.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    local = LocalBroker(tmp_path / "broker", die_with_parent=True)
    try:
        yield local
    finally:
        local.stop()


def _spec(tmp: Path, broker: LocalBroker, url: str) -> ChainSpec:
    run_dir = tmp / "run"
    run_dir.mkdir()
    pki = StateDir(run_dir)
    suppliers = make_suppliers(2, 1)
    init_pki(pki, suppliers)
    Registry(
        SupplierEntry(
            org_number=s.org_number,
            name=s.name,
            url=f"https://127.0.0.1:{port}/b2b/envelopes",
            cert_sha256=cert_sha256(pki.supplier_cert(s.org_number)),
        )
        for s, port in zip(suppliers, free_ports(len(suppliers)), strict=True)
    ).save(run_dir / "registry.json")
    return ChainSpec(
        state=pki,
        broker_dir=broker.base,
        run_dir=run_dir,
        broker_url=url,
        queue=f"/queue/test.moves.{uuid.uuid4().hex[:8]}",
        follow_broker=True,
        broker_give_up=GIVE_UP,
    )


async def _loaded(chain: RunningChain, count: int, timeout: float = 90) -> set[str]:
    async with asyncio.timeout(timeout):
        while len(rows := await asyncio.to_thread(loaded_messages, chain.db)) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    return {m for m, *_ in rows}


def _ka_args(spec: ChainSpec, broker: LocalBroker, *options: str) -> list[str]:
    """``serve producer`` following ``broker``, recording in the run directory."""
    return [
        "--broker-file",
        str(broker.info_file),
        "--broker-give-up",
        str(GIVE_UP),
        "--queue",
        spec.queue,
        "--registry",
        str(spec.run_dir / "registry.json"),
        "--log",
        str(spec.run_dir / "produced.jsonl"),
        "--outbox",
        str(spec.run_dir / "ka-outbox.sqlite"),
        *options,
    ]


async def _kill_and_move(broker: LocalBroker, old_port: int) -> int:
    """kill -9 the broker and start it again on another port; the new port."""
    await asyncio.to_thread(kill_jvm, broker)
    with socket.socket() as squatter:  # the old port is taken: the broker must move
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen(1)
        moved = broker.start()
    assert moved.port != old_port
    return moved.port


def _gave_up(log: Path, who: str, *ports: int) -> None:
    """The last line of ``log`` is the one error line of a component that gave up."""
    last = log.read_text().strip().splitlines()[-1]
    assert last.startswith("error ["), last
    assert f"{who} gave up after {GIVE_UP:g} s" in last
    for port in ports:
        assert f"127.0.0.1:{port}" in last
    assert "b2bsim broker start" in last


@pytest.mark.timeout(300)
async def test_icc_and_ka_follow_a_broker_that_comes_back_on_another_port(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """kill -9 of the broker, a start on another port: the ICC and KA find it, and
    everything KA recorded is loaded once; with the broker gone for good the ICC
    exits after the give-up time, naming the addresses it tried."""
    first = broker.start()
    spec = _spec(tmp_path, broker, first.url)
    chain = RunningChain(spec, broker, lambda _msg: None)
    await chain.start()
    record_file = spec.run_dir / "produced.jsonl"
    ka: Component | None = None
    try:
        args = _ka_args(spec, broker, "--chains", "10", "--rate", "10")
        ka = await Component.start("producer", spec.state.root, args, spec.run_dir / "ka.log")
        await _loaded(chain, 6)
        moved = await _kill_and_move(broker, first.port)
        assert await asyncio.wait_for(ka.proc.wait(), 120) == 0  # all sent and confirmed
        record = read_record(record_file)
        assert len(record.recorded) == 60
        assert record.unconfirmed == set()
        assert await _loaded(chain, 60) == set(record.recorded)
        figures = reconcile(record_file, chain.events_files(), chain.db)
        assert (figures.lost, figures.double_ingested, figures.out_of_order) == (0, 0, 0)

        await asyncio.to_thread(kill_jvm, broker)  # for good
        worker = chain.workers[0]
        assert worker is not None
        assert await asyncio.wait_for(worker.proc.wait(), GIVE_UP + 30) == 2
        _gave_up(worker.log, "the ICC", first.port, moved)
    finally:
        if ka is not None:
            await ka.stop()
        await chain.stop()


@pytest.mark.timeout(180)
async def test_ka_gives_up_after_the_bounded_time(tmp_path: Path, broker: LocalBroker) -> None:
    """KA following a broker that moved, then died for good: it publishes to the moved
    broker, and exits 2 after the give-up time, naming both addresses it tried."""
    first = broker.start()
    spec = _spec(tmp_path, broker, first.url)
    args = _ka_args(spec, broker, "--chains", "0", "--rate", "20")
    ka = await Component.start("producer", spec.state.root, args, spec.run_dir / "ka.log")
    try:
        moved = await _kill_and_move(broker, first.port)
        record_file = spec.run_dir / "produced.jsonl"
        recorded = len(read_record(record_file).sent)
        async with asyncio.timeout(60):
            while len(read_record(record_file).sent) < recorded + 10:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        await asyncio.to_thread(kill_jvm, broker)
        assert await asyncio.wait_for(ka.proc.wait(), GIVE_UP + 40) == 2
        _gave_up(ka.log, "KA", first.port, moved)
    finally:
        await ka.stop()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("broker_json", ["left behind", "removed"])
async def test_ka_started_while_the_broker_is_down_waits_for_it(
    tmp_path: Path, broker: LocalBroker, broker_json: str
) -> None:
    """Started while the followed broker is down (its broker.json left behind by a
    kill -9, or removed), KA waits instead of failing, and publishes once the broker
    is back elsewhere."""
    first = broker.start()
    spec = _spec(tmp_path, broker, first.url)
    if broker_json == "removed":
        await asyncio.to_thread(kill_jvm, broker)
    else:
        os.kill(first.pid, signal.SIGKILL)
        async with asyncio.timeout(10):
            while broker.status().running:  # noqa: ASYNC110 - (its exit status collected)
                await asyncio.sleep(0.05)
        assert broker.info_file.exists()
    args = _ka_args(spec, broker, "--chains", "0", "--rate", "20")
    starting = asyncio.create_task(
        Component.start("producer", spec.state.root, args, spec.run_dir / "ka.log")
    )
    await asyncio.sleep(3)
    assert not starting.done()  # waiting, not failed
    await _kill_and_move(broker, first.port)
    ka = await asyncio.wait_for(starting, 60)
    try:
        record_file = spec.run_dir / "produced.jsonl"
        async with asyncio.timeout(60):
            while len(read_record(record_file).sent) < 5:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    finally:
        assert await ka.stop() == 0
