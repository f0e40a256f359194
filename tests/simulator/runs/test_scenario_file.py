"""Scenario files checked by the JSON Schema: every mistake is one line naming line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.commands.scenario import check_file
from simulator.lab.network import MAX_BROKERS
from simulator.runs.scenario import MAX_SUPPLIERS, Wait, load_scenario
from simulator.runs.scenario_file import schema
from simulator.vocabulary.errors import ScenarioError

REPO = Path(__file__).resolve().parents[3]

GOOD = """\
name: demo
description: one chain per supplier
seed: 7
suppliers:
  count: 2
steps:
  - produce: {chains: 1}
expect:
  lost: 0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path) -> ScenarioError:
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    return err.value


class TestLines:
    def test_mistyped_key_with_a_nested_block_is_reported_at_its_own_line(
        self, tmp_path: Path
    ) -> None:
        """`supliers:` on line 4 with its block below is reported at line 4, not 5."""
        path = write(tmp_path, GOOD.replace("suppliers:", "supliers:"))
        err = refusal(path)
        assert err.message.startswith(f"{path}:4: unknown key 'supliers'")
        assert err.hint == "did you mean 'suppliers'?"
        assert check_file(path)[0].startswith(f"{path}:4: unknown key 'supliers'")

    def test_wrong_nested_block_is_reported_at_its_key(self, tmp_path: Path) -> None:
        """A block that lacks a required key is reported where the block's key is written."""
        path = write(tmp_path, GOOD.replace("  count: 2", "  pull: 1"))
        err = refusal(path)
        assert err.message == f"{path}:4: missing key 'count' (at suppliers)"

    def test_each_line_has_file_line_what_hint_and_key(self, tmp_path: Path) -> None:
        """`scenario check` prints one line per mistake: file:line: what; what to do (at key)."""
        path = write(tmp_path, GOOD.replace("{chains: 1}", "{chains: 1, rate: fast}"))
        (line,) = check_file(path)
        assert line == (
            f"{path}:7: expected a number from 0 to 1000000, got 'fast'; write a number "
            "(at steps[0].produce.rate)"
        )


class TestChoices:
    def test_a_value_of_two_kinds_names_both(self, tmp_path: Path) -> None:
        """`revoke:` takes a supplier number or `icc`; anything else is told both."""
        path = write(tmp_path, GOOD.replace("produce: {chains: 1}", "pki: {revoke: bob}"))
        err = refusal(path)
        assert err.message == (
            f"{path}:7: expected a supplier number or icc, got 'bob' (at steps[0].pki.revoke)"
        )
        assert err.hint == "e.g. `revoke: 2` or `revoke: icc`"

    def test_two_fault_targets_are_one_mistake(self, tmp_path: Path) -> None:
        """A fault naming two targets is told so once, not once per target's keys."""
        step = "fault: {kill: icc, supplier: reset}"
        (line,) = check_file(write(tmp_path, GOOD.replace("produce: {chains: 1}", step)))
        assert "expected exactly one of `kill`, `restart`, `supplier`, `icc` or `poison`" in line
        assert line.endswith(
            "got kill, supplier; e.g. `fault: {supplier: down, seconds: 30}` "
            "or `fault: {kill: icc, times: 3, every: 1}` (at steps[0].fault)"
        )

    def test_a_fault_that_is_no_mapping_is_one_line(self, tmp_path: Path) -> None:
        """A value the schema sees through several branches is reported once."""
        lines = check_file(write(tmp_path, GOOD.replace("produce: {chains: 1}", "fault: 5")))
        assert len(lines) == 1
        assert "expected a mapping, got 5" in lines[0]

    def test_an_empty_wait_waits_the_default(self, tmp_path: Path) -> None:
        """`- wait:` with nothing after it is a wait of 60 s, not a YAML error."""
        path = write(tmp_path, GOOD.replace("produce: {chains: 1}", "wait:"))
        assert load_scenario(path).steps == (Wait(60.0),)


