"""``b2bsim plan init``: a supplier's test plan, with the cases that apply to it.

The cases are the conformance kit's (:data:`simulator.kits.conformance_cases.CASES`
for a push endpoint; a pull supplier's are the kit's ``PULL_CASES`` where it
has them, else the push cases, planned and reported "not run" until the kit
can run them) and every library scenario (``scenarios/*.yaml``), each with
the steps that do not apply to an external endpoint
(:func:`simulator.runs.scenario.not_applicable_to_endpoint`): a scenario none
of whose steps apply is planned as not applicable, with the reason.  The
endpoint's certificate pin is taken from the endpoint if it answers
(:func:`simulator.runs.endpoint.check_endpoint`); the plan says so if not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from simulator.kits import conformance_cases
from simulator.kits.conformance_grading import Case
from simulator.runs.endpoint import ExternalEndpoint, check_endpoint, check_readback
from simulator.runs.plan_file import CONFORMANCE, SCENARIO, Plan, PlanCase, write_plan
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
    url: str
    ca: Path
    out: Path
    mode: str = "push"
    readback: str | None = None
    start: str | None = None
    go_live: str | None = None
    scenarios: Path = Path("scenarios")


def conformance_cases_for(mode: str) -> tuple[Sequence[Case], str]:
    """The kit's cases for ``mode``, and "" or why they cannot run yet."""
    if mode == "pull":
        pull: Sequence[Case] | None = getattr(conformance_cases, "PULL_CASES", None)
        if pull is not None:
            return pull, ""
        return conformance_cases.CASES, "the conformance kit of this version grades push only"
    return conformance_cases.CASES, ""


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
    endpoint = ExternalEndpoint(
        url=request.url, ca=request.ca, org_number=request.org_number, readback=request.readback
    ).checked()  # EndpointError (exit 2) for a bad number, URL or CA file
    pin, checked = _pin(state, endpoint)
    base = request.out.resolve().parent
    kinds, why_not = conformance_cases_for(request.mode)
    cases = [
        PlanCase(
            id=f"{CONFORMANCE}/{c.id}",
            kind=CONFORMANCE,
            title=c.title,
            reason=f"planned; not run yet: {why_not}" if why_not else "",
        )
        for c in kinds
    ]
    cases += planned_scenarios(request.scenarios, base)
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
