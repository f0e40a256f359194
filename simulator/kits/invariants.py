"""The chain's invariants, checked from what it left behind, sharing no code with it.

For the chaos soak (``b2bsim soak``) and anyone who wants to know whether a run
kept its promises.  It reads only documented files and the broker
(docs/files.md, docs/messages.md, docs/supplier.md, docs/dlq.md), with its own
readers (:mod:`simulator.kits.invariant_sources`); it imports no component
and nothing of :mod:`simulator.vocabulary` but the errors and the catalogue
of codes (an import-linter contract in pyproject.toml says so).

API::

    check_invariants(run_dir: Path, *, broker_url: str | None, queue: str,
                     faults_log: Path | None) -> InvariantReport

* ``run_dir``: a run's directory: ``produced.jsonl`` (KA's record: lines with
  or without a ``state`` of ``recorded``/``sent``; a message is recorded if
  any line names it), ``icc-*.jsonl`` (the ICC's events) and
  ``supplier-stub.sqlite`` (the stub's tables, opened read-only).
* ``broker_url``: a running broker to browse ``queue`` and ``DLQ.<queue>``
  on (never consuming); ``None``: the dead letters are taken from the ICC's
  ``dead_lettered`` events instead, and nothing is known of the queue.
* ``queue``: the queue KA sent to, e.g. ``/queue/af.ka.outbound.run-<id>``.
* ``faults_log``: the soak's faults, one ``{"at_ms", "kind", "target", …}``
  per line (not there yet: none); a violation's ``fault`` is the last line at
  or before its ``at_ms``: the load, the store, the dead letter, or for a
  missing message the ICC's last event of it (else KA's timestamp).

Raises ConfigError (no such run directory, a bad URL or queue, an unreadable
database) or BrokerUnreachableError (the broker cannot be browsed).

The checks, each violation a :class:`Violation` of the kind named in brackets:

1. every message KA recorded is loaded exactly once, or dead-lettered:
   [``lost``] neither loaded nor dead-lettered (the text says whether the stub
   stored it, see check 4, and what the ICC last did with it), unless it is
   still on the queue [``undelivered``]; [``double_ingested``] one per extra
   ledger row of a message (not counted again by check 3);
2. [``unrecorded``] no message is loaded that KA did not record;
3. per supplier the ledger is in KA's order (its sequence), and every
   exception is explained by a gap row [``unexplained``]: a row loaded below a
   sequence already loaded (counted in ``out_of_order`` whether explained or
   not) needs a ``gap`` row covering its sequence from an earlier load; a
   skipped sequence needs a ``gap`` row of the row that skipped it; a credit
   loaded before the invoice KA recorded with its correlation id needs a
   ``credit_before_invoice`` row; the ``late`` mark must say whether the row
   was overtaken; the ledger's sequence must be KA's;
4. [``unloaded``] nothing stored is left without a ledger row at the end;
5. [``bad_dead_letter``] every dead letter names its cause: a code of the
   catalogue (``b2b-dlq-code``, or ActiveMQ's own ``dlqDeliveryFailureCause``
   for BROKER_REDELIVERY_LIMIT) and a reason that is not empty.

:class:`InvariantReport` has a count per kind, ``out_of_order``,
``dead_lettered`` (code → messages), ``violations``, ``passed`` (no
violations) and ``to_json()`` (a dict ready for ``json.dumps``).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from simulator.kits.invariant_sources import (
    Browsed,
    Fault,
    GapRow,
    LedgerRow,
    QueueBrowser,
    Recorded,
    StubTables,
    dead_letter_queue,
    read_faults,
    read_icc_events,
    read_ka_record,
    read_stub_tables,
)
from simulator.vocabulary.codes import CATALOGUE
from simulator.vocabulary.codes.dead_letters import BROKER_REDELIVERY_LIMIT
from simulator.vocabulary.errors import ConfigError

__all__ = ["KINDS", "InvariantReport", "Violation", "check_invariants"]

#: The kinds of violation, each with a count of its own in the report.
KINDS = (
    "lost",
    "undelivered",
    "double_ingested",
    "unrecorded",
    "unexplained",
    "unloaded",
    "bad_dead_letter",
)
_CODE, _REASON, _AT = "b2b-dlq-code", "b2b-dlq-reason", "b2b-dlq-at-ms"
_BROKER_CAUSE = "dlqDeliveryFailureCause"
_INVOICE, _CREDIT = "SJALVFAKTURA", "KREDIT"


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: which message, whose, what is wrong, and the fault before it."""

    kind: str  # one of KINDS
    message_id: str
    org_number: str
    what: str
    at_ms: int | None = None  # when it showed (a load, a store, the message's last trace)
    fault: dict[str, Any] | None = None  # the faults log's last line at or before at_ms