class TestRanges:
    def test_negative_count_says_it_must_be_zero_or_more(self, tmp_path: Path) -> None:
        """A negative expected figure is refused because it is negative, not as 'not whole'."""
        path = write(tmp_path, GOOD.replace("lost: 0", "lost: -1"))
        err = refusal(path)
        assert err.message == (
            f"{path}:9: expected an integer from 0 to 1000000000, got -1 (at expect.lost)"
        )
        assert err.hint == "make it 0 or more"
        assert "whole number" not in str(err)

    def test_zero_chains_says_it_must_be_one_or_more(self, tmp_path: Path) -> None:
        """Where at least one is the rule, the message says 1 or more."""
        path = write(tmp_path, GOOD.replace("{chains: 1}", "{chains: 0}"))
        err = refusal(path)
        assert err.message == (
            f"{path}:7: expected an integer from 1 to 100000, got 0 (at steps[0].produce.chains)"
        )
        assert err.hint == "make it 1 or more"

    def test_too_many_says_the_maximum(self, tmp_path: Path) -> None:
        """Above the maximum, the message names the maximum."""
        path = write(tmp_path, GOOD.replace("count: 2", "count: 6000"))
        err = refusal(path)
        assert err.message == (
            f"{path}:5: expected an integer from 1 to 5000, got 6000 (at suppliers.count)"
        )
        assert err.hint == "make it 5000 or less"

    def test_count_that_is_not_whole_says_so(self, tmp_path: Path) -> None:
        """A count of 1.5 is refused as not a whole number."""
        path = write(tmp_path, GOOD.replace("count: 2", "count: 1.5"))
        err = refusal(path)
        assert err.message == (
            f"{path}:5: expected an integer from 1 to 5000, got 1.5 (at suppliers.count)"
        )
        assert err.hint == "write a whole number"

    def test_not_a_number_is_refused(self, tmp_path: Path) -> None:
        """YAML's .nan and .inf are no numbers of seconds."""
        for value in (".nan", ".inf"):
            err = refusal(write(tmp_path, GOOD.replace("seed: 7", f"timeout: {value}")))
            assert err.message.endswith("(at timeout)"), value


class TestCrossFieldRules:
    @pytest.mark.parametrize(
        ("step", "wanted"),
        [
            ("attack: {kinds: [xxe], supplier: 3}", r":7: expected an integer from 1 to 2, got 3"),
            ("pki: {revoke: 5}", r"from 1 to 2, got 5 \(at steps\[0\]\.pki\.revoke\)"),
            ("pki: {swap: 2, with: 2}", r"a supplier cannot swap with itself"),
        ],
    )
    def test_rules_a_schema_cannot_say(self, tmp_path: Path, step: str, wanted: str) -> None:
        """Supplier numbers stay within `count`; a swap needs another supplier."""
        path = write(tmp_path, GOOD.replace("produce: {chains: 1}", step))
        with pytest.raises(ScenarioError, match=wanted):
            load_scenario(path)
        assert check_file(path)[0].startswith(f"{path}:7: ")

    def test_impossible_retry_policy_is_located(self, tmp_path: Path) -> None:
        """A retry policy whose first delay exceeds its longest is refused at icc.retry."""
        text = GOOD.replace("seed: 7", "icc: {retry: {initial_delay: 5, max_delay: 1}}")
        path = write(tmp_path, text)
        err = refusal(path)
        assert err.message.startswith(f"{path}:3: impossible retry policy")
        assert err.message.endswith("(at icc.retry)")


def test_schema_limits_are_the_codes() -> None:
    """The schema's largest number of suppliers and brokers are the simulator's."""
    top, defs = schema()["properties"], schema()["$defs"]
    assert top["suppliers"]["properties"]["count"]["maximum"] == MAX_SUPPLIERS
    assert top["brokers"]["maximum"] == MAX_BROKERS
    assert defs["kill_broker_fault"]["properties"]["index"]["maximum"] == MAX_BROKERS


def test_docs_example_loads(tmp_path: Path) -> None:
    """The example at the top of docs/scenarios.md is a valid scenario."""
    doc = (REPO / "docs" / "scenarios.md").read_text(encoding="utf-8")
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    scenario = load_scenario(write(tmp_path, example))
    assert (scenario.name, scenario.supplier_count, scenario.pull_count) == (
        "supplier-outage",
        3,
        1,
    )
