"""``b2bsim conformance``: run AF's supplier-facing test plan against a supplier's endpoint.

Exit 0 when every case passes, 1 when any fails or is not graded (a case the
kit could not test is never a pass), 2 when the target cannot be reached or
presents an untrusted certificate (no case is graded then) or the command
line is wrong.  docs/conformance.md is the guide.

``--icc`` turns it around: the reference supplier grades an ICC under test
(simulator/commands/conformance_icc.py; docs/conformance.md, "Grading an ICC").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simulator.commands.conformance_icc import add_icc_options, run_icc
from simulator.kits.conformance import (
    DEFAULT_TIMEOUT,
    CaseResult,
    ConformanceReport,
    ConformanceTarget,
    Grade,
    run_conformance,
    write_reports,
)
from simulator.kits.conformance_cases import CASES
from simulator.kits.conformance_grading import Case
from simulator.kits.conformance_kit import DEFAULT_BURST
from simulator.kits.conformance_pull import PullSetup, run_pull_conformance
from simulator.kits.conformance_pull_cases import PULL_CASES
from simulator.kits.conformance_pull_kit import PULL_TIMEOUT, PullTarget, parse_listen
from simulator.vocabulary.errors import ConfigError, TargetUnreachableError, TargetUntrustedError
from simulator.vocabulary.state import StateDir

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "conformance",
        help="run AF's test plan against a supplier's own push endpoint (graded report); "
        "--icc: grade an ICC",
        description="Play the ICC towards a supplier's push endpoint over mutual TLS and grade "
        "each case of the onboarding test plan; with --icc, play the supplier (and KA) "
        "towards an ICC under test and grade it. Exit 0 all passed, 1 a case failed, 2 the "
        "target (or broker) is unreachable or untrusted, or the command line is wrong.",
    )
    p.add_argument(
        "--mode",
        choices=("push", "pull"),
        default="push",
        help="push: the kit POSTs to --target (default); pull: the kit plays the ICC's outbox "
        "at --listen and grades the supplier's puller",
    )
    p.add_argument("--target", metavar="URL", help="the endpoint URL, as AF's registry holds it")
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="pull mode: where the kit's outbox listens for the puller (port 0: a free one); "
        "--icc: where the harness listens (the registry's URL)",
    )
    p.add_argument(
        "--readback",
        metavar="URL",
        help="pull mode: the supplier's read-back (GET /b2b/ledger), to grade 'loaded once'",
    )
    p.add_argument(
        "--target-ca", type=Path, metavar="FILE", help="PEM CA that issued the target's certificate"
    )
    p.add_argument("--org-number", metavar="N", help="the supplier's organisation number")
    p.add_argument(
        "--client-cert",
        type=Path,
        metavar="FILE",
        help="TLS client certificate (default: the ICC's, STATE/pki/icc.pem)",
    )
    p.add_argument(
        "--client-key", type=Path, metavar="FILE", help="its key (default: STATE/pki/icc.key)"
    )
    p.add_argument(
        "--target-cert-sha256",
        metavar="HEX",
        help="the target certificate's SHA-256 (default: whatever it presents); "
        "also the RECEIVER_CERT_SHA256 of every envelope",
    )
    p.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report here")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the JSON result here")
    p.add_argument(
        "--seed", type=int, help="document seed (default: from the clock; the report names it)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help=f"push: per request ({DEFAULT_TIMEOUT:g}); pull: how long the kit waits for each "
        f"thing the puller must do, its first request included ({PULL_TIMEOUT:g}); with "
        "--icc, the wait for the ICC's next attempt (30)",
    )
    p.add_argument(
        "--case",
        action="append",
        dest="cases",
        metavar="ID",
        help="run only this case (repeatable; see --list)",
    )
    p.add_argument(
        "--burst",
        type=int,
        default=DEFAULT_BURST,
        metavar="N",
        help=f"envelopes in the month-end burst case ({DEFAULT_BURST})",
    )
    p.add_argument(
        "--publish-crl",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the endpoint reads STATE/pki/crl.pem, so the revocation case may publish there "
        "(default: only when the target runs on this machine)",
    )
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    add_icc_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.icc:
        return run_icc(args)
    console = Console(highlight=False)
    tty = console.is_terminal
    if args.list:
        _list_cases(console if tty else None, PULL_CASES if args.mode == "pull" else CASES)
        return EXIT_OK
    if args.mode == "pull":
        return _run_pull(args, console)
    _only_for("pull", args, ("--listen", args.listen), ("--readback", args.readback))
    target = _target(args)
    if tty:
        console.print(f"conformance of [bold]{escape(target.url)}[/bold] (org {target.org_number})")
    progress = _progress(console)
    try:
        report = asyncio.run(run_conformance(target, progress=progress))
    except (TargetUnreachableError, TargetUntrustedError) as exc:
        print(exc.one_line(), file=sys.stderr)
        return EXIT_USAGE
    write_reports(report, junit=args.junit, json_file=args.json)
    _summary(report, console if tty else None)
    return EXIT_OK if report.passed else EXIT_FAILED


def _progress(console: Console) -> Callable[[CaseResult], None]:
    def progress(result: CaseResult) -> None:
        if console.is_terminal:
            mark = _MARKS[result.grade]
            console.print(f" {mark} {result.case_id}", highlight=False)
        else:
            print(_plain(result), flush=True)

    return progress


def _only_for(mode: str, args: argparse.Namespace, *given: tuple[str, object]) -> None:
    wrong = [flag for flag, value in given if value is not None]
    if wrong:
        raise ConfigError(
            f"{', '.join(wrong)} only apply to --mode {mode}",
            hint=f"add --mode {mode}, or leave {', '.join(wrong)} out",
        )


def _run_pull(args: argparse.Namespace, console: Console) -> int:
    """``--mode pull``: listen as the ICC's outbox and grade the puller that connects."""
    _only_for(
        "push",
        args,
        ("--target", args.target),
        ("--client-cert", args.client_cert),
        ("--client-key", args.client_key),
    )
    needed = (("--listen", args.listen), ("--org-number", args.org_number))
    missing = [flag for flag, value in needed if not value]
    if missing:
        raise ConfigError(
            f"conformance --mode pull needs {', '.join(missing)}",
            hint="e.g. b2bsim conformance --mode pull --listen 127.0.0.1:9600 "
            "--org-number 5560125790",
        )
    if args.target_ca is not None and not args.target_ca.is_file():
        raise ConfigError(
            f"no CA file at {args.target_ca}",
            hint="pass the PEM CA of the read-back's certificate, or leave --target-ca out",
        )
    host, port = parse_listen(args.listen)
    target = PullTarget(
        state=StateDir.resolve(args.state),
        org_number=args.org_number,
        host=host,
        port=port,
        pin=args.target_cert_sha256,
        readback=args.readback,
        readback_ca=args.target_ca,
        timeout=args.timeout if args.timeout is not None else PULL_TIMEOUT,
        seed=args.seed if args.seed is not None else int(time.time()) % 1_000_000,
        case_ids=tuple(args.cases) if args.cases else None,
        burst=args.burst,
        publish_crl=args.publish_crl,
    )

    def listening(setup: PullSetup) -> None:
        for line in setup.lines():
            print(line, flush=True)

    report = asyncio.run(
        run_pull_conformance(target, listening=listening, progress=_progress(console))
    )
    write_reports(report, junit=args.junit, json_file=args.json)
    _summary(report, console if console.is_terminal else None)
    return EXIT_OK if report.passed else EXIT_FAILED


