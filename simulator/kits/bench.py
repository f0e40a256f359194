"""``b2bsim bench``: the whole chain measured side by side with the bare broker.

Two measurements in one invocation, on the same broker and with the same
documents (self-billing invoices for S suppliers, generated once up front so
that generating them is not measured):

(a) **baseline** (:mod:`simulator.kits.bench_baseline`): persistent send with
    receipts as KA asks for them, consume with ``client-individual`` ack, on a
    queue of its own;
(b) **chain**: KA's :class:`~ka_producer.Producer` in this process → broker →
    ICC worker(s) → supplier stub → ledger, run as a :class:`RunningChain` in
    a run directory under the state directory, without document validation.

The chain's figures come from the run's own files (docs/files.md) through
:func:`simulator.views.timeline.build_timeline`; CPU and peak memory come from
``/proc`` (:mod:`simulator.kits.bench_procs`).  Reconciliation runs too, so a
fast run that lost or reordered anything shows it.  The options and their
checks are in :mod:`simulator.kits.bench_options`, the figures and their JSON
in :mod:`simulator.kits.bench_results`; this module runs the bench.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from ka_producer import Producer, documents_for
from ka_producer.documents import DocumentFactory, GeneratedDocument, seller_profile
from simulator.kits.bench_baseline import Payload, run_baseline
from simulator.kits.bench_options import BenchOptions, Say
from simulator.kits.bench_procs import cpu_seconds, peak_rss_mb
from simulator.kits.bench_results import BenchResult, ChainResult, chain_hops
from simulator.lab.broker import LocalBroker, resolve_broker_url
from simulator.lab.network import BrokerNetwork
from simulator.lab.pki import SupplierIdentity
from simulator.lab.suppliers import make_suppliers
from simulator.runs.chain import ChainSpec, RunningChain
from simulator.runs.reconcile import reconcile
from simulator.runs.run_setup import init_run_suppliers, new_run_dir
from simulator.runs.stub_records import ledger_count
from simulator.vocabulary.errors import BenchTimeoutError, ComponentError
from simulator.vocabulary.messages import MessageMeta, MessageType
from simulator.vocabulary.state import StateDir

__all__ = ["BenchOptions", "BenchResult", "run_bench"]

log = logging.getLogger(__name__)


# --- documents --------------------------------------------------------------------


@dataclass(frozen=True)
class _Documents:
    """Per supplier (org number, name), a few self-invoices to cycle through."""

    suppliers: list[tuple[str, str]]
    pools: list[list[GeneratedDocument]]
    bodies: list[list[str]]

    def pick(self, i: int) -> tuple[str, GeneratedDocument, str]:
        """Message ``i``: suppliers in turn (a month-end burst), their documents in turn."""
        s = i % len(self.suppliers)
        k = (i // len(self.suppliers)) % len(self.pools[s])
        return self.suppliers[s][0], self.pools[s][k], self.bodies[s][k]

    @property
    def count(self) -> int:
        return sum(len(p) for p in self.pools)

    @property
    def mean_bytes(self) -> float:
        sizes = [len(d.xml) for pool in self.pools for d in pool]
        return sum(sizes) / len(sizes)


def _documents(suppliers: list[tuple[str, str]], distinct: int, seed: int) -> _Documents:
    factory = DocumentFactory(seed)
    sellers = [seller_profile(org, name) for org, name in suppliers]
    rounds = max(1, math.ceil(distinct / len(sellers)))
    pools: list[list[GeneratedDocument]] = [[] for _ in sellers]
    for _ in range(rounds):
        for pool, seller in zip(pools, sellers, strict=True):
            pool.append(documents_for(factory, seller, doc_type="invoice")[0])
    bodies = [[d.xml.decode("utf-8") for d in pool] for pool in pools]
    return _Documents(suppliers, pools, bodies)


def _baseline_payloads(docs: _Documents, count: int) -> list[Payload]:
    """The same bodies and the same KA headers the chain's messages carry."""
    out: list[Payload] = []
    sequences: dict[str, int] = {}
    for i in range(min(count, docs.count)):
        org, _, body = docs.pick(i)
        sequences[org] = sequences.get(org, 0) + 1
        meta = MessageMeta.new(MessageType.SJALVFAKTURA, org, sequences[org])
        out.append((body, meta.headers()))
    return out