@dataclass
class InvariantReport:
    run_dir: str
    recorded: int = 0  # distinct messages KA recorded
    loaded: int = 0  # distinct messages in the ledger
    lost: int = 0
    undelivered: int = 0
    double_ingested: int = 0
    unrecorded: int = 0
    out_of_order: int = 0  # ledger rows below a sequence loaded before them
    unexplained: int = 0
    unloaded: int = 0
    bad_dead_letter: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)  # code → messages
    broker_browsed: bool = False
    faults: dict[str, int] = field(default_factory=dict)  # the faults log, by kind
    violations: list[Violation] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        """The report as a dict of JSON types, with ``passed``."""
        return {**asdict(self), "passed": self.passed}


@dataclass(frozen=True, slots=True)
class _DeadLetter:
    message_id: str
    org_number: str
    code: str
    reason: str
    at_ms: int | None


class _Checker:
    def __init__(self, report: InvariantReport, faults: list[Fault]) -> None:
        self.report = report
        self._faults = faults
        self._fault_times = [f.at_ms for f in faults]

    def violate(self, kind: str, message_id: str, org: str, what: str, at_ms: int | None) -> None:
        fault = None
        if at_ms is not None:
            i = bisect.bisect_right(self._fault_times, at_ms)
            fault = self._faults[i - 1].line if i else None
        self.report.violations.append(Violation(kind, message_id, org, what, at_ms, fault))
        setattr(self.report, kind, getattr(self.report, kind) + 1)


def check_invariants(
    run_dir: Path, *, broker_url: str | None, queue: str, faults_log: Path | None
) -> InvariantReport:
    """Check the run in ``run_dir`` (and the broker, if given); see the module's text."""
    if not run_dir.is_dir():
        raise ConfigError(
            f"{run_dir} is not a run directory", hint="give the directory a run or soak wrote"
        )
    dlq = dead_letter_queue(queue)
    recorded = read_ka_record(run_dir / "produced.jsonl")
    events = read_icc_events(run_dir)
    stub = read_stub_tables(run_dir / "supplier-stub.sqlite")
    faults = read_faults(faults_log)
    report = InvariantReport(run_dir=str(run_dir), recorded=len(recorded))
    report.faults = dict(Counter(f.kind for f in faults))
    checker = _Checker(report, faults)
    queued: set[str] = set()
    if broker_url is not None:
        with QueueBrowser(broker_url) as browser:
            letters = [_from_broker(m) for m in browser.messages(dlq)]
            queued = {m.headers.get("b2b-message-id", "") for m in browser.messages(queue)}
        report.broker_browsed = True
    else:
        letters = _from_events(events)
    dead = _check_dead_letters(checker, letters)
    _check_recorded(checker, recorded, stub, events=events, dead=dead, queued=queued)
    _check_unrecorded(checker, recorded, stub)
    _check_order(checker, recorded, stub)
    _check_unloaded(checker, stub)
    return report


# --- dead letters (check 5) -------------------------------------------------
def _int_or_none(text: object) -> int | None:
    try:
        return int(text)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None


def _from_broker(message: Browsed) -> _DeadLetter:
    h = message.headers
    code = h.get(_CODE, "")
    reason = h.get(_REASON, "")
    if not code and h.get(_BROKER_CAUSE):
        code, reason = BROKER_REDELIVERY_LIMIT, h[_BROKER_CAUSE]
    at = _int_or_none(h.get(_AT)) or _int_or_none(h.get("timestamp"))
    ident = h.get("b2b-message-id") or h.get("message-id", "")
    return _DeadLetter(ident, h.get("b2b-org-number", ""), code, reason, at)


