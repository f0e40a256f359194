"""``b2bsim plan init``: a supplier's test plan, with the cases that apply to it.

The cases are the conformance kit's (:data:`simulator.kits.conformance_cases.CASES`
for a push endpoint; for a pull supplier the pull kit's
:data:`simulator.kits.conformance_pull_cases.PULL_CASES`) and every library
scenario (``scenarios/*.yaml``), each with the steps that do not apply to an
external supplier, one that pushes or one that pulls alike
(:func:`simulator.runs.scenario.not_applicable_to_endpoint`): a scenario none
of whose steps apply is planned as not applicable, with the reason.  A push
endpoint's certificate pin is taken from the endpoint if it answers
(:func:`simulator.runs.endpoint.check_endpoint`); the plan says so if not.  A
puller's is its client certificate's, known at init
(:func:`simulator.kits.plan_pull.puller_of`), with the ``--listen`` address it
fetches from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from simulator.kits import conformance_cases
from simulator.kits.conformance_grading import Case
from simulator.kits.conformance_pull_cases import PULL_CASES
from simulator.kits.plan_pull import checked_listen, listen_text, puller_of
from simulator.runs.endpoint import ExternalEndpoint, check_endpoint, check_readback
from simulator.runs.plan_file import (
    CONFORMANCE,
    SCENARIO,
    Plan,
    PlanCase,
    listen_url,
    write_plan,
)
from simulator.runs.scenario import load_scenario, not_applicable_to_endpoint
from simulator.vocabulary.errors import EndpointError, PlanError, ReadbackError
from simulator.vocabulary.state import StateDir

__all__ = ["PlanRequest", "conformance_cases_for", "init_plan", "planned_scenarios"]

_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


@dataclass(frozen=True)
class PlanRequest:
    """What ``plan init`` was told: the application form's answers."""

    org_number: str
    name: str
    url: str | None  # push: the endpoint
    ca: Path | None  # push: its CA; pull: the read-back's (None: the AF test CA)
    out: Path
    mode: str = "push"
    readback: str | None = None
    start: str | None = None
    go_live: str | None = None
    scenarios: Path = Path("scenarios")
    listen: str | None = None  # pull: HOST:PORT the puller fetches from
    cert: Path | None = None  # pull: the certificate the puller presents
    cert_sha256: str | None = None  # pull: or its SHA-256


def conformance_cases_for(mode: str) -> Sequence[Case]:
    """The kit's cases for ``mode``: the push kit's, or the pull kit's."""
    return PULL_CASES if mode == "pull" else conformance_cases.CASES


def planned_scenarios(directory: Path, relative_to: Path) -> list[PlanCase]:
    """Every scenario of the library, applicable or not and why."""
    if not directory.is_dir():
        raise PlanError(
            f"no scenario library at {directory}",
            hint="run from the project's directory, or pass --scenarios DIR",
        )
    out: list[PlanCase] = []
    for path in sorted(directory.glob("*.yaml")):
        scenario = load_scenario(path)
        skipped = [
            (i, reason)
            for i, step in enumerate(scenario.steps, 1)
            if (reason := not_applicable_to_endpoint(step)) is not None
        ]
        applies = len(skipped) < len(scenario.steps)
        if not applies:
            reason = "none of its steps applies to an external endpoint: " + "; ".join(
                f"step {i}: {why}" for i, why in skipped
            )
        elif skipped:
            steps = ", ".join(str(i) for i, _ in skipped)
            reason = f"step(s) {steps} do not apply to an external endpoint: {skipped[0][1]}"
        else:
            reason = ""
        out.append(
            PlanCase(
                id=f"{SCENARIO}/{scenario.name}",
                kind=SCENARIO,
                title=scenario.description.splitlines()[0][:200],
                applies=applies,
                reason=reason,
                scenario=_relative(path.resolve(), relative_to),
            )
        )
    return out


