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
from simulator.kits.bench_options import (
    DEFAULT_DISTINCT,
    DEFAULT_DURATION,
    DEFAULT_MESSAGES,
    RATE_KEPT,
    BenchOptions,
    Rate,
)
from simulator.kits.bench_results import BenchResult
from simulator.vocabulary.state import StateDir


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="measure the whole chain beside the bare broker (msg/s, latency, CPU, memory)",
    )
    p.add_argument(
        "--messages",
        type=int,
        metavar="N",
        help=f"messages of the burst ({DEFAULT_MESSAGES}; not with --rate R)",
    )
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
        help="seconds the chain may take to load everything (default 120 + N/20; "
        "for the steady phase: after KA's last send, N its messages)",
    )
    p.add_argument(
        "--rate",
        type=_rate,
        metavar="R",
        help="a steady phase: KA publishes R msg/s for --duration s instead of the burst; "
        "auto: the burst first, then the steady phase at half the chain's rate",
    )
    p.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help=f"seconds of the steady phase ({DEFAULT_DURATION:g}; only with --rate)",
    )
    p.set_defaults(func=run)


def _rate(value: str) -> Rate:
    """``--rate``: "auto" or a number (checked for sense by BenchOptions.check)."""
    if value == "auto":
        return "auto"
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither a number of msg/s nor auto"
        ) from None


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
            rate=args.rate,
            duration=args.duration,
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
    facts = f"({data['machine']['nproc']} cores, Python {data['machine']['python']})"
    if "chain" in data:
        _print_burst(console, data, f"N={o.burst_messages} S={o.suppliers}", facts)
    steady = data.get("steady")
    if steady is not None:
        _print_steady(console, steady, f"S={o.suppliers}", facts)
    scope = [n for n, there in (("burst", "chain" in data), ("steady", steady)) if there]
    console.print(f"{' and '.join(scope)}: {'correct' if data['correct'] else 'NOT CORRECT'}")


def _print_burst(console: Console, data: dict[str, Any], size: str, facts: str) -> None:
    top = Table(title=f"b2bsim bench — {size} W={data['workers']} B={data['brokers']} {facts}")
    for col in ("", "msg/s", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        top.add_column(col, justify="right" if col else "left")
    base = data["baseline"]["latency_ms"]["end_to_end"]
    top.add_row("baseline (bare STOMP)", f"{data['baseline_msgs_per_s']:.0f}", *_pcts(base))
    chain = data["chain"]
    for hop, stats in chain["latency_ms"].items():
        rate = f"{data['chain_msgs_per_s']:.0f}" if hop == "end_to_end" else ""
        top.add_row(f"chain: {hop}", rate, *_pcts(stats))
    console.print(top)
    baseline_cpu = {f"baseline: {n}": cpu for n, cpu in data["baseline"]["cpu_s_per_1000"].items()}
    _print_procs(console, "per process (chain; baseline: bench process)", chain, baseline_cpu)
    f = chain["figures"]
    console.print(
        f"ratio chain/baseline = {data['ratio']:.3f}; produced {f['produced']}, "
        f"ingested {f['ingested']}, lost {f['lost']}, double_ingested {f['double_ingested']}, "
        f"out_of_order {f['out_of_order']}, dead_lettered {f['dead_lettered']}"
    )
    console.print(f"run directory: {chain['run_dir']}")


def _print_steady(console: Console, steady: dict[str, Any], size: str, facts: str) -> None:
    asked = f"{steady['rate']:.1f} msg/s" + (" (half the peak)" if steady["rate_auto"] else "")
    top = Table(
        title=f"steady load — {asked} for {steady['duration_s']:g} s, {size} {facts}; "
        f"{steady['messages']} messages measured after {steady['warmup_messages']} of warm-up"
    )
    for col in ("hop", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        top.add_column(col, justify="left" if col == "hop" else "right")
    for hop, stats in steady["latency_ms"].items():
        top.add_row(hop, *_pcts(stats))
    console.print(top)
    _print_procs(console, "per process (steady phase)", steady)
    achieved = f"achieved {steady['achieved_rate']:.1f} of {steady['rate']:.1f} msg/s asked"
    if steady["rate_kept"]:
        console.print(f"{achieved}; the ledger loaded {steady['loaded_rate']:.1f} msg/s")
    else:
        console.print(
            f"KA did NOT keep the asked rate: {achieved} (below {RATE_KEPT:.0%}); "
            "the latencies are those of the rate achieved"
        )
    console.print(f"run directory: {steady['run_dir']}")


def _print_procs(
    console: Console, title: str, phase: dict[str, Any], more: dict[str, float] | None = None
) -> None:
    """CPU per 1000 messages and peak memory of each process; ``more``: CPU only."""
    procs = Table(title=title)
    for col in ("process", "CPU s / 1000 msg", "peak RSS MiB"):
        procs.add_column(col, justify="left" if col == "process" else "right")
    for name, cpu in phase["cpu_s_per_1000"].items():
        rss = phase["rss_mb"].get(name)
        procs.add_row(name, f"{cpu:.3f}", f"{rss:.0f}" if rss is not None else "")
    for name, cpu in (more or {}).items():
        procs.add_row(name, f"{cpu:.3f}", "")
    console.print(procs)


def _pcts(stats: dict[str, Any]) -> list[str]:
    return ["" if stats.get(k) is None else f"{stats[k]:.1f}" for k in ("p50", "p95", "p99", "max")]
