"""What a bench measured: its figures, and the JSON that ``b2bsim bench --json`` writes.

The chain's latencies come from the run's own files (docs/files.md) through
:func:`simulator.views.timeline.build_timeline` (:func:`chain_hops`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulator.kits.bench_baseline import BaselineResult
from simulator.kits.bench_options import RATE_KEPT, BenchOptions
from simulator.kits.bench_procs import machine_facts, summarise
from simulator.views.timeline import build_timeline

__all__ = [
    "CHAIN_HOPS",
    "BenchResult",
    "ChainResult",
    "SteadyRate",
    "SteadyResult",
    "chain_hops",
    "figures_correct",
]

#: Hop name → (from stamp, to stamp) of :class:`simulator.views.timeline.MessageTimeline`.
CHAIN_HOPS: dict[str, tuple[str, str]] = {
    "ka_to_icc": ("produced", "consumed"),
    "icc_consumed_to_delivered": ("consumed", "delivered"),
    "stub_received_to_loaded": ("received", "loaded"),
    "end_to_end": ("produced", "loaded"),
}


@dataclass
class ChainResult:
    """What the whole chain measured."""

    messages: int
    seconds: float  # first send → last ledger load
    produce_seconds: float  # first send → KA's last receipt
    hops_ms: dict[str, dict[str, float | int | None]]
    cpu_seconds: dict[str, float]  # per process, during the measurement
    rss_mb: dict[str, float]  # peak per process, read before stopping it
    figures: dict[str, int]
    run_dir: Path

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "seconds": round(self.seconds, 3),
            "produce_seconds": round(self.produce_seconds, 3),
            "msgs_per_s": round(self.msgs_per_s, 1),
            "latency_ms": self.hops_ms,
            "cpu_s_per_1000": {
                name: round(cpu * 1000 / self.messages, 3) for name, cpu in self.cpu_seconds.items()
            },
            "rss_mb": {name: round(mb, 1) for name, mb in self.rss_mb.items()},
            "figures": self.figures,
            "run_dir": str(self.run_dir),
        }


def figures_correct(figures: dict[str, int], expected: int) -> bool:
    """Every one of ``expected`` messages loaded once, in order; nothing lost or dead-lettered."""
    keys = ("lost", "double_ingested", "out_of_order", "dead_lettered")
    return figures.get("ingested") == expected and all(figures.get(k, 0) == 0 for k in keys)


@dataclass(frozen=True)
class SteadyRate:
    """The rate a steady phase asks of KA (msg/s); ``peak``: found by a burst (``auto``)."""

    rate: float
    peak: float | None = None


@dataclass
class SteadyResult:
    """What the steady phase measured, over the messages after its warm-up."""

    rate: SteadyRate
    duration_s: float  # as asked
    messages: int  # published in the measured period
    warmup_messages: int  # published and loaded before it, not measured
    publish_seconds: float  # the measured period: its start → KA's last send
    seconds: float  # its first send → its last ledger load
    hops_ms: dict[str, dict[str, float | int | None]]
    cpu_seconds: dict[str, float]  # per process, during the measured period
    rss_mb: dict[str, float]
    figures: dict[str, int]  # reconciliation over warm-up and measured messages
    run_dir: Path

    @property
    def achieved_rate(self) -> float:
        """The rate KA published at (never the asked one)."""
        return self.messages / self.publish_seconds if self.publish_seconds > 0 else 0.0

    @property
    def rate_kept(self) -> bool:
        return self.achieved_rate >= RATE_KEPT * self.rate.rate

    @property
    def loaded_rate(self) -> float:
        """Messages over first send → last load: below the achieved rate, the chain lags."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def correct(self) -> bool:
        return figures_correct(self.figures, self.messages + self.warmup_messages)

    def to_json(self) -> dict[str, Any]:
        e2e = self.hops_ms.get("end_to_end", {})
        return {
            "rate": round(self.rate.rate, 2),
            "rate_auto": self.rate.peak is not None,
            "peak_msgs_per_s": None if self.rate.peak is None else round(self.rate.peak, 1),
            "achieved_rate": round(self.achieved_rate, 2),
            "rate_kept": self.rate_kept,
            "loaded_rate": round(self.loaded_rate, 2),
            "duration_s": self.duration_s,
            "publish_seconds": round(self.publish_seconds, 3),
            "messages": self.messages,
            "warmup_messages": self.warmup_messages,
            **{f"{k}_ms": e2e.get(k) for k in ("p50", "p95", "p99", "max")},
            "latency_ms": self.hops_ms,
            "cpu_s_per_1000": {
                name: round(cpu * 1000 / self.messages, 3) for name, cpu in self.cpu_seconds.items()
            },
            "rss_mb": {name: round(mb, 1) for name, mb in self.rss_mb.items()},
            "figures": self.figures,
            "correct": self.correct,
            "run_dir": str(self.run_dir),
        }


