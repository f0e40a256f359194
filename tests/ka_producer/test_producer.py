"""KA's producer as ``b2bsim serve producer``: killed -9 and restarted, against the real
broker, the ICC and the supplier stub.

Its record (produced.jsonl) names every message it is about to send before it
sends it, and its sequences and unconfirmed messages survive a restart
(ka_producer/outbox.py, docs/files.md).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from ka_producer.producer import CRASH_AFTER_RECORD_ENV
from simulator.lab.components import Component
from simulator.lab.pki import cert_sha256, init_pki
from simulator.lab.ports import free_ports
from simulator.lab.suppliers import make_suppliers
from simulator.runs.chain import ChainSpec, RunningChain
from simulator.runs.reconcile import read_record, reconcile
from simulator.runs.stub_records import loaded_messages
from simulator.vocabulary.registry import Registry, SupplierEntry
from simulator.vocabulary.state import StateDir

pytestmark = [pytest.mark.broker, pytest.mark.integration]


async def start_chain(
    tmp: Path, broker_url: str, *, broker_dir: Path | None = None, follow: bool = False
) -> RunningChain:
    """A run directory with a PKI and a registry of two suppliers; the stub and one ICC."""
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
    spec = ChainSpec(
        state=pki,
        broker_dir=broker_dir or tmp / "no-broker",
        run_dir=run_dir,
        broker_url=broker_url,
        queue=f"/queue/test.ka.{uuid.uuid4().hex[:8]}",
        follow_broker=follow,
    )
    chain = RunningChain(spec, None, lambda _msg: None)
    await chain.start()
    return chain


async def start_ka(chain: RunningChain, *options: str, broker: str | None = None) -> Component:
    """``b2bsim serve producer`` for the chain's suppliers, recording in the run directory."""
    s = chain.spec
    where = ["--broker", broker or s.broker_url] if not s.follow_broker else []
    args = [
        *where,
        "--queue",
        s.queue,
        "--registry",
        str(s.run_dir / "registry.json"),
        "--log",
        str(s.run_dir / "produced.jsonl"),
        "--outbox",
        str(s.run_dir / "ka-outbox.sqlite"),
        *options,
    ]
    return await Component.start("producer", s.state.root, args, s.run_dir / "ka.log")


async def wait_loaded(chain: RunningChain, count: int, timeout: float = 60) -> list[str]:
    """The message ids of the ledger once it holds ``count`` rows."""
    async with asyncio.timeout(timeout):
        while len(loaded := await asyncio.to_thread(loaded_messages, chain.db)) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    return [m for m, *_ in loaded]


async def wait_recorded(record: Path, count: int, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while len(read_record(record).recorded) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def late_rows(db: Path) -> int:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        return int(con.execute("SELECT count(*) FROM ledger WHERE late != 0").fetchone()[0])


@pytest.fixture
async def chain(tmp_path: Path, broker_url: str) -> AsyncIterator[RunningChain]:
    running = await start_chain(tmp_path, broker_url)
    try:
        yield running
    finally:
        await running.stop()


async def test_kill_between_record_and_send_is_named_then_resent_once(
    chain: RunningChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KA killed after recording its 2nd message, before sending it: the record names
    it (recorded, not sent) and reconciliation lists it as unsent; restarted, KA sends
    it first, with its first sequence, and it is loaded exactly once."""
    record_file = chain.spec.run_dir / "produced.jsonl"
    monkeypatch.setenv(CRASH_AFTER_RECORD_ENV, "2")
    ka = await start_ka(chain, "--chains", "1", "--rate", "10")
    assert await asyncio.wait_for(ka.proc.wait(), 30) == -9  # it killed itself
    monkeypatch.delenv(CRASH_AFTER_RECORD_ENV)

    record = read_record(record_file)
    assert len(record.recorded) == 2
    first, second = list(record.recorded)
    assert record.sent == {first}
    assert record.unconfirmed == {second}
    assert await wait_loaded(chain, 1) == [first]
    await asyncio.sleep(1.0)  # nothing else is on its way
    figures = reconcile(record_file, chain.events_files(), chain.db)
    assert figures.lost_ids == [second]
    assert figures.unsent_ids == [second]

    ka = await start_ka(chain, "--chains", "1", "--rate", "10")  # the same documents
    assert await asyncio.wait_for(ka.proc.wait(), 60) == 0
    loaded = await wait_loaded(chain, 6)
    assert loaded[:2] == [first, second]
    record = read_record(record_file)
    assert len(record.recorded) == 6
    assert record.unconfirmed == set()
    assert record.recorded[second]["sequence"] == 2
    await asyncio.sleep(1.0)
    figures = reconcile(record_file, chain.events_files(), chain.db)
    assert (figures.produced, figures.ingested, figures.lost) == (6, 6, 0)
    assert figures.double_ingested == 0
    assert figures.unsent_ids == []
    assert late_rows(chain.db) == 0


async def test_restart_with_new_documents_continues_the_sequences(chain: RunningChain) -> None:
    """KA killed -9 mid-run, restarted with other documents (another seed): each
    supplier's sequence continues where it stopped, and the ledger has no late row."""
    record_file = chain.spec.run_dir / "produced.jsonl"
    ka = await start_ka(chain, "--chains", "0", "--rate", "20", "--seed", "1")
    await wait_recorded(record_file, 7)
    await ka.kill()
    before = read_record(record_file).recorded

    ka = await start_ka(chain, "--chains", "1", "--seed", "2")
    assert await asyncio.wait_for(ka.proc.wait(), 60) == 0
    record = read_record(record_file)
    assert len(record.recorded) == len(before) + 6
    sequences: defaultdict[str, list[int]] = defaultdict(list)
    for line in record.recorded.values():
        sequences[str(line["org_number"])].append(int(line["sequence"]))
    for org, seen in sequences.items():
        assert seen == list(range(1, len(seen) + 1)), org
    await wait_loaded(chain, len(record.recorded))
    await asyncio.sleep(1.0)
    figures = reconcile(record_file, chain.events_files(), chain.db)
    assert figures.lost == 0
    assert figures.double_ingested == 0
    assert figures.out_of_order == 0
    assert late_rows(chain.db) == 0
