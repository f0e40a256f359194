"""The cases of ``b2bsim conformance --icc``: scripts for the harness, and their grading.

Each case publishes its own message(s) on KA's queue, scripts the harness's
answers to them (simulator/kits/icc_harness.py), waits for what the ICC does
and grades it; the last two grade every envelope that arrived in the run.
A case in which the ICC did nothing the harness could see is not graded
(never a pass).  Every case's rule is a section of docs/conformance.md,
"Grading an ICC"; :data:`ICC_CASES` is the order they run in.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from simulator.kits.conformance_grading import DOCS, Verdict
from simulator.kits.icc_harness import ENVELOPES_PATH, Mode, Reply
from simulator.kits.icc_harness_grading import (
    gaps,
    grade_fields,
    grade_signatures,
    same_envelope_id,
)
from simulator.kits.icc_harness_trial import Trial
from simulator.vocabulary.errors import ConfigError

__all__ = ["ICC_CASES", "MIN_GAP", "IccCase", "select_icc_cases"]

#: The shortest wait before a retry that still counts as a backoff (seconds).
MIN_GAP = 0.05
#: How much earlier than Retry-After a retry may come (clock granularity, seconds).
RETRY_AFTER_SLACK = 0.1
#: Where the moved case says the endpoint went.
MOVED_PATH = "/b2b/moved"


@dataclass(frozen=True)
class IccCase:
    """One case: what it checks, why, what to change in the ICC, where the rule is."""

    id: str
    title: str
    checks: str
    why: str
    fix: str
    run: Callable[[Trial], Awaitable[Verdict]]

    @property
    def docs(self) -> str:
        """The link to its rule: the section of docs/conformance.md named by its id."""
        return f"{DOCS}#{self.id}"


async def _scripted(trial: Trial, *replies: Reply, first_counts: bool = True) -> str:
    """Publish one message, answer its attempts by ``replies``, wait until delivered or idle.

    ``first_counts=False``: the first attempt's late answer (after the ICC gave up) is
    not a delivery.
    """
    h, t = trial.harness, trial.target
    (mid,) = await trial.publish(replies=replies)

    def done() -> bool:
        later = h.attempts(mid)[0 if first_counts else 1 :]
        return any(a.answer is not None and 200 <= a.answer < 300 for a in later)

    await h.settle([mid], done=done, idle=t.timeout)
    return mid


def _retried(trial: Trial, mid: str, after: str, *, need: int = 2) -> Verdict | None:
    """None if the ICC retried ``mid`` (``need`` attempts, one envelope id), else a verdict."""
    attempts = trial.harness.attempts(mid)
    if not attempts:
        return Verdict.not_graded(
            f"no attempt arrived within {trial.target.timeout:g} s: is the ICC consuming "
            f"{trial.target.queue}, with the registry entry printed at the start?"
        )
    if len(attempts) < need:
        return Verdict(
            False,
            f"{len(attempts)} attempt(s), then nothing for {trial.target.timeout:g} s: "
            f"after {after} the ICC must try again",
        )
    if (why := same_envelope_id(attempts)) is not None:
        return Verdict(False, why)
    if not trial.harness.delivered(mid):
        return Verdict(False, f"{len(attempts)} attempts, but none after the script was answered")
    return None


async def _retry_503(trial: Trial) -> Verdict:
    mid = await _scripted(trial, Reply(503), Reply(503), Reply(503))
    if (verdict := _retried(trial, mid, "a 503", need=4)) is not None:
        return verdict
    waits = gaps(trial.harness.attempts(mid)[:4])
    shown = ", ".join(f"{w:.2f}" for w in waits)
    metrics = {f"wait_{i}_s": round(w, 3) for i, w in enumerate(waits, 1)}
    if min(waits) < MIN_GAP:
        return Verdict(
            False, f"waits {shown} s: a retry came at once, without backoff", metrics=metrics
        )
    if waits[-1] <= waits[0]:
        return Verdict(False, f"waits {shown} s: they do not grow (no backoff)", metrics=metrics)
    return Verdict(True, f"retried after waits of {shown} s, same envelope id", metrics=metrics)


async def _retry_after(trial: Trial) -> Verdict:
    after = trial.target.retry_after
    mid = await _scripted(trial, Reply(429, headers={"Retry-After": f"{after:g}"}))
    if (verdict := _retried(trial, mid, "a 429")) is not None:
        return verdict
    (wait,) = gaps(trial.harness.attempts(mid)[:2])
    metrics = {"wait_s": round(wait, 3)}
    if wait < after - RETRY_AFTER_SLACK:
        return Verdict(
            False, f"retried {wait:.2f} s after a 429 with Retry-After: {after:g}", metrics=metrics
        )
    return Verdict(
        True, f"waited {wait:.2f} s (Retry-After: {after:g}), same envelope id", metrics=metrics
    )


async def _timeout_retry(trial: Trial) -> Verdict:
    h, t = trial.harness, trial.target
    hold = t.icc_timeout + 1.5
    mid = await _scripted(trial, Reply(201, delay=hold), first_counts=False)
    if (verdict := _retried(trial, mid, f"no answer for {hold:g} s")) is not None:
        if verdict.graded and len(h.attempts(mid)) == 1:
            return Verdict(
                False,
                f"{verdict.reason} (the ICC's request timeout is {t.icc_timeout:g} s, "
                "--icc-request-timeout: if it waits longer, pass its real timeout)",
            )
        return verdict
    answered = [a for a in h.attempts(mid)[1:] if a.receipt is not None]
    if not answered or answered[0].receipt != "duplicate":
        return Verdict(False, "the retry after the timeout was not answered as a duplicate")
    count = len(h.attempts(mid))
    await h.wait(lambda: len(h.attempts(mid)) > count, t.quiet)
    extra = len(h.attempts(mid)) - count
    if extra:
        return Verdict(False, f"{extra} more attempt(s) after the 200 duplicate receipt")
    return Verdict(
        True,
        f"retried after {t.icc_timeout:g} s without an answer, with the same envelope id, "
        "and took the 200 duplicate receipt as delivered",
    )


async def _reset(trial: Trial) -> Verdict:
    mid = await _scripted(trial, Reply(reset=True))
    if (verdict := _retried(trial, mid, "a connection reset")) is not None:
        return verdict
    return Verdict(True, "retried after the reset, with the same envelope id")


async def _refused_in_tls(trial: Trial, mode: Mode, what: str) -> Verdict:
    """The server presents ``mode``; the ICC must send no request; then back to normal."""
    h, t = trial.harness, trial.target
    since = time.monotonic()
    h.set_mode(mode)
    try:
        (mid,) = await trial.publish()
        await h.wait(lambda: h.connections_in(mode, since) >= 1, t.timeout)
        await h.wait(lambda: h.connections_in(mode, since) >= 2 or h.delivered(mid), t.quiet)
    finally:
        h.set_mode(Mode.GOOD)
    tried = h.connections_in(mode, since)
    sent = [s for s in h.seen if s.mode is mode]
    # Let a retrying ICC deliver it now, so that the next case's messages are not behind it.
    await h.settle([mid], done=lambda: h.delivered(mid), idle=t.timeout)
    if tried == 0:
        return Verdict.not_graded(f"the ICC opened no connection within {t.timeout:g} s")
    if sent:
        s = sent[0]
        return Verdict(
            False,
            f"the ICC sent a request to {s.path} ({s.size} bytes) to a server presenting {what}",
        )
    return Verdict(True, f"{tried} connection(s) to a server presenting {what}; no request sent")


async def _pin(trial: Trial) -> Verdict:
    what = f"{Mode.WRONG_CERT.value} (SHA-256 {trial.wrong_sha256[:16]}…)"
    return await _refused_in_tls(trial, Mode.WRONG_CERT, what)


async def _tls(trial: Trial) -> Verdict:
    verdict = await _refused_in_tls(trial, Mode.OLD_TLS, Mode.OLD_TLS.value)
    if not verdict.passed:
        return verdict
    old = sorted({s.tls_version or "none" for s in trial.harness.seen} - {"TLSv1.2", "TLSv1.3"})
    if old:
        return Verdict(False, f"requests arrived over {', '.join(old)}")
    foreign = sum(1 for s in trial.harness.seen if not s.client_is_icc)
    if foreign:
        return Verdict(False, f"{foreign} request(s) without the ICC's client certificate")
    versions = sorted({s.tls_version or "" for s in trial.harness.seen})
    return Verdict(True, f"{verdict.reason}; every request over {', '.join(versions)}")


async def _moved(trial: Trial) -> Verdict:
    h, t = trial.harness, trial.target
    location = h.url.replace(ENVELOPES_PATH, MOVED_PATH)
    (mid,) = await trial.publish(replies=[Reply(308, headers={"Location": location})])
    await h.wait(lambda: bool(h.attempts(mid)), t.timeout)
    attempts = h.attempts(mid)
    if not attempts:
        return Verdict.not_graded(f"no attempt arrived within {t.timeout:g} s")
    await h.wait(lambda: len(h.attempts(mid)) > 1, t.quiet)
    attempts = h.attempts(mid)
    if any(a.path == MOVED_PATH for a in attempts):
        return Verdict(False, f"the ICC followed the 308 to {location}, a URL not registered")
    if len(attempts) > 1:
        return Verdict(False, f"the ICC retried the 308 {len(attempts) - 1} time(s)")
    return Verdict(True, "answered 308: the ICC neither followed nor retried it")


async def _order(trial: Trial) -> Verdict:
    h, t = trial.harness, trial.target
    mids = await trial.publish(4, replies=[Reply(201, delay=0.3)])
    await h.settle(mids, done=lambda: all(h.delivered(m) for m in mids), idle=t.timeout)
    firsts = [h.attempts(m)[0] if h.attempts(m) else None for m in mids]
    if any(f is None for f in firsts):
        missing = sum(1 for f in firsts if f is None)
        return Verdict.not_graded(f"{missing} of the 4 messages never arrived")
    arrived = sorted(range(4), key=lambda i: firsts[i].at)  # type: ignore[union-attr]
    if arrived != list(range(4)):
        order = ", ".join(str(i + 1) for i in arrived)
        return Verdict(False, f"KA published 1, 2, 3, 4; they arrived {order}")
    for i in range(1, 4):
        before, now = firsts[i - 1], firsts[i]
        assert before is not None
        assert now is not None
        if before.answered_at is None or now.at < before.answered_at:
            return Verdict(False, f"message {i + 1} arrived before message {i} was answered")
    return Verdict(True, "4 messages one after the other, in KA's order")


async def _signature(trial: Trial) -> Verdict:
    return grade_signatures(trial.harness.seen, trial.ca_pem)


async def _fields(trial: Trial) -> Verdict:
    return grade_fields(
        trial.harness.seen,
        trial.published,
        ca_pem=trial.ca_pem,
        url=trial.harness.url,
        cert_sha256=trial.cert_sha256,
    )


ICC_CASES: tuple[IccCase, ...] = (
    IccCase(
        "icc-retry-backoff",
        "503, 503, 503, then 201",
        "the ICC retries a 5xx with growing waits and the same envelope id",
        "a supplier's short outage must not lose or duplicate a message",
        "retry 408, 429, 5xx and connection errors with exponential backoff, same envelope",
        _retry_503,
    ),
    IccCase(
        "icc-retry-after",
        "429 with Retry-After",
        "the ICC waits at least Retry-After before it tries again",
        "a supplier that asks for room must get it, or the ICC makes the overload worse",
        "honour Retry-After (seconds) on 429 and 503",
        _retry_after,
    ),
    IccCase(
        "icc-timeout",
        "an answer later than the ICC's timeout",
        "the ICC retries a request that timed out, with the same envelope id, and takes "
        "the duplicate receipt as delivered",
        "the first request may have been stored: only the same envelope id makes it safe",
        "retry a timeout with the same envelope; take 200 duplicate as delivered",
        _timeout_retry,
    ),
    IccCase(
        "icc-reset",
        "a connection reset",
        "the ICC retries after the connection is reset, same envelope id",
        "networks drop connections; a reset is not a refusal",
        "treat a reset like any connection error: retry with backoff",
        _reset,
    ),
    IccCase(
        "icc-pin",
        "a server certificate the ICC must not trust",
        "with a certificate other than the registered one, the ICC sends no byte",
        "an envelope must reach only the supplier it is addressed to",
        "pin the supplier's registered certificate (SHA-256) inside the TLS handshake",
        _pin,
    ),
    IccCase(
        "icc-tls",
        "TLS 1.2 or later, with the ICC's certificate",
        "the ICC refuses a server offering only TLS 1.0/1.1, and every request comes over "
        "TLS 1.2+ with the ICC's client certificate",
        "older TLS versions are broken; the supplier knows the ICC by its certificate",
        "set the client's minimum TLS version to 1.2 and present the ICC's certificate",
        _tls,
    ),
    IccCase(
        "icc-moved",
        "a moved URL (308)",
        "the ICC does not follow a redirect, nor retry it",
        "the registry is the only source of a supplier's URL; a redirect could send an "
        "envelope where it is not addressed",
        "do not follow 3xx: dead-letter it with the new location, and update the registry",
        _moved,
    ),
    IccCase(
        "icc-order",
        "per-supplier order",
        "a supplier's messages arrive one at a time, in KA's order",
        "the supplier loads in order; overlapping deliveries can overtake each other",
        "deliver one supplier's messages one after the other, in the broker's order",
        _order,
    ),
    IccCase(
        "icc-signature",
        "the signature's shape and algorithms",
        "every envelope carries one enveloped XML signature with SHA-2 algorithms, by the "
        "ICC's certificate from the AF CA",
        "the supplier verifies before it reads; anything else is refused",
        "sign as docs/envelope.md says: ECDSA-SHA256, exclusive C14N, the ICC's certificate",
        _signature,
    ),
    IccCase(
        "icc-envelope-fields",
        "the envelope's AF fields",
        "every envelope names the message, the supplier, its URL and pin as KA and the "
        "registry say",
        "the supplier checks the addressee and sorts by KA's sequence",
        "fill the AF fields of docs/envelope.md from KA's headers and the registry entry",
        _fields,
    ),
)


def select_icc_cases(ids: Sequence[str] | None) -> tuple[IccCase, ...]:
    """All cases, or those named (in the run order); ConfigError for an unknown id."""
    if not ids:
        return ICC_CASES
    known = {c.id for c in ICC_CASES}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ConfigError(
            f"unknown ICC case(s): {', '.join(unknown)}",
            hint=f"use one of {', '.join(sorted(known))} (b2bsim conformance --icc --list)",
        )
    return tuple(c for c in ICC_CASES if c.id in ids)
