"""Grading an external supplier's puller from the outbox's side (``--endpoint-mode pull``).

Inputs are the run's documented files: KA's ``produced.jsonl``, the ICC's
events (``icc-*.jsonl``: ``delivered`` when an acknowledgement covered an
envelope, ``dead_lettered`` for one it reported refused), the pull API's
request log (``pull.jsonl``: each page and acknowledgement of a supplier,
what it asked and what it was served, the faults it met) and, with
``--readback``, the supplier's read-back.  The checks:

- ``pull.ack_only_fetched``: no acknowledgement reaches beyond the highest
  cursor served to the puller, and it reports refused only envelopes it got;
- ``pull.refetch_after_lost_ack``: after an acknowledgement the ICC lost on
  purpose, the envelopes it covered are fetched again and acknowledged;
- ``pull.refusals_reported``: what it refused reached the DLQ; with a
  read-back, nothing acknowledged was left neither loaded nor reported;
- ``pull.honours_retry_after``: after a 429/503 no request came before its
  ``Retry-After`` elapsed;
- ``pull.resumes_from_cursor``: after a pause (a restart of the puller, or
  of the ICC), the first page starts at or after the last acknowledged cursor;

then what :mod:`simulator.runs.endpoint_grading` grades from the ledger.  A
check whose situation did not arise in the run is **not exercised**, never
passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from icc_bridge import PullFaultPlan
from simulator.runs.endpoint import ExternalEndpoint, LedgerEntry
from simulator.runs.endpoint_grading import (
    NO_READBACK,
    NOT_GRADED,
    EndpointCheck,
    EndpointGrade,
    _grade_ledger,
    _some,
)

__all__ = [
    "GAP_MS",
    "NOT_EXERCISED",
    "PULL_BUSY_SECONDS",
    "grade_pull",
    "pull_fault_plan",
    "pulls",
]

NOT_EXERCISED = "not exercised"
#: No request of the puller for this long (not asked by a Retry-After): a pause or a restart.
GAP_MS = 3000
#: A request this much early after a Retry-After is still in time (timer granularity).
RETRY_AFTER_SLACK_MS = 20
#: What a pull run does to the external puller unless --no-pull-faults.
PULL_DROP_ACKS, PULL_BUSY_SECONDS, PULL_RETRY_AFTER = 1, 2.0, 2


def pulls(endpoint: ExternalEndpoint | None) -> bool:
    return endpoint is not None and endpoint.mode == "pull"


def pull_fault_plan(
    endpoints: ExternalEndpoint | Sequence[ExternalEndpoint] | None,
) -> dict[str, object] | None:
    """The pull API's faults for the external pullers (icc_bridge/pull_faults.py), if any:
    each one (``--target``: several) loses its own first acknowledgement, then is busy."""
    if endpoints is None:
        return None
    many = [endpoints] if isinstance(endpoints, ExternalEndpoint) else list(endpoints)
    orgs = frozenset(e.org_number for e in many if pulls(e) and e.pull_faults)
    if not orgs:
        return None
    plan = PullFaultPlan(
        org_numbers=orgs,
        drop_acks=PULL_DROP_ACKS,
        busy_seconds=PULL_BUSY_SECONDS,
        retry_after=PULL_RETRY_AFTER,
    )
    return plan.as_json()


@dataclass
class _Seen:
    """What the request log says of one puller, walked in time order."""

    served: dict[int, str] = field(default_factory=dict)  # cursor → message id
    first_served_ms: dict[int, int] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)  # reported in an applied ack
    acks: list[dict[str, Any]] = field(default_factory=list)


def _at(r: dict[str, Any]) -> int:
    return int(r.get("at_ms") or 0)


def grade_pull(
    org_number: str,
    produced_rows: list[dict[str, Any]],
    events: list[dict[str, Any]],
    requests: list[dict[str, Any]],
    ledger: list[LedgerEntry] | None,
    *,
    readback_error: str | None = None,
) -> EndpointGrade:
    """Grade the puller of ``org_number`` from the outbox's side, then its ledger."""
    produced = {str(r["message_id"]): r for r in produced_rows if r.get("org_number") == org_number}
    mine = [e for e in events if e.get("org_number") == org_number]
    acked = {str(e["message_id"]) for e in mine if e.get("event") == "delivered"}
    dead = {str(e["message_id"]): e for e in mine if e.get("event") == "dead_lettered"}
    reqs = sorted((r for r in requests if r.get("org_number") == org_number), key=_at)
    grade = EndpointGrade(org_number, produced=len(produced), accepted=len(acked))
    seen = _walk(reqs)
    grade.latency_ms = _ack_latencies(seen)
    grade.checks += [
        _ack_only_fetched(reqs),
        _refetch_after_lost_ack(reqs),
        _refusals_reported(seen, acked, dead, ledger),
        _honours_retry_after(reqs),
        _resumes_from_cursor(reqs),
    ]
    receipts: dict[str, list[str]] = {m: ["acknowledged"] for m in acked}
    sent = {str(e.get("envelope_id")) for e in mine}
    _grade_ledger(grade, produced, receipts, dead, ledger, sent=sent, readback_error=readback_error)
    return grade


