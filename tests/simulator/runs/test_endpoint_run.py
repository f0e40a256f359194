"""simulator/runs/endpoint_run.py: KA's sequences for an external supplier go on from run
to run (its endpoint remembers them); a case not exercised counts only where the
scenario aims at it."""

from __future__ import annotations

import json
from pathlib import Path

from simulator.runs.endpoint_grading import NOT_EXERCISED, EndpointCheck, EndpointGrade
from simulator.runs.endpoint_run import (
    NOT_AIMED,
    SEQUENCES_FILE,
    aimed_checks,
    endpoint_expectations,
    last_sequences,
    record_sequences,
    verdict_of,
)
from simulator.runs.scenario import load_scenario
from simulator.vocabulary.state import StateDir

ORG, OTHER = "5520000000", "5520000018"


def produced(run_dir: Path, rows: list[tuple[str, int]]) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "produced.jsonl").write_text(
        "".join(
            json.dumps({"message_id": f"m{i}", "org_number": org, "sequence": seq}) + "\n"
            for i, (org, seq) in enumerate(rows)
        )
    )
    return run_dir


def test_a_first_run_starts_from_nothing(tmp_path: Path) -> None:
    assert last_sequences(StateDir(tmp_path), [ORG]) == {}


def test_each_run_records_where_the_next_goes_on(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    first = produced(tmp_path / "runs" / "a", [(ORG, 1), (ORG, 3), (ORG, 2), ("5560360793", 9)])
    record_sequences(state, first, [ORG])
    assert last_sequences(state, [ORG, OTHER]) == {ORG: 3}
    second = produced(tmp_path / "runs" / "b", [(ORG, 4), (OTHER, 1)])
    record_sequences(state, second, [ORG, OTHER])
    assert last_sequences(state, [ORG, OTHER]) == {ORG: 4, OTHER: 1}
    # A run that produced nothing for a supplier keeps what it had.
    record_sequences(state, produced(tmp_path / "runs" / "c", []), [ORG])
    assert last_sequences(state, [ORG]) == {ORG: 4}


def test_a_broken_record_is_ignored(tmp_path: Path) -> None:
    (tmp_path / SEQUENCES_FILE).write_text("not json")
    assert last_sequences(StateDir(tmp_path), [ORG]) == {}


# --- what a scenario aims at: a case not exercised keeps it from passing only then ----------

REPO = Path(__file__).resolve().parents[3]


def _grade(*checks: EndpointCheck) -> EndpointGrade:
    return EndpointGrade(org_number=ORG, checks=list(checks))


NO_CRASH_RESEND = EndpointCheck(
    "endpoint.redelivery_not_conflict", 0, "no envelope was re-sent", NOT_EXERCISED
)


def test_a_kill_at_receipt_aims_at_the_crash_resend() -> None:
    assert {"endpoint.redelivery_not_conflict", "endpoint.resend_duplicate"} <= aimed_checks(
        load_scenario(REPO / "scenarios" / "bridge-crash.yaml")
    )
    assert aimed_checks(load_scenario(REPO / "scenarios" / "happy-path.yaml")) == set()


def test_not_exercised_where_aimed_keeps_the_scenario_from_passing() -> None:
    crash = load_scenario(REPO / "scenarios" / "bridge-crash.yaml")
    rows = endpoint_expectations(crash, [], _grade(NO_CRASH_RESEND))
    assert [r[3] for r in rows if r[0] == "endpoint.redelivery_not_conflict"] == [NOT_EXERCISED]
    assert verdict_of(None, [_Row(*r) for r in rows]) == NOT_EXERCISED


def test_not_exercised_where_not_aimed_is_shown_and_not_held_against_it() -> None:
    happy = load_scenario(REPO / "scenarios" / "happy-path.yaml")
    rows = endpoint_expectations(happy, [("lost", 0, 0)], _grade(NO_CRASH_RESEND))
    assert [r[3] for r in rows if r[0] == "endpoint.redelivery_not_conflict"] == [NOT_AIMED]
    assert verdict_of(None, [_Row(*r) for r in rows]) == "passed"
    # ...and a graded failure beside it still fails.
    lost = EndpointCheck("endpoint.lost", 1, "m1 never accepted")
    rows = endpoint_expectations(happy, [], _grade(NO_CRASH_RESEND, lost))
    assert verdict_of(None, [_Row(*r) for r in rows]) == "failed"


class _Row:
    def __init__(self, name: str, expected: int, actual: int, status: str, reason: str) -> None:
        self.name, self.status, self.reason = name, status, reason
        self.passed = status == "graded" and expected == actual
