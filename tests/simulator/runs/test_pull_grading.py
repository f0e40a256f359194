"""Grading a puller from the outbox's side, on hand-written request logs (pull.jsonl)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator.runs.endpoint import ExternalEndpoint, LedgerEntry
from simulator.runs.pull_grading import (
    NOT_EXERCISED,
    PULL_BUSY_SECONDS,
    grade_pull,
    pull_fault_plan,
)

ORG = "5520000000"
PULL_CHECKS = (
    "pull.ack_only_fetched",
    "pull.refetch_after_lost_ack",
    "pull.refusals_reported",
    "pull.honours_retry_after",
    "pull.resumes_from_cursor",
)


def produced(n: int) -> list[dict[str, Any]]:
    return [
        {
            "message_id": f"m{i}",
            "org_number": ORG,
            "produced_at_ms": 1000 + i,
            "sequence": i,
            "message_type": "INKOPSORDER",
            "correlation_id": f"c{i}",
        }
        for i in range(1, n + 1)
    ]


def page(
    at: int, after: int, cursors: list[int], status: int = 200, **extra: Any
) -> dict[str, Any]:
    served = [[c, f"m{c}"] for c in cursors] if status == 200 else None
    return {
        "event": "page",
        "at_ms": at,
        "org_number": ORG,
        "after": after,
        "status": status,
        **({"served": served} if served is not None else {}),
        **extra,
    }


def ack(at: int, up_to: int, status: int | None = 204, **extra: Any) -> dict[str, Any]:
    return {
        "event": "ack",
        "at_ms": at,
        "org_number": ORG,
        "up_to": up_to,
        "status": status,
        "refused": extra.pop("refused", []),
        **extra,
    }


def delivered(*ids: int) -> list[dict[str, Any]]:
    return [{"event": "delivered", "message_id": f"m{i}", "org_number": ORG} for i in ids]


def ledger(*ids: int) -> list[LedgerEntry]:
    return [LedgerEntry(p, f"e{i}", f"m{i}", p) for p, i in enumerate(ids, 1)]


def a_correct_log() -> list[dict[str, Any]]:
    """Served 1-3, the ack lost, 503 for 2 s, fetched again, acked; paused; resumed at 3."""
    return [
        page(1000, 0, [1, 2, 3]),
        ack(1100, 3, status=None, dropped=True, pending=[1, 2, 3]),
        page(1600, 0, [], status=503, retry_after=2),
        page(3700, 0, [1, 2, 3]),
        ack(3800, 3),
        page(8000, 3, [4]),  # a pause of 4 s: a restart
        ack(8100, 4),
    ]


def checks(log: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    events = kw.pop("events", delivered(1, 2, 3, 4))
    grade = grade_pull(ORG, produced(4), events, log, kw.pop("ledger", ledger(1, 2, 3, 4)), **kw)
    return {c.name: c for c in grade.checks}


def test_a_correct_puller_passes_every_check() -> None:
    got = checks(a_correct_log())
    for name in (*PULL_CHECKS[:2], *PULL_CHECKS[3:]):
        assert got[name].passed, got[name]
    # Nothing refused, everything loaded: refusals were not exercised, not passed.
    assert got["pull.refusals_reported"].status == NOT_EXERCISED
    assert not got["pull.refusals_reported"].passed
    assert got["endpoint.lost"].passed
    assert got["endpoint.double_ingested"].passed


def test_an_ack_beyond_what_was_served_fails_only_ack_only_fetched() -> None:
    log = [page(1000, 0, [1, 2]), ack(1100, 4), page(1300, 4, [])]
    got = checks(log, ledger=ledger(1, 2), events=delivered(1, 2, 3, 4))
    assert got["pull.ack_only_fetched"].failures == 1
    assert "up_to 4 (highest served 2)" in got["pull.ack_only_fetched"].reason
    failed = {n for n in PULL_CHECKS if got[n].status == "graded" and not got[n].passed}
    assert failed == {"pull.ack_only_fetched"}
    assert got["endpoint.lost"].failures == 2  # m3 and m4, acknowledged unseen, are lost


def test_a_refused_cursor_never_served_fails_ack_only_fetched() -> None:
    log = [page(1000, 0, [1]), ack(1100, 1, status=400, refused=[2])]
    assert checks(log)["pull.ack_only_fetched"].failures == 1


def test_no_refetch_after_a_lost_ack_fails() -> None:
    log = [
        page(1000, 0, [1, 2, 3]),
        ack(1100, 3, status=None, dropped=True, pending=[1, 2, 3]),
        page(1700, 3, []),  # it took the lost ack as done: went on after 3
    ]
    got = checks(log, ledger=None)
    check = got["pull.refetch_after_lost_ack"]
    assert check.failures == 3
    assert "not fetched again" in check.reason


def test_a_lost_ack_beyond_what_was_served_asks_a_refetch_only_of_what_was() -> None:
    log = [
        page(1000, 0, [1]),
        ack(1100, 3, status=None, dropped=True, pending=[1, 2, 3]),  # 2 and 3: never served
        page(1700, 0, [1, 2]),
        ack(1800, 2),
    ]
    got = checks(log, ledger=None)
    assert got["pull.refetch_after_lost_ack"].passed
    assert got["pull.ack_only_fetched"].failures == 1


def test_refetched_but_never_acknowledged_fails() -> None:
    log = [
        page(1000, 0, [1, 2]),
        ack(1100, 2, status=None, dropped=True, pending=[1, 2]),
        page(1700, 0, [1, 2]),
    ]
    check = checks(log)["pull.refetch_after_lost_ack"]
    assert check.failures == 2
    assert "never acknowledged" in check.reason


def test_a_request_before_retry_after_elapsed_fails() -> None:
    log = [
        page(1000, 0, [], status=503, retry_after=2),
        page(1500, 0, [], status=503, retry_after=2),
        page(3600, 0, [1]),
    ]
    check = checks(log)["pull.honours_retry_after"]
    assert check.failures == 1
    assert "after 500 ms (Retry-After: 2)" in check.reason


def test_without_a_503_retry_after_is_not_exercised() -> None:
    check = checks([page(1000, 0, [1]), ack(1100, 1)])["pull.honours_retry_after"]
    assert check.status == NOT_EXERCISED
    assert not check.passed


def test_a_restart_from_zero_fails_resumes_from_cursor() -> None:
    log = [page(1000, 0, [1, 2]), ack(1100, 2), page(6000, 0, [3])]
    check = checks(log)["pull.resumes_from_cursor"]
    assert check.failures == 1
    assert "after=0 (last acknowledged 2)" in check.reason


def test_a_pause_asked_for_by_retry_after_is_no_restart() -> None:
    log = [
        page(1000, 0, [1]),
        ack(1100, 1),
        page(1200, 1, [], status=503, retry_after=5),
        page(6300, 0, [2]),
    ]
    assert checks(log)["pull.resumes_from_cursor"].status == NOT_EXERCISED


def test_a_refusal_reported_and_dead_lettered_passes() -> None:
    log = [page(1000, 0, [1, 2]), ack(1100, 2, refused=[2])]
    events = [*delivered(1), {"event": "dead_lettered", "message_id": "m2", "org_number": ORG}]
    check = checks(log, events=events, ledger=ledger(1))["pull.refusals_reported"]
    assert check.passed
    assert "1 refused envelope(s) was reported and dead-lettered" in check.reason


def test_acknowledged_neither_loaded_nor_reported_fails() -> None:
    log = [page(1000, 0, [1, 2]), ack(1100, 2)]
    got = checks(log, events=delivered(1, 2), ledger=ledger(1))
    check = got["pull.refusals_reported"]
    assert check.failures == 1
    assert "m2 (acknowledged, neither loaded nor reported)" in check.reason
    assert got["endpoint.lost"].failures >= 1  # and it is lost, as reconciliation says


def test_without_a_read_back_unreported_refusals_are_not_graded() -> None:
    log = [page(1000, 0, [1, 2]), ack(1100, 2)]
    check = checks(log, events=delivered(1, 2), ledger=None)["pull.refusals_reported"]
    assert check.status == "not graded"


def test_latency_is_from_first_serving_to_the_acknowledgement() -> None:
    grade = grade_pull(
        ORG, produced(2), delivered(1, 2), [page(1000, 0, [1, 2]), ack(1250, 2)], None
    )
    assert grade.latency_ms == [250, 250]


def test_other_suppliers_requests_are_not_graded() -> None:
    other = {**page(1000, 0, [9]), "org_number": "5560000001"}
    got = checks([other, ack(1100, 0)])
    assert got["pull.ack_only_fetched"].passed


def puller(org: str, *, faults: bool = True, mode: str = "pull") -> ExternalEndpoint:
    return ExternalEndpoint(
        url="https://127.0.0.1:9443/b2b/outbox",
        ca=Path("ca.pem"),
        org_number=org,
        mode=mode,
        pull_port=9443 if mode == "pull" else None,
        pull_faults=faults,
    )


def test_the_fault_plan_names_every_puller_and_no_push_endpoint() -> None:
    """--target with two pullers and a push endpoint: both pullers meet the faults."""
    other = "5520000018"
    plan = pull_fault_plan([puller("5560000001", mode="push"), puller(ORG), puller(other)])
    assert plan is not None
    assert plan["org_numbers"] == sorted([ORG, other])
    assert plan["drop_acks"] == 1
    assert plan["busy_seconds"] == PULL_BUSY_SECONDS


def test_no_fault_plan_without_a_puller_that_meets_faults() -> None:
    assert pull_fault_plan(None) is None
    assert pull_fault_plan([puller(ORG, mode="push")]) is None
    assert pull_fault_plan([puller(ORG, faults=False)]) is None
    one = pull_fault_plan(puller(ORG))  # one puller (--endpoint-mode pull)
    assert one is not None
    assert one["org_numbers"] == [ORG]
