"""The docs' command examples use identifiers the commands accept."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simulator.vocabulary.identifiers import is_valid_org_number

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_ORG_OPTION = re.compile(r"--org-numbers?[ =]+([\d,-]+)")


def _examples() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for match in _ORG_OPTION.finditer(doc.read_text(encoding="utf-8")):
            found += [(doc.name, org) for org in match.group(1).split(",") if org]
    return found


def test_docs_give_org_numbers() -> None:
    """The README and the tutorial show --org-number examples (so the check below checks)."""
    assert {"README.md", "tutorial.md"} <= {doc for doc, _ in _examples()}


@pytest.mark.parametrize(("doc", "org"), _examples())
def test_every_org_number_example_is_valid(doc: str, org: str) -> None:
    """Each organisation number an example passes to --org-number(s) passes the Luhn check."""
    assert is_valid_org_number(org.replace("-", "")), f"{doc}: {org}"
