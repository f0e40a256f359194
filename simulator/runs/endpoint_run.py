"""A run with an external supplier: its figures, its expectations and the verdict.

The runner (:mod:`simulator.runs.runner`) asks here, after the run, for the
external supplier's grade (:mod:`simulator.runs.endpoint_grading`, from the
ICC's events and the read-back) and for the reconciliation that is true for
it; and turns the scenario's expectations into graded, **not graded (no
read-back)** and **not applicable** ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from simulator.runs.endpoint import (
    ExternalEndpoint,
    LedgerEntry,
    check_endpoint,
    check_readback,
    last_position,
    read_ledger,
)
from simulator.runs.endpoint_grading import NO_READBACK, EndpointGrade, grade_endpoint
from simulator.runs.pull_endpoint import check_puller
from simulator.runs.pull_grading import NOT_EXERCISED, grade_pull, pulls
from simulator.runs.reconcile import Reconciliation, icc_events, read_jsonl, reconcile
from simulator.runs.scenario import IccFault, KillIcc, Scenario, not_applicable_to_endpoint
from simulator.vocabulary.errors import ReadbackError
from simulator.vocabulary.state import StateDir

__all__ = [
    "GRADED",
    "NOT_AIMED",
    "NOT_APPLICABLE",
    "NOT_GRADED",
    "aimed_checks",
    "endpoint_expectations",
    "grade_run_endpoint",
    "last_sequences",
    "note_sequences",
    "prepare_endpoint",
    "record_sequences",
    "verdict_of",
]

GRADED, NOT_GRADED, NOT_APPLICABLE = "graded", "not graded", "not applicable"
#: Scenario figures the supplier's own ledger decides: graded only from a read-back.
LEDGER_FIGURES = ("ingested", "double_ingested", "out_of_order")
#: Figures that hold whatever steps did not apply (the rest assume every step ran).
INVARIANTS = ("produced", "lost", "double_ingested", "out_of_order")

#: KA's last sequence per external supplier, across runs (STATE/external-sequences.json).
SEQUENCES_FILE = "external-sequences.json"

#: (name, expected, actual, status, reason): an expectation, as the runner builds it.
Row = tuple[str, int, int, str, str]


def prepare_endpoint(state: StateDir, endpoint: ExternalEndpoint) -> ExternalEndpoint:
    """Check the endpoint (and its read-back) before anything starts; the endpoint with
    its pin, and the read-back's position from which this run's loads are graded.

    EndpointError / ReadbackError (usage errors: exit 2) if it cannot be used.
    """
    check = check_puller if pulls(endpoint) else check_endpoint
    endpoint = check(state, endpoint)
    if endpoint.readback is None:
        return endpoint
    check_readback(state, endpoint)
    return replace(endpoint, readback_after=last_position(state, endpoint))


def last_sequences(state: StateDir, orgs: Iterable[str]) -> dict[str, int]:
    """KA's last sequence for each external supplier in earlier runs of this state
    directory: an endpoint remembers them, as in production it sees one stream, so
    a run numbers on from there (not from 1, which the endpoint has loaded)."""
    try:
        known = json.loads((state.root / SEQUENCES_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return {org: int(known[org]) for org in orgs if isinstance(known.get(org), int)}


def record_sequences(state: StateDir, run_dir: Path, orgs: Iterable[str]) -> None:
    """After a run: the last sequence KA gave each external supplier, for the next run."""
    wanted = set(orgs)
    last = last_sequences(state, wanted)
    for row in read_jsonl(run_dir / "produced.jsonl"):
        org = str(row.get("org_number"))
        if org in wanted and isinstance(row.get("sequence"), int):
            last[org] = max(last.get(org, 0), int(row["sequence"]))
    note_sequences(state, last)


def note_sequences(state: StateDir, last: dict[str, int]) -> None:
    """Keep ``last`` (a supplier's highest sequence sent to its endpoint; the conformance
    kit's too) so that the next run numbers on above it; never lowers a kept one."""
    path = state.root / SEQUENCES_FILE
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        known = {}
    merged = {**known}
    for org, seq in last.items():
        kept = known.get(org)
        merged[org] = max(seq, kept) if isinstance(kept, int) else seq
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def grade_run_endpoint(
    state: StateDir,
    endpoint: ExternalEndpoint | Sequence[ExternalEndpoint],
    run_dir: Path,
    events_files: list[Path],
    stub_db: Path,
    *,
    icc_revoked_at_ms: int | None,
) -> tuple[list[EndpointGrade], Reconciliation]:
    """Each external supplier's grade (``--target``: several, supplier 1 first), and
    the run's figures with their ledgers in them."""
    endpoints = [endpoint] if isinstance(endpoint, ExternalEndpoint) else list(endpoint)
    produced_log = run_dir / "produced.jsonl"
    produced, events = read_jsonl(produced_log), icc_events(events_files)
    grades: list[EndpointGrade] = []
    orders: list[tuple[str, list[str] | None]] = []
    for ext in endpoints:
        ledger: list[LedgerEntry] | None = None
        error = None
        if ext.readback is not None:
            try:
                ledger = read_ledger(state, ext)
            except ReadbackError as exc:
                error = str(exc)
        if pulls(ext):
            grade = grade_pull(
                ext.org_number,
                produced,
                events,
                read_jsonl(run_dir / "pull.jsonl"),
                ledger,
                readback_error=error,
            )
        else:
            grade = grade_endpoint(
                ext.org_number,
                produced,
                events,
                ledger,
                readback_error=error,
                icc_revoked_at_ms=icc_revoked_at_ms if ext.sees_run_crl else None,
            )
        grades.append(grade)
        orders.append((ext.org_number, None if ledger is None else [e.message_id for e in ledger]))
    return grades, reconcile(produced_log, events_files, stub_db, orders)


def endpoint_expectations(
    scenario: Scenario,
    graded: Iterable[tuple[str, int, int]],
    grade: EndpointGrade | Sequence[EndpointGrade],
    endpoints: Sequence[ExternalEndpoint] = (),
) -> list[Row]:
    """The scenario's expectations for a run with external suppliers, then their cases
    (with several, each case's name ends with the supplier's number: ``endpoint.lost[N]``).

    A case **not exercised** that the scenario's steps aim at (a kill at receipt makes
    a crash re-send; a pull fault loses an acknowledgement) keeps the scenario from
    passing; one it does not aim at (no crash in ``happy-path``) is shown as
    :data:`NOT_AIMED` and is neither a pass nor held against it."""
    grades = [grade] if isinstance(grade, EndpointGrade) else list(grade)
    skipped = [
        (i, reason)
        for i, step in enumerate(scenario.steps, 1)
        if (reason := not_applicable_to_endpoint(step, len(grades))) is not None
    ]
    no_readback = any(c.status == NOT_GRADED for g in grades for c in g.checks)
    rows: list[Row] = []
    for name, expected, actual in graded:
        if skipped and name not in INVARIANTS:
            rows.append(
                (
                    name,
                    expected,
                    actual,
                    NOT_APPLICABLE,
                    f"the scenario's figure assumes step {skipped[0][0]}, which did not apply "
                    "to the external supplier",
                )
            )
        elif no_readback and name in LEDGER_FIGURES:
            rows.append((name, expected, actual, NOT_GRADED, NO_READBACK))
        else:
            rows.append((name, expected, actual, GRADED, ""))
    aims = aimed_checks(scenario) | ALWAYS_AIMED
    faulted = {e.org_number for e in endpoints if pulls(e) and e.pull_faults}
    for g in grades:
        aimed = aims | (PULL_FAULT_CHECKS if g.org_number in faulted else set())
        for c in g.checks:
            name = c.name if len(grades) == 1 else f"{c.name}[{g.org_number}]"
            if c.status == NOT_EXERCISED and c.name not in aimed:
                # Not what this scenario is about: shown, never a pass, not held against it.
                rows.append((name, 0, c.failures, NOT_AIMED, c.reason))
            else:
                rows.append((name, 0, c.failures, c.status, c.reason))
    for i, reason in skipped:
        rows.append((f"step {i}", 0, 0, NOT_APPLICABLE, reason))
    return rows


#: A case whose situation did not arise and that the scenario does not aim at.
NOT_AIMED = "not exercised (not this scenario's aim)"
#: Cases every run gives something to grade; not exercised, they keep it from passing.
ALWAYS_AIMED = frozenset({"pull.ack_only_fetched"})
#: Cases the run's own pull faults (a lost acknowledgement, a 503) exercise.
PULL_FAULT_CHECKS = frozenset({"pull.refetch_after_lost_ack", "pull.honours_retry_after"})


def aimed_checks(scenario: Scenario) -> set[str]:
    """The external supplier's cases that the scenario's steps are there to exercise."""
    aimed: set[str] = set()
    for step in scenario.steps:
        if isinstance(step, KillIcc) and step.at == "receipt":
            aimed |= {"endpoint.redelivery_not_conflict", "endpoint.resend_duplicate"}
        elif isinstance(step, IccFault) and step.kind == "duplicate":
            aimed.add("endpoint.resend_duplicate")
    return aimed


def verdict_of(error: str | None, expectations: Iterable[object]) -> str:
    """passed; failed (an error, or a graded expectation that did not hold); not graded
    (something only a read-back could prove); not applicable (a step did not apply); or
    not exercised (a check of a puller whose situation did not arise in the run)."""
    items = list(expectations)
    if error is not None or any(
        getattr(e, "status", GRADED) == GRADED and not getattr(e, "passed", False) for e in items
    ):
        return "failed"
    statuses = {getattr(e, "status", GRADED) for e in items}
    if NOT_GRADED in statuses:
        return NO_READBACK
    if NOT_APPLICABLE in statuses:
        return NOT_APPLICABLE
    if NOT_EXERCISED in statuses:  # a pull check whose situation did not arise
        return NOT_EXERCISED
    return "passed"
