"""``b2bsim conformance --icc``: grade an ICC under test against the reference supplier.

The options are added by simulator/commands/conformance.py; this module runs
them.  Before the first case it prints the registry entry the ICC under test
must hold for the supplier (the harness's URL and certificate pin), and that
the harness publishes the test messages on ``--broker`` itself.  Exit 0 when
every case passed, 1 when any failed or was not graded, 2 when the broker
cannot be reached or the command line is wrong.  docs/conformance.md,
"Grading an ICC", is the guide.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simulator.commands.args import broker_url_for, check_port
from simulator.kits.conformance import CaseResult, ConformanceReport, write_reports
from simulator.kits.icc_harness_cases import ICC_CASES
from simulator.kits.icc_harness_run import registry_entry, run_icc_conformance
from simulator.kits.icc_harness_trial import (
    DEFAULT_ICC_TIMEOUT,
    DEFAULT_QUIET,
    DEFAULT_WAIT,
    IccTarget,
)
from simulator.vocabulary.errors import BrokerError, ConfigError
from simulator.vocabulary.state import StateDir

__all__ = ["add_icc_options", "run_icc"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_icc_options(p: argparse.ArgumentParser) -> None:
    """The options of ``conformance --icc`` (the supplier kit's --org-number, --timeout,
    --listen, --json, --junit, --seed and --case are shared)."""
    g = p.add_argument_group("grading an ICC (--icc)")
    g.add_argument(
        "--icc",
        action="store_true",
        help="grade an ICC instead: play the supplier (and KA) and script the answers",
    )
    g.add_argument(
        "--broker",
        metavar="URL",
        help="the broker the ICC consumes; the harness publishes its test messages there "
        "(default: $B2BSIM_BROKER, else the state directory's broker)",
    )
    g.add_argument("--queue", help="KA's queue the ICC consumes (default: KA's)")
    g.add_argument(
        "--icc-request-timeout",
        type=float,
        default=DEFAULT_ICC_TIMEOUT,
        metavar="S",
        help="the ICC's own request timeout; the timeout case answers later "
        f"({DEFAULT_ICC_TIMEOUT:g})",
    )
    g.add_argument(
        "--quiet",
        type=float,
        default=DEFAULT_QUIET,
        metavar="S",
        help=f"silence that means the ICC will not try again ({DEFAULT_QUIET:g})",
    )


def run_icc(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    tty = console.is_terminal
    if args.list:
        for c in ICC_CASES:
            print(f"{c.id}: {c.title} — checks: {c.checks} — why: {c.why} — rule: {c.docs}")
        return EXIT_OK
    target = _target(args)
    entry = registry_entry(target)

    def listening() -> None:
        print(
            f"grading an ICC: listening on {entry['url']} as supplier {target.org_number}; "
            f"publishing KA's test messages on {target.broker_url} {target.queue}",
            flush=True,
        )
        print(f"the ICC's registry must hold: {json.dumps(entry)}", flush=True)
        print(
            f"the ICC must trust {target.state.ca_cert} for server certificates and present "
            "its client certificate from that CA",
            flush=True,
        )

    def progress(result: CaseResult) -> None:
        line = f"{result.grade.value.upper()} {result.case_id}: {result.title} — {result.reason}"
        print(f"{line} — {result.advice}" if result.advice else line, flush=True)

    try:
        report = asyncio.run(run_icc_conformance(target, progress=progress, listening=listening))
    except BrokerError as exc:
        print(exc.one_line(), file=sys.stderr)
        return EXIT_USAGE
    write_reports(report, junit=args.junit, json_file=args.json)
    _summary(report, console if tty else None)
    return EXIT_OK if report.passed else EXIT_FAILED


def _target(args: argparse.Namespace) -> IccTarget:
    missing = [
        f for f, v in (("--listen", args.listen), ("--org-number", args.org_number)) if not v
    ]
    if missing:
        raise ConfigError(
            f"conformance --icc needs {', '.join(missing)}",
            hint="e.g. b2bsim conformance --icc --listen 127.0.0.1:9443 --org-number 5560125790",
        )
    host, sep, port = args.listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(
            f"--listen {args.listen!r} is not HOST:PORT", hint="e.g. --listen 127.0.0.1:9443"
        )
    state = StateDir.resolve(args.state)
    broker_url, _ = broker_url_for(args, state)
    return IccTarget(
        state=state,
        org_number=args.org_number,
        host=host.strip("[]"),
        port=check_port(int(port)),
        broker_url=broker_url,
        **({"queue": args.queue} if args.queue else {}),
        timeout=args.timeout if args.timeout is not None else DEFAULT_WAIT,
        icc_timeout=args.icc_request_timeout,
        quiet=args.quiet,
        seed=args.seed if args.seed is not None else int(time.time()) % 1_000_000,
        case_ids=tuple(args.cases) if args.cases else None,
    )


def _summary(report: ConformanceReport, console: Console | None) -> None:
    failed, not_graded = len(report.failures), len(report.not_graded)
    passed = len(report.results) - failed - not_graded
    verdict = "passed" if report.passed else "NOT passed"
    line = (
        f"ICC graded at {report.target} (supplier {report.org_number}): {passed} passed, "
        f"{failed} failed, {not_graded} not graded — {verdict}"
    )
    for note in report.notes:
        print(f"note: {note}")
    if console is None:
        print(line)
        return
    table = Table(title=f"ICC graded at {escape(report.target)}")
    for col in ("case", "result", "reason"):
        table.add_column(col)
    for r in report.results:
        table.add_row(r.case_id, r.grade.value, escape(r.reason))
    console.print(table)
    console.print(("[green]" if report.passed else "[red]") + escape(line) + "[/]")
