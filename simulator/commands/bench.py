"""``b2bsim bench``: the whole chain's speed beside the bare broker's (docs/performance.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from simulator.kits.bench import run_bench
from simulator.kits.bench_options import DEFAULT_DISTINCT, BenchOptions
from simulator.kits.bench_results import BenchResult
from simulator.vocabulary.state import StateDir


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="measure the whole chain beside the bare broker (msg/s, latency, CPU, memory)",
    )
    p.add_argument("--messages", type=int, default=20000, metavar="N", help="messages (20000)")
    p.add_argument("--suppliers", type=int, default=100, metavar="S", help="suppliers (100)")
    p.add_argument(
        "--workers", type=int, metavar="W", help="ICC worker processes (default: one per broker)"
    )
    p.add_argument(
        "--brokers",
        type=int,
        default=1,
        metavar="B",
        help="brokers (1; 2 or more: a local network of brokers started for the bench, "
        "KA publishing to broker 1 and ICC worker i consuming from broker i mod B)",
    )
    p.add_argument(
        "--broker",
        help="use this running broker (stomp://HOST:PORT; default: "
        "$B2BSIM_BROKER, else the embedded one, started for the bench if it is not running)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write the figures here as JSON")
    p.add_argument("--seed", type=int, default=1, help="seed of the suppliers and documents (1)")
    p.add_argument(
        "--distinct",
        type=int,
        default=DEFAULT_DISTINCT,
        metavar="D",
        help=f"distinct documents to generate and cycle ({DEFAULT_DISTINCT}; at least S)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="seconds the chain may take to load everything (default 120 + N/20)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def progress(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    result = run_bench(
        BenchOptions(
            state=StateDir.resolve(args.state),
            messages=args.messages,
            suppliers=args.suppliers,
            workers=args.workers,
            brokers=args.brokers,
            broker_url=args.broker,
            seed=args.seed,
            distinct=args.distinct,
            timeout=args.timeout,
            progress=progress,
        )
    )
    data = result.to_json()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    print_table(result, data)
    return 0 if result.correct else 1


def print_table(result: BenchResult, data: dict[str, Any]) -> None:
    """The figures as readable tables on stdout."""
    console = Console(highlight=False, width=110)
    o = result.options
    top = Table(
        title=f"b2bsim bench — N={o.messages} S={o.suppliers} W={o.worker_count} B={o.brokers} "
        f"({data['machine']['nproc']} cores, Python {data['machine']['python']})"
    )
    for col in ("", "msg/s", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        top.add_column(col, justify="right" if col else "left")
    base = data["baseline"]["latency_ms"]["end_to_end"]
    top.add_row("baseline (bare STOMP)", f"{data['baseline_msgs_per_s']:.0f}", *_pcts(base))
    chain = data["chain"]
    for hop, stats in chain["latency_ms"].items():
        rate = f"{data['chain_msgs_per_s']:.0f}" if hop == "end_to_end" else ""
        top.add_row(f"chain: {hop}", rate, *_pcts(stats))
    console.print(top)
    procs = Table(title="per process (chain; baseline: bench process)")
    for col in ("process", "CPU s / 1000 msg", "peak RSS MiB"):
        procs.add_column(col, justify="left" if col == "process" else "right")
    for name, cpu in chain["cpu_s_per_1000"].items():
        rss = chain["rss_mb"].get(name)
        procs.add_row(name, f"{cpu:.3f}", f"{rss:.0f}" if rss is not None else "")
    for name, cpu in data["baseline"]["cpu_s_per_1000"].items():
        procs.add_row(f"baseline: {name}", f"{cpu:.3f}", "")
    console.print(procs)
    f = chain["figures"]
    verdict = "correct" if data["correct"] else "NOT CORRECT"
    console.print(
        f"ratio chain/baseline = {data['ratio']:.3f}; {verdict}: produced {f['produced']}, "
        f"ingested {f['ingested']}, lost {f['lost']}, double_ingested {f['double_ingested']}, "
        f"out_of_order {f['out_of_order']}, dead_lettered {f['dead_lettered']}"
    )
    console.print(f"run directory: {chain['run_dir']}")


def _pcts(stats: dict[str, Any]) -> list[str]:
    return ["" if stats.get(k) is None else f"{stats[k]:.1f}" for k in ("p50", "p95", "p99", "max")]