def _from_events(events: list[dict[str, Any]]) -> list[_DeadLetter]:
    letters: dict[str, _DeadLetter] = {}
    for e in events:
        if e.get("event") == "dead_lettered":
            ident = str(e.get("message_id") or "")
            letters[ident] = _DeadLetter(
                ident,
                str(e.get("org_number") or ""),
                str(e.get("code") or ""),
                str(e.get("detail") or ""),
                _int_or_none(e.get("at_ms")),
            )
    return list(letters.values())


def _check_dead_letters(checker: _Checker, letters: list[_DeadLetter]) -> dict[str, _DeadLetter]:
    by_code: Counter[str] = Counter()
    dead: dict[str, _DeadLetter] = {}
    for letter in letters:
        if letter.message_id in dead:
            continue  # a duplicate dead letter of one message (a crash before the ack)
        dead[letter.message_id] = letter
        by_code[letter.code or "(none)"] += 1
        wrong = []
        if not letter.code:
            wrong.append(f"has no {_CODE} header (nor ActiveMQ's {_BROKER_CAUSE})")
        elif letter.code not in CATALOGUE:
            wrong.append(f"has the code {letter.code!r}, which is not in the catalogue")
        if not letter.reason.strip():
            wrong.append("gives no reason")
        if wrong:
            checker.violate(
                "bad_dead_letter",
                letter.message_id,
                letter.org_number,
                "the dead letter " + " and ".join(wrong),
                letter.at_ms,
            )
    checker.report.dead_lettered = dict(sorted(by_code.items()))
    return dead


# --- KA's record against the ledger (checks 1 and 2) ------------------------
def _check_recorded(
    checker: _Checker,
    recorded: dict[str, Recorded],
    stub: StubTables,
    *,
    events: list[dict[str, Any]],
    dead: dict[str, _DeadLetter],
    queued: set[str],
) -> None:
    rows: defaultdict[str, list[LedgerRow]] = defaultdict(list)
    for row in stub.ledger:
        rows[row.message_id].append(row)
    checker.report.loaded = len(rows)
    stored = {s.message_id for s in stub.stored}
    last_event: dict[str, dict[str, Any]] = {}
    for e in events:
        last_event[str(e.get("message_id") or "")] = e
    for message_id, rec in recorded.items():
        copies = rows.get(message_id, [])
        for extra in copies[1:]:
            checker.violate(
                "double_ingested",
                message_id,
                rec.org_number,
                f"loaded again at ledger position {extra.position} (first at {copies[0].position})",
                extra.loaded_at_ms,
            )
        if copies or message_id in dead:
            continue
        seen = last_event.get(message_id)
        at = int(seen["at_ms"]) if seen and "at_ms" in seen else rec.produced_at_ms or None
        if message_id in queued:
            checker.violate(
                "undelivered",
                message_id,
                rec.org_number,
                f"sequence {rec.sequence} is still on the queue, neither loaded nor dead-lettered",
                at,
            )
            continue
        trace = f"the ICC's last event: {seen.get('event')}" if seen else "the ICC never saw it"
        if rec.states == {"recorded"}:
            trace = "KA recorded it as about to be sent, never as sent; " + trace
        where = (
            "stored by the supplier but not loaded"
            if message_id in stored
            else "neither stored nor loaded by the supplier"
        )
        checker.violate(
            "lost",
            message_id,
            rec.org_number,
            f"sequence {rec.sequence} ({rec.message_type}) was recorded by KA, {where}, "
            f"and not dead-lettered ({trace})",
            at,
        )


def _check_unrecorded(checker: _Checker, recorded: dict[str, Recorded], stub: StubTables) -> None:
    for row in stub.ledger:
        if row.message_id not in recorded:
            checker.violate(
                "unrecorded",
                row.message_id,
                row.org_number,
                f"loaded at ledger position {row.position} (sequence {row.sequence}), "
                "but KA never recorded it",
                row.loaded_at_ms,
            )


# --- the ledger's order (check 3) -------------------------------------------
def _gives_up(gap: GapRow, first: int, last: int) -> bool:
    """Whether ``gap`` is a ``gap`` row whose missing sequences include first..last."""
    return (
        gap.kind == "gap"
        and gap.first_missing is not None
        and gap.last_missing is not None
        and gap.first_missing <= first
        and last <= gap.last_missing
    )


