"""``b2bsim soak --minutes 1 --seed 1`` end to end: the real broker, every component as its
own process, every fault kind, then the invariants (about 2-3 minutes)."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from simulator.cli import main
from simulator.kits.soak.run import CHECKER
from simulator.kits.soak.schedule import KINDS, build_schedule
from simulator.runs.reconcile import loaded_messages, produced_ids, reconcile


@dataclass
class _StandInReport:
    lost: int
    double_ingested: int
    out_of_order: int
    unexplained: int
    dead_lettered: dict[str, int]
    violations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (self.lost or self.double_ingested or self.out_of_order or self.unexplained)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def _stand_in_check(
    run_dir: Path, *, broker_url: str | None, queue: str, faults_log: Path | None
) -> _StandInReport:
    """Until simulator/kits/invariants.py is merged: the reconciliation's figures, plus
    messages loaded that KA never recorded."""
    assert broker_url
    assert broker_url.startswith("stomp://127.0.0.1:")
    assert queue.startswith("/queue/")
    assert faults_log is not None
    assert faults_log.exists()
    r = reconcile(
        run_dir / "produced.jsonl",
        sorted(run_dir.glob("icc-*.jsonl")),
        run_dir / "supplier-stub.sqlite",
    )
    produced = produced_ids(run_dir / "produced.jsonl")
    unexplained = {m for m, *_ in loaded_messages(run_dir / "supplier-stub.sqlite")} - produced
    by_code = Counter(d["code"] for d in r.dead_letters)
    violations = [{"message_id": m, "violation": "lost"} for m in r.lost_ids]
    violations += [
        {"message_id": m, "violation": "not recorded by KA"} for m in sorted(unexplained)
    ]
    return _StandInReport(
        r.lost, r.double_ingested, r.out_of_order, len(unexplained), dict(by_code), violations
    )


@pytest.fixture
def checker(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec(CHECKER) is None:
        module = types.ModuleType(CHECKER)
        module.check_invariants = _stand_in_check  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, CHECKER, module)


@pytest.mark.integration
@pytest.mark.timeout(330)
def test_a_one_minute_soak_strikes_with_every_fault_and_keeps_every_invariant(
    tmp_path: Path, checker: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "result.json"
    report = tmp_path / "report"
    code = main(
        [
            "--state",
            str(tmp_path / "state"),
            "soak",
            "--minutes",
            "1",
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
    assert build_schedule(1, 1).text() in printed.err  # the schedule, printed at the start
    assert result["schedule"] == build_schedule(1, 1).to_json()
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
