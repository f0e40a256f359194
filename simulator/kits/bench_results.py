"""What a bench measured: its figures, and the JSON that ``b2bsim bench --json`` writes.

The chain's latencies come from the run's own files (docs/files.md) through
:func:`simulator.views.timeline.build_timeline` (:func:`chain_hops`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulator.kits.bench_baseline import BaselineResult
from simulator.kits.bench_options import BenchOptions
from simulator.kits.bench_procs import machine_facts, summarise
from simulator.views.timeline import build_timeline

__all__ = ["CHAIN_HOPS", "BenchResult", "ChainResult", "chain_hops"]

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


@dataclass
class BenchResult:
    options: BenchOptions
    broker_url: str
    distinct: int
    document_bytes: float  # mean size of the documents sent
    baseline: BaselineResult
    chain: ChainResult
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        base = self.baseline.msgs_per_s
        return self.chain.msgs_per_s / base if base > 0 else 0.0

    @property
    def correct(self) -> bool:
        f = self.chain.figures
        keys = ("lost", "double_ingested", "out_of_order", "dead_lettered")
        return f.get("ingested") == self.chain.messages and all(f.get(k, 0) == 0 for k in keys)

    def to_json(self) -> dict[str, Any]:
        o = self.options
        e2e = self.chain.hops_ms.get("end_to_end", {})
        return {
            "baseline_msgs_per_s": round(self.baseline.msgs_per_s, 1),
            "chain_msgs_per_s": round(self.chain.msgs_per_s, 1),
            "ratio": round(self.ratio, 3),
            "p99_ms": e2e.get("p99"),
            "rss_mb": round(max(self.chain.rss_mb.values(), default=0.0), 1),
            "correct": self.correct,
            "messages": o.messages,
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
            "baseline": self.baseline.to_json(),
            "chain": self.chain.to_json(),
        }


def chain_hops(run_dir: Path) -> tuple[float, dict[str, dict[str, float | int | None]]]:
    """Seconds from the first send to the last load, and each hop's percentiles (ms)."""
    messages = build_timeline(run_dir).messages
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
