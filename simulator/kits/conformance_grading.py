"""How a conformance case is graded: :class:`Verdict`, :class:`Case` and the expectations.

A case ends in one of three grades: passed, failed, or **not graded** (the
kit could not test it, e.g. it cannot publish a CRL the endpoint reads);
"not graded" never counts as passed.  Every :class:`Case` names what to
change when it fails (``fix``) and the section of docs/conformance.md that
states its rule (``rule``, an anchor).  The helpers ``expect_*`` turn an
:class:`~simulator.kits.conformance_kit.Answer` into a verdict.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from simulator.kits.conformance_kit import Answer, Kit

__all__ = [
    "DOCS",
    "Case",
    "Grade",
    "Verdict",
    "expect_receipt",
    "expect_refusal",
    "expect_tls_or",
    "is_2xx",
]

#: The guide every case's ``rule`` anchor points into.
DOCS = "docs/conformance.md"


class Grade(enum.Enum):
    """A case's outcome; only PASSED counts as passed."""

    PASSED = "pass"
    FAILED = "fail"
    NOT_GRADED = "not graded"


@dataclass(frozen=True)
class Verdict:
    """A case's grade and the reason, in one line (``metrics``: numbers for the report)."""

    passed: bool
    reason: str
    graded: bool = True
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def not_graded(cls, reason: str) -> Verdict:
        """The kit could not test this case; ``reason`` says why and what would let it."""
        return cls(False, reason, graded=False)

    @property
    def grade(self) -> Grade:
        if not self.graded:
            return Grade.NOT_GRADED
        return Grade.PASSED if self.passed else Grade.FAILED


@dataclass(frozen=True)
class Case:
    """One case of the test plan: what it checks, why, what to change, where the rule is."""

    id: str
    title: str
    checks: str
    why: str
    fix: str  # what the supplier changes when the case fails
    rule: str  # the anchor of the rule's section in docs/conformance.md
    run: Callable[[Kit], Awaitable[Verdict]]

    @property
    def docs(self) -> str:
        """The link to the rule: ``docs/conformance.md#anchor``."""
        return f"{DOCS}#{self.rule}"


def is_2xx(answer: Answer) -> bool:
    return answer.status is not None and 200 <= answer.status < 300


def expect_receipt(answer: Answer, status: str, envelope_id: str) -> Verdict:
    """A 2xx JSON receipt with ``status`` for ``envelope_id``."""
    got = answer.describe()
    if not is_2xx(answer):
        return Verdict(False, f"expected 2xx with a receipt '{status}', got {got}")
    body = answer.json
    if body is None:
        return Verdict(False, f"got {got}, but the body is not a JSON receipt object")
    if body.get("status") != status:
        return Verdict(False, f"expected receipt status {status!r}, got {body.get('status')!r}")
    if "envelope_id" in body and body["envelope_id"] != envelope_id:
        return Verdict(
            False, f"the receipt names envelope {body['envelope_id']!r}, not {envelope_id!r}"
        )
    return Verdict(True, got)


def expect_refusal(answer: Answer, statuses: Iterable[int], what: str, ours: int) -> Verdict:
    """An HTTP refusal with one of ``statuses``; ``what`` says what was refused."""
    allowed = sorted(set(statuses))
    got = answer.describe()
    if answer.status in allowed:
        note = "" if answer.status == ours else f" (our API answers {ours})"
        return Verdict(True, got + note)
    want = f"{allowed[0]}" if len(allowed) == 1 else f"{allowed[0]}-{allowed[-1]}"
    if is_2xx(answer):
        return Verdict(False, f"expected {want}, got {got}: the endpoint took {what}")
    return Verdict(False, f"expected {want}, got {got}")


def expect_tls_or(answer: Answer, statuses: Iterable[int], what: str) -> Verdict:
    """Refused in TLS (no HTTP answer), or with one of ``statuses``."""
    if answer.status is None:
        return Verdict(True, f"refused in TLS ({answer.error})")
    allowed = set(statuses)
    if answer.status in allowed:
        return Verdict(True, answer.describe())
    return Verdict(
        False,
        f"expected a TLS refusal or {'/'.join(map(str, sorted(allowed)))}, "
        f"got {answer.describe()}: the endpoint let in {what}",
    )