# --- the run ------------------------------------------------------------------------


def run_bench(options: BenchOptions) -> BenchResult:
    """Measure the baseline, then the chain; always stops what it started."""
    options.check()
    say = options.progress or (lambda _msg: None)
    url = resolve_broker_url(options.broker_url)
    state = options.state.ensure()
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    identities = make_suppliers(options.suppliers, options.seed)
    suppliers = [(s.org_number, s.name) for s in identities]
    distinct = max(options.suppliers, min(options.messages, options.distinct))
    docs = _documents(suppliers, distinct, options.seed)
    timings["generate_documents"] = time.monotonic() - t0
    say(f"generated {docs.count} self-invoices for {len(suppliers)} suppliers")

    run_dir = new_run_dir(state, "bench")
    brokers = _Brokers.start(
        options, state=state, run_dir=run_dir, url=url, timings=timings, say=say
    )
    url = brokers.url
    try:
        warmup = options.warmup if options.warmup is not None else min(1000, options.messages // 10)
        say(f"baseline: {options.messages} messages over bare STOMP to {url} (warm-up {warmup})")
        t0 = time.monotonic()
        baseline = run_baseline(
            url,
            _baseline_payloads(docs, options.messages),
            options.messages,
            broker_pid=next(iter(brokers.pids.values()), None),
            warmup=warmup,
            timeout=options.chain_timeout,
        )
        timings["baseline"] = time.monotonic() - t0
        say(f"baseline: {baseline.msgs_per_s:.0f} msg/s")
        t0 = time.monotonic()
        chain = _run_chain(
            options,
            state=state,
            run_dir=run_dir,
            url=url,
            worker_urls=brokers.worker_urls,
            identities=identities,
            docs=docs,
            broker_pids=brokers.pids,
            say=say,
        )
        timings["chain"] = time.monotonic() - t0
        say(f"chain: {chain.msgs_per_s:.0f} msg/s")
    finally:
        brokers.stop()
    return BenchResult(options, url, docs.count, docs.mean_bytes, baseline, chain, timings)


@dataclass
class _Brokers:
    """The broker(s) a bench runs on, and how to stop those it started."""

    url: str  # where KA publishes and the baseline runs
    worker_urls: tuple[str, ...]  # over a network: each ICC worker's home broker
    pids: dict[str, int]  # name → JVM pid, for CPU and memory figures
    local: LocalBroker | None = None  # started for the bench
    network: BrokerNetwork | None = None  # started for the bench

    @classmethod
    def start(
        cls,
        options: BenchOptions,
        *,
        state: StateDir,
        run_dir: Path,
        url: str | None,
        timings: dict[str, float],
        say: Say,
    ) -> _Brokers:
        """Brokers started for the bench live in its run directory with empty stores, so
        that what other runs left in the state's broker can neither fill the store nor
        slow the figures.  A broker named by URL, or the state's running one, is used
        as it is."""
        if options.brokers > 1:
            network = _start_network(run_dir, options.brokers, timings, say)
            pids = {
                f"broker-{m.index} (JVM)": pid
                for m, st in network.status()
                if (pid := st.pid) is not None
            }
            return cls(network.urls[0], tuple(network.urls), pids, network=network)
        if url is not None:
            return cls(url, (), {})
        running = LocalBroker(state.broker).status()
        if running.running and running.url and running.pid:  # someone else's: leave it be
            return cls(running.url, (), {"broker (JVM)": running.pid})
        local = LocalBroker(run_dir / "broker", die_with_parent=True)
        info = local.start()
        timings["broker_start"] = info.startup_seconds
        say(f"broker started: {info.url} in {info.startup_seconds:.1f} s")
        return cls(info.url, (), {"broker (JVM)": info.pid}, local=local)

    def stop(self) -> None:
        """Stop what the bench started and drop its stores (up to GBs of journal)."""
        if self.local is not None:
            self.local.stop()
            shutil.rmtree(self.local.data_dir, ignore_errors=True)
        if self.network is not None:
            self.network.stop()
            for member in self.network.members:
                shutil.rmtree(self.network.broker_dir(member.index) / "data", ignore_errors=True)


def _start_network(run_dir: Path, size: int, timings: dict[str, float], say: Say) -> BrokerNetwork:
    """Start a network of ``size`` brokers in RUN_DIR/broker-1..N and wait until joined."""
    network = BrokerNetwork(run_dir, size, die_with_parent=True)
    timings["broker_start"] = network.start_joined()
    say(
        f"network of {size} brokers started and joined in {timings['broker_start']:.1f} s: "
        f"{', '.join(network.urls)}"
    )
    return network


def _run_chain(
    options: BenchOptions,
    *,
    state: StateDir,
    run_dir: Path,
    url: str,
    worker_urls: tuple[str, ...],
    identities: list[SupplierIdentity],
    docs: _Documents,
    broker_pids: dict[str, int],
    say: Say,
) -> ChainResult:
    t0 = time.monotonic()
    run_state, _ = init_run_suppliers(run_dir, identities)
    say(f"chain: PKI and registry for {len(identities)} suppliers in {time.monotonic() - t0:.1f} s")
    spec = ChainSpec(
        state=run_state,
        broker_dir=state.broker,
        run_dir=run_dir,
        broker_url=url,
        queue=f"/queue/af.ka.outbound.bench-{run_dir.name}",
        workers=options.worker_count,
        validate=False,  # the bench measures the chain, not the document rules
        seed=options.seed,
        worker_broker_urls=worker_urls,
    )
    if options.gap_timeout is not None:
        spec = replace(spec, gap_timeout=options.gap_timeout)
    chain = RunningChain(spec, None, say)
    measured = asyncio.run(_measure(options, chain, docs, broker_pids, say))
    figures = reconcile(run_dir / "produced.jsonl", chain.events_files(), chain.db).figures()
    seconds, hops = chain_hops(run_dir)
    result = ChainResult(
        messages=options.messages,
        seconds=seconds,
        produce_seconds=measured.produce_seconds,
        hops_ms=hops,
        cpu_seconds=measured.cpu,
        rss_mb=measured.rss,
        figures=figures,
        run_dir=run_dir,
    )
    (run_dir / "bench-chain.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


@dataclass
class _Measured:
    produce_seconds: float
    cpu: dict[str, float]
    rss: dict[str, float]


async def _measure(
    options: BenchOptions,
    chain: RunningChain,
    docs: _Documents,
    broker_pids: dict[str, int],
    say: Say,
) -> _Measured:
    spec = chain.spec
    await chain.start()
    try:
        pids = {"ka (bench process)": os.getpid()}
        if chain.stub is not None:
            pids["supplier-stub"] = chain.stub.proc.pid
        for i, worker in enumerate(chain.workers):
            if worker is not None:
                pids[f"icc-{i + 1}"] = worker.proc.pid
        pids.update(broker_pids)
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        ka_cpu0 = time.process_time()
        started = time.monotonic()
        say(f"chain: publishing {options.messages} messages")
        async with Producer(
            spec.broker_url, queue=spec.queue, produced_log=spec.run_dir / "produced.jsonl"
        ) as ka:
            for i in range(options.messages):
                org, doc, _ = docs.pick(i)
                await ka.publish(
                    MessageType.SJALVFAKTURA,
                    org,
                    doc.xml,
                    document_id=doc.document_id,
                    message_id=str(uuid.uuid4()),
                )
        produce_seconds = time.monotonic() - started
        ka_cpu = time.process_time() - ka_cpu0
        say(
            f"chain: KA published {options.messages} in {produce_seconds:.1f} s; "
            "waiting for the ledger"
        )
        await _wait_loaded(chain, options.messages, started + options.chain_timeout)
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        cpu = {
            name: (a - b)
            for name, b in before.items()
            if b is not None and (a := after[name]) is not None
        }
        cpu["ka (bench process)"] = ka_cpu  # the producing only, not the waiting
        rss = {name: mb for name, pid in pids.items() if (mb := peak_rss_mb(pid)) is not None}
        return _Measured(produce_seconds, cpu, rss)
    finally:
        await chain.stop()


async def _wait_loaded(chain: RunningChain, expected: int, deadline: float) -> None:
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