def _walk(reqs: list[dict[str, Any]]) -> _Seen:
    seen = _Seen()
    for r in reqs:
        if r.get("event") == "page" and r.get("status") == 200:
            for cursor, message_id in r.get("served") or ():
                seen.served[int(cursor)] = str(message_id)
                seen.first_served_ms.setdefault(int(cursor), _at(r))
        elif r.get("event") == "ack" and r.get("status") == 204:
            seen.acks.append(r)
            for cursor in r.get("refused") or ():
                seen.refused[int(cursor)] = seen.served.get(int(cursor), "?")
    return seen


def _ack_latencies(seen: _Seen) -> list[int]:
    """Per envelope: from its first serving to the applied acknowledgement covering it."""
    out = []
    pending = sorted(seen.first_served_ms.items())
    for ack in seen.acks:
        up_to = int(ack.get("up_to") or 0)
        out += [_at(ack) - at for c, at in pending if c <= up_to and at <= _at(ack)]
        pending = [(c, at) for c, at in pending if c > up_to or at > _at(ack)]
    return out


def _ack_only_fetched(reqs: list[dict[str, Any]]) -> EndpointCheck:
    name = "pull.ack_only_fetched"
    highest, served, wrong, acks = 0, set[int](), [], 0
    for r in reqs:
        if r.get("event") == "page" and r.get("status") == 200:
            cursors = [int(c) for c, _ in r.get("served") or ()]
            served.update(cursors)
            highest = max([highest, *cursors])
        elif r.get("event") == "ack" and isinstance(r.get("up_to"), int):
            acks += 1
            if r["up_to"] > highest:
                wrong.append(f"up_to {r['up_to']} (highest served {highest})")
            wrong += [
                f"refused {c} (never served)" for c in r.get("refused") or () if c not in served
            ]
    if not acks:
        return EndpointCheck(name, 0, "the puller sent no acknowledgement", NOT_EXERCISED)
    return EndpointCheck(
        name,
        len(wrong),
        f"ack-only-fetched: {len(wrong)} acknowledgement(s) covered envelopes the puller was "
        f"never served, so the ICC drops envelopes it never got: {_some(wrong)}; acknowledge "
        "up to the last cursor of a page you stored (docs/pull.md)"
        if wrong
        else f"each of {acks} acknowledgement(s) covered only envelopes served to the puller",
    )


def _refetch_after_lost_ack(reqs: list[dict[str, Any]]) -> EndpointCheck:
    name = "pull.refetch_after_lost_ack"
    drops = [
        (i, r) for i, r in enumerate(reqs) if r.get("event") == "ack" and r.get("dropped") is True
    ]
    if not drops:
        return EndpointCheck(name, 0, "no acknowledgement was lost in this run", NOT_EXERCISED)
    missed: list[str] = []
    pending = 0
    for i, drop in drops:
        before, later = reqs[:i], reqs[i + 1 :]
        # What it had fetched (an unserved cursor in the ack is ack_only_fetched's failure).
        fetched = {
            int(c)
            for r in before
            if r.get("event") == "page" and r.get("status") == 200
            for c, _ in r.get("served") or ()
        }
        lost = [c for c in drop.get("pending") or () if c in fetched]
        pending += len(lost)
        again = {
            int(c)
            for r in later
            if r.get("event") == "page" and r.get("status") == 200
            for c, _ in r.get("served") or ()
        }
        acked_to = max(
            [0]
            + [int(r["up_to"]) for r in later if r.get("event") == "ack" and r.get("status") == 204]
        )
        for c in lost:
            if c not in again:
                missed.append(f"cursor {c} (not fetched again)")
            elif c > acked_to:
                missed.append(f"cursor {c} (fetched again, never acknowledged)")
    return EndpointCheck(
        name,
        len(missed),
        f"refetch-after-lost-ack: the ICC lost {len(drops)} acknowledgement(s) (no answer), "
        f"yet {len(missed)} of the envelopes they covered were not fetched and acknowledged "
        f"again: {_some(missed)}; an acknowledgement without a 204 did not happen: fetch "
        "again from the last acknowledged cursor (docs/pull.md)"
        if missed
        else f"after {len(drops)} lost acknowledgement(s), each of {pending} envelope(s) was "
        "fetched and acknowledged again",
    )