@dataclass
class BenchResult:
    options: BenchOptions
    broker_url: str
    distinct: int
    document_bytes: float  # mean size of the documents sent
    baseline: BaselineResult | None  # None: no burst (``--rate R``)
    chain: ChainResult | None
    timings: dict[str, float] = field(default_factory=dict)
    steady: SteadyResult | None = None  # None: no steady phase (no ``--rate``)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.chain is None:
            return None
        base = self.baseline.msgs_per_s
        return self.chain.msgs_per_s / base if base > 0 else 0.0

    @property
    def correct(self) -> bool:
        """Every phase that ran carried every message once, in order."""
        chain_ok = self.chain is None or figures_correct(self.chain.figures, self.chain.messages)
        return chain_ok and (self.steady is None or self.steady.correct)

    def to_json(self) -> dict[str, Any]:
        o = self.options
        rss = [mb for phase in (self.chain, self.steady) if phase for mb in phase.rss_mb.values()]
        data: dict[str, Any] = {}
        if self.baseline is not None and self.chain is not None:
            ratio = self.ratio
            data |= {
                "baseline_msgs_per_s": round(self.baseline.msgs_per_s, 1),
                "chain_msgs_per_s": round(self.chain.msgs_per_s, 1),
                "ratio": None if ratio is None else round(ratio, 3),
                "p99_ms": self.chain.hops_ms.get("end_to_end", {}).get("p99"),
            }
        data |= {
            "rss_mb": round(max(rss, default=0.0), 1),
            "correct": self.correct,
            "messages": o.burst_messages if self.chain is not None else None,
            "suppliers": o.suppliers,
            "workers": o.worker_count,
            "brokers": o.brokers,
            "seed": o.seed,
            "distinct_documents": self.distinct,
            "document_bytes_mean": round(self.document_bytes),
            "broker_url": self.broker_url,
            "machine": machine_facts(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
        }
        if self.baseline is not None and self.chain is not None:
            data |= {"baseline": self.baseline.to_json(), "chain": self.chain.to_json()}
        if self.steady is not None:
            data["steady"] = self.steady.to_json()
        return data


def chain_hops(
    run_dir: Path, only: Collection[str] | None = None
) -> tuple[float, dict[str, dict[str, float | int | None]]]:
    """Seconds from the first send to the last load, and each hop's percentiles (ms), over
    every message of the run or ``only`` those with these message ids."""
    messages = build_timeline(run_dir).messages
    if only is not None:
        messages = [m for m in messages if m.message_id in only]
    hops: dict[str, dict[str, float | int | None]] = {}
    for name, (start, end) in CHAIN_HOPS.items():
        values = [
            float(b - a)
            for m in messages
            if (a := m.stamp(start)) is not None and (b := m.stamp(end)) is not None
        ]
        hops[name] = summarise(values).to_json()
    produced = [m.produced for m in messages if m.produced is not None]
    loaded = [m.loaded for m in messages if m.loaded is not None]
    seconds = (max(loaded) - min(produced)) / 1000 if produced and loaded else 0.0
    return seconds, hops
