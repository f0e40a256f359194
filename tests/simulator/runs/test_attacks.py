"""Tests of simulator.runs.attacks: how an attack's outcome is told."""

from __future__ import annotations

from simulator.runs.attacks import Outcome

ORG = "5520000018"


def test_cut_off_has_no_status() -> None:
    """An attack the server hung up on is told without a status (there was no answer)."""
    told = Outcome("slow-loris", ORG, None, "cut-off", "cut-off").summary()
    assert told == f"attack slow-loris on {ORG}: cut-off (as expected)"


def test_answered_attack_shows_status_and_code() -> None:
    """An answered attack shows its HTTP status and problem code."""
    told = Outcome("xxe", ORG, 400, "XML_DOCTYPE", "XML_DOCTYPE").summary()
    assert told == f"attack xxe on {ORG}: 400 XML_DOCTYPE (as expected)"


def test_unexpected_outcome_says_what_was_wanted() -> None:
    """An outcome other than the documented one is marked UNEXPECTED with the wanted code."""
    told = Outcome("deep", ORG, 200, "accepted", "XML_TOO_DEEP").summary()
    assert told == f"attack deep on {ORG}: 200 accepted (UNEXPECTED, wanted XML_TOO_DEEP)"


def test_error_without_answer_has_no_status() -> None:
    """A client-side error has no status either."""
    told = Outcome("garbage", ORG, None, "error: ClientOSError", "XML_MALFORMED").summary()
    assert "None" not in told
    assert told.endswith(": error: ClientOSError (UNEXPECTED, wanted XML_MALFORMED)")
