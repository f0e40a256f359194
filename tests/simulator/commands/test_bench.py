"""`b2bsim bench`'s tables: the steady phase's figures, and a rate not kept said plainly."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.commands.bench import print_table
from simulator.kits.bench_options import BenchOptions
from simulator.kits.bench_results import BenchResult, SteadyRate, SteadyResult
from simulator.vocabulary.state import StateDir

GOOD = {
    "produced": 120,
    "ingested": 120,
    "lost": 0,
    "double_ingested": 0,
    "out_of_order": 0,
    "dead_lettered": 0,
}
HOP: dict[str, float | int | None] = {
    "count": 100,
    "p50": 11.0,
    "p95": 22.0,
    "p99": 33.0,
    "max": 44.0,
}


def printed(tmp_path: Path, capsys: pytest.CaptureFixture[str], published: int) -> str:
    steady = SteadyResult(
        rate=SteadyRate(20.0),
        duration_s=5.0,
        messages=published,
        warmup_messages=20,
        publish_seconds=5.0,
        seconds=5.1,
        hops_ms={"ka_to_icc": HOP, "end_to_end": HOP},
        cpu_seconds={"supplier-stub": 0.3},
        rss_mb={"supplier-stub": 80.0},
        figures=GOOD | {"ingested": published + 20},
        run_dir=tmp_path / "steady",
    )
    options = BenchOptions(StateDir(tmp_path), None, 3, rate=20.0, duration=5)
    result = BenchResult(options, "stomp://h:1", 60, 1.0, None, None, steady=steady)
    print_table(result, result.to_json())
    return capsys.readouterr().out


def test_steady_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = printed(tmp_path, capsys, 100)
    assert "steady load" in out
    assert "33.0" in out  # the p99 of a hop
    assert "achieved 20.0 of 20.0 msg/s asked" in out
    assert "supplier-stub" in out
    assert "3.000" in out  # CPU s per 1000 messages: 0.3 s over 100 messages
    assert "steady: correct" in out


def test_a_rate_not_kept_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = printed(tmp_path, capsys, 80)
    assert "KA did NOT keep the asked rate: achieved 16.0 of 20.0 msg/s asked" in out
