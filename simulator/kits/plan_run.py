"""``b2bsim plan run``: run a plan's cases against the supplier's endpoint, keep the run.

Conformance cases run through the kit (:func:`simulator.kits.plan_record.run_recorded`:
the kit's cases, each envelope sent and answer received kept; for a pull
supplier :func:`simulator.kits.plan_pull.run_pull_recorded`: the pull kit's,
each envelope served and what the puller did with it); scenarios through the
runner with the supplier as the external endpoint
(:func:`simulator.runs.runner.run_scenario`, as ``b2bsim run --endpoint``, or
``--endpoint-mode pull`` with the puller as supplier 1).
Each run goes into the plan's history, ``PLAN.runs/<run-id>/`` (docs/plan.md):
``run.json`` (seed, times, tool and rule-set versions, the endpoint and its
pin, each case's verdict and reason), ``cases/<case>/`` (what it sent and got
back), ``junit.xml`` and ``report.html``.  It is written in a temporary
directory beside it and renamed into place at the end, so an interrupted run
leaves nothing half-written.

A case's verdict is passed, failed, not applicable, not graded, not exercised
(a puller's check whose situation did not arise in a scenario run) or not run
(with the reason); only passed is a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from simulator.kits import plan_history
from simulator.kits.conformance import CaseResult, ConformanceTarget, Grade
from simulator.kits.conformance_pull import PullSetup
from simulator.kits.conformance_pull_kit import PULL_TIMEOUT, PullTarget
from simulator.kits.plan_pull import (
    checked_listen,
    pull_endpoint_of,
    run_pull_recorded,
    scenario_blocker,
    write_outbox,
    write_served,
)
from simulator.kits.plan_record import run_recorded, write_exchanges
from simulator.runs.endpoint import ExternalEndpoint
from simulator.runs.endpoint_run import note_sequences, prepare_endpoint
from simulator.runs.plan_file import CONFORMANCE, Plan, PlanCase
from simulator.runs.runner import RunOptions, RunResult, run_scenario
from simulator.runs.scenario import load_scenario
from simulator.views.plan_views import plan_html, plan_junit
from simulator.vocabulary.certs import cert_sha256
from simulator.vocabulary.errors import (
    B2BSimError,
    EndpointError,
    PlanError,
    TargetUnreachableError,
    TargetUntrustedError,
)
from simulator.vocabulary.rulesets import RULE_SETS
from simulator.vocabulary.state import StateDir

__all__ = [
    "FAILED",
    "NOT_APPLICABLE",
    "NOT_EXERCISED",
    "NOT_GRADED",
    "NOT_RUN",
    "PASSED",
    "run_plan",
    "tool_version",
]

PASSED, FAILED, NOT_APPLICABLE, NOT_GRADED, NOT_RUN = (
    "passed",
    "failed",
    "not applicable",
    "not graded",
    "not run",
)
NOT_EXERCISED = "not exercised"
_GRADES = {Grade.PASSED: PASSED, Grade.FAILED: FAILED, Grade.NOT_GRADED: NOT_GRADED}
Say = Callable[[str], None]
log = logging.getLogger(__name__)


def tool_version() -> str:
    try:
        return metadata.version("b2bsim")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source tree without install
        return "unknown"


def rule_set_versions() -> list[dict[str, str]]:
    return [{"name": r.name, "release": r.release} for r in RULE_SETS]


@dataclass(frozen=True)
class _Run:
    """What every case of one run shares."""

    state: StateDir
    plan: Plan
    endpoint: ExternalEndpoint
    seed: int
    out: Path  # the run's (temporary) directory
    say: Say
    broker_url: str | None = None  # for scenarios: this broker (None: $B2BSIM_BROKER, embedded)
    timeout: float | None = None  # pull: how long the kit waits for each thing of the puller


@dataclass
class _Verdict:
    case: PlanCase
    verdict: str
    reason: str
    seconds: float = 0.0
    files: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.case.id,
            "kind": self.case.kind,
            "title": self.case.title,
            "verdict": self.verdict,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "files": list(self.files),
        }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def select(plan: Plan, ids: Sequence[str] | None) -> list[PlanCase]:
    """The plan's cases named by ``ids`` (all when None); PlanError for an unknown one."""
    if not ids:
        return list(plan.cases)
    chosen: list[PlanCase] = []
    for case_id in ids:
        named = [c for c in plan.cases if case_id in (c.id, c.name)]
        if len(named) > 1:
            raise PlanError(
                f"{case_id!r} names {len(named)} cases: {', '.join(c.id for c in named)}",
                hint="name it with its kind, e.g. --case scenario/" + case_id,
            )
        case = named[0] if named else None
        if case is None:
            raise PlanError(
                f"the plan {plan.path} has no case {case_id!r}",
                hint="`b2bsim plan status PLAN` lists its cases (e.g. conformance/valid-order)",
            )
        if case not in chosen:
            chosen.append(case)
    return chosen


