"""Tests for simulator.views.explain: every failure kind has a plain-English meaning and fix."""

from __future__ import annotations

import importlib

import pytest

from simulator.runs.scenario import EXPECTABLE
from simulator.views.explain import (
    CODES,
    EXPECTATIONS,
    code_of_error,
    explain_code,
    explain_error,
    explain_expectation,
)
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.problems import PROBLEMS

#: The module that defines the error classes (tests/simulator/vocabulary/test_errors.py
#: checks that no other module defines one).
ERROR_MODULES = ("simulator.vocabulary.errors",)
DEAD_LETTER_CODES = ("DELIVERY_REFUSED", "DELIVERY_GAVE_UP", "BROKER_REDELIVERY_LIMIT")


def error_codes() -> set[str]:
    """The code of every B2BSimError subclass the simulator defines."""
    for name in ERROR_MODULES:
        importlib.import_module(name)
    found, todo = set(), [B2BSimError]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo += cls.__subclasses__()
    return found


class TestCoverage:
    def test_every_problem_code(self) -> None:
        """Every problem-details code a receiver may answer is explained."""
        assert set(PROBLEMS) - CODES == set()

    def test_every_error_code(self) -> None:
        """Every error class's stable code is explained."""
        assert error_codes() - CODES == set()

    def test_every_dead_letter_code(self) -> None:
        """The ICC's and the broker's dead-letter codes are explained."""
        assert set(DEAD_LETTER_CODES) <= CODES

    def test_every_expectable_figure(self) -> None:
        """Every figure a scenario may expect is explained."""
        assert set(EXPECTABLE) <= EXPECTATIONS

    @pytest.mark.parametrize("code", sorted(CODES))
    def test_explanations_are_sentences(self, code: str) -> None:
        """Title, meaning and fix are all there, and the fix is not the meaning again."""
        x = explain_code(code)
        assert x.key == code
        assert x.title
        assert x.meaning.endswith(".")
        assert x.fix.endswith(".")
        assert x.fix != x.meaning


class TestExplainExpectation:
    def test_figure(self) -> None:
        """A figure's explanation states expected and actual."""
        x = explain_expectation("out_of_order", 0, 4)
        assert x.title.endswith("(expected 0, got 4)")
        assert "PRODUCED_AT" in x.fix

    def test_counted_by_code(self) -> None:
        """`refused.CODE` explains the code as well as the count."""
        x = explain_expectation("refused.XML_DOCTYPE", 2, 1)
        assert "XML_DOCTYPE" in x.title
        assert "DOCTYPE" in x.meaning
        assert "attacks.jsonl" in x.fix

    def test_unknown_name(self) -> None:
        """An expectation this module does not know still gets an answer."""
        x = explain_expectation("wobbles", 1, 2)
        assert "wobbles" in x.title


class TestExplainError:
    @pytest.mark.parametrize(
        ("line", "code"),
        [
            ("error [RUN_TIMEOUT]: scenario 'x' did not finish within 5 s — hint", "RUN_TIMEOUT"),
            ("error [BROKER_UNREACHABLE]: nothing at stomp://h:1", "BROKER_UNREACHABLE"),
            ("something odd happened", ""),
        ],
    )
    def test_code_of_error(self, line: str, code: str) -> None:
        """The code is read from B2BSimError.one_line()'s form."""
        assert code_of_error(line) == code

    def test_explains_run_error(self) -> None:
        """A run error line is explained by its code."""
        assert explain_error("error [PKI]: no CA").title == explain_code("PKI").title

    def test_unknown_code_uses_problem_title_or_says_so(self) -> None:
        """A code without an entry still gets a title and a way forward."""
        x = explain_code("NO_SUCH_CODE")
        assert "NO_SUCH_CODE" in x.title
        assert x.fix
