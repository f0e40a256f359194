"""`b2bsim run`: the whole chain end to end, against the real broker, over real TLS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.runs.runner import RunOptions, run_scenario
from simulator.runs.scenario import load_scenario
from simulator.runs.steps import settle_counts
from simulator.vocabulary.state import StateDir

REPO = Path(__file__).resolve().parents[3]
HAPPY = REPO / "scenarios" / "happy-path.yaml"


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (children left behind)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmd and str(os.getpid()) != entry.name:
                found.append(cmd)
    return found


@pytest.mark.broker
@pytest.mark.integration
class TestHappyPath:
    def test_nine_messages_end_to_end(self, broker_url: str, state_dir: StateDir) -> None:
        """3 suppliers × (order, invoice, credit): 9 produced, delivered and stored, 0 lost."""
        result = run_scenario(
            load_scenario(HAPPY), RunOptions(state=state_dir, broker_url=broker_url)
        )
        figures = result.figures.figures()
        assert result.error is None
        assert result.passed, result.to_json()
        assert {k: figures[k] for k in ("produced", "delivered", "ingested")} == dict.fromkeys(
            ("produced", "delivered", "ingested"), 9
        )
        assert figures["lost"] == figures["double_ingested"] == figures["dead_lettered"] == 0
        saved = json.loads((result.run_dir / "result.json").read_text())
        assert saved["passed"] is True
        assert processes_mentioning(str(state_dir.root)) == []

    def test_cli_writes_result_json(
        self, broker_url: str, state_dir: StateDir, tmp_path: Path
    ) -> None:
        """`b2bsim run --result-json` exits 0 and writes the documented fields."""
        out = tmp_path / "result.json"
        code = main(
            [
                "--state",
                str(state_dir.root),
                "run",
                str(HAPPY),
                "--broker",
                broker_url,
                "--result-json",
                str(out),
            ]
        )
        assert code == 0
        result = json.loads(out.read_text())
        for key in (
            "scenario",
            "produced",
            "delivered",
            "ingested",
            "lost",
            "double_ingested",
            "dead_lettered",
            "passed",
        ):
            assert key in result
        assert (result["scenario"], result["ingested"], result["passed"]) == ("happy-path", 9, True)

    def test_embedded_broker_is_started_and_stopped(self, tmp_path: Path) -> None:
        """Without --broker the run starts its own ActiveMQ and leaves no JVM behind."""
        state = StateDir(tmp_path / "own").ensure()
        env = {k: v for k, v in os.environ.items() if k != "B2BSIM_BROKER"}
        proc = subprocess.run(
            [sys.executable, "-m", "simulator.cli", "--state", str(state.root), "run", str(HAPPY)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "broker started" in proc.stdout
        assert "PASSED" in proc.stdout
        assert processes_mentioning(str(state.root)) == []


@pytest.mark.broker
@pytest.mark.integration
class TestProgressLines:
    """What a run says as it goes is true."""

    def test_poison_and_slow_loris_are_told_truly(
        self, broker_url: str, state_dir: StateDir, tmp_path: Path
    ) -> None:
        """Poison is counted apart from KA's messages; an attack without an answer shows no None."""
        path = tmp_path / "told.yaml"
        path.write_text(
            "name: told\n"
            "description: poison and attacks beside one order per supplier\n"
            "seed: 3\n"
            "timeout: 90\n"
            "suppliers: {count: 2}\n"
            "steps:\n"
            "  - produce: {type: order, count: 1}\n"
            "  - fault: {poison: unknown-supplier}\n"
            "  - attack: {supplier: 1, kinds: [xxe, slow-loris]}\n"
            "  - wait: {timeout: 60}\n"
            "expect:\n"
            "  produced: 2\n"
            "  ingested: 2\n"
            "  dead_lettered: 1\n"
            "  refused: {XML_DOCTYPE: 1, cut-off: 1}\n"
        )
        lines: list[str] = []
        result = run_scenario(
            load_scenario(path),
            RunOptions(state=state_dir, broker_url=broker_url, progress=lines.append),
        )
        assert result.passed, (result.to_json(), lines)
        attacks = [line for line in lines if line.startswith("attack ")]
        assert len(attacks) == 2, lines
        assert all("None" not in line for line in attacks), attacks
        assert any(": cut-off (as expected)" in line for line in attacks), attacks
        assert any(": 400 XML_DOCTYPE (as expected)" in line for line in attacks), attacks
        settled = [line for line in lines if line.startswith("settled: ")]
        assert settled == [
            "settled: 2 loaded, 0 dead-lettered of 2 produced; "
            "1 of 1 poison message(s) dead-lettered"
        ], lines


class TestSettleCounts:
    """The counts a wait tells: each of KA's messages once, poison apart."""

    def test_poison_is_not_counted_among_kas_messages(self) -> None:
        """12 loaded of 12 and a dead-lettered poison message never read as 13 of 12."""
        produced = {f"m{i}" for i in range(12)}
        told = settle_counts(produced, set(produced), {"poison-x"}, {"poison-x"})
        assert told == (
            "12 loaded, 0 dead-lettered of 12 produced; 1 of 1 poison message(s) dead-lettered"
        )

    def test_loaded_then_dead_lettered_counts_once(self) -> None:
        """A message stored and then given up on counts as loaded, not twice."""
        told = settle_counts({"a", "b", "c"}, {"a", "b"}, {"b", "c"}, set())
        assert told == "2 loaded, 1 dead-lettered of 3 produced"

    def test_pending_and_strangers(self) -> None:
        """Messages not yet settled are told; loaded ids KA never produced are not counted."""
        told = settle_counts({"a", "b", "c"}, {"a", "attack-1"}, set(), {"poison-x"})
        assert told == (
            "1 loaded, 0 dead-lettered of 3 produced, 2 still on the way; "
            "0 of 1 poison message(s) dead-lettered"
        )


class TestBadInput:
    def test_missing_scenario_exits_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A missing scenario file is a one-line usage error (exit 2), nothing started."""
        assert main(["--state", str(tmp_path), "run", str(tmp_path / "nope.yaml")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error [SCENARIO]")
        assert "nope.yaml" in err
        assert len(err.splitlines()) == 1
        assert not (tmp_path / "runs").exists()

    def test_malformed_scenario_exits_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A malformed scenario names its line and starts nothing."""
        bad = tmp_path / "bad.yaml"
        bad.write_text("name: x\ndescription: y\nsteps:\n  - produce: {chains: many}\n")
        assert main(["--state", str(tmp_path), "run", str(bad)]) == 2
        assert "bad.yaml:4" in capsys.readouterr().err
        assert not (tmp_path / "runs").exists()

    def test_unreachable_broker_exits_with_one_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A --broker nobody answers fails the run with what to do, and leaves no process."""
        code = main(
            ["--state", str(tmp_path), "run", str(HAPPY), "--broker", "stomp://127.0.0.1:9"]
        )
        out = capsys.readouterr()
        assert code == 1
        assert "BROKER_UNREACHABLE" in out.err
        assert "b2bsim broker start" in out.err
        assert processes_mentioning(str(tmp_path)) == []
