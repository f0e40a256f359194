"""``b2bsim plan init|run|status|evidence``: one supplier's test plan, from kick-off to decision.

docs/plan.md is the guide.  Exit 0 done (``run``: every case run passed, does
not apply, or is a scenario not exercised; ``status``: ready for the decision
meeting), 1 a case failed, was not graded or not run (``status``: something is
missing), 2 a usage error or an endpoint that cannot be used (nothing written
then).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from simulator.kits.evidence import write_evidence
from simulator.kits.plan_history import PlanStatus, read_runs, status_of
from simulator.kits.plan_init import PlanRequest, init_plan
from simulator.kits.plan_run import run_plan
from simulator.runs.plan_file import read_plan
from simulator.vocabulary.state import StateDir

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plan",
        help="a supplier's test plan: init, run, status, evidence (docs/plan.md)",
        description="Carry one supplier from its application to the decision meeting: write "
        "its test plan, run the cases against its endpoint, show what is missing, and pack "
        "signed evidence.",
    )
    verbs = p.add_subparsers(dest="plan_command", metavar="VERB", required=True)
    i = verbs.add_parser("init", help="write a supplier's test plan")
    i.add_argument("--org-number", required=True, metavar="N", help="the supplier's number")
    i.add_argument("--name", required=True, help="the supplier's name")
    i.add_argument("--endpoint", metavar="URL", help="push: its endpoint's https URL")
    i.add_argument(
        "--endpoint-ca",
        type=Path,
        metavar="FILE",
        help="push: the CA of its certificate; pull: of its read-back's (default: the AF test CA)",
    )
    i.add_argument("--mode", choices=("push", "pull"), default="push", help="delivery mode (push)")
    i.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="pull: where its puller fetches from (the kit's outbox and each scenario run's)",
    )
    i.add_argument(
        "--endpoint-cert",
        type=Path,
        metavar="FILE",
        help="pull: the certificate its puller presents (default: the supplier's in --state)",
    )
    i.add_argument(
        "--endpoint-cert-sha256", metavar="HEX", help="pull: or that certificate's SHA-256"
    )
    i.add_argument("--readback", metavar="URL", help="its read-back, GET /b2b/ledger")
    i.add_argument("--start", metavar="YYYY-MM", help="the schedule's start month")
    i.add_argument("--go-live", metavar="YYYY-MM", help="the planned go-live month")
    i.add_argument(
        "--scenarios", type=Path, default=Path("scenarios"), metavar="DIR", help="the library"
    )
    i.add_argument("--out", required=True, type=Path, metavar="PLAN", help="the plan file")
    i.set_defaults(func=run_init)
    r = verbs.add_parser("run", help="run the plan's cases and keep the run in its history")
    r.add_argument("plan", type=Path, metavar="PLAN")
    r.add_argument(
        "--case", action="append", dest="cases", metavar="ID", help="only this case (repeatable)"
    )
    r.add_argument("--seed", type=int, help="document seed (default: from the clock)")
    r.add_argument(
        "--broker",
        metavar="URL",
        help="run the scenarios on this broker (stomp://HOST:PORT; default: $B2BSIM_BROKER, "
        "else the embedded one)",
    )
    r.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="pull: how long the kit waits for each thing the puller must do, its first "
        "request included (30)",
    )
    r.set_defaults(func=run_run)
    s = verbs.add_parser("status", help="each case's last verdict and the onboarding checklist")
    s.add_argument("plan", type=Path, metavar="PLAN")
    s.add_argument("--json", action="store_true", help="print the status as JSON")
    s.add_argument("--html", type=Path, metavar="FILE", help="also write the dashboard here")
    s.set_defaults(func=run_status)
    e = verbs.add_parser("evidence", help="write the signed evidence pack")
    e.add_argument("plan", type=Path, metavar="PLAN")
    e.add_argument("--out", required=True, type=Path, metavar="FILE.zip")
    e.set_defaults(func=run_evidence)


def run_init(args: argparse.Namespace) -> int:
    state = StateDir.resolve(args.state)
    request = PlanRequest(
        org_number=args.org_number,
        name=args.name,
        url=args.endpoint,
        ca=args.endpoint_ca,
        out=args.out,
        mode=args.mode,
        readback=args.readback,
        start=args.start,
        go_live=args.go_live,
        scenarios=args.scenarios,
        listen=args.listen,
        cert=args.endpoint_cert,
        cert_sha256=args.endpoint_cert_sha256,
    )
    plan, checked = init_plan(state, request)
    applying = sum(c.applies for c in plan.cases)
    what = f"puller fetching from {plan.url}" if plan.pulls else f"endpoint {plan.url}"
    print(f"{what}: {checked}")
    print(
        f"plan {plan.path}: {len(plan.cases)} case(s), {applying} apply to the endpoint; "
        f"next: b2bsim plan run {plan.path}"
    )
    return EXIT_OK


def run_run(args: argparse.Namespace) -> int:
    state = StateDir.resolve(args.state)
    plan = read_plan(args.plan)
    run_dir = run_plan(
        state,
        plan,
        case_ids=args.cases,
        seed=args.seed,
        say=lambda m: print(m, flush=True),
        broker_url=args.broker,
        timeout=args.timeout,
    )
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    counts: dict[str, int] = {}
    for case in run["cases"]:
        counts[case["verdict"]] = counts.get(case["verdict"], 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    print(f"run {run['run_id']} (seed {run['seed']}): {summary}; kept in {run_dir}")
    ok = all(c["verdict"] in ("passed", "not applicable", "not exercised") for c in run["cases"])
    return EXIT_OK if ok else EXIT_FAILED


def run_status(args: argparse.Namespace) -> int:
    plan = read_plan(args.plan)
    status = status_of(plan, read_runs(plan))
    if args.html is not None:
        from simulator.views.plan_views import plan_html

        args.html.write_text(plan_html(status.to_json()), encoding="utf-8")
    if args.json:
        print(json.dumps(status.to_json(), indent=2, ensure_ascii=False))
    else:
        _print_status(status)
    return EXIT_OK if status.ready else EXIT_FAILED


def _print_status(status: PlanStatus) -> None:
    p = status.plan
    where = f"pulling from {p.url}" if p.pulls else f"at {p.url}"
    print(f"plan {p.path}: {p.name} ({p.org_number}) {where} ({p.mode})")
    print(
        f"schedule: start {p.start or '—'}, go-live {p.go_live or '—'}; {len(status.runs)} run(s)"
    )
    width = max((len(c.case.id) for c in status.cases), default=10)
    for c in status.cases:
        when = f" at {c.at} seed {c.seed}" if c.at else ""
        why = f" — {c.reason}" if c.reason and not c.done else ""
        print(f"  {c.case.id:<{width}}  {c.verdict}{when}{why}")
    print("onboarding steps:")
    for step in status.steps:
        mark = "done" if step.done else "missing: " + "; ".join(step.missing)
        print(f"  {step.number}. {step.title}: {mark}")
    print(
        "ready for the decision meeting" if status.ready else "not ready for the decision meeting"
    )


def run_evidence(args: argparse.Namespace) -> int:
    state = StateDir.resolve(args.state)
    plan = read_plan(args.plan)
    manifest = write_evidence(state, plan, args.out)
    cases = manifest["cases"]
    passed = sum(c["verdict"] == "passed" for c in cases)
    print(
        f"evidence {args.out}: {len(manifest['files']) + 2} files, {passed} of {len(cases)} "
        f"case(s) last passed, signed by {manifest['evidence_cert_sha256'][:16]}…; "
        f"check it with b2bsim evidence verify {args.out}",
        file=sys.stdout,
    )
    return EXIT_OK
