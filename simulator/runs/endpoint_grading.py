"""Grading an external supplier from what it answered, and from what it says it loaded.

Inputs are the run's documented files: KA's ``produced.jsonl``, the ICC's
events (``icc-*.jsonl``: per answer the HTTP status, the receipt status
``accepted``/``duplicate`` and the latency; docs/files.md) and, with
``--readback``, the supplier's read-back (``GET /b2b/ledger``).  Each check is
a case with a name; a failure says which messages and why.  Without a
read-back, order, double loading and a credit before its invoice cannot be
seen from outside: those checks are **not graded (no read-back)**.  A check
that the run gave nothing to grade (no re-send, no revocation) is **not
exercised**: never passed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from simulator.runs.endpoint import LedgerEntry
from simulator.runs.reconcile import out_of_order_rows
from simulator.vocabulary.messages import MessageType

__all__ = [
    "NOT_EXERCISED",
    "EndpointCheck",
    "EndpointGrade",
    "grade_endpoint",
    "percentile",
]

GRADED, NOT_GRADED, NOT_EXERCISED = "graded", "not graded", "not exercised"
NO_READBACK = "not graded (no read-back)"
#: A revocation of the ICC's certificate is given this long to reach the supplier.
CRL_GRACE_MS = 1000
EXAMPLES = 3


@dataclass(frozen=True)
class EndpointCheck:
    """One graded case: how many messages fail it (0 passes), and why."""

    name: str
    failures: int
    reason: str = ""
    status: str = GRADED  # or NOT_GRADED, NOT_EXERCISED

    @property
    def passed(self) -> bool:
        return self.status == GRADED and self.failures == 0


@dataclass
class EndpointGrade:
    org_number: str
    produced: int = 0
    accepted: int = 0  # accepted receipts
    duplicates: int = 0  # duplicate receipts
    # Re-signed re-sends after an ICC crash that reached the endpoint (a message it had
    # answered, or answered `duplicate`, consumed again by a worker after a kill -9).
    crash_resends: int = 0
    loaded: int | None = None  # read-back entries (None: no read-back)
    lost_ids: list[str] = field(default_factory=list)
    double_ids: list[str] = field(default_factory=list)
    latency_ms: list[int] = field(default_factory=list)
    checks: list[EndpointCheck] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "org_number": self.org_number,
            "produced": self.produced,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "crash_resends": self.crash_resends,
            "loaded": self.loaded,
            "lost": len(self.lost_ids),
            "double_ingested": len(self.double_ids),
            "latency_ms": {
                "p50": percentile(self.latency_ms, 50),
                "p99": percentile(self.latency_ms, 99),
                "answers": len(self.latency_ms),
            },
            "checks": [
                {"name": c.name, "status": c.status, "failures": c.failures, "reason": c.reason}
                for c in self.checks
            ],
        }


def percentile(values: list[int], p: float) -> int | None:
    """The nearest-rank ``p``-th percentile (None if there are no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def _some(ids: list[str]) -> str:
    shown = ", ".join(ids[:EXAMPLES])
    return shown + (f" and {len(ids) - EXAMPLES} more" if len(ids) > EXAMPLES else "")


class _Answers:
    """What the endpoint answered, message by message, from the ICC's events in time order.

    An answer recorded while the ack was held (``ack_held``) is the same answer as the
    `delivered` that follows, unless the worker was killed first and the message
    consumed again: then it is an answer of its own, and what follows a re-send's.
    The ICC's own re-send (``duplicated``) is written before the `delivered` of the
    first push: it comes after it.
    """

    def __init__(self, icc_revoked_at_ms: int | None) -> None:
        self.revoked_at = icc_revoked_at_ms
        self.receipts: dict[str, list[str]] = defaultdict(list)
        self.consumed: Counter[str] = Counter()
        self.dead: dict[str, dict[str, Any]] = {}
        self.late_accepts: list[str] = []
        self.latency_ms: list[int] = []
        self.crash_resent: set[str] = set()  # re-sent after an ICC crash, and answered
        self._held: dict[str, dict[str, Any]] = {}
        self._resent: dict[str, list[dict[str, Any]]] = defaultdict(list)  # `duplicated`

    def scan(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            kind, message_id = e.get("event"), str(e.get("message_id"))
            if kind == "consumed":
                self.consumed[message_id] += 1
                if message_id in self._held:  # its worker died after the answer
                    self._answered(message_id, self._held.pop(message_id))
                    self.crash_resent.add(message_id)
                elif self.consumed[message_id] > 1 and message_id in self.receipts:
                    self.crash_resent.add(message_id)  # answered, yet handed out again
                self._flush(message_id)
            elif kind == "duplicated" and isinstance(e.get("status"), int):
                self._resent[message_id].append(e)
            elif kind == "delivered" and isinstance(e.get("status"), int):
                self._held.pop(message_id, None)
                self._answered(message_id, e)
                self._flush(message_id)
            elif kind == "dead_lettered":
                self._held.pop(message_id, None)
                self._flush(message_id)
                self.dead[message_id] = e
            elif kind == "ack_held" and isinstance(e.get("status"), int):
                self._held[message_id] = e
        for message_id, e in self._held.items():  # killed after the answer, not handed out
            self._answered(message_id, e)
        for message_id in list(self._resent):
            self._flush(message_id)
        # A re-send after a crash whose first answer died unrecorded: it said `duplicate`.
        self.crash_resent |= {
            m for m, rs in self.receipts.items() if self.consumed[m] > 1 and "duplicate" in rs
        }

    def _flush(self, message_id: str) -> None:
        """The ICC's own re-sends of the message, after the answer they followed."""
        for e in self._resent.pop(message_id, []):
            self._answered(message_id, e)

    def _answered(self, message_id: str, e: dict[str, Any]) -> None:
        self.receipts[message_id].append(str(e.get("receipt")))
        if isinstance(e.get("latency_ms"), int):
            self.latency_ms.append(int(e["latency_ms"]))
        sent = int(e.get("at_ms", 0)) - int(e.get("latency_ms") or 0)
        if (
            e.get("receipt") == "accepted"
            and self.revoked_at is not None
            and sent > self.revoked_at + CRL_GRACE_MS
        ):
            self.late_accepts.append(message_id)


def grade_endpoint(
    org_number: str,
    produced_rows: list[dict[str, Any]],
    events: list[dict[str, Any]],
    ledger: list[LedgerEntry] | None,
    *,
    readback_error: str | None = None,
    icc_revoked_at_ms: int | None = None,
) -> EndpointGrade:
    """Grade supplier ``org_number``: its answers (ICC events) and its read-back, if any."""
    produced = {str(r["message_id"]): r for r in produced_rows if r.get("org_number") == org_number}
    mine = [e for e in events if e.get("org_number") == org_number]
    grade = EndpointGrade(org_number, produced=len(produced))
    answers = _Answers(icc_revoked_at_ms)
    answers.scan(sorted(mine, key=lambda e: int(e.get("at_ms", 0))))
    grade.latency_ms = answers.latency_ms
    receipts, consumed, dead = answers.receipts, answers.consumed, answers.dead
    late_accepts, crash_resent = answers.late_accepts, answers.crash_resent
    all_receipts = [r for rs in receipts.values() for r in rs]
    grade.accepted = all_receipts.count("accepted")
    grade.duplicates = all_receipts.count("duplicate")

    # Exactly one `accepted` per message.  None but a duplicate is right only when a
    # killed ICC worker took the first answer with it (the message was consumed again).
    wrong_accepts = []
    for message_id in produced:
        if message_id in dead and message_id not in receipts:
            continue  # dead-lettered unanswered: the scenario's figures say if that is right
        n = receipts.get(message_id, []).count("accepted")
        crash_lost = n == 0 and receipts.get(message_id) and consumed[message_id] > 1
        if n != 1 and not crash_lost:
            wrong_accepts.append(f"{message_id} ({n} accepted)")
    seen_before = any(w.endswith("(0 accepted)") for w in wrong_accepts)
    grade.checks.append(
        EndpointCheck(
            "endpoint.accepted_once",
            len(wrong_accepts),
            f"accepted-once: {len(wrong_accepts)} message(s) did not get exactly one `accepted` "
            f"receipt: {_some(wrong_accepts)}"
            + (
                " (answered only `duplicate`, yet sent once: the endpoint says it had them "
                "before this run, whose message ids are its own)"
                if seen_before
                else ""
            )
            if wrong_accepts
            else f"each of {len(produced)} message(s) got one `accepted` receipt",
        )
    )
    # Every re-send (the ICC's duplicate, a redelivery after a crash) is answered `duplicate`.
    bad_resends = [
        f"{m} (answered {r!r})" for m, rs in receipts.items() for r in rs[1:] if r != "duplicate"
    ]
    resends = sum(max(0, len(rs) - 1) for rs in receipts.values())
    # A re-send after a crash whose first answer died unrecorded is one more.
    resends += sum(1 for m in crash_resent if len(receipts.get(m, [])) == 1)
    grade.checks.append(
        EndpointCheck(
            "endpoint.resend_duplicate",
            len(bad_resends),
            f"resend-is-duplicate: {len(bad_resends)} re-sent envelope(s) not answered "
            f"`duplicate`: {_some(bad_resends)}"
            if bad_resends
            else f"each of {resends} re-send(s) was answered `duplicate`"
            if resends
            else "the ICC re-sent no answered envelope in this run",
            GRADED if resends else NOT_EXERCISED,
        )
    )
    conflicts = [m for m, e in dead.items() if e.get("status") == 409]
    crash_resent |= {m for m in conflicts if consumed[m] > 1}
    grade.crash_resends = len(crash_resent & set(produced))
    grade.checks.append(_redelivery_check(conflicts, grade.crash_resends))
    grade.checks.append(
        EndpointCheck(
            "endpoint.nothing_refused_accepted",
            len(late_accepts),
            f"refuse-revoked-icc: the endpoint accepted {len(late_accepts)} envelope(s) sent "
            f"after the ICC's certificate was revoked (the CRL was published): "
            f"{_some(late_accepts)}"
            if late_accepts
            else "nothing that had to be refused was accepted"
            if icc_revoked_at_ms is not None
            else "nothing had to be refused in this run",
            GRADED if icc_revoked_at_ms is not None else NOT_EXERCISED,
        )
    )
    sent = {str(e.get("envelope_id")) for e in mine}
    _grade_ledger(grade, produced, receipts, dead, ledger, sent=sent, readback_error=readback_error)
    return grade


def _redelivery_check(conflicts: list[str], crash_resent: int) -> EndpointCheck:
    """A redelivery after an ICC crash (re-signed: new signature and creation time) is a
    duplicate, never a 409; not exercised if no such re-send reached the endpoint."""
    name = "endpoint.redelivery_not_conflict"
    if conflicts:
        return EndpointCheck(
            name,
            len(conflicts),
            f"redelivery-after-crash: the endpoint answered 409 (conflict) to a re-sent "
            f"envelope (same envelope id and document, new signature and creation time), so "
            f"the ICC dead-lettered it; it must answer 200 `duplicate`: {_some(conflicts)}",
        )
    if not crash_resent:
        return EndpointCheck(
            name,
            0,
            "no envelope was re-sent to the endpoint after an ICC crash in this run "
            "(`{kill: icc, at: receipt}` makes one)",
            NOT_EXERCISED,
        )
    return EndpointCheck(
        name,
        0,
        f"each of {crash_resent} re-signed re-send(s) after an ICC crash was answered `duplicate`",
    )


def _grade_ledger(
    grade: EndpointGrade,
    produced: dict[str, dict[str, Any]],
    receipts: dict[str, list[str]],
    dead: dict[str, dict[str, Any]],
    ledger: list[LedgerEntry] | None,
    *,
    sent: set[str],
    readback_error: str | None,
) -> None:
    """The read-back's cases.  Only this run's loads count: an entry of a message KA
    produced in this run, or of an envelope this run's ICC sent (an earlier run's or a
    conformance case's envelope that the endpoint held and loaded late is not ours)."""
    names = ("endpoint.double_ingested", "endpoint.out_of_order", "endpoint.credit_before_invoice")
    if ledger is None:
        # Lost, as far as the answers show: neither acknowledged nor dead-lettered.
        grade.lost_ids = sorted(set(produced) - set(receipts) - set(dead))
        grade.checks.append(_lost_check(grade.lost_ids, "acknowledged"))
        why = f"failed: {readback_error}" if readback_error else NO_READBACK
        for name in names:
            grade.checks.append(
                EndpointCheck(
                    name, 1 if readback_error else 0, why, GRADED if readback_error else NOT_GRADED
                )
            )
        return
    ledger = [e for e in ledger if e.message_id in produced or e.envelope_id in sent]
    grade.loaded = len(ledger)
    copies = Counter(e.message_id for e in ledger)
    grade.lost_ids = sorted(set(produced) - set(copies) - set(dead))
    grade.double_ids = sorted(m for m, n in copies.items() if n > 1)
    grade.checks.append(_lost_check(grade.lost_ids, "loaded (read-back)"))
    unknown = sorted({e.message_id for e in ledger} - set(produced))
    grade.checks.append(
        EndpointCheck(
            "endpoint.double_ingested",
            sum(n - 1 for n in copies.values()) + len(unknown),
            f"loaded-once: the read-back shows {len(grade.double_ids)} message(s) loaded more "
            f"than once: {_some(grade.double_ids)}"
            + (
                f"; and {len(unknown)} KA never produced for it: {_some(unknown)}"
                if unknown
                else ""
            )
            if grade.double_ids or unknown
            else "each message loaded once",
        )
    )
    rows = [
        (m, grade.org_number, int(produced[m]["produced_at_ms"]), int(produced[m]["sequence"]))
        for m in (e.message_id for e in ledger)
        if m in produced
    ]
    late = out_of_order_rows(rows)
    grade.checks.append(
        EndpointCheck(
            "endpoint.out_of_order",
            late,
            f"in-order: the read-back shows {late} message(s) loaded after a later message "
            "of the same supplier (by KA's timestamp, then sequence)"
            if late
            else "loaded in KA's order",
        )
    )
    early = _credits_before_invoice(produced, [e.message_id for e in ledger])
    grade.checks.append(
        EndpointCheck(
            "endpoint.credit_before_invoice",
            len(early),
            f"credit-after-invoice: the read-back shows {len(early)} credit note(s) loaded "
            f"before their invoice: {_some(early)}"
            if early
            else "no credit note loaded before its invoice",
        )
    )


def _lost_check(lost: list[str], what: str) -> EndpointCheck:
    return EndpointCheck(
        "endpoint.lost",
        len(lost),
        f"nothing-lost: {len(lost)} message(s) neither {what} nor dead-lettered: {_some(lost)}"
        if lost
        else f"every message {what} or dead-lettered",
    )


def _credits_before_invoice(produced: dict[str, dict[str, Any]], order: list[str]) -> list[str]:
    """Credit notes loaded while an invoice of their chain (correlation id) was not yet."""
    invoices: dict[str, set[str]] = defaultdict(set)
    for m, r in produced.items():
        if r.get("message_type") == MessageType.SJALVFAKTURA.value:
            invoices[str(r.get("correlation_id"))].add(m)
    seen: set[str] = set()
    early = []
    for m in order:
        row = produced.get(m)
        is_credit = row is not None and row.get("message_type") == MessageType.KREDIT.value
        if is_credit and row is not None and not invoices[str(row.get("correlation_id"))] <= seen:
            early.append(m)
        seen.add(m)
    return early
