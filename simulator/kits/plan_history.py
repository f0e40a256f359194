"""A plan's history and progress: every kept run, each case's last verdict, the checklist.

``PLAN.runs/<run-id>/run.json`` is one run (:mod:`simulator.kits.plan_run`).
:func:`status_of` reads them, newest last, into what ``b2bsim plan status``
and the dashboard show: per case the last verdict, when and with which seed
(``never run`` if no run had it), and AF's seven onboarding steps, each done
or with what is still missing before the decision meeting.  Only a case
whose last verdict is passed (or which does not apply, or a scenario whose
checks held where they had an occasion: not exercised) counts as done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from simulator.runs.plan_file import CONFORMANCE, Plan, PlanCase
from simulator.vocabulary.errors import PlanError

__all__ = ["NEVER_RUN", "CaseStatus", "PlanStatus", "Step", "read_runs", "status_of"]

NEVER_RUN = "never run"
#: Verdicts that leave nothing to do for a case: a scenario "not exercised" held in all it
#: exercised, and names the checks that had no occasion (as ``b2bsim run`` exits 0 for it).
_DONE = ("passed", "not applicable", "not exercised")


def read_runs(plan: Plan) -> list[dict[str, Any]]:
    """Every complete run of the plan, oldest first (a directory without run.json is none)."""
    runs: list[dict[str, Any]] = []
    if not plan.runs_dir.is_dir():
        return runs
    for folder in sorted(plan.runs_dir.iterdir()):
        if folder.name.startswith(".") or not (folder / "run.json").is_file():
            continue
        try:
            run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise PlanError(
                f"{folder / 'run.json'} is not readable JSON",
                hint=f"remove the directory {folder} (a run's record was changed by hand)",
            ) from None
        if isinstance(run, dict) and isinstance(run.get("cases"), list):
            runs.append(run)
    runs.sort(key=lambda r: (str(r.get("finished_at", "")), str(r.get("run_id", ""))))
    return runs


@dataclass(frozen=True)
class CaseStatus:
    case: PlanCase
    verdict: str  # the last run's verdict, or NEVER_RUN
    reason: str = ""
    at: str = ""  # when the run that gave it finished
    seed: int | None = None
    run_id: str = ""

    @property
    def done(self) -> bool:
        return self.verdict in _DONE

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.case.id,
            "kind": self.case.kind,
            "title": self.case.title,
            "applies": self.case.applies,
            "verdict": self.verdict,
            "reason": self.reason,
            "at": self.at,
            "seed": self.seed,
            "run_id": self.run_id,
        }


@dataclass(frozen=True)
class Step:
    number: int
    title: str
    missing: tuple[str, ...] = ()
    commands: str = ""

    @property
    def done(self) -> bool:
        return not self.missing

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "title": self.title,
            "done": self.done,
            "missing": list(self.missing),
            "commands": self.commands,
        }


@dataclass(frozen=True)
class PlanStatus:
    plan: Plan
    cases: tuple[CaseStatus, ...]
    steps: tuple[Step, ...]
    runs: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def ready(self) -> bool:
        """Everything but the decision meeting itself is done."""
        return all(s.done for s in self.steps[:-1])

    def to_json(self) -> dict[str, Any]:
        p = self.plan
        return {
            "kind": "b2bsim-plan-status",
            "plan": str(p.path),
            "supplier": {"org_number": p.org_number, "name": p.name},
            "endpoint": {"url": p.url, "mode": p.mode, "readback": p.readback},
            "schedule": {"start": p.start, "go_live": p.go_live},
            "runs": [
                {"run_id": r.get("run_id"), "seed": r.get("seed"), "at": r.get("finished_at")}
                for r in self.runs
            ],
            "cases": [c.to_json() for c in self.cases],
            "checklist": [s.to_json() for s in self.steps],
            "ready": self.ready,
        }


def status_of(plan: Plan, runs: list[dict[str, Any]]) -> PlanStatus:
    """Each case's last verdict in ``runs`` (oldest first), and the checklist."""
    last: dict[str, CaseStatus] = {}
    for run in runs:
        for item in run["cases"]:
            case = plan.case(str(item.get("id")))
            if case is None:
                continue
            last[case.id] = CaseStatus(
                case,
                str(item.get("verdict")),
                str(item.get("reason", "")),
                str(run.get("finished_at", "")),
                run.get("seed"),
                str(run.get("run_id", "")),
            )
    cases = tuple(last.get(c.id, CaseStatus(c, NEVER_RUN)) for c in plan.cases)
    pinned = plan.cert_sha256 or next(
        (r["endpoint"].get("cert_sha256") for r in reversed(runs) if r.get("endpoint")), None
    )
    steps = _checklist(plan, cases, pinned)
    return PlanStatus(plan, cases, steps, tuple(runs))


