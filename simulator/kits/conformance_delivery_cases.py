"""Conformance cases about delivery as production does it: redelivery, freshness, input, load.

:data:`REDELIVERY_CASES`: the envelope the ICC re-sends after a crash (same
envelope id and document, a new signature and creation time) is a
duplicate.  :data:`FRESHNESS_CASES`: an envelope made far from now (an hour
ahead, a day ago) is refused.  :data:`HOSTILE_CASES`: XXE, an external DTD,
the wrong content type and an oversized body are refused.
:data:`LOAD_CASES`: the month-end burst, graded on receipts, with their
latencies in the result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Awaitable, Callable

from simulator.kits.conformance_grading import (
    Case,
    Verdict,
    expect_receipt,
    expect_refusal,
    is_2xx,
)
from simulator.kits.conformance_kit import Kit
from simulator.runs.attacks import HOSTILE_BODIES
from simulator.vocabulary.messages import now_ms

__all__ = [
    "BURST_IN_FLIGHT",
    "FRESHNESS_CASES",
    "HOSTILE_CASES",
    "LOAD_CASES",
    "REDELIVERY_CASES",
    "percentile",
]

#: AF's peak towards one supplier: month end runs two competing ICC workers, and each
#: delivers one supplier's envelopes one at a time (its lane), so two are in flight.
BURST_IN_FLIGHT = 2
_HOUR_MS = 3600_000
_DUPLICATES = "duplicates-and-redeliveries"
_FRESHNESS = "freshness-and-replays"
_HOSTILE = "hostile-input"
_BURST = "the-month-end-burst"


async def _resigned_redelivery(kit: Kit) -> Verdict:
    """The ICC crashed after sending: it wraps and signs the same message again, later."""
    original = kit.envelope(kit.order(), created_at_ms=now_ms() - 30_000)
    first = await kit.post(kit.sign(original))
    if not is_2xx(first):
        return Verdict(False, f"the first delivery was not accepted: {first.describe()}")
    again = dataclasses.replace(original, created_at_ms=now_ms())
    second = await kit.post(kit.sign(again))
    verdict = expect_receipt(second, "duplicate", original.envelope_id)
    if second.status == 409:
        return Verdict(
            False,
            f"{verdict.reason}: the endpoint calls the ICC's redelivery after a crash a "
            "conflict, which dead-letters that message in production",
        )
    return verdict


async def _timestamp_future(kit: Kit) -> Verdict:
    envelope = kit.envelope(kit.order(), created_at_ms=now_ms() + _HOUR_MS)
    return expect_refusal(
        await kit.post(kit.sign(envelope)),
        range(400, 500),
        "an envelope created an hour in the future",
        422,
    )


async def _replay_after_a_day(kit: Kit) -> Verdict:
    envelope = kit.envelope(kit.order(), created_at_ms=now_ms() - 24 * _HOUR_MS)
    return expect_refusal(
        await kit.post(kit.sign(envelope)),
        range(400, 500),
        "an envelope created 24 hours ago",
        422,
    )


def _hostile(body: bytes, what: str, ours: int) -> Callable[[Kit], Awaitable[Verdict]]:
    async def run(kit: Kit) -> Verdict:
        answer = await kit.post(body)
        if "root:" in answer.text:  # /etc/passwd came back: the entity was resolved
            return Verdict(False, f"got {answer.describe()} with a local file in the answer")
        return expect_refusal(answer, range(400, 500), what, ours)

    return run


async def _wrong_content_type(kit: Kit) -> Verdict:
    raw = kit.sign(kit.envelope(kit.order()))
    return expect_refusal(
        await kit.post(raw, content_type="text/plain"),
        range(400, 500),
        "a body sent as text/plain",
        415,
    )


def percentile(values: list[float], pct: int) -> float:
    """The ``pct``-th percentile (1-99) of ``values`` (inclusive method); the value if only one."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


