"""``b2bsim soak --minutes 3 --seed 1`` end to end, as issue 18 asks of CI: the real broker,
every component as its own process, every fault kind, then the invariants (about 4-5 minutes)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.kits.soak.schedule import KINDS, build_schedule


@pytest.mark.integration
@pytest.mark.timeout(660)
def test_a_three_minute_soak_strikes_with_every_fault_and_keeps_every_invariant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "result.json"
    report = tmp_path / "report"
    code = main(
        [
            "--state",
            str(tmp_path / "state"),
            "soak",
            "--minutes",
            "3",
            "--seed",
            "1",
            "--drain-timeout",
            "120",
            "--result-json",
            str(out),
            "--report",
            str(report),
        ]
    )
    result = json.loads(out.read_text())
    printed = capsys.readouterr()
    assert build_schedule(1, 3).text() in printed.err  # the schedule, printed at the start
    assert result["schedule"] == build_schedule(1, 3).to_json()
    faults_log = Path(result["run_dir"]) / "faults.jsonl"
    logged = [json.loads(line) for line in faults_log.read_text().splitlines()]
    assert all(set(r) == {"at_ms", "kind", "target", "params"} for r in logged)
    assert Counter(r["kind"] for r in logged) == {k: n for k, n in result["faults"].items() if n}
    assert set(result["faults"]) == set(KINDS)
    assert result["missing_kinds"] == [], result["failed_injections"]
    assert result["produced"] > 100
    for figure in ("lost", "double_ingested", "out_of_order", "unexplained"):
        assert result[figure] == 0, (figure, result["violations"][:10])
    assert result["drained"] is True
    assert (report / "index.html").exists()
    assert code == 0, printed.out
