"""Tests for simulator.vocabulary.codes: one catalogue, each code written once."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from simulator.vocabulary import errors
from simulator.vocabulary.codes import (
    CATALOGUE,
    CodeEntry,
    Kind,
    dead_letters,
    entry_for,
    refusals,
)
from simulator.vocabulary.codes import errors as error_codes
from simulator.vocabulary.codes.model import table
from simulator.vocabulary.problems import PROBLEMS

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("simulator", "ka_producer", "icc_bridge", "supplier_stub")
SOURCES = ("*.py", "*.js", "*.html", "*.json", "*.yaml")
#: Places where a code's name is written as a string that is not the code.
NOT_A_CODE = {
    ("simulator/commands/run.py", "SCENARIO"),  # the metavar of `b2bsim run`
    # an example value of an expectation in the scenario language's schema
    ("simulator/data/scenario.schema.json", "XML_DOCTYPE"),
}

KINDS: list[tuple[ModuleType, dict[str, CodeEntry], Kind]] = [
    (refusals, refusals.REFUSALS, Kind.REFUSAL),
    (dead_letters, dead_letters.DEAD_LETTERS, Kind.DEAD_LETTER),
    (error_codes, error_codes.ERRORS, Kind.ERROR),
]


def constants(module: ModuleType) -> dict[str, object]:
    """The public upper-case names of ``module`` that are not its table."""
    return {
        name: value
        for name, value in vars(module).items()
        if re.fullmatch(r"[A-Z][A-Z0-9_]*", name) and isinstance(value, str)
    }


class TestTables:
    @pytest.mark.parametrize(("module", "entries", "kind"), KINDS, ids=[k.value for *_, k in KINDS])
    def test_each_constant_is_its_own_name_and_has_an_entry(
        self, module: ModuleType, entries: dict[str, CodeEntry], kind: Kind
    ) -> None:
        """A kind's module: every constant names itself, and constants and entries agree."""
        names = constants(module)
        assert names
        assert all(name == value for name, value in names.items())
        assert set(names) == set(entries)
        assert {e.kind for e in entries.values()} == {kind}

    def test_the_catalogue_is_every_kind(self) -> None:
        """CATALOGUE holds each kind's entries, each once."""
        sizes = sum(len(entries) for _, entries, _ in KINDS)
        assert len(CATALOGUE) == sizes
        assert entry_for("CURSOR_INVALID") is CATALOGUE["CURSOR_INVALID"]
        assert entry_for("NO_SUCH_CODE") is None

    def test_every_entry_has_its_texts(self) -> None:
        """Title, meaning and fix are there for every code."""
        for entry in CATALOGUE.values():
            assert entry.title, entry.code
            assert entry.meaning.endswith("."), entry.code
            assert entry.fix.endswith("."), entry.code

    def test_the_problems_are_the_refusals(self) -> None:
        """problems.PROBLEMS is the refusals, with their status and answer title."""
        assert set(PROBLEMS) == set(refusals.REFUSALS)
        for code, problem in PROBLEMS.items():
            entry = refusals.REFUSALS[code]
            assert (problem.status, problem.title) == (entry.status, entry.problem_title)
        assert PROBLEMS["XML_DOCTYPE"].title != CATALOGUE["XML_DOCTYPE"].title
        assert PROBLEMS["XML_MALFORMED"].title == CATALOGUE["XML_MALFORMED"].title

    def test_every_error_class_code_is_catalogued(self) -> None:
        """Each class of the exception tree carries a code of the catalogue."""
        classes = [c for c in vars(errors).values() if isinstance(c, type)]
        codes = {c.code for c in classes if issubclass(c, errors.B2BSimError)}
        assert len(codes) > 30
        assert codes - set(CATALOGUE) == set()


class TestEntry:
    def test_a_refusal_needs_a_status(self) -> None:
        with pytest.raises(ValueError, match="HTTP status"):
            CodeEntry("X", Kind.REFUSAL, title="t", meaning="m.", fix="f.")

    def test_only_a_refusal_has_a_status(self) -> None:
        with pytest.raises(ValueError, match="HTTP status"):
            CodeEntry("X", Kind.ERROR, title="t", meaning="m.", fix="f.", status=400)

    def test_a_code_given_twice_is_refused(self) -> None:
        entry = CodeEntry("X", Kind.ERROR, title="t", meaning="m.", fix="f.")
        with pytest.raises(ValueError, match="twice"):
            table(entry, entry)

    def test_the_problem_title_falls_back_to_the_title(self) -> None:
        entry = CodeEntry("X", Kind.REFUSAL, title="t", meaning="m.", fix="f.", status=400)
        assert entry.problem_title == "t"


def source_files() -> list[Path]:
    return sorted(
        path
        for package in PACKAGES
        for pattern in SOURCES
        for path in (REPO / package).rglob(pattern)
        if "__pycache__" not in path.parts
    )


class TestWrittenOnce:
    def test_each_code_is_written_as_a_string_once(self) -> None:
        """Outside tests and docs, a code's string literal is only its constant's definition."""
        found: dict[str, list[str]] = {code: [] for code in CATALOGUE}
        quoted = re.compile(r"""["']([A-Z][A-Z0-9_]*)["']""")
        for path in source_files():
            where = path.relative_to(REPO).as_posix()
            for name in quoted.findall(path.read_text(encoding="utf-8")):
                if name in found and (where, name) not in NOT_A_CODE:
                    found[name].append(where)
        wrong = {code: places for code, places in found.items() if len(places) != 1}
        assert wrong == {}

    def test_the_scan_sees_the_catalogue(self) -> None:
        """The scan above reads the kinds' modules, where each code is defined."""
        files = {p.relative_to(REPO).as_posix() for p in source_files()}
        assert "simulator/vocabulary/codes/refusals.py" in files
        assert "supplier_stub/app.py" in files