async def _month_end_burst(kit: Kit) -> Verdict:
    """``target.burst`` self-billing invoices, BURST_IN_FLIGHT at a time, back to back."""
    count = kit.target.burst
    bodies = []
    for _ in range(count):
        _, invoice, _ = kit.chain()
        envelope = kit.envelope(invoice)
        bodies.append((envelope.envelope_id, kit.sign(envelope)))
    latencies: list[float] = []
    problems: list[str] = []
    queue = list(reversed(bodies))

    async def worker() -> None:
        while queue:
            envelope_id, raw = queue.pop()
            begin = time.monotonic()
            answer = await kit.post(raw)
            latencies.append((time.monotonic() - begin) * 1000)
            verdict = expect_receipt(answer, "accepted", envelope_id)
            if not verdict.passed:
                problems.append(verdict.reason)

    begin = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(BURST_IN_FLIGHT)))
    seconds = max(time.monotonic() - begin, 1e-9)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    accepted = count - len(problems)
    metrics = {
        "envelopes": float(count),
        "accepted": float(accepted),
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds, 1),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
    }
    summary = (
        f"{accepted} of {count} accepted in {seconds:.1f} s ({count / seconds:.0f}/s, "
        f"{BURST_IN_FLIGHT} in flight); receipts p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    )
    if problems:
        return Verdict(False, f"{summary}; first problem: {problems[0]}", metrics=metrics)
    return Verdict(True, summary, metrics=metrics)


REDELIVERY_CASES: tuple[Case, ...] = (
    Case(
        "resigned-redelivery",
        "The ICC's redelivery after a crash (re-signed, later) is a duplicate",
        "the same envelope id and document with a new signature and creation time: "
        "2xx and a receipt 'duplicate', not 409",
        "after a crash the ICC wraps and signs the message again; a 409 dead-letters it",
        "decide duplicate or conflict on the document (the UBL payload), never on the raw "
        "bytes, the signature or CreationDateAndTime",
        _DUPLICATES,
        _resigned_redelivery,
    ),
)
FRESHNESS_CASES: tuple[Case, ...] = (
    Case(
        "timestamp-future",
        "An envelope created an hour in the future is refused",
        "4xx (our API: 422 ENVELOPE_STALE) when CreationDateAndTime is 1 h ahead",
        "a timestamp outside the window is a skewed clock or a forged envelope",
        "refuse an envelope whose CreationDateAndTime is further than your window from your "
        "clock, either way (600 s is sensible; it must exceed the ICC's 300 s retries)",
        _FRESHNESS,
        _timestamp_future,
    ),
    Case(
        "replay-after-a-day",
        "An envelope replayed after a day is refused",
        "4xx (our API: 422 ENVELOPE_STALE) for a validly signed envelope created 24 h ago "
        "whose id the endpoint has not seen",
        "a captured envelope replayed later must not be booked, even once the id is forgotten",
        "apply the time window to every pushed envelope, and keep envelope ids at least as "
        "long as the window",
        _FRESHNESS,
        _replay_after_a_day,
    ),
)
HOSTILE_CASES: tuple[Case, ...] = (
    Case(
        "xxe-external-entity",
        "An external entity (XXE) is refused and never read",
        "4xx (our API: 400 XML_DOCTYPE) for a DOCTYPE declaring a SYSTEM entity on a local "
        "file; the file's content never comes back",
        "resolving entities leaks the endpoint's files and reaches its network",
        "parse with entity resolution, DTD loading and network access off; refuse any DOCTYPE",
        _HOSTILE,
        _hostile(HOSTILE_BODIES["xxe"], "a document with an external entity", 400),
    ),
    Case(
        "external-dtd",
        "A document with an external DTD is refused",
        "4xx (our API: 400 XML_DOCTYPE) for a DOCTYPE naming an external DTD",
        "fetching a DTD lets anyone make the endpoint open connections",
        "refuse any DOCTYPE; never load a DTD",
        _HOSTILE,
        _hostile(HOSTILE_BODIES["external-dtd"], "a document with an external DTD", 400),
    ),
    Case(
        "wrong-content-type",
        "A body that is not application/xml is refused",
        "4xx (our API: 415 UNSUPPORTED_MEDIA_TYPE) for a signed envelope sent as text/plain",
        "the ICC always sends application/xml; anything else is not the ICC",
        "accept only Content-Type application/xml; else 415",
        _HOSTILE,
        _wrong_content_type,
    ),
    Case(
        "oversized-body",
        "An oversized body is refused",
        "4xx (our API: 413 BODY_TOO_LARGE) for a 3 MiB body; not 5xx, not accepted",
        "an unbounded body exhausts memory before any check",
        "limit the request body (our API: 2 MiB; an envelope is tens of kB) and answer 413",
        _HOSTILE,
        _hostile(HOSTILE_BODIES["oversized"], "a 3 MiB body", 413),
    ),
)
LOAD_CASES: tuple[Case, ...] = (
    Case(
        "month-end-burst",
        "A month-end burst: every envelope gets a receipt",
        "N self-billing invoices (--burst, default 200) at AF's peak rate towards one "
        f"supplier ({BURST_IN_FLIGHT} in flight): every one 2xx 'accepted'; p50/p99 reported",
        "at month end AF sends every supplier its invoices at once; a lost receipt is a retry "
        "or a dead letter",
        "answer within the ICC's timeout under load: keep the receipt path short (store, "
        "answer, process later) and size workers and database for the burst",
        _BURST,
        _month_end_burst,
    ),
)