def init_plan(state: StateDir, request: PlanRequest) -> tuple[Plan, str]:
    """Write the plan; the plan and what was found at the endpoint (one line)."""
    for what, month in (("--start", request.start), ("--go-live", request.go_live)):
        if month is not None and not _MONTH.fullmatch(month):
            raise PlanError(f"{what} {month!r} is not a month", hint="write YYYY-MM, e.g. 2027-01")
    if request.mode not in ("push", "pull"):
        raise PlanError(f"--mode {request.mode!r} is neither push nor pull", hint="push or pull")
    if not request.name.strip():
        raise PlanError("--name is empty", hint="give the supplier's name")
    if request.mode == "pull":
        return _init_pull(state, request)
    pull_only = (
        ("--listen", request.listen),
        ("--endpoint-cert", request.cert),
        ("--endpoint-cert-sha256", request.cert_sha256),
    )
    wrong = [flag for flag, value in pull_only if value]
    if wrong or request.url is None or request.ca is None:
        raise PlanError(
            f"{', '.join(wrong)} only with --mode pull"
            if wrong
            else "a push plan needs --endpoint URL and --endpoint-ca FILE",
            hint="a push endpoint is named by --endpoint and --endpoint-ca; a puller by "
            "--mode pull --listen HOST:PORT [--endpoint-cert FILE]",
        )
    endpoint = ExternalEndpoint(
        url=request.url, ca=request.ca, org_number=request.org_number, readback=request.readback
    ).checked()  # EndpointError (exit 2) for a bad number, URL or CA file
    pin, checked = _pin(state, endpoint)
    base = request.out.resolve().parent
    cases = _cases(request.mode, request, base)
    plan = Plan(
        path=request.out,
        org_number=endpoint.org_number,
        name=request.name.strip(),
        url=endpoint.url,
        ca=_relative(request.ca.resolve(), base),
        mode=request.mode,
        readback=endpoint.readback,
        cert_sha256=pin,
        checked=checked,
        start=request.start,
        go_live=request.go_live,
        cases=tuple(cases),
    )
    write_plan(plan)
    return plan, checked


def _cases(mode: str, request: PlanRequest, base: Path) -> list[PlanCase]:
    kinds = conformance_cases_for(mode)
    cases = [PlanCase(id=f"{CONFORMANCE}/{c.id}", kind=CONFORMANCE, title=c.title) for c in kinds]
    return cases + planned_scenarios(request.scenarios, base)


def _init_pull(state: StateDir, request: PlanRequest) -> tuple[Plan, str]:
    """A pull plan: the puller's pin and listen address; no endpoint to connect to."""
    if request.url is not None:
        raise PlanError(
            "--endpoint is the URL the ICC pushes to; a pulling supplier has none",
            hint="leave --endpoint out: name the puller with --listen HOST:PORT and "
            "--endpoint-cert FILE (or --endpoint-cert-sha256 HEX)",
        )
    host, port = checked_listen(request.listen)
    listen = listen_text(host, port)
    if not state.ca_cert.is_file():
        raise PlanError(
            f"no AF test CA in {state.pki}: a puller's certificate is checked against it",
            hint="give the state directory with --state, or make one with b2bsim pki init",
        )
    endpoint = ExternalEndpoint(
        url=listen_url(listen),
        ca=request.ca or state.ca_cert,
        org_number=request.org_number,
        readback=request.readback,
    ).checked()  # EndpointError (exit 2) for a bad number, read-back URL or CA file
    pin, checked = puller_of(state, endpoint.org_number, request.cert, request.cert_sha256)
    base = request.out.resolve().parent
    plan = Plan(
        path=request.out,
        org_number=endpoint.org_number,
        name=request.name.strip(),
        url=endpoint.url,
        ca=None if request.ca is None else _relative(request.ca.resolve(), base),
        mode="pull",
        readback=endpoint.readback,
        cert_sha256=pin,
        checked=checked + "; the puller is met at the first run",
        start=request.start,
        go_live=request.go_live,
        cases=tuple(_cases("pull", request, base)),
        listen=listen,
        puller_cert=None if request.cert is None else _relative(request.cert.resolve(), base),
    )
    write_plan(plan)
    return plan, plan.checked


def _pin(state: StateDir, endpoint: ExternalEndpoint) -> tuple[str | None, str]:
    if not (state.icc_cert.is_file() and state.icc_key.is_file()):
        return None, (
            f"not checked: no ICC certificate in {state.pki} (run `b2bsim pki init`); "
            "the pin is taken at the first run"
        )
    try:
        found = check_endpoint(state, endpoint)
    except EndpointError as exc:
        untrusted = "untrusted" in exc.message or "presents the certificate" in exc.message
        what = "not trusted" if untrusted else "not reachable"
        return None, f"{what} at plan init: {exc.message}; the pin is taken at the first run"
    note = f"reachable at plan init, certificate SHA-256 {found.cert_sha256} pinned"
    if found.readback is not None:
        try:
            check_readback(state, found)
            note += "; read-back answers"
        except ReadbackError as exc:
            note += f"; read-back not usable: {exc.message}"
    return found.cert_sha256, note


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` where it is below or beside it, else absolute."""
    try:
        return os.path.relpath(path, base)
    except ValueError:
        return str(path)