def _refusals_reported(
    seen: _Seen,
    acked: set[str],
    dead: dict[str, dict[str, Any]],
    ledger: list[LedgerEntry] | None,
) -> EndpointCheck:
    name = "pull.refusals_reported"
    refused = set(seen.refused.values())
    not_dead = sorted(refused - set(dead))
    silent: list[str] = []
    if ledger is not None:
        loaded = {e.message_id for e in ledger}
        # served, acknowledged, never loaded nor reported (acknowledged unserved is
        # ack_only_fetched's failure, not a silent refusal)
        silent = sorted((acked & set(seen.served.values())) - loaded - set(dead))
    wrong = [f"{m} (reported, not dead-lettered)" for m in not_dead]
    wrong += [f"{m} (acknowledged, neither loaded nor reported)" for m in silent]
    if wrong:
        return EndpointCheck(
            name,
            len(wrong),
            f"refusals-reported: {len(wrong)} envelope(s) the puller acknowledged were neither "
            f"loaded nor in the DLQ, so they are lost: {_some(wrong)}; list each envelope you "
            'refuse in the acknowledgement\'s "refused" (docs/pull.md)',
        )
    if refused:
        return EndpointCheck(
            name, 0, f"each of {len(refused)} refused envelope(s) was reported and dead-lettered"
        )
    if ledger is None:
        return EndpointCheck(name, 0, NO_READBACK, NOT_GRADED)
    return EndpointCheck(
        name, 0, "the puller refused nothing, and loaded all it acknowledged", NOT_EXERCISED
    )


def _honours_retry_after(reqs: list[dict[str, Any]]) -> EndpointCheck:
    name = "pull.honours_retry_after"
    asked = [
        (i, r)
        for i, r in enumerate(reqs)
        if r.get("status") in (429, 503) and isinstance(r.get("retry_after"), int | float)
    ]
    if not asked:
        return EndpointCheck(name, 0, "the ICC answered no 429/503 in this run", NOT_EXERCISED)
    early = []
    for i, r in asked:
        if i + 1 < len(reqs):
            waited = _at(reqs[i + 1]) - _at(r)
            if waited < r["retry_after"] * 1000 - RETRY_AFTER_SLACK_MS:
                early.append(f"after {waited} ms (Retry-After: {r['retry_after']})")
    return EndpointCheck(
        name,
        len(early),
        f"honours-retry-after: {len(early)} request(s) came before the Retry-After of the "
        f"ICC's 429/503 elapsed: {_some(early)}; wait at least that long (docs/pull.md)"
        if early
        else f"after each of {len(asked)} 429/503 answer(s) the puller waited its Retry-After",
    )


def _resumes_from_cursor(reqs: list[dict[str, Any]]) -> EndpointCheck:
    name = "pull.resumes_from_cursor"
    last_acked, resumed, wrong = 0, 0, []
    previous: dict[str, Any] | None = None
    for r in reqs:
        paused = previous is not None and _at(r) - _at(previous) >= GAP_MS
        told_to_wait = previous is not None and previous.get("status") in (429, 503)
        if paused and not told_to_wait and r.get("event") == "page" and last_acked > 0:
            after = r.get("after")
            resumed += 1
            if not isinstance(after, int) or after < last_acked:
                wrong.append(f"after={after} (last acknowledged {last_acked})")
        if r.get("event") == "ack" and r.get("status") == 204:
            last_acked = max(last_acked, int(r.get("up_to") or 0))
        previous = r
    if not resumed:
        return EndpointCheck(
            name,
            0,
            f"the puller never paused {GAP_MS // 1000} s or more after an acknowledgement "
            "(a restart of it, or of the ICC)",
            NOT_EXERCISED,
        )
    return EndpointCheck(
        name,
        len(wrong),
        f"resume-from-cursor: after {len(wrong)} pause(s) the puller started again below its "
        f"last acknowledged cursor: {_some(wrong)}; save the cursor of each acknowledgement "
        "and fetch after it when you start (docs/pull.md)"
        if wrong
        else f"after each of {resumed} pause(s) the puller went on from its cursor",
    )
