"""Scenario files: the language, and errors that name the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.runs.scenario import Produce, Wait, load_scenario
from simulator.vocabulary.errors import ScenarioError

REPO = Path(__file__).resolve().parents[3]

GOOD = """\
name: demo
description: one chain per supplier
seed: 7
timeout: 30
suppliers:
  count: 2
steps:
  - produce: {chains: 2}
  - produce: {type: order, count: 1}
  - wait: {timeout: 10}
expect:
  lost: 0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class TestLoadScenario:
    def test_reads_every_field(self, tmp_path: Path) -> None:
        """A good file gives the steps, seed, suppliers and expectations it states."""
        s = load_scenario(write(tmp_path, GOOD))
        assert (s.name, s.seed, s.timeout, s.supplier_count) == ("demo", 7, 30.0, 2)
        assert s.steps == (Produce(chains=2), Produce(doc_type="order", count=1), Wait(10.0))
        assert s.expect == {"lost": 0}
        assert s.expected_messages == 2 * (3 * 2 + 1)

    def test_library_happy_path_loads(self) -> None:
        """The demo scenario is valid and produces 9 messages."""
        s = load_scenario(REPO / "scenarios" / "happy-path.yaml")
        assert s.expected_messages == 9

    def test_unknown_key_names_line_and_suggests(self, tmp_path: Path) -> None:
        """A misspelt key is reported with its line and the nearest known key."""
        path = write(tmp_path, GOOD.replace("timeout: 30", "timout: 30"))
        with pytest.raises(ScenarioError, match=r"s\.yaml:4: unknown key 'timout'") as err:
            load_scenario(path)
        assert err.value.hint == "did you mean 'timeout'?"

    def test_wrong_type_names_line(self, tmp_path: Path) -> None:
        """A count that is not a number is reported at its line."""
        path = write(tmp_path, GOOD.replace("count: 2", "count: two"))
        with pytest.raises(ScenarioError, match=r"s\.yaml:6: expected an integer"):
            load_scenario(path)

    def test_yaml_syntax_error_names_line(self, tmp_path: Path) -> None:
        """Broken YAML is reported with its line, not a traceback."""
        path = write(tmp_path, "name: x\nsteps: [\n")
        with pytest.raises(ScenarioError, match=r"s\.yaml:\d+: YAML syntax error"):
            load_scenario(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file says so and where to find the library."""
        with pytest.raises(ScenarioError, match="no such scenario file"):
            load_scenario(tmp_path / "nope.yaml")

    def test_unknown_document_type(self, tmp_path: Path) -> None:
        """A document type outside order/invoice/credit is refused with the choices."""
        path = write(tmp_path, GOOD.replace("type: order", "type: receipt"))
        with pytest.raises(ScenarioError, match="unknown document type 'receipt'") as err:
            load_scenario(path)
        assert "order, invoice, credit" in str(err.value.hint)

    def test_missing_required_key(self, tmp_path: Path) -> None:
        """A scenario without steps is refused before anything starts."""
        path = write(tmp_path, "name: x\ndescription: y\n")
        with pytest.raises(ScenarioError, match="missing key 'steps'"):
            load_scenario(path)

    def test_unknown_expectation(self, tmp_path: Path) -> None:
        """Only figures the reconciliation computes can be expected."""
        path = write(tmp_path, GOOD.replace("lost: 0", "vanished: 0"))
        with pytest.raises(ScenarioError, match="unknown key 'vanished'"):
            load_scenario(path)

    def test_a_step_may_say_its_own_text(self, tmp_path: Path) -> None:
        """`say:` beside a step's action is that step's text in the live view."""
        text = GOOD.replace(
            "  - wait: {timeout: 10}\n", "  - wait: {timeout: 10}\n    say: '  Watch it settle. '\n"
        )
        s = load_scenario(write(tmp_path, text))
        assert s.steps[-1] == Wait(10.0, say="Watch it settle.")
        assert s.steps[0].say == ""

    @pytest.mark.parametrize(
        ("step", "message"),
        [
            ("  - say: alone\n", "expected exactly one of `produce`"),
            ("  - {sleep: 1, wait: {timeout: 2}}\n", "got wait, sleep|got sleep, wait"),
            ("  - {sleep: 1, say: ''}\n", "expected text that is not blank"),
        ],
    )
    def test_say_is_text_beside_exactly_one_action(
        self, tmp_path: Path, step: str, message: str
    ) -> None:
        """`say:` alone is no step, nor does it let a step hold two actions."""
        path = write(tmp_path, GOOD.replace("  - wait: {timeout: 10}\n", step))
        with pytest.raises(ScenarioError, match=message):
            load_scenario(path)


class TestKillAtReceipt:
    def test_at_receipt_is_read_and_any_is_the_default(self, tmp_path: Path) -> None:
        from simulator.runs.scenario import KillIcc

        text = GOOD.replace(
            "  - wait: {timeout: 10}\n",
            "  - fault: {kill: icc, times: 2, at: receipt}\n  - fault: {kill: icc}\n"
            "  - wait: {timeout: 10}\n",
        )
        steps = [s for s in load_scenario(write(tmp_path, text)).steps if isinstance(s, KillIcc)]
        assert [s.at for s in steps] == ["receipt", "any"]

    def test_an_unknown_kill_point_names_its_line(self, tmp_path: Path) -> None:
        text = GOOD.replace(
            "  - wait: {timeout: 10}\n",
            "  - fault: {kill: icc, at: ack}\n  - wait: {timeout: 10}\n",
        )
        with pytest.raises(ScenarioError, match=r"s\.yaml:10:.*steps\[2\]\.fault\.at"):
            load_scenario(write(tmp_path, text))
