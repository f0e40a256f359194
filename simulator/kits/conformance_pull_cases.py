"""The pull plan: the push plan's envelope cases for a puller, and the cases only a puller has.

:data:`PULL_CASES` is every case of :data:`simulator.kits.conformance_cases.CASES`
that is about the envelope, run unchanged through
:class:`~simulator.kits.conformance_pull_kit.PullKit` (an envelope that must
be refused must be listed in the acknowledgement's ``refused`` list; one that
must be accepted acknowledged, not listed), followed by the protocol cases
of the outbox: a lost acknowledgement (503, a dropped connection), 429/503
with ``Retry-After``, the month-end burst (time from served to acknowledged)
and, last because it grades every acknowledgement of the run, acknowledging
only what was fetched.  The push cases about who may connect to the push
endpoint and its content type have no pull form (:data:`PUSH_ONLY`).
docs/conformance.md, "Pull mode", describes each case.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable

from simulator.kits.conformance_cases import CASES
from simulator.kits.conformance_delivery_cases import percentile
from simulator.kits.conformance_grading import Case, Verdict
from simulator.kits.conformance_kit import Kit
from simulator.kits.conformance_outbox import Fault, Item
from simulator.kits.conformance_pull_kit import PullKit
from simulator.vocabulary.errors import ConfigError

__all__ = ["ACCEPTING", "PULL_CASES", "PUSH_ONLY", "REFUSING", "select_pull_cases"]

#: Push cases with no pull form: who may connect to a push endpoint, its content type,
#: and the push burst (the pull plan has its own).
PUSH_ONLY = frozenset(
    {"client-not-icc", "client-foreign-ca", "wrong-content-type", "month-end-burst"}
)
#: Envelope cases whose envelopes must be acknowledged (the rest must be refused).
ACCEPTING = frozenset(
    {
        "valid-order",
        "valid-self-invoice",
        "valid-credit",
        "duplicate",
        "resigned-redelivery",
        "out-of-order",
        "signer-rotated",
    }
)
#: Envelope cases whose envelopes must be listed as refused.
REFUSING = frozenset(c.id for c in CASES if c.id not in PUSH_ONLY | ACCEPTING)
#: The Retry-After the kit asks for, in seconds.
RETRY_AFTER = 2
#: How much earlier than Retry-After a request may come (clock granularity), in seconds.
_EARLY_SLACK = 0.02
_LOST = "a-lost-acknowledgement"
_RETRY = "429-and-503-with-retry-after"
_ONLY_FETCHED = "acknowledge-only-what-you-fetched"
_BURST = "the-month-end-burst-pulled"


def _pull(kit: Kit) -> PullKit:
    assert isinstance(kit, PullKit), "a pull case runs with the pull kit"
    return kit


def _valid_item(kit: PullKit) -> tuple[str, Item]:
    _, invoice, _ = kit.chain()
    envelope = kit.envelope(invoice)
    return envelope.envelope_id, kit.add(kit.sign(envelope))


def _lost_ack(status: int | None) -> Callable[[Kit], Awaitable[Verdict]]:
    how = "a dropped connection" if status is None else f"HTTP {status}"

    async def run(kit: Kit) -> Verdict:
        pk = _pull(kit)
        fault = pk.outbox.fault(Fault("POST", status))
        _, item = _valid_item(pk)
        await pk.outbox.wait(lambda: fault.hit_at is not None, pk.wait)
        if fault.hit_at is None:
            return Verdict(
                False,
                f"not exercised: the puller did not acknowledge within {pk.wait:g} s "
                f"({'it fetched the envelope' if item.served else 'it did not fetch it'})",
            )
        answer = await pk.settle(item)
        fetched_again = item.served > fault.lost.get(item.cursor, item.served)
        if not item.settled:
            if not fetched_again:
                return Verdict(
                    False,
                    f"after its acknowledgement was lost ({how}) the puller neither fetched the "
                    f"envelope again nor repeated the acknowledgement within {pk.wait:g} s: it "
                    "stays in the ICC's outbox, undelivered",
                )
            return Verdict(False, f"fetched again after {how}, but {answer.describe()}")
        if answer.status is None or not 200 <= answer.status < 300:
            return Verdict(False, f"after {how}: {answer.describe()}")
        again = "fetched it again" if fetched_again else "repeated the acknowledgement"
        return Verdict(True, f"ack lost ({how}); the puller {again}: {answer.describe()}")

    return run


def _retry_after(status: int) -> Callable[[Kit], Awaitable[Verdict]]:
    async def run(kit: Kit) -> Verdict:
        pk = _pull(kit)
        fault = pk.outbox.fault(Fault("GET", status, retry_after=RETRY_AFTER))
        _, item = _valid_item(pk)
        await pk.outbox.wait(lambda: fault.hit_at is not None, pk.wait)
        hit = fault.hit_at
        if hit is None:
            return Verdict(False, f"not exercised: the puller made no request within {pk.wait:g} s")
        answer = await pk.settle(item, wait=pk.wait + RETRY_AFTER)
        later = [r.at - hit for r in pk.outbox.requests if r.at > hit]
        if not later:
            return Verdict(
                False,
                f"the puller did not come back within {pk.wait + RETRY_AFTER:g} s after "
                f"HTTP {status} with Retry-After: {RETRY_AFTER}",
            )
        if later[0] < RETRY_AFTER - _EARLY_SLACK:
            return Verdict(
                False,
                f"the next request came {later[0]:.2f} s after HTTP {status} with Retry-After: "
                f"{RETRY_AFTER}, before it elapsed",
            )
        if answer.status is None or not 200 <= answer.status < 300:
            return Verdict(False, f"waited {later[0]:.1f} s, then: {answer.describe()}")
        return Verdict(
            True,
            f"waited {later[0]:.1f} s after HTTP {status} Retry-After: {RETRY_AFTER}, then "
            f"{answer.describe()}",
        )

    return run


async def _burst(kit: Kit) -> Verdict:
    """``burst`` self-billing invoices in the outbox at once; served → acknowledged per envelope."""
    pk = _pull(kit)
    count = kit.target.burst
    items = [_valid_item(pk)[1] for _ in range(count)]
    begin = time.monotonic()
    limit = pk.wait + count * 0.05
    await pk.outbox.wait(lambda: all(i.settled for i in items), limit)
    seconds = max(time.monotonic() - begin, 1e-9)
    acked = [i for i in items if i.settled and i.refusal is None]
    refused = [i for i in items if i.refusal is not None]
    latencies = [
        (i.acked_at - i.served_at) * 1000
        for i in acked
        if i.acked_at is not None and i.served_at is not None
    ]
    if not latencies:
        return Verdict(False, f"none of {count} envelopes was acknowledged within {limit:g} s")
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    metrics = {
        "envelopes": float(count),
        "acknowledged": float(len(acked)),
        "refused": float(len(refused)),
        "seconds": round(seconds, 3),
        "per_second": round(len(acked) / seconds, 1),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
    }
    summary = (
        f"{len(acked)} of {count} acknowledged in {seconds:.1f} s ({len(acked) / seconds:.0f}/s); "
        f"served to acknowledged p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    )
    if refused:
        first = refused[0].refusal
        assert first is not None
        return Verdict(
            False, f"{summary}; {len(refused)} refused, first {first.code}", metrics=metrics
        )
    if len(acked) < count:
        return Verdict(
            False, f"{summary}; {count - len(acked)} not acknowledged in time", metrics=metrics
        )
    problem = await pk.load_problem(*(i.envelope_id for i in items))
    if problem is not None:
        return Verdict(False, f"{summary}; but {problem}", metrics=metrics)
    return Verdict(True, summary, metrics=metrics)


async def _only_fetched(kit: Kit) -> Verdict:
    """Three envelopes served one per page; then every acknowledgement of the run is judged."""
    pk = _pull(kit)
    pk.outbox.page_cap = 1
    try:
        items = [_valid_item(pk)[1] for _ in range(3)]
        await pk.outbox.wait(lambda: all(i.settled for i in items), pk.wait)
    finally:
        pk.outbox.page_cap = None
    violations = pk.outbox.violations
    if violations:
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        return Verdict(False, f"the puller {violations[0]}{more}")
    if pk.outbox.acks == 0:
        return Verdict(False, "not exercised: the puller acknowledged nothing during the run")
    if not all(i.settled for i in items):
        return Verdict(
            False,
            f"not exercised: of three envelopes served one per page (more: true), "
            f"{sum(i.settled for i in items)} were acknowledged within {pk.wait:g} s",
        )
    return Verdict(
        True,
        f"{pk.outbox.acks} acknowledgements, each within what was fetched; every refused "
        "cursor was fetched and within its up_to",
    )


_ACCEPT_FIX = (
    'store it, then acknowledge up to its cursor without listing it in "refused", and load it once'
)
_REFUSE_FIX = (
    'list it in the acknowledgement\'s "refused" list (cursor, envelope_id, code, reason), '
    "with the code a push endpoint would answer"
)


def _for_pull(case: Case) -> Case:
    """A push case as the pull plan runs it: the same, with what a puller changes."""
    if case.id in ACCEPTING:
        fix = _ACCEPT_FIX if case.id.startswith("valid-") else f"{_ACCEPT_FIX}; {case.fix}"
    else:
        fix = f"{_REFUSE_FIX}; {case.fix}"
    return dataclasses.replace(case, fix=fix)


PROTOCOL_CASES: tuple[Case, ...] = (
    Case(
        "lost-ack-503",
        "After an acknowledgement answered 503 the envelope is acknowledged again",
        "the kit answers the puller's acknowledgement 503 and forgets it; the same envelope "
        "is fetched again (or the acknowledgement repeated) and acknowledged",
        "an acknowledgement the ICC did not take leaves the envelope in the outbox: a puller "
        "that moves on anyway never delivers it",
        "advance the saved cursor only after the ICC answered the acknowledgement 204; on any "
        "other answer fetch again from the saved cursor",
        _LOST,
        _lost_ack(503),
    ),
    Case(
        "lost-ack-dropped",
        "After an acknowledgement whose connection dropped the envelope is acknowledged again",
        "the kit drops the connection of the puller's acknowledgement; the same envelope is "
        "fetched again (or the acknowledgement repeated) and acknowledged",
        "a network failure loses the acknowledgement or its answer; only the ICC's 204 says "
        "it was taken",
        "treat a connection error on the acknowledgement as not acknowledged: keep the cursor "
        "and fetch again (the duplicate is acknowledged, not loaded twice)",
        _LOST,
        _lost_ack(None),
    ),
    Case(
        "retry-after-429",
        "A 429 with Retry-After is honoured",
        f"the kit answers a page request 429 with Retry-After: {RETRY_AFTER}; no request comes "
        "before it elapsed, and the puller then fetches and acknowledges",
        "the ICC sheds load at month end; a puller that retries at once adds to the load",
        "on 429 or 503 wait at least Retry-After seconds (when given) before the next request",
        _RETRY,
        _retry_after(429),
    ),
    Case(
        "retry-after-503",
        "A 503 with Retry-After is honoured",
        f"the kit answers a page request 503 with Retry-After: {RETRY_AFTER}; no request comes "
        "before it elapsed, and the puller then fetches and acknowledges",
        "a 503 is the ICC saying when it can answer again, e.g. during a restart",
        "on 429 or 503 wait at least Retry-After seconds (when given) before the next request",
        _RETRY,
        _retry_after(503),
    ),
    Case(
        "month-end-burst",
        "A month-end burst: every envelope is fetched and acknowledged",
        "N self-billing invoices (--burst, default 200) in the outbox at once: every one "
        "acknowledged, none refused; p50/p99 of the time from served to acknowledged reported",
        "at month end the outbox fills with every supplier's invoices at once; a slow puller "
        "leaves them waiting at AF",
        "fetch full pages (limit up to 500), store a page in one transaction, acknowledge it "
        "at once and ask again without waiting while more is true",
        _BURST,
        _burst,
    ),
    Case(
        "ack-only-fetched",
        "The puller acknowledges and refuses only what it fetched",
        "no acknowledgement in the whole run has an up_to beyond the last cursor served, and "
        "every refused cursor was fetched and is within its up_to (three envelopes are served "
        "one per page, more: true, to show it)",
        "an up_to beyond what was fetched removes envelopes the supplier never saw from the "
        "ICC's outbox: they are lost",
        "acknowledge up to the cursor of the last envelope you stored or refused (the page's "
        "next_cursor), never a cursor you computed or did not receive",
        _ONLY_FETCHED,
        _only_fetched,
    ),
)

#: The whole pull plan, in the order it runs.
PULL_CASES: tuple[Case, ...] = (
    *(_for_pull(c) for c in CASES if c.id not in PUSH_ONLY),
    *PROTOCOL_CASES,
)


def select_pull_cases(ids: Iterable[str] | None) -> list[Case]:
    """The pull cases named by ``ids`` (in plan order), or all; ConfigError for unknown ids."""
    if ids is None:
        return list(PULL_CASES)
    wanted = list(ids)
    known = {c.id for c in PULL_CASES}
    unknown = [i for i in wanted if i not in known]
    if unknown:
        push_only = [i for i in unknown if i in PUSH_ONLY]
        raise ConfigError(
            f"unknown pull conformance case(s): {', '.join(unknown)}"
            + (f" ({', '.join(push_only)}: push only)" if push_only else ""),
            hint=f"the pull cases are {', '.join(c.id for c in PULL_CASES)}",
        )
    return [c for c in PULL_CASES if c.id in wanted]