#: The order of what is still open: what went wrong first, what was never tried last.
_URGENCY = ("failed", "not graded", "not run", NEVER_RUN)


def _open_cases(cases: tuple[CaseStatus, ...], kind: str) -> list[str]:
    out = []
    ordered = sorted(cases, key=lambda c: _URGENCY.index(c.verdict) if c.verdict in _URGENCY else 0)
    for c in ordered:
        same_kind = (c.case.kind == CONFORMANCE) == (kind == CONFORMANCE)
        if c.case.applies and same_kind and not c.done:
            out.append(f"{c.case.id}: {c.verdict}")
    return out


def _summarise(items: list[str], what: str) -> tuple[str, ...]:
    if not items:
        return ()
    shown = "; ".join(items[:6]) + (f"; and {len(items) - 6} more" if len(items) > 6 else "")
    return (f"{len(items)} {what} not passed yet ({shown})",)


def _checklist(plan: Plan, cases: tuple[CaseStatus, ...], pin: str | None) -> tuple[Step, ...]:
    conformance = _summarise(_open_cases(cases, CONFORMANCE), "conformance case(s)")
    scenarios = list(_summarise(_open_cases(cases, "scenario"), "scenario(s)"))
    if plan.readback is None:
        scenarios.append(
            "no read-back: what the supplier loaded, and in which order, is not graded "
            "(give --readback to plan init)"
        )
    if plan.pulls:  # the puller is met when it fetched and acknowledged a case's envelope
        met = any(c.case.kind == CONFORMANCE and c.verdict == "passed" for c in cases)
        built: tuple[str, ...] = (
            () if met else ("the puller has not fetched and acknowledged from the kit yet",)
        )
        build = "b2bsim conformance --mode pull --listen HOST:PORT --org-number N"
    else:
        built = () if pin else ("the endpoint has not answered over mutual TLS yet",)
        build = "b2bsim conformance --target URL --target-ca FILE --org-number N"
    steps = [
        Step(
            1,
            "Application: the supplier and its AF-issued certificate",
            ()
            if pin
            else (
                "no certificate pinned yet: the endpoint has not answered (plan init, plan run)",
            ),
            "b2bsim pki issue --csr FILE --org-number N",
        ),
        Step(
            2,
            "Kick-off meeting",
            () if plan.start else ("no start month in the schedule (plan init --start YYYY-MM)",),
            "b2bsim run scenarios/trainer-walkthrough.yaml --ui --step",
        ),
        Step(
            3,
            "Test plan and schedule",
            ()
            if plan.go_live
            else ("no go-live month in the schedule (plan init --go-live YYYY-MM)",),
            "b2bsim plan init ... --out PLAN",
        ),
        Step(
            4,
            "The supplier builds its integration point",
            built,
            build,
        ),
        Step(
            5,
            "Integration tests: AF's test plan against the endpoint",
            conformance,
            "b2bsim plan run PLAN",
        ),
        Step(
            6,
            "Integration tests: the chain's faults and certificates",
            tuple(scenarios),
            "b2bsim plan run PLAN --case scenario/NAME",
        ),
    ]
    before = [str(s.number) for s in steps if not s.done]
    steps.append(
        Step(
            7,
            "Decision meeting",
            (f"step(s) {', '.join(before)} not done",) if before else (),
            "b2bsim plan evidence PLAN --out FILE.zip; b2bsim evidence verify FILE.zip",
        )
    )
    return tuple(steps)