def _target(args: argparse.Namespace) -> ConformanceTarget:
    missing = [
        flag
        for flag, value in (
            ("--target", args.target),
            ("--target-ca", args.target_ca),
            ("--org-number", args.org_number),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"conformance needs {', '.join(missing)}",
            hint="e.g. b2bsim conformance --target https://host:8443/b2b/envelopes "
            "--target-ca ca.pem --org-number 5560125790",
        )
    if (args.client_cert is None) != (args.client_key is None):
        raise ConfigError(
            "--client-cert and --client-key go together",
            hint="give both, or neither to use the ICC's from the test PKI",
        )
    if not args.target_ca.is_file():
        raise ConfigError(
            f"no CA file at {args.target_ca}",
            hint="pass the PEM certificate of the CA that issued the endpoint's certificate",
        )
    state = StateDir.resolve(args.state)
    client_cert = args.client_cert or state.icc_cert
    client_key = args.client_key or state.icc_key
    # The envelopes are signed by the ICC: the test PKI's, else the given client pair.
    have_icc = state.icc_cert.is_file() and state.icc_key.is_file()
    signer_cert, signer_key = (
        (state.icc_cert, state.icc_key) if have_icc else (client_cert, client_key)
    )
    for what, path in (("client certificate", client_cert), ("client key", client_key)):
        if not Path(path).is_file():
            raise ConfigError(
                f"no {what} at {path}",
                hint="run `b2bsim pki init` (or pass --state), or give --client-cert/--client-key",
            )
    return ConformanceTarget(
        url=args.target,
        target_ca=args.target_ca,
        org_number=args.org_number,
        client_cert=client_cert,
        client_key=client_key,
        signer_cert=signer_cert,
        signer_key=signer_key,
        state=state,
        cert_sha256=args.target_cert_sha256,
        timeout=args.timeout if args.timeout is not None else DEFAULT_TIMEOUT,
        seed=args.seed if args.seed is not None else int(time.time()) % 1_000_000,
        case_ids=tuple(args.cases) if args.cases else None,
        burst=args.burst,
        publish_crl=args.publish_crl,
    )


_PLAIN = {Grade.PASSED: "PASS", Grade.FAILED: "FAIL", Grade.NOT_GRADED: "NOT GRADED"}
_MARKS = {
    Grade.PASSED: "[green]✓[/green]",
    Grade.FAILED: "[red]✗[/red]",
    Grade.NOT_GRADED: "[yellow]–[/yellow]",
}
_TABLE = {
    Grade.PASSED: "[green]PASS[/green]",
    Grade.FAILED: "[red]FAIL[/red]",
    Grade.NOT_GRADED: "[yellow]NOT GRADED[/yellow]",
}


def _plain(result: CaseResult) -> str:
    line = f"{_PLAIN[result.grade]} {result.case_id}: {result.title} — {result.reason}"
    return f"{line} — {result.advice}" if result.advice else line


def _summary(report: ConformanceReport, console: Console | None) -> None:
    failed, not_graded = len(report.failures), len(report.not_graded)
    passed = len(report.results) - failed - not_graded
    verdict = "passed" if report.passed else "NOT passed"
    line = (
        f"conformance {report.target} (org {report.org_number}): {passed} passed, "
        f"{failed} failed, {not_graded} not graded — {verdict} — seed {report.seed}; "
        f"{report.rerun_hint()}"
    )
    if console is None:
        for r in report.failures:
            print(f"  {r.case_id} checks: {r.checks}; why it matters: {r.why}; {r.advice}")
        for r in report.not_graded:
            print(f"  {r.case_id} not graded (not a pass): {r.reason}")
        for note in report.notes:
            print(f"note: {note}")
        print(line)
        return
    table = Table(title=f"Conformance of {escape(report.target)}")
    table.add_column("case", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("reason")
    for r in report.results:
        table.add_row(r.case_id, _TABLE[r.grade], escape(r.reason))
    console.print(table)
    for r in report.failures:
        console.print(
            f"[red]{r.case_id}[/red] checks {escape(r.checks)}; it matters because "
            f"{escape(r.why)}; {escape(r.advice)}"
        )
    for r in report.not_graded:
        console.print(f"[yellow]{r.case_id}[/yellow] not graded (not a pass): {escape(r.reason)}")
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    console.print(("[green]" if report.passed else "[red]") + escape(line) + "[/]")


def _list_cases(console: Console | None, cases: Sequence[Case]) -> None:
    if console is None:
        for c in cases:
            print(f"{c.id}: {c.title} — checks: {c.checks} — why: {c.why} — rule: {c.docs}")
        return
    table = Table(title="Conformance cases")
    for col in ("case", "title", "what it checks", "why it matters"):
        table.add_column(col)
    for c in cases:
        table.add_row(c.id, escape(c.title), escape(c.checks), escape(c.why))
    console.print(table)
