"""``b2bsim bench``: the whole chain measured side by side with the bare broker.

Two measurements of a burst in one invocation, on the same broker and with
the same documents (self-billing invoices for S suppliers, generated once up
front so that generating them is not measured):

(a) **baseline** (:mod:`simulator.kits.bench_baseline`): persistent send with
    receipts as KA asks for them, consume with ``client-individual`` ack, on a
    queue of its own;
(b) **chain**: KA's :class:`~ka_producer.Producer` in this process → broker →
    ICC worker(s) → supplier stub → ledger, run as a :class:`RunningChain` in
    a run directory under the state directory, without document validation.

The chain's figures come from the run's own files (docs/files.md) through
:func:`simulator.views.timeline.build_timeline`; CPU and peak memory come from
``/proc`` (:mod:`simulator.kits.bench_procs`).  Reconciliation runs too, so a
fast run that lost or reordered anything shows it.

With ``--rate`` a steady phase (:mod:`simulator.kits.bench_steady`) runs
after the burst (``--rate auto``: at half the burst's chain rate) or instead
of it (``--rate R``).  The options and their checks are in
:mod:`simulator.kits.bench_options`, the chain both phases drive in
:mod:`simulator.kits.bench_chain`, the figures and their JSON in
:mod:`simulator.kits.bench_results`; this module runs the bench.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ka_producer import Producer
from simulator.kits.bench_baseline import BaselineResult, Payload, run_baseline
from simulator.kits.bench_chain import (
    CpuMeter,
    Documents,
    bench_chain_spec,
    chain_pids,
    make_documents,
    peak_rss,
    wait_delivered,
    wait_loaded,
)
from simulator.kits.bench_options import BenchOptions, Rate, Say
from simulator.kits.bench_results import (
    BenchResult,
    ChainResult,
    SteadyRate,
    SteadyResult,
    chain_hops,
)
from simulator.kits.bench_steady import SteadyPlace, run_steady, steady_message_bound
from simulator.lab.broker import LocalBroker, resolve_broker_url
from simulator.lab.network import BrokerNetwork
from simulator.lab.pki import SupplierIdentity
from simulator.lab.suppliers import make_suppliers
from simulator.runs.chain import RunningChain
from simulator.runs.reconcile import reconcile
from simulator.runs.run_setup import init_run_suppliers, new_run_dir
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.messages import MessageMeta, MessageType
from simulator.vocabulary.state import StateDir

__all__ = ["BenchOptions", "BenchResult", "run_bench"]

log = logging.getLogger(__name__)


# --- documents --------------------------------------------------------------------


def _baseline_payloads(docs: Documents, count: int) -> list[Payload]:
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
    """Measure the burst (baseline, then chain), the steady phase, or both; always stops
    what it started."""
    options.check()
    say = options.progress or (lambda _msg: None)
    url = resolve_broker_url(options.broker_url)
    state = options.state.ensure()
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    identities = make_suppliers(options.suppliers, options.seed)
    suppliers = [(s.org_number, s.name) for s in identities]
    most = options.burst_messages if options.burst else steady_message_bound(options)
    distinct = max(options.suppliers, min(most, options.distinct))
    docs = make_documents(suppliers, distinct, options.seed)
    timings["generate_documents"] = time.monotonic() - t0
    say(f"generated {docs.count} self-invoices for {len(suppliers)} suppliers")

    run_dir = new_run_dir(state, "bench")
    brokers = _Brokers.start(
        options, state=state, run_dir=run_dir, url=url, timings=timings, say=say
    )
    url = brokers.url
    baseline: BaselineResult | None = None
    chain: ChainResult | None = None
    steady: SteadyResult | None = None
    try:
        if options.burst:
            baseline = _run_baseline(
                options, url, docs=docs, broker_pids=brokers.pids, timings=timings, say=say
            )
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
        if options.rate is not None:
            t0 = time.monotonic()
            steady = run_steady(
                options,
                _steady_rate(options.rate, chain),
                SteadyPlace(state, run_dir / "steady", url, brokers.worker_urls, brokers.pids),
                identities=identities,
                docs=docs,
                say=say,
            )
            timings["steady"] = time.monotonic() - t0
    finally:
        brokers.stop()
    return BenchResult(
        options, url, docs.count, docs.mean_bytes, baseline, chain, timings, steady=steady
    )


def _steady_rate(rate: Rate, chain: ChainResult | None) -> SteadyRate:
    """The steady phase's rate: as asked, or half the burst's peak (``auto``)."""
    if rate != "auto":
        return SteadyRate(rate)
    if chain is None or chain.msgs_per_s <= 0:  # pragma: no cover - check() makes a burst
        raise ConfigError("--rate auto found no peak", hint="give --rate R (msg/s)")
    return SteadyRate(chain.msgs_per_s / 2, peak=chain.msgs_per_s)


def _run_baseline(
    options: BenchOptions,
    url: str,
    *,
    docs: Documents,
    broker_pids: dict[str, int],
    timings: dict[str, float],
    say: Say,
) -> BaselineResult:
    n = options.burst_messages
    warmup = options.warmup if options.warmup is not None else min(1000, n // 10)
    say(f"baseline: {n} messages over bare STOMP to {url} (warm-up {warmup})")
    t0 = time.monotonic()
    baseline = run_baseline(
        url,
        _baseline_payloads(docs, n),
        n,
        broker_pid=next(iter(broker_pids.values()), None),
        warmup=warmup,
        timeout=options.chain_timeout,
    )
    timings["baseline"] = time.monotonic() - t0
    say(f"baseline: {baseline.msgs_per_s:.0f} msg/s")
    return baseline


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
    docs: Documents,
    broker_pids: dict[str, int],
    say: Say,
) -> ChainResult:
    t0 = time.monotonic()
    run_state, _ = init_run_suppliers(run_dir, identities)
    say(f"chain: PKI and registry for {len(identities)} suppliers in {time.monotonic() - t0:.1f} s")
    spec = bench_chain_spec(
        options,
        run_state=run_state,
        state=state,
        run_dir=run_dir,
        url=url,
        worker_urls=worker_urls,
        queue=f"/queue/af.ka.outbound.bench-{run_dir.name}",
    )
    chain = RunningChain(spec, None, say)
    measured = asyncio.run(_measure(options, chain, docs, broker_pids, say))
    figures = reconcile(run_dir / "produced.jsonl", chain.events_files(), chain.db).figures()
    seconds, hops = chain_hops(run_dir)
    result = ChainResult(
        messages=options.burst_messages,
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
    docs: Documents,
    broker_pids: dict[str, int],
    say: Say,
) -> _Measured:
    spec = chain.spec
    n = options.burst_messages
    await chain.start()
    try:
        pids = chain_pids(chain, broker_pids)
        meter = CpuMeter(pids)
        meter.ka_starts()
        started = time.monotonic()
        say(f"chain: publishing {n} messages")
        async with Producer(
            spec.broker_url, queue=spec.queue, produced_log=spec.run_dir / "produced.jsonl"
        ) as ka:
            for i in range(n):
                await docs.publish(ka, i)
        produce_seconds = time.monotonic() - started
        meter.ka_stops()
        say(f"chain: KA published {n} in {produce_seconds:.1f} s; waiting for the ledger")
        await wait_loaded(chain, n, started + options.chain_timeout)
        measured = _Measured(produce_seconds, meter.used(), peak_rss(pids))
        await wait_delivered(chain, n)
        return measured
    finally:
        await chain.stop()
