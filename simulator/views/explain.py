"""What each failure means and how to fix it, in plain English.

Reports (HTML, JUnit) explain every failure they show.  A failure is one of:

* an expectation of a scenario that did not hold (keyed by the figure's name,
  e.g. ``lost``; see docs/files.md);
* a dead letter, keyed by its ``b2b-dlq-code`` (docs/dlq.md) and, for the ICC's
  delivery codes, by the cause its reason text tells (:func:`explain_dead_letter`);
* a refusal or an error, keyed by its stable code;
* an attack's outcome that is no code (``cut-off``, ``accepted``, ``duplicate``).

The texts of every code are in the catalogue, simulator.vocabulary.codes: add
an entry there when you add a code.  This module holds the texts of the
figures and the outcomes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from simulator.vocabulary.codes import CATALOGUE
from simulator.vocabulary.codes.dead_letters import DELIVERY_REFUSED, PULL_REFUSED
from simulator.vocabulary.codes.errors import B2BSIM
from simulator.vocabulary.codes.refusals import XML_FORBIDDEN
from simulator.vocabulary.problems import PROBLEMS

__all__ = [
    "CODES",
    "EXPECTATIONS",
    "Explanation",
    "code_of_error",
    "dead_letter_explanations",
    "explain_code",
    "explain_dead_letter",
    "explain_error",
    "explain_expectation",
]


@dataclass(frozen=True, slots=True)
class Explanation:
    key: str  # the code or the figure's name
    title: str  # one line: what happened
    meaning: str  # what it means for the chain
    fix: str  # what to do about it
    cause: str = ""  # the cause's sub-key (or the supplier's problem code) of a dead letter

    def text(self) -> str:
        """The explanation as a short paragraph (for JUnit messages and logs)."""
        return f"{self.title}. What it means: {self.meaning} How to fix it: {self.fix}"


#: An attack's outcome that is no code of the catalogue (simulator.runs.attacks) →
#: (title, meaning, fix).
_OUTCOMES: dict[str, tuple[str, str, str]] = {
    "cut-off": (
        "The receiver hung up on the request",
        "The connection was closed before an answer: what a receiver should do to a client "
        "that sends too slowly (slow-loris) or too much.",
        "If a refusal was expected instead, make the receiver answer with a problem code; if "
        "the cut-off was unexpected, read the receiver's log.",
    ),
    "accepted": (
        "The receiver accepted and stored the request",
        "For an attack this is the worst outcome: a hostile or forged envelope was stored.",
        "Make the receiver run every check in docs/security.md before it stores anything.",
    ),
    "duplicate": (
        "The receiver answered 'duplicate'",
        "It recognised the envelope id as one it already stored and did not store it again: "
        "the right answer to a replayed envelope.",
        "If another answer was expected, deduplicate on the envelope id before storing.",
    ),
}

#: figure → (title, meaning, fix).
_EXPECTATIONS: dict[str, tuple[str, str, str]] = {
    "produced": (
        "KA published another number of messages than the scenario says",
        "The count of distinct messages in produced.jsonl differs from what the steps produce "
        "(suppliers × messages per supplier), so the run did not do what it describes.",
        "If the scenario was edited, update `expect: produced`; otherwise look for a producer "
        "error in the run's output.",
    ),
    "delivered": (
        "The ICC got a receipt for another number of messages than expected",
        "Fewer: some were dead-lettered or never delivered. More than expected: the "
        "expectation is out of date.",
        "Look at the dead letters and the timeline rows without a 'delivered' time.",
    ),
    "ingested": (
        "The supplier loaded another number of messages into its ledger than expected",
        "Messages stopped between the ICC and the ledger: refused, dead-lettered, or still held "
        "for ordering when the run ended.",
        "Find the messages without a 'loaded' time in the timeline and follow them back hop by "
        "hop.",
    ),
    "lost": (
        "Messages were lost",
        "KA produced them, but they were neither loaded by the supplier nor dead-lettered: the "
        "one outcome the chain must never have.",
        "Follow the lost ids in the timeline to the last hop they reached; check that the ICC "
        "acks only after a 2xx and that the broker queue is persistent.",
    ),
    "double_ingested": (
        "Messages were loaded into the ledger more than once",
        "A redelivery or duplicate push was stored as a new message: the supplier would book "
        "the same invoice twice.",
        "Deduplicate on the envelope id (and KA's message id) before loading; answer a repeat "
        "with 200 duplicate.",
    ),
    "dead_lettered": (
        "Another number of messages went to the dead-letter queue than expected",
        "More: messages the scenario expects to flow were refused or given up (their codes are "
        "listed below). Fewer: messages that should have been refused got through.",
        "Read each dead letter's code and reason below; fix the cause and replay.",
    ),
    "redelivered": (
        "The supplier saw another number of duplicate arrivals than expected",
        "Duplicates come from retries after a lost answer, ICC restarts and injected duplicate "
        "pushes; the count shows how often idempotency was exercised.",
        "If the supplier counts none where duplicates were injected, it is not deduplicating "
        "on the envelope id.",
    ),
    "out_of_order": (
        "Messages were loaded out of KA's order",
        "The supplier loaded a message after a later one of the same supplier (by KA's "
        "timestamp, then sequence): an invoice could be booked before its order, or a credit "
        "before its invoice.",
        "Sort each supplier's messages by PRODUCED_AT then SEQUENCE and hold a message until "
        "its predecessor has loaded (docs/supplier.md).",
    ),
}

#: Expectations that count by code: prefix → (what is counted, what to do).
_BY_CODE: dict[str, tuple[str, str]] = {
    "refused": (
        "Another number of attacks got the answer {code} than expected",
        "Each attack must get exactly its documented answer (docs/security.md); compare the "
        "answers in attacks.jsonl of the run directory.",
    ),
    "dead_letter_codes": (
        "Another number of messages were dead-lettered with {code} than expected",
        "See the dead letters listed with their reasons.",
    ),
}

#: Every code this module explains: the catalogue's and the attacks' outcomes.
CODES: frozenset[str] = frozenset(CATALOGUE) | frozenset(_OUTCOMES)
EXPECTATIONS: frozenset[str] = frozenset(_EXPECTATIONS)

_ERROR_CODE = re.compile(r"\berror \[([A-Z0-9_]+)\]")
#: A refusal's reason as the ICC writes it: ``HTTP 421: WRONG_ADDRESSEE`` (the problem code).
_ANSWERED_CODE = re.compile(r"^HTTP (\d{3}): ([A-Z][A-Z0-9_]*)$")
#: A pulled envelope's refusal as the supplier reported it: ``SIGNATURE_INVALID: …``.
_REPORTED_CODE = re.compile(r"^([A-Z][A-Z0-9_]*)(?::|$)")


def explain_code(code: str) -> Explanation:
    """What the error or dead-letter ``code`` means and how to fix it (any code is answered)."""
    entry = CATALOGUE.get(code)
    if entry is not None:
        return Explanation(code, entry.title, entry.meaning, entry.fix)
    outcome = _OUTCOMES.get(code)
    if outcome is not None:
        return Explanation(code, *outcome)
    if code.startswith("XML_"):
        base = CATALOGUE[XML_FORBIDDEN]
        return Explanation(code, base.title, base.meaning, base.fix)
    problem = PROBLEMS.get(code)
    title = problem.title if problem is not None else f"Error {code or '(no code)'}"
    return Explanation(
        code,
        title,
        "There is no explanation for this code yet.",
        "Read the message that came with it, and the run directory's logs.",
    )


def explain_dead_letter(code: str, reason: str) -> Explanation:
    """What a dead letter of ``code`` means, and its fix, for the cause its ``reason`` tells.

    A refusal whose reason is the supplier's problem code (``HTTP 421:
    WRONG_ADDRESSEE``, or a pull supplier's ``SIGNATURE_INVALID: …``) is
    explained by that code's entry; otherwise the first
    of the code's causes (simulator.vocabulary.codes.dead_letters) whose
    pattern is found in the reason; else the code's own texts.
    """
    entry = CATALOGUE.get(code)
    if entry is None:
        return explain_code(code)
    answered = _ANSWERED_CODE.match(reason.strip())
    problem = CATALOGUE.get(answered.group(2)) if answered and code == DELIVERY_REFUSED else None
    reported = _REPORTED_CODE.match(reason.strip()) if code == PULL_REFUSED else None
    problem = CATALOGUE.get(reported.group(1)) if reported else problem
    if problem is not None:
        return Explanation(
            code,
            f"{entry.title}: it answered {problem.code} ({problem.title})",
            problem.meaning,
            f"{problem.fix} Then replay the dead letters with b2bsim dlq replay --all.",
            cause=problem.code,
        )
    for cause in entry.causes:
        if re.search(cause.pattern, reason, re.IGNORECASE):
            title = f"{entry.title}: {cause.title[:1].lower()}{cause.title[1:]}"
            return Explanation(code, title, cause.meaning, cause.fix, cause=cause.key)
    return Explanation(code, entry.title, entry.meaning, entry.fix)


def dead_letter_explanations(dead_letters: Iterable[Mapping[str, Any]]) -> list[Explanation]:
    """One explanation per distinct cause among ``dead_letters`` (code, then cause order).

    Each dead letter is a mapping with ``code`` and ``reason`` (Reconciliation's).
    """
    seen: dict[tuple[str, str], Explanation] = {}
    for d in dead_letters:
        x = explain_dead_letter(str(d.get("code") or ""), str(d.get("reason") or ""))
        seen.setdefault((x.key, x.cause), x)
    return [seen[k] for k in sorted(seen)]


def explain_expectation(
    name: str, expected: int, actual: int, dead_letters: Iterable[Mapping[str, Any]] = ()
) -> Explanation:
    """Why the figure ``name`` being ``actual`` instead of ``expected`` matters.

    Besides the figures, a name may count by code: ``refused.CODE`` (attacks
    the supplier refused with CODE) and ``dead_letter_codes.CODE``; the latter
    is explained by the cause of the run's ``dead_letters`` of CODE, if they
    have one cause.
    """
    kind, _, code = name.partition(".")
    if code and kind in _BY_CODE:
        what, fix = _BY_CODE[kind]
        causes = dead_letter_explanations(d for d in dead_letters if d.get("code") == code)
        x = causes[0] if len(causes) == 1 else explain_code(code)
        return Explanation(
            name,
            f"{what.format(code=code)} (expected {expected}, got {actual})",
            f"{code}: {x.title}. {x.meaning}",
            f"{fix} {x.fix}",
        )
    title, meaning, fix = _EXPECTATIONS.get(
        name,
        (
            f"The figure {name!r} is not what the scenario expects",
            "The run's reconciliation disagrees with the scenario's `expect` block.",
            "Compare the figures with docs/files.md and the timeline.",
        ),
    )
    return Explanation(name, f"{title} (expected {expected}, got {actual})", meaning, fix)


def code_of_error(error: str) -> str:
    """The code in a run error line such as ``error [RUN_TIMEOUT]: …`` ("" if none)."""
    match = _ERROR_CODE.search(error)
    return match.group(1) if match else ""


def explain_error(error: str) -> Explanation:
    """The explanation of a run's error line (B2BSimError.one_line())."""
    return explain_code(code_of_error(error) or B2BSIM)
