"""``b2bsim soak``: a steady load for M minutes while seeded faults of every kind strike
(docs/reliability.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from simulator.kits.soak.run import SoakOptions, SoakResult, run_soak
from simulator.vocabulary.state import StateDir


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "soak",
        help="steady load under a seeded schedule of every fault, then check the invariants",
    )
    p.add_argument("--minutes", type=float, required=True, metavar="M", help="minutes of load")
    p.add_argument("--seed", type=int, required=True, metavar="S", help="seed of the schedule")
    p.add_argument("--rate", type=float, default=10.0, metavar="R", help="KA's msg/s (10)")
    p.add_argument("--suppliers", type=int, default=3, metavar="N", help="suppliers (3)")
    p.add_argument("--workers", type=int, default=2, metavar="W", help="ICC workers (2)")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=180.0,
        metavar="S",
        help="seconds the chain may take to drain once the faults stop (180)",
    )
    p.add_argument("--result-json", type=Path, metavar="F", help="write the result here")
    p.add_argument("--report", type=Path, metavar="DIR", help="write an HTML report here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def progress(msg: str) -> None:
        print(f"[soak] {msg}", file=sys.stderr, flush=True)

    result = run_soak(
        SoakOptions(
            state=StateDir.resolve(args.state),
            minutes=args.minutes,
            seed=args.seed,
            rate=args.rate,
            suppliers=args.suppliers,
            workers=args.workers,
            drain_timeout=args.drain_timeout,
            progress=progress,
        )
    )
    data = result.to_json()
    if args.result_json:
        args.result_json.parent.mkdir(parents=True, exist_ok=True)
        args.result_json.write_text(json.dumps(data, indent=2) + "\n")
    if args.report:
        from simulator.kits.soak.report import write_soak_report

        print(f"report: {write_soak_report(result, args.report)}")
    print(summary(result))
    return 0 if result.passed else 1


def summary(result: SoakResult) -> str:
    """The verdict in a few lines."""
    d = result.to_json()
    injected = sum(result.faults.values())
    lines = [
        f"soak seed {d['seed']}, {d['minutes']:g} min: {'PASSED' if d['passed'] else 'FAILED'}",
        f"  {injected} faults injected, of {len(result.faults) - len(result.missing_kinds)} "
        f"of the {len(result.faults)} kinds",
        f"  produced {d['produced']}, lost {d['lost']}, double_ingested {d['double_ingested']}, "
        f"out_of_order {d['out_of_order']}, unexplained {d['unexplained']}",
        f"  dead-lettered by reason: {d['dead_lettered'] or 'none'}",
    ]
    if result.missing_kinds:
        lines.append(f"  kinds never injected: {', '.join(result.missing_kinds)}")
    failures: dict[str, list[str]] = {}
    for failed in result.failed_injections:
        failures.setdefault(failed["kind"], []).append(failed["error"])
    for kind, errors in failures.items():
        lines.append(f"  fault {kind} failed {len(errors)} time(s): {errors[0]}")
    for name, exits in result.component_exits.items():
        lines.append(f"  {name} exited by itself {len(exits)} time(s); see {exits[0]['log']}")
    if result.error:
        lines.append(f"  error: {result.error}")
    lines.append(f"  run directory: {result.run_dir}")
    return "\n".join(lines)
