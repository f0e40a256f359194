"""``b2bsim run SCENARIO...|--all``: run scenarios end to end and report."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from simulator.lab.broker import LocalBroker, resolve_broker_url
from simulator.runs.runner import RunOptions, RunResult, run_scenario
from simulator.runs.scenario import Scenario, load_scenario
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.state import StateDir


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run scenarios end to end (starts and stops everything)")
    p.add_argument(
        "scenarios", type=Path, nargs="*", metavar="SCENARIO", help="scenario files to run"
    )
    p.add_argument("--all", action="store_true", help="run every scenario in --dir")
    p.add_argument(
        "--seed", type=int, metavar="S", help="override the scenarios' seeds (to re-run a report)"
    )
    p.add_argument("--dir", type=Path, default=Path("scenarios"), help="the library (--all)")
    p.add_argument(
        "--broker",
        help="use this running broker (stomp://HOST:PORT; default: "
        "$B2BSIM_BROKER, else start the embedded one)",
    )
    p.add_argument("--result-json", type=Path, metavar="FILE", help="write the result here")
    p.add_argument(
        "--junit", type=Path, metavar="FILE", help="write JUnit XML: a testcase per expectation"
    )
    p.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write an HTML report here: DIR/index.html (failures first) and a page per message",
    )
    p.add_argument(
        "--rules",
        metavar="DIR",
        help="validate documents at the supplier with the "
        "official rule sets in DIR (default: $B2BSIM_RULES_DIR)",
    )
    p.add_argument(
        "--ui", action="store_true", help="show the run live in a browser (prints the URL)"
    )
    p.add_argument(
        "--ui-port", type=int, default=0, metavar="P", help="the live view's port (default: free)"
    )
    p.add_argument(
        "--step",
        action="store_true",
        help="teaching mode (implies --ui): wait for Next on the page before each step",
    )
    p.set_defaults(func=run)


def scenario_files(args: argparse.Namespace) -> list[Path]:
    """The files named, or the whole library with --all; a usage error if neither."""
    files = list(args.scenarios)
    if args.all:
        if not args.dir.is_dir():
            raise ConfigError(f"no scenario library at {args.dir}", hint="pass --dir DIR")
        files += sorted(args.dir.glob("*.yaml"))
    if not files:
        raise ConfigError("no scenario to run", hint="name a file, or pass --all")
    return files


def run(args: argparse.Namespace) -> int:
    # Every scenario is checked before anything starts.
    scenarios = [load_scenario(path) for path in scenario_files(args)]
    if args.seed is not None:
        if args.seed < 0:
            raise ConfigError(f"--seed {args.seed} is negative", hint="use 0 or more")
        scenarios = [dataclasses.replace(s, seed=args.seed) for s in scenarios]
    view = None
    if args.ui or args.step:
        from simulator.commands.args import check_port
        from simulator.views.teaching import teaching
        from simulator.views.ui_server import open_live_view

        view = open_live_view(check_port(args.ui_port), step=args.step)
        if args.step and view is not None:
            scenarios = [teaching(s) for s in scenarios]
    console = Console(stderr=False, highlight=False)
    tty = console.is_terminal
    state = StateDir.resolve(args.state)
    rules = args.rules or os.environ.get("B2BSIM_RULES_DIR")
    results: list[RunResult] = []
    with shared_broker(args.broker, state, scenarios) as broker_url:
        for scenario in scenarios:

            def progress(msg: str, name: str = scenario.name) -> None:
                if tty:
                    console.print(f"[dim]•[/dim] {msg}")
                else:
                    print(f"[{name}] {msg}", flush=True)

            progress(f"running {scenario.name} (seed {scenario.seed}): {scenario.description}")
            url = None if scenario.needs_embedded_broker else broker_url
            options = RunOptions(state=state, broker_url=url, rules=rules, progress=progress)
            if view is not None:
                options = view.wire(options, scenario, step=args.step)
            result = run_scenario(scenario, options)
            print_summary(result, console if tty else None)
            results.append(result)
    write_outputs(args, results)
    if view is not None:
        view.linger()
    passed = sum(r.passed for r in results)
    if len(results) > 1:
        print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


@contextlib.contextmanager
def shared_broker(
    explicit: str | None, state: StateDir, scenarios: list[Scenario]
) -> Iterator[str | None]:
    """One broker for a batch of scenarios (an embedded one of its own, if none is given).

    A single scenario, or a given broker, needs nothing here; a scenario that
    restarts the broker always gets its own.
    """
    url = resolve_broker_url(explicit)
    if url is not None or sum(not s.needs_embedded_broker for s in scenarios) < 2:
        yield url
        return
    broker = LocalBroker(state.root / "broker-batch", die_with_parent=True)
    info = broker.start()
    print(f"broker started: {info.url} in {info.startup_seconds:.1f} s", flush=True)
    try:
        yield info.url
    finally:
        broker.stop()


def write_outputs(args: argparse.Namespace, results: list[RunResult]) -> None:
    if args.result_json:
        args.result_json.parent.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = (
            results[0].to_json()
            if len(results) == 1
            else {
                "passed": all(r.passed for r in results),
                "scenarios": [r.to_json() for r in results],
            }
        )
        args.result_json.write_text(json.dumps(doc, indent=2) + "\n")
    if args.junit:
        from simulator.views.junit import write_junit

        args.junit.parent.mkdir(parents=True, exist_ok=True)
        write_junit(results, args.junit)
        print(f"JUnit: {args.junit}")
    if args.report:
        from simulator.views.report import write_report

        index = write_report(results, args.report)
        print(f"report: {index}")


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
