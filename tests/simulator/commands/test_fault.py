"""`b2bsim fault`: inject faults into a running chain by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.vocabulary.messages import now_ms
from supplier_stub.faults import FaultInjector


class TestFaultCommand:
    def test_supplier_rules_add_up_and_clear(self, tmp_path: Path) -> None:
        """Each supplier fault adds a rule the stub reads; clear removes them all."""
        faults = tmp_path / "faults.json"
        assert main(["fault", "supplier", "status", "--faults", str(faults), "--first", "2"]) == 0
        assert main(["fault", "supplier", "delay", "--faults", str(faults), "--seconds", "3"]) == 0
        rules = json.loads(faults.read_text())["rules"]
        assert [r["kind"] for r in rules] == ["status", "delay"]
        rule = FaultInjector(faults).match("5520000018")
        assert rule is not None
        assert (rule.kind, rule.status) == ("status", 503)
        assert main(["fault", "supplier", "clear", "--faults", str(faults)]) == 0
        assert json.loads(faults.read_text())["rules"] == []

    def test_supplier_disk_full_on_and_off(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """disk-full --on adds the stub's disk-full rule beside the others; --off removes
        only it; either way the command says whether the disk is full."""
        faults = tmp_path / "faults.json"
        assert main(["fault", "supplier", "reset", "--faults", str(faults)]) == 0
        assert main(["fault", "supplier", "disk-full", "--on", "--faults", str(faults)]) == 0
        assert "disk full" in capsys.readouterr().out.splitlines()[-1]
        rules = json.loads(faults.read_text())["rules"]
        assert [r["kind"] for r in rules] == ["reset", "disk-full"]
        assert FaultInjector(faults).disk_full()
        assert main(["fault", "supplier", "disk-full", "--off", "--faults", str(faults)]) == 0
        assert "disk free" in capsys.readouterr().out.splitlines()[-1]
        assert [r["kind"] for r in json.loads(faults.read_text())["rules"]] == ["reset"]
        assert not FaultInjector(faults).disk_full()

    def test_supplier_disk_full_for_a_while(self, tmp_path: Path) -> None:
        """--for S ends the full disk S seconds from now."""
        faults = tmp_path / "faults.json"
        args = ["fault", "supplier", "disk-full", "--on", "--for", "60", "--faults", str(faults)]
        assert main(args) == 0
        (rule,) = json.loads(faults.read_text())["rules"]
        assert rule["kind"] == "disk-full"
        assert rule["until_ms"] > now_ms() + 50_000

    @pytest.mark.parametrize(
        "args",
        [
            ["disk-full"],  # neither --on nor --off
            ["disk-full", "--on", "--org-number", "5520000018"],
            ["disk-full", "--on", "--probability", "0.5"],
            ["disk-full", "--off", "--first", "3"],
            ["status", "--on"],
        ],
    )
    def test_supplier_disk_full_usage_errors(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
    ) -> None:
        """disk-full needs --on or --off and takes no per-request option; only it takes
        --on/--off. Refused in one line, nothing written."""
        faults = tmp_path / "faults.json"
        assert main(["fault", "supplier", *args, "--faults", str(faults)]) == 2
        assert capsys.readouterr().err.count("\n") == 1
        assert not faults.exists()

    def test_icc_fault_file(self, tmp_path: Path) -> None:
        """An ICC fault writes the probabilities the workers read."""
        faults = tmp_path / "icc.json"
        code = main(["fault", "icc", "reorder", "--faults", str(faults), "--probability", "0.3"])
        assert code == 0
        assert json.loads(faults.read_text()) == {"duplicate": 0.0, "reorder": 0.3}

    def test_icc_faults_of_different_kinds_combine(self, tmp_path: Path) -> None:
        """duplicate after reorder keeps reorder; a kind at 0 stops only it; clear stops all."""
        faults = tmp_path / "icc.json"

        def fault(kind: str, *probability: str) -> dict[str, float]:
            assert main(["fault", "icc", kind, "--faults", str(faults), *probability]) == 0
            read: dict[str, float] = json.loads(faults.read_text())
            return read

        assert fault("reorder", "--probability", "0.3") == {"duplicate": 0.0, "reorder": 0.3}
        assert fault("duplicate", "--probability", "0.2") == {"duplicate": 0.2, "reorder": 0.3}
        assert fault("duplicate", "--probability", "0.5") == {"duplicate": 0.5, "reorder": 0.3}
        assert fault("reorder", "--probability", "0") == {"duplicate": 0.5, "reorder": 0.0}
        assert fault("clear") == {"duplicate": 0.0, "reorder": 0.0}

    def test_icc_fault_says_what_is_active(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The command prints every kind in force after it, not only the one it set."""
        faults = tmp_path / "icc.json"
        assert (
            main(["fault", "icc", "reorder", "--faults", str(faults), "--probability", "0.3"]) == 0
        )
        assert main(["fault", "icc", "duplicate", "--faults", str(faults)]) == 0
        last = capsys.readouterr().out.splitlines()[-1]
        assert "duplicate 1" in last
        assert "reorder 0.3" in last

    def test_broken_icc_faults_file_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A faults file that is not one is refused in one line, left as it was."""
        faults = tmp_path / "icc.json"
        faults.write_text("not json")
        assert main(["fault", "icc", "duplicate", "--faults", str(faults)]) == 2
        err = capsys.readouterr().err
        assert "fault icc clear" in err
        assert err.count("\n") == 1
        assert faults.read_text() == "not json"

    def test_bad_probability_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A probability outside 0..1 is refused with one line, nothing written."""
        faults = tmp_path / "icc.json"
        code = main(["fault", "icc", "duplicate", "--faults", str(faults), "--probability", "2"])
        assert code == 2
        assert "between 0 and 1" in capsys.readouterr().err
        assert not faults.exists()

    def test_kill_refuses_a_process_that_is_not_ours(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """kill only kills b2bsim components and brokers, never another process."""
        assert main(["fault", "kill", "1"]) == 2  # init: never a component
        assert "not a b2bsim component" in capsys.readouterr().err
