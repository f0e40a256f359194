"""The stub's fault injection: rules from a file, re-read when it changes."""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path

import pytest

from simulator.vocabulary.errors import ConfigError
from supplier_stub.faults import FaultInjector, FaultRule, set_disk_full, write_faults

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
            {"kind": "disk-full", "org_number": ORG},
            {"kind": "disk-full", "probability": 0.5},
            {"kind": "disk-full", "first": 1},
            {"kind": "disk-full", "status": 507},
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


class DiskSpy:
    """Stands in for the store: records what the injector asks of its database."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    async def __call__(self, full: bool) -> None:
        self.calls.append(full)


class TestDiskFull:
    """The disk-full fault: a state of the stub's database, not an answer to a request."""

    def test_rule_with_a_window_is_valid(self) -> None:
        """disk-full takes only a time window."""
        rule = FaultRule.parse({"kind": "disk-full", "until_ms": 5}, "faults.json: rules[0]")
        assert rule.kind == "disk-full"

    async def test_filled_and_freed_as_the_file_says(self, tmp_path: Path) -> None:
        """The store is told once when the disk fills and once when it is freed; requests
        are not answered by the rule itself (the database refuses them)."""
        path = tmp_path / "faults.json"
        spy = DiskSpy()
        injector = FaultInjector(path, disk_full=spy)
        await injector.apply_disk_full()
        assert spy.calls == []  # no file: nothing to change
        write_faults(path, [{"kind": "delay", "seconds": 0}, {"kind": "disk-full"}])
        await injector.apply_disk_full()
        await injector.apply_disk_full()
        assert spy.calls == [True]
        rule = injector.match(ORG)
        assert rule is not None
        assert rule.kind == "delay"
        os.utime(path, ns=(7, 7))
        write_faults(path, [{"kind": "delay", "seconds": 0}])
        os.utime(path, ns=(7, 7))  # rewritten within one tick of the clock: still seen
        await injector.apply_disk_full()
        assert spy.calls == [True, False]

    async def test_window_ends_without_the_file_changing(self, tmp_path: Path) -> None:
        """A disk-full rule whose window has passed frees the disk."""
        path = tmp_path / "faults.json"
        spy = DiskSpy()
        injector = FaultInjector(path, disk_full=spy)
        write_faults(path, [{"kind": "disk-full", "until_ms": 1}])  # long past
        await injector.apply_disk_full()
        assert spy.calls == []
        write_faults(path, [{"kind": "disk-full", "from_ms": 1}])
        await injector.apply_disk_full()
        assert spy.calls == [True]

    async def test_watch_applies_it_without_a_request(self, tmp_path: Path) -> None:
        """The stub's watcher fills and frees the disk while no request comes."""
        path = tmp_path / "faults.json"
        spy = DiskSpy()
        watch = asyncio.create_task(FaultInjector(path, disk_full=spy).watch(interval=0.01))
        try:
            for wanted in ([True], [True, False]):
                set_disk_full(path, wanted[-1])
                for _ in range(200):
                    if spy.calls == wanted:
                        break
                    await asyncio.sleep(0.01)
                assert spy.calls == wanted
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    def test_only_disk_full_requests_are_refused_by_the_database(self, tmp_path: Path) -> None:
        """A file with only disk-full matches no request."""
        path = tmp_path / "faults.json"
        write_faults(path, [{"kind": "disk-full"}])
        assert FaultInjector(path).match(ORG) is None

    def test_set_disk_full_keeps_the_other_rules(self, tmp_path: Path) -> None:
        """On adds one disk-full rule (never two), off removes it; other rules stay."""
        path = tmp_path / "faults.json"
        write_faults(path, [{"kind": "status", "status": 503}])
        set_disk_full(path, True)
        set_disk_full(path, True)
        kinds = [r["kind"] for r in json.loads(path.read_text())["rules"]]
        assert kinds == ["status", "disk-full"]
        set_disk_full(path, False)
        assert json.loads(path.read_text())["rules"] == [{"kind": "status", "status": 503}]

    def test_set_disk_full_for_a_while(self, tmp_path: Path) -> None:
        """until_ms bounds the fault; no file yet is no rules yet."""
        path = tmp_path / "faults.json"
        set_disk_full(path, True, until_ms=123)
        assert json.loads(path.read_text())["rules"] == [{"kind": "disk-full", "until_ms": 123}]

    def test_set_disk_full_refuses_a_broken_file(self, tmp_path: Path) -> None:
        """A faults file that is not one is a ConfigError, left as it was."""
        path = tmp_path / "faults.json"
        path.write_text("not json")
        with pytest.raises(ConfigError, match="not a faults file"):
            set_disk_full(path, True)
        assert path.read_text() == "not json"
