"""The steady phase of ``b2bsim bench --rate``: what a message costs at a steady load.

A burst (:mod:`simulator.kits.bench`) measures the chain's peak, where a
message's latency is mostly its wait in the queue.  Here KA publishes at a
steady rate R for a duration D, paced by :class:`ka_producer.Pacer`, into a
chain of its own (a run directory ``RUN/steady`` with its own PKI, registry,
stub and ICC workers, on the bench's broker), so that what a message costs
a supplier at that rate can be read hop by hop:

1. **warm-up**, not measured: one message per supplier (and at least one
   second's worth at R, up to 1000), as fast as KA publishes, until the
   ledger holds them, so that every TLS connection is open and every lane
   started;
2. **measured period**: from then on KA publishes one message every 1/R s
   until D seconds have passed (at most R × D messages); CPU per process is
   read from the start of this period until the ledger holds its last
   message.  If KA falls behind, it publishes fewer: the achieved rate is
   what it published over the time it took, never the rate asked.

The figures (:class:`simulator.kits.bench_results.SteadyResult`) are taken
from the run's files over the measured messages only.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ka_producer import Pacer, Producer
from simulator.kits.bench_chain import (
    CpuMeter,
    Documents,
    bench_chain_spec,
    chain_pids,
    peak_rss,
    wait_delivered,
    wait_loaded,
)
from simulator.kits.bench_options import BenchOptions, Say
from simulator.kits.bench_results import SteadyRate, SteadyResult, chain_hops
from simulator.lab.pki import SupplierIdentity
from simulator.runs.chain import RunningChain
from simulator.runs.reconcile import reconcile
from simulator.runs.run_setup import init_run_suppliers
from simulator.vocabulary.state import StateDir

__all__ = [
    "WARMUP_MOST",
    "SteadyPlace",
    "publish_paced",
    "run_steady",
    "steady_message_bound",
    "warmup_count",
]


@dataclass(frozen=True)
class SteadyPlace:
    """Where the steady phase runs: its run directory, on the bench's broker(s)."""

    state: StateDir
    run_dir: Path
    url: str
    worker_urls: tuple[str, ...]
    broker_pids: dict[str, int]


#: The warm-up's "one second's worth" is at most this many messages.
WARMUP_MOST = 1000


def warmup_count(suppliers: int, rate: float) -> int:
    """One message per supplier, and at least one second's worth at ``rate`` (up to
    :data:`WARMUP_MOST`)."""
    return max(suppliers, min(math.ceil(rate), WARMUP_MOST))


async def publish_paced(
    publish: Callable[[int], Awaitable[str]], rate: float, duration: float, *, first: int = 0
) -> tuple[set[str], float]:
    """Publish messages ``first``, ``first + 1``, … one every 1/``rate`` s for ``duration``
    s (at most rate × duration of them); returns their ids and the seconds it took.

    The last message is due at the end of the duration: one interval's grace is
    left for a late wake-up; beyond it KA has fallen behind, and only what it
    managed counts, so the rate achieved (ids over seconds) is never the asked
    one unless KA kept it.
    """
    planned = max(1, math.floor(rate * duration))
    ids: set[str] = set()
    pacer = Pacer(rate)
    started = time.monotonic()
    deadline = started + duration + 1 / rate
    while len(ids) < planned:
        await pacer.wait()
        if time.monotonic() > deadline:
            break
        ids.add(await publish(first + len(ids)))
    return ids, time.monotonic() - started


def steady_message_bound(options: BenchOptions) -> int:
    """The most messages a steady phase at a given rate publishes, its warm-up included."""
    rate = options.rate
    if not isinstance(rate, float | int):
        return options.burst_messages  # auto: a burst of these comes first
    return warmup_count(options.suppliers, rate) + math.ceil(rate * options.steady_seconds)


def run_steady(
    options: BenchOptions,
    rate: SteadyRate,
    place: SteadyPlace,
    *,
    identities: list[SupplierIdentity],
    docs: Documents,
    say: Say,
) -> SteadyResult:
    """Run the steady phase in ``place.run_dir`` (made here) and read its figures."""
    run_dir = place.run_dir
    run_dir.mkdir(mode=0o700)
    t0 = time.monotonic()
    run_state, _ = init_run_suppliers(run_dir, identities)
    say(
        f"steady: PKI and registry for {len(identities)} suppliers in {time.monotonic() - t0:.1f} s"
    )
    spec = bench_chain_spec(
        options,
        run_state=run_state,
        state=place.state,
        run_dir=run_dir,
        url=place.url,
        worker_urls=place.worker_urls,
        queue=f"/queue/af.ka.outbound.bench-{run_dir.parent.name}-steady",
    )
    chain = RunningChain(spec, None, say)
    measured = asyncio.run(
        _measure(options, rate.rate, chain=chain, docs=docs, broker_pids=place.broker_pids, say=say)
    )
    figures = reconcile(run_dir / "produced.jsonl", chain.events_files(), chain.db).figures()
    seconds, hops = chain_hops(run_dir, only=measured.ids)
    result = SteadyResult(
        rate=rate,
        duration_s=options.steady_seconds,
        messages=len(measured.ids),
        warmup_messages=measured.warmup,
        publish_seconds=measured.publish_seconds,
        seconds=seconds,
        hops_ms=hops,
        cpu_seconds=measured.cpu,
        rss_mb=measured.rss,
        figures=figures,
        run_dir=run_dir,
    )
    (run_dir / "bench-steady.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    kept = "" if result.rate_kept else " — KA did NOT keep the asked rate"
    say(f"steady: asked {rate.rate:.1f} msg/s, achieved {result.achieved_rate:.1f} msg/s{kept}")
    return result


@dataclass
class _Measured:
    warmup: int
    ids: set[str]  # message ids of the measured period
    publish_seconds: float
    cpu: dict[str, float]
    rss: dict[str, float]


async def _measure(
    options: BenchOptions,
    rate: float,
    *,
    chain: RunningChain,
    docs: Documents,
    broker_pids: dict[str, int],
    say: Say,
) -> _Measured:
    spec = chain.spec
    warmup = warmup_count(options.suppliers, rate)
    await chain.start()
    try:
        pids = chain_pids(chain, broker_pids)
        async with Producer(
            spec.broker_url, queue=spec.queue, produced_log=spec.run_dir / "produced.jsonl"
        ) as ka:

            async def publish(i: int) -> str:
                return await docs.publish(ka, i)

            say(f"steady: warm-up, {warmup} messages")
            for i in range(warmup):
                await publish(i)
            await ka.flush()
            await wait_loaded(chain, warmup, time.monotonic() + options.steady_timeout(warmup))
            say(f"steady: publishing at {rate:.1f} msg/s for {options.steady_seconds:g} s")
            meter = CpuMeter(pids)
            meter.ka_starts()
            ids, publish_seconds = await publish_paced(
                publish, rate, options.steady_seconds, first=warmup
            )
            await ka.flush()
            meter.ka_stops()
        say(f"steady: KA published {len(ids)} in {publish_seconds:.1f} s; waiting for the ledger")
        total = warmup + len(ids)
        await wait_loaded(chain, total, time.monotonic() + options.steady_timeout(len(ids)))
        measured = _Measured(warmup, ids, publish_seconds, meter.used(), peak_rss(pids))
        await wait_delivered(chain, total)
        return measured
    finally:
        await chain.stop()
