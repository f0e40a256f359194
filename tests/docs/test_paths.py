"""Every source or test path the docs name exists, and so does every test they name.

Docs point at the code and at the test that proves a rule (docs/security.md's
tables, docs/performance.md's method): a move or a rename must carry them along.
A test path may be written relative to ``tests/`` (``simulator/lab/test_pki.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([*(REPO / "docs").glob("*.md"), REPO / "README.md"])
PATH = re.compile(
    r"(?<![\w/.])((?:simulator|tests|supplier_stub|icc_bridge|ka_producer)/[A-Za-z0-9_/]+\.py)"
    r"((?:::[A-Za-z_][A-Za-z0-9_]*)*)"
)


def _resolve(path: str) -> Path | None:
    for candidate in (REPO / path, REPO / "tests" / path):
        if candidate.is_file():
            return candidate
    return None


def _named_paths() -> list[tuple[str, str, str]]:
    found = []
    for doc in DOCS:
        for match in PATH.finditer(doc.read_text(encoding="utf-8")):
            found.append((doc.relative_to(REPO).as_posix(), match.group(1), match.group(2)))
    return found


def test_the_docs_name_paths() -> None:
    """The scan finds what it is meant to find (security.md names its tests)."""
    assert any(doc == "docs/security.md" for doc, _, _ in _named_paths())


@pytest.mark.parametrize("doc", [d.relative_to(REPO).as_posix() for d in DOCS])
def test_every_named_path_and_test_exists(doc: str) -> None:
    missing = []
    for where, path, names in _named_paths():
        if where != doc:
            continue
        target = _resolve(path)
        if target is None:
            missing.append(path)
            continue
        text = target.read_text(encoding="utf-8")
        for name in filter(None, names.split("::")):
            if not re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{name}\b", text, re.M):
                missing.append(f"{path}::{name}")
    assert missing == []
