"""``b2bsim run SCENARIO``: run a scenario end to end and report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from simulator.runner import RunOptions, RunResult, run_scenario
from simulator.scenario import load_scenario
from simulator.state import StateDir


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run a scenario end to end (starts and stops everything)")
    p.add_argument("scenario", type=Path, help="a scenario file, e.g. scenarios/happy-path.yaml")
    p.add_argument(
        "--broker",
        help="use this running broker (stomp://HOST:PORT; default: "
        "$B2BSIM_BROKER, else start the embedded one)",
    )
    p.add_argument("--result-json", type=Path, metavar="FILE", help="write the result here")
    p.add_argument(
        "--rules",
        metavar="DIR",
        help="validate documents at the supplier with the "
        "official rule sets in DIR (default: $B2BSIM_RULES_DIR)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)  # every mistake is reported before anything starts
    console = Console(stderr=False, highlight=False)
    tty = console.is_terminal

    def progress(msg: str) -> None:
        if tty:
            console.print(f"[dim]•[/dim] {msg}")
        else:
            print(f"[{scenario.name}] {msg}", flush=True)

    progress(f"running {scenario.name} (seed {scenario.seed}): {scenario.description}")
    rules = args.rules or os.environ.get("B2BSIM_RULES_DIR")
    result = run_scenario(
        scenario,
        RunOptions(
            state=StateDir.resolve(args.state),
            broker_url=args.broker,
            rules=rules,
            progress=progress,
        ),
    )
    if args.result_json:
        args.result_json.parent.mkdir(parents=True, exist_ok=True)
        args.result_json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    print_summary(result, console if tty else None)
    return 0 if result.passed else 1


def print_summary(result: RunResult, console: Console | None) -> None:
    f = result.figures
    verdict = "PASSED" if result.passed else "FAILED"
    line = (
        f"{result.scenario.name}: {verdict} — produced {f.produced}, delivered {f.delivered}, "
        f"ingested {f.ingested}, lost {f.lost}, double_ingested {f.double_ingested}, "
        f"dead_lettered {f.dead_lettered} ({result.timings.get('total', 0):.1f} s)"
    )
    if console is None:
        print(line)
        for e in result.expectations:
            if not e.passed:
                print(f"  expected {e.name} = {e.expected}, got {e.actual}")
    else:
        table = Table(title=f"{result.scenario.name} — seed {result.scenario.seed}")
        for col in ("expectation", "expected", "actual", ""):
            table.add_column(col)
        for e in result.expectations:
            mark = "[green]pass[/green]" if e.passed else "[red]FAIL[/red]"
            table.add_row(e.name, str(e.expected), str(e.actual), mark)
        console.print(table)
        style = "bold green" if result.passed else "bold red"
        console.print(line, style=style)
    if result.error:
        print(result.error, file=sys.stderr)
    for d in f.dead_letters[:10]:
        print(f"  dead letter {d['message_id']}: [{d['code']}] {d['reason']}")
    print(f"  run directory: {result.run_dir}")
