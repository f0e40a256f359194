"""docs/dlq.md and docs/icc.md agree on which dead-letter code a delivery failure gets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
CODE_CELL = re.compile(r"`(DELIVERY_[A-Z_]+)`")


def rows(doc: str) -> list[tuple[str, str]]:
    """(code, the rest of the row) of each table row of ``doc`` naming a DELIVERY_* code."""
    out = []
    for line in (DOCS / doc).read_text(encoding="utf-8").splitlines():
        if line.startswith("|") and (match := CODE_CELL.search(line)):
            out.append((match.group(1), line.lower()))
    return out


@pytest.mark.parametrize("doc", ["dlq.md", "icc.md"])
def test_a_pin_mismatch_is_dead_lettered_as_gave_up(doc: str) -> None:
    """A certificate other than the pinned one is retried (icc_bridge.delivery), so GAVE_UP."""
    pinned = {code for code, row in rows(doc) if "pinned" in row}
    assert pinned == {"DELIVERY_GAVE_UP"}, f"docs/{doc} says a pin mismatch is {pinned}"


def test_refused_is_only_a_4xx() -> None:
    """DELIVERY_REFUSED is a 4xx other than 408/429 and nothing about certificates.

    The first row naming it is the table of why a dead letter arises; the table
    of causes below it names the code again, by the problem code a 4xx carries.
    """
    refused = next(row for code, row in rows("dlq.md") if code == "DELIVERY_REFUSED")
    assert "4xx" in refused
    assert "certificate" not in refused
