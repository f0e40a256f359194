"""The chain a bench drives: its documents, its spec, its processes, waiting for its ledger.

Shared by the burst (:mod:`simulator.kits.bench`) and the steady phase
(:mod:`simulator.kits.bench_steady`), so that both measure the same chain
the same way.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from ka_producer import Producer, documents_for
from ka_producer.documents import DocumentFactory, GeneratedDocument, seller_profile
from simulator.kits.bench_options import BenchOptions
from simulator.kits.bench_procs import cpu_seconds, peak_rss_mb
from simulator.runs.chain import ChainSpec, RunningChain
from simulator.runs.reconcile import read_jsonl
from simulator.runs.stub_records import ledger_count
from simulator.vocabulary.errors import BenchTimeoutError, ComponentError
from simulator.vocabulary.messages import MessageType
from simulator.vocabulary.state import StateDir

__all__ = [
    "KA_PROCESS",
    "CpuMeter",
    "Documents",
    "bench_chain_spec",
    "chain_pids",
    "make_documents",
    "peak_rss",
    "wait_delivered",
    "wait_loaded",
]

#: How long a bench waits, after the ledger is full, for the ICC to log its deliveries.
DELIVERED_GRACE = 10.0

#: The name under which KA's CPU and memory (this process) are reported.
KA_PROCESS = "ka (bench process)"


@dataclass(frozen=True)
class Documents:
    """Per supplier (org number, name), a few self-invoices to cycle through."""

    suppliers: list[tuple[str, str]]
    pools: list[list[GeneratedDocument]]
    bodies: list[list[str]]

    def pick(self, i: int) -> tuple[str, GeneratedDocument, str]:
        """Message ``i``: suppliers in turn (a month-end burst), their documents in turn."""
        s = i % len(self.suppliers)
        k = (i // len(self.suppliers)) % len(self.pools[s])
        return self.suppliers[s][0], self.pools[s][k], self.bodies[s][k]

    async def publish(self, ka: Producer, i: int) -> str:
        """Publish message ``i`` (a self-invoice, :meth:`pick`) with a new id; returns the id."""
        org, doc, _ = self.pick(i)
        message_id = str(uuid.uuid4())
        await ka.publish(
            MessageType.SJALVFAKTURA,
            org,
            doc.xml,
            document_id=doc.document_id,
            message_id=message_id,
        )
        return message_id

    @property
    def count(self) -> int:
        return sum(len(p) for p in self.pools)

    @property
    def mean_bytes(self) -> float:
        sizes = [len(d.xml) for pool in self.pools for d in pool]
        return sum(sizes) / len(sizes)


def make_documents(suppliers: list[tuple[str, str]], distinct: int, seed: int) -> Documents:
    """At least ``distinct`` self-invoices, the same number for every supplier."""
    factory = DocumentFactory(seed)
    sellers = [seller_profile(org, name) for org, name in suppliers]
    rounds = max(1, math.ceil(distinct / len(sellers)))
    pools: list[list[GeneratedDocument]] = [[] for _ in sellers]
    for _ in range(rounds):
        for pool, seller in zip(pools, sellers, strict=True):
            pool.append(documents_for(factory, seller, doc_type="invoice")[0])
    bodies = [[d.xml.decode("utf-8") for d in pool] for pool in pools]
    return Documents(suppliers, pools, bodies)


def bench_chain_spec(
    options: BenchOptions,
    *,
    run_state: StateDir,
    state: StateDir,
    run_dir: Path,
    url: str,
    worker_urls: tuple[str, ...],
    queue: str,
) -> ChainSpec:
    """The chain a bench measures: W workers, and a stub without document rules."""
    spec = ChainSpec(
        state=run_state,
        broker_dir=state.broker,
        run_dir=run_dir,
        broker_url=url,
        queue=queue,
        workers=options.worker_count,
        validate=False,  # the bench measures the chain, not the document rules
        seed=options.seed,
        worker_broker_urls=worker_urls,
    )
    if options.gap_timeout is not None:
        spec = replace(spec, gap_timeout=options.gap_timeout)
    return spec


def chain_pids(chain: RunningChain, broker_pids: dict[str, int]) -> dict[str, int]:
    """Name → pid of every process whose CPU and memory a bench reports."""
    pids = {KA_PROCESS: os.getpid()}
    if chain.stub is not None:
        pids["supplier-stub"] = chain.stub.proc.pid
    for i, worker in enumerate(chain.workers):
        if worker is not None:
            pids[f"icc-{i + 1}"] = worker.proc.pid
    pids.update(broker_pids)
    return pids


class CpuMeter:
    """CPU seconds per process from now on; KA's own is counted only while it publishes."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self._ka = 0.0
        self._ka_since: float | None = None

    def ka_starts(self) -> None:
        self._ka_since = time.process_time()

    def ka_stops(self) -> None:
        if self._ka_since is not None:
            self._ka += time.process_time() - self._ka_since
            self._ka_since = None

    def used(self) -> dict[str, float]:
        """CPU seconds each process used since the meter started (gone ones left out)."""
        used = {
            name: (a - b)
            for name, b in self._before.items()
            if b is not None and (a := cpu_seconds(self.pids[name])) is not None
        }
        used[KA_PROCESS] = self._ka  # the producing only, not the waiting
        return used


def peak_rss(pids: dict[str, int]) -> dict[str, float]:
    """The peak resident set of each process still there (MiB)."""
    return {name: mb for name, pid in pids.items() if (mb := peak_rss_mb(pid)) is not None}


async def wait_loaded(chain: RunningChain, expected: int, deadline: float) -> None:
    """Return once the stub's ledger holds ``expected`` rows; a dead component fails at once."""
    last = -1
    next_report = time.monotonic() + 10
    while True:
        loaded = await asyncio.to_thread(ledger_count, chain.db)
        if loaded >= expected:
            return
        for component in [chain.stub, *chain.workers]:
            if component is not None and not component.running:
                raise ComponentError(
                    f"{component.name} exited during the bench ({loaded} of {expected} loaded)",
                    hint=f"read {component.log}",
                )
        now = time.monotonic()
        if now > deadline:
            raise BenchTimeoutError(
                f"the chain loaded {loaded} of {expected} messages before the timeout",
                hint=f"raise --timeout, or read the logs in {chain.spec.run_dir}",
            )
        if now >= next_report and loaded != last:
            chain.say(f"chain: {loaded} of {expected} loaded")
            last, next_report = loaded, now + 10
        await asyncio.sleep(0.25)


def _delivered(chain: RunningChain) -> int:
    return len(
        {
            e.get("message_id")
            for path in chain.events_files()
            for e in read_jsonl(path)
            if e.get("event") == "delivered"
        }
    )


async def wait_delivered(chain: RunningChain, expected: int) -> None:
    """Wait (a little) until the ICC has logged ``expected`` deliveries.

    The stub loads an envelope before it answers, so the ledger can be full
    while the ICC has yet to read the last answers and log them; stopping it
    then would leave those messages without a ``delivered`` stamp.  Past the
    grace the bench goes on: their hop is then missing from the figures.
    """
    deadline = time.monotonic() + DELIVERED_GRACE
    while await asyncio.to_thread(_delivered, chain) < expected:
        if time.monotonic() > deadline:
            chain.say("the ICC did not log every delivery: some hops lack a delivered stamp")
            return
        await asyncio.sleep(0.1)
