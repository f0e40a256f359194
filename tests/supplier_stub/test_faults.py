"""The stub's fault injection: rules from a file, re-read when it changes."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from simulator.vocabulary.errors import ConfigError
from supplier_stub.faults import FaultInjector, FaultRule, write_faults

ORG = "5520000018"


class TestFaultRule:
    def test_first_n_then_stops(self) -> None:
        """A rule with first: 2 strikes twice, then never again."""
        rule = FaultRule(kind="status", first=2)
        rng = random.Random(0)
        assert [rule.applies(ORG, 0, rng) for _ in range(4)] == [True, True, False, False]

    def test_org_and_window(self) -> None:
        """A rule for one supplier, within a time window, leaves the rest alone."""
        rule = FaultRule(kind="status", org_number=ORG, from_ms=10, until_ms=20)
        rng = random.Random(0)
        assert rule.applies(ORG, 15, rng)
        assert not rule.applies("5520000000", 15, rng)
        assert not rule.applies(ORG, 25, rng)

    @pytest.mark.parametrize(
        "raw",
        [
            {"kind": "explode"},
            {"kind": "status", "colour": "red"},
            {"kind": "status", "probability": 2},
        ],
    )
    def test_bad_rule(self, raw: dict[str, object]) -> None:
        """An unknown kind, key or an impossible value is a ConfigError."""
        with pytest.raises(ConfigError):
            FaultRule.parse(raw, "faults.json: rules[0]")


class TestFaultInjector:
    def test_counts_survive_adding_a_rule(self, tmp_path: Path) -> None:
        """Adding a rule does not restart the count of a `first: N` rule already there."""
        path = tmp_path / "faults.json"
        write_faults(path, [{"kind": "status", "status": 503, "first": 1}])
        injector = FaultInjector(path)
        first = injector.match(ORG)
        assert first is not None
        assert first.status == 503
        write_faults(
            path,
            [
                {"kind": "status", "status": 503, "first": 1},
                {"kind": "status", "status": 400, "first": 1},
            ],
        )
        os.utime(path, ns=(1, 2))  # a different mtime, whatever the clock's resolution
        second = injector.match(ORG)
        assert second is not None
        assert second.status == 400  # the 503 rule is spent, not restarted
        assert injector.match(ORG) is None

    def test_missing_file_means_no_faults(self, tmp_path: Path) -> None:
        """Without a faults file every request is handled normally."""
        assert FaultInjector(tmp_path / "none.json").match(ORG) is None