class _Order:
    """One pass over the ledger in load order, keeping each supplier's highest sequence."""

    def __init__(self, checker: _Checker, recorded: dict[str, Recorded], stub: StubTables) -> None:
        self.checker, self.recorded = checker, recorded
        self.gaps: defaultdict[str, list[GapRow]] = defaultdict(list)
        for gap in stub.gaps:
            self.gaps[gap.org_number].append(gap)
        self.position_of = {row.envelope_id: row.position for row in stub.ledger}
        self.first_load = {row.message_id: row.position for row in reversed(stub.ledger)}
        self.invoices = {
            (r.org_number, r.correlation_id): r.message_id
            for r in recorded.values()
            if r.message_type == _INVOICE and r.correlation_id
        }
        self.top: dict[str, int] = {}

    def unexplained(self, row: LedgerRow, what: str) -> None:
        self.checker.violate("unexplained", row.message_id, row.org_number, what, row.loaded_at_ms)

    def check(self, row: LedgerRow) -> None:
        if self.first_load[row.message_id] < row.position:
            return  # loaded again: check 1's double_ingested
        rec = self.recorded.get(row.message_id)
        if rec is not None and rec.sequence and rec.sequence != row.sequence:
            self.unexplained(row, f"loaded as sequence {row.sequence}, KA recorded {rec.sequence}")
        seq, high = row.sequence, self.top.get(row.org_number, 0)
        if seq <= high:
            self.late(row, high)
        else:
            self.in_order(row, high)
            self.top[row.org_number] = seq
        if rec is not None and rec.message_type == _CREDIT:
            self.credit(row, rec)

    def late(self, row: LedgerRow, high: int) -> None:
        """Below a sequence loaded before: its place was given up by an earlier gap row."""
        self.checker.report.out_of_order += 1
        seq = row.sequence
        if not any(
            _gives_up(g, seq, seq)
            and self.position_of.get(g.envelope_id, row.position) < row.position
            for g in self.gaps[row.org_number]
        ):
            self.unexplained(
                row,
                f"sequence {seq} loaded after sequence {high} with no gap row giving up its place",
            )
        if not row.late:
            self.unexplained(
                row, f"sequence {seq} loaded after sequence {high} but not marked late"
            )

    def in_order(self, row: LedgerRow, high: int) -> None:
        """Next, or past a gap that its own gap row names."""
        seq = row.sequence
        if seq > high + 1 and not any(
            _gives_up(g, high + 1, seq - 1) and g.envelope_id == row.envelope_id
            for g in self.gaps[row.org_number]
        ):
            self.unexplained(
                row,
                f"sequence {seq} loaded after sequence {high}, skipping {high + 1}..{seq - 1} "
                "with no gap row",
            )
        if row.late:
            self.unexplained(row, f"sequence {seq} is marked late, but nothing overtook it")

    def credit(self, row: LedgerRow, rec: Recorded) -> None:
        """A credit loaded before the invoice KA recorded with it needs its own row."""
        invoice = self.invoices.get((row.org_number, rec.correlation_id))
        if invoice is None or self.first_load.get(invoice, row.position + 1) < row.position:
            return
        if not any(
            g.kind == "credit_before_invoice" and g.envelope_id == row.envelope_id
            for g in self.gaps[row.org_number]
        ):
            self.unexplained(
                row,
                f"the credit (sequence {row.sequence}) loaded before its invoice {invoice} "
                "with no credit_before_invoice row",
            )


def _check_order(checker: _Checker, recorded: dict[str, Recorded], stub: StubTables) -> None:
    order = _Order(checker, recorded, stub)
    for row in stub.ledger:
        order.check(row)


# --- the inbox against the ledger (check 4) ---------------------------------
def _check_unloaded(checker: _Checker, stub: StubTables) -> None:
    loaded = {(row.org_number, row.message_id) for row in stub.ledger}
    seen: set[tuple[str, str]] = set()
    for env in stub.stored:
        key = (env.org_number, env.message_id)
        if key in loaded or key in seen:
            continue
        seen.add(key)
        checker.violate(
            "unloaded",
            env.message_id,
            env.org_number,
            f"stored (envelope {env.envelope_id}, sequence {env.sequence}) but never loaded",
            env.received_at_ms,
        )
