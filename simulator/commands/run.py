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

from simulator.commands.run_pull import add_pull_options, pull_endpoint_of, say_endpoint
from simulator.commands.run_target import add_target_option, prepare_targets, targets_of
from simulator.lab.broker import LocalBroker, resolve_broker_url
from simulator.runs.endpoint import ExternalEndpoint
from simulator.runs.endpoint_run import prepare_endpoint
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
    e = p.add_argument_group(
        "the supplier's own endpoint",
        "put supplier 1 of each scenario at a real endpoint (push), or its puller (pull)",
    )
    e.add_argument("--endpoint", metavar="URL", help="the endpoint's https URL (push)")
    e.add_argument(
        "--endpoint-ca", type=Path, metavar="FILE", help="the CA that issued its certificate"
    )
    e.add_argument("--org-number", metavar="N", help="the supplier's organisation number")
    e.add_argument(
        "--endpoint-cert-sha256",
        metavar="HEX",
        help="pin this certificate (default: the one the endpoint presents at start)",
    )
    e.add_argument(
        "--readback",
        metavar="URL",
        help="its read-back, GET /b2b/ledger (docs/openapi.yaml): grades order and double loads",
    )
    add_pull_options(e)
    add_target_option(e)
    p.set_defaults(func=run)


def endpoint_of(args: argparse.Namespace) -> ExternalEndpoint | None:
    """The external supplier the options name, or None; a usage error if half given."""
    given = {
        "--endpoint": args.endpoint,
        "--endpoint-ca": args.endpoint_ca,
        "--org-number": args.org_number,
    }
    extra = args.endpoint_cert_sha256 is not None or args.readback is not None
    if not any(given.values()) and not extra:
        return None
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise ConfigError(
            f"an external endpoint needs {', '.join(missing)} too",
            hint="pass --endpoint URL --endpoint-ca FILE --org-number N (docs/onboarding.md)",
        )
    return ExternalEndpoint(
        url=args.endpoint,
        ca=args.endpoint_ca,
        org_number=args.org_number,
        cert_sha256=args.endpoint_cert_sha256,
        readback=args.readback,
    )


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
    targets = prepare_targets(state, targets_of(args, state))  # before anything starts
    endpoint = None if targets else pull_endpoint_of(args, state) or endpoint_of(args)
    if endpoint is not None:  # once, before anything starts (each run checks it again)
        endpoint = prepare_endpoint(state, endpoint)
        say_endpoint(endpoint, state)
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
            options = RunOptions(
                state=state,
                broker_url=url,
                rules=rules,
                progress=progress,
                endpoint=endpoint,
                endpoints=targets,
            )
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
        counts = {v: sum(r.verdict == v for r in results) for v in {r.verdict for r in results}}
        others = "".join(f", {n} {v}" for v, n in sorted(counts.items()) if v != "passed")
        print(f"{passed} passed{others}" if others else f"{passed} passed, 0 failed")
    # Not applicable (or not exercised) is no failure (what did apply held); failed and
    # not graded are.
    ok = all(r.verdict in ("passed", "not applicable", "not exercised") for r in results)
    return 0 if ok else 1


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
    verdict = result.verdict.upper()
    line = (
        f"{result.scenario.name}: {verdict} — produced {f.produced}, delivered {f.delivered}, "
        f"ingested {f.ingested}, lost {f.lost}, double_ingested {f.double_ingested}, "
        f"dead_lettered {f.dead_lettered} ({result.timings.get('total', 0):.1f} s)"
    )
    if console is None:
        print(line)
        for e in result.expectations:
            if e.status != "graded":
                print(f"  {e.name}: {e.status}: {e.reason}")
            elif not e.passed:
                print(f"  expected {e.name} = {e.expected}, got {e.actual}")
                if e.reason:
                    print(f"    {e.reason}")
    else:
        table = Table(title=f"{result.scenario.name} — seed {result.scenario.seed}")
        for col in ("expectation", "expected", "actual", ""):
            table.add_column(col)
        for e in result.expectations:
            mark = "[green]pass[/green]" if e.passed else "[red]FAIL[/red]"
            if e.status != "graded":
                mark = f"[yellow]{e.status}[/yellow]: {e.reason}"
            elif not e.passed and e.reason:
                mark += f" {e.reason}"
            table.add_row(e.name, str(e.expected), str(e.actual), mark)
        console.print(table)
        style = (
            "bold green"
            if result.passed
            else "bold yellow"
            if result.verdict != "failed"
            else "bold red"
        )
        console.print(line, style=style)
    if result.error:
        print(result.error, file=sys.stderr)
    for d in f.dead_letters[:10]:
        print(f"  dead letter {d['message_id']}: [{d['code']}] {d['reason']}")
    _print_endpoint(result)
    print(f"  run directory: {result.run_dir}")


def _print_endpoint(result: RunResult) -> None:
    for g in result.endpoints or ([result.endpoint] if result.endpoint is not None else []):
        grade = g.to_json()
        latency = grade["latency_ms"]
        print(
            f"  external supplier {grade['org_number']}: lost {grade['lost']}, "
            f"double {grade['double_ingested']}, answers p50 {latency['p50']} ms, "
            f"p99 {latency['p99']} ms"
        )
        print(
            f"  re-signed re-sends after an ICC crash that reached it: {grade['crash_resends']}, "
            f"receipts: {grade['accepted']} accepted, {grade['duplicates']} duplicate"
        )