def run_plan(
    state: StateDir,
    plan: Plan,
    *,
    case_ids: Sequence[str] | None = None,
    seed: int | None = None,
    say: Say | None = None,
    broker_url: str | None = None,
    timeout: float | None = None,
) -> Path:
    """Run the cases; the run's directory in the plan's history.

    EndpointError (nothing written) if the endpoint cannot be used at all (for a
    puller: its certificate, the listen port taken, the read-back).  ``timeout``: how
    long the pull kit waits for each thing the puller must do (default 30 s).
    """
    tell = say or (lambda _m: None)
    cases = select(plan, case_ids)
    seed = seed if seed is not None else int(time.time()) % 1_000_000
    if seed < 0:
        raise PlanError(f"--seed {seed} is negative", hint="use 0 or more")
    if timeout is not None and not timeout > 0:
        raise PlanError(f"--timeout {timeout} is not positive", hint="e.g. --timeout 30")
    started = _now()
    if plan.pulls:
        endpoint = pull_endpoint_of(state, plan)
    else:
        assert plan.ca_path is not None  # the schema requires it of a push plan
        endpoint = ExternalEndpoint(
            url=plan.url,
            ca=plan.ca_path,
            org_number=plan.org_number,
            cert_sha256=plan.cert_sha256,
            readback=plan.readback,
        )
    # Before anything is written: a one-line error, exit 2.
    endpoint = prepare_endpoint(state, endpoint)
    runs = plan.runs_dir
    runs.mkdir(parents=True, exist_ok=True)
    run_id = _run_id(runs, seed)
    tmp = runs / f".{run_id}.tmp"
    tmp.mkdir()
    try:
        shared = _Run(state, plan, endpoint, seed, tmp, tell, broker_url, timeout)
        verdicts = _run_cases(shared, cases)
        run = {
            "kind": "b2bsim-plan-run",
            "run_id": run_id,
            "plan": plan.path.name,
            "seed": seed,
            "started_at": started,
            "finished_at": _now(),
            "tool_version": tool_version(),
            "rule_sets": rule_set_versions(),
            "supplier": {"org_number": plan.org_number, "name": plan.name},
            "endpoint": {
                "url": plan.url,
                "mode": plan.mode,
                **({"listen": plan.listen} if plan.pulls else {}),
                "readback": plan.readback,
                "cert_sha256": endpoint.cert_sha256,
                "plan_cert_sha256": plan.cert_sha256,
            },
            "icc_cert_sha256": cert_sha256(state.icc_cert) if state.icc_cert.is_file() else None,
            "cases": [v.to_json() for v in verdicts],
        }
        (tmp / "run.json").write_text(
            json.dumps(run, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (tmp / "junit.xml").write_bytes(plan_junit(run))
        history = [*plan_history.read_runs(plan), run]
        status = plan_history.status_of(plan, history)
        (tmp / "report.html").write_text(plan_html(status.to_json(), run), encoding="utf-8")
        tmp.rename(runs / run_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return runs / run_id


def _run_id(runs: Path, seed: int) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id, n = f"{stamp}-seed{seed}", 1
    while (runs / run_id).exists():
        n += 1
        run_id = f"{stamp}-seed{seed}-{n}"
    return run_id


def case_dir_name(case_id: str) -> str:
    return case_id.replace("/", "-")


def _run_cases(run: _Run, cases: list[PlanCase]) -> list[_Verdict]:
    plan = run.plan
    results: dict[str, _Verdict] = {}
    conformance = [c for c in cases if c.kind == CONFORMANCE]
    blocked = scenario_blocker(plan) if plan.pulls else None
    for case in cases:
        if not case.applies:
            results[case.id] = _Verdict(case, NOT_APPLICABLE, case.reason or "does not apply")
        elif blocked is not None and case.kind != CONFORMANCE:
            results[case.id] = _Verdict(case, NOT_RUN, blocked)
    # Push: scenarios first, so the kit's own sequences never come before KA's in the
    # endpoint's stream (a pull plan keeps the kit first, as docs/plan.md says).
    if not plan.pulls:
        for case in cases:
            if case.id not in results and case.kind != CONFORMANCE:
                results[case.id] = _run_one_scenario(run, case)
    todo = [c for c in conformance if c.id not in results]
    if todo:
        ran = _run_pull_conformance(run, todo) if plan.pulls else _run_conformance(run, todo)
        for v in ran:
            results[v.case.id] = v
    for case in cases:
        if case.id not in results:
            results[case.id] = _run_one_scenario(run, case)
    return [results[c.id] for c in cases]


def _progress(run: _Run) -> Callable[[CaseResult], None]:
    def progress(result: CaseResult) -> None:
        run.say(f"{_GRADES[result.grade].upper()} conformance/{result.case_id}: {result.reason}")

    return progress


def _verdict(case: PlanCase, result: CaseResult, files: tuple[str, ...]) -> _Verdict:
    reason = result.reason + (f" — {result.advice}" if result.advice else "")
    return _Verdict(case, _GRADES[result.grade], reason, result.seconds, files)


def _run_pull_conformance(run: _Run, cases: list[PlanCase]) -> list[_Verdict]:
    """The pull kit's cases: the kit plays the ICC's outbox at the plan's listen address."""
    plan = run.plan
    host, port = checked_listen(plan.listen)
    target = PullTarget(
        state=run.state,
        org_number=plan.org_number,
        host=host,
        port=port,
        pin=run.endpoint.cert_sha256,
        readback=plan.readback,
        readback_ca=plan.ca_path,
        timeout=run.timeout or PULL_TIMEOUT,
        seed=run.seed,
        case_ids=tuple(c.name for c in cases),
    )

    def listening(setup: PullSetup) -> None:
        for line in setup.lines():
            run.say(line)

    try:
        report, served = asyncio.run(
            run_pull_recorded(target, listening=listening, progress=_progress(run))
        )
    except B2BSimError as exc:  # the port taken meanwhile, the read-back gone: nothing graded
        return [_Verdict(c, NOT_RUN, f"the puller could not be tested: {exc}") for c in cases]
    by_id = {r.case_id: r for r in report.results}
    verdicts = []
    for case in cases:
        folder = run.out / "cases" / case_dir_name(case.id)
        files = write_served(folder, served.get(case.name, []))
        verdicts.append(_verdict(case, by_id[case.name], tuple(files)))
    return verdicts


def _run_conformance(run: _Run, cases: list[PlanCase]) -> list[_Verdict]:
    plan, state = run.plan, run.state
    assert plan.ca_path is not None
    target = ConformanceTarget(
        url=plan.url,
        target_ca=plan.ca_path,
        org_number=plan.org_number,
        client_cert=state.icc_cert,
        client_key=state.icc_key,
        signer_cert=state.icc_cert,
        signer_key=state.icc_key,
        state=state,
        cert_sha256=run.endpoint.cert_sha256,
        seed=run.seed,
        case_ids=tuple(c.name for c in cases),
    )
    try:
        report, exchanges, last = asyncio.run(run_recorded(target, progress=_progress(run)))
    except (TargetUnreachableError, TargetUntrustedError) as exc:
        return [_Verdict(c, NOT_RUN, f"the endpoint could not be tested: {exc}") for c in cases]
    # The endpoint saw the kit's sequences too: KA's next runs number on above them.
    note_sequences(state, {plan.org_number: last})
    by_id = {r.case_id: r for r in report.results}
    verdicts = []
    for case in cases:
        folder = run.out / "cases" / case_dir_name(case.id)
        files = write_exchanges(folder, exchanges.get(case.name, []))
        verdicts.append(_verdict(case, by_id[case.name], files))
    return verdicts


#: What a scenario run's directory holds that the plan keeps: the result, KA's record and
#: the ICC's events (each answer the endpoint gave, with the envelope id: docs/files.md)
#: and, for a puller, the pull API's request log.
_KEPT = ("result.json", "produced.jsonl", "icc-*.jsonl", "pull.jsonl")


def _run_one_scenario(run: _Run, case: PlanCase) -> _Verdict:
    plan, seed, say = run.plan, run.seed, run.say
    assert case.scenario is not None
    path = plan.resolve(case.scenario)
    begin = time.monotonic()
    try:
        scenario = dataclasses.replace(load_scenario(path), seed=seed)
        where = f"with the puller fetching from {plan.url}" if plan.pulls else f"against {plan.url}"
        say(f"running {case.id} (seed {seed}) {where}")
        result = run_scenario(
            scenario,
            RunOptions(
                state=run.state,
                broker_url=None if scenario.needs_embedded_broker else run.broker_url,
                endpoint=run.endpoint,
                progress=lambda m: say(f"  {m}"),
            ),
        )
    except EndpointError as exc:
        return _Verdict(case, NOT_RUN, f"the endpoint could not be used: {exc}")
    except B2BSimError as exc:
        return _Verdict(case, NOT_RUN, f"could not run: {exc}", time.monotonic() - begin)
    except Exception as exc:  # our bug, not the supplier's: keep the other cases' verdicts
        log.exception("running %s failed", case.id)
        reason = f"b2bsim failed running it (please report): {type(exc).__name__}: {exc}"
        return _Verdict(case, NOT_RUN, reason, time.monotonic() - begin)
    folder = run.out / "cases" / case_dir_name(case.id)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for pattern in _KEPT:
        for source in sorted(result.run_dir.glob(pattern)):
            with contextlib.suppress(OSError):
                shutil.copyfile(source, folder / source.name)
                files.append(f"cases/{folder.name}/{source.name}")
    if plan.pulls:
        files += write_outbox(result.run_dir, folder, plan.org_number)
    else:
        files += _write_sent(result.run_dir, folder, plan.org_number)
    verdict, reason = _scenario_verdict(result)
    say(f"{verdict.upper()} {case.id}: {reason}")
    return _Verdict(case, verdict, reason, time.monotonic() - begin, tuple(files))


def _write_sent(run_dir: Path, folder: Path, org_number: str) -> list[str]:
    """The envelopes the ICC sent the supplier (its sent logs), one file each, and an index."""
    index: list[str] = []
    files: list[str] = []
    for log in sorted(run_dir.glob("sent-*.jsonl")):
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a killed worker
                continue
            if not isinstance(record, dict) or record.get("org_number") != org_number:
                continue
            name = f"{len(index) + 1:03d}-sent.xml"
            (folder / name).write_text(str(record.pop("envelope", "")), encoding="utf-8")
            record["file"] = name
            index.append(json.dumps(record))
            files.append(f"cases/{folder.name}/{name}")
    if index:
        (folder / "sent.jsonl").write_text("\n".join(index) + "\n", encoding="utf-8")
        files.append(f"cases/{folder.name}/sent.jsonl")
    return files


def _scenario_verdict(result: RunResult) -> tuple[str, str]:
    verdict = result.verdict
    if result.error:
        return FAILED, result.error
    failed = [e for e in result.expectations if e.status == "graded" and not e.passed]
    if failed:
        return FAILED, "; ".join(
            f"expected {e.name} = {e.expected}, got {e.actual}" for e in failed
        )
    if verdict == PASSED:
        return PASSED, f"every expectation held ({len(result.expectations)})"
    others = [e for e in result.expectations if e.status != "graded"]
    why = "; ".join(f"{e.name}: {e.reason}" for e in others[:3])
    if verdict in (NOT_APPLICABLE, NOT_EXERCISED):
        return verdict, why
    return NOT_GRADED, why
