"""`b2bsim bench --rate`: the steady phase, paced and honest about the rate it achieved."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from simulator.cli import main
from simulator.kits.bench_options import BenchOptions
from simulator.kits.bench_results import CHAIN_HOPS
from simulator.kits.bench_steady import (
    WARMUP_MOST,
    publish_paced,
    steady_message_bound,
    warmup_count,
)
from simulator.vocabulary.state import StateDir


def live_processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes (not this one) that mention ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmd:
                found.append(cmd)
    return found


class TestPacing:
    def test_a_fast_publisher_keeps_the_rate(self) -> None:
        """20 msg/s for 1 s: 20 messages, numbered from ``first``, spread over the second."""
        sent: list[int] = []

        async def publish(i: int) -> str:
            sent.append(i)
            return f"m{i}"

        ids, seconds = asyncio.run(publish_paced(publish, 20, 1.0, first=7))
        assert sent == list(range(7, 27))
        assert ids == {f"m{i}" for i in range(7, 27)}
        assert 1.0 <= seconds < 1.5  # the 20th is due at 1.0 s, not before
        assert len(ids) / seconds <= 20

    def test_a_slow_publisher_achieves_less_and_says_so(self) -> None:
        """Asked 100 msg/s of a publisher that takes 50 ms a message: it stops at the
        duration, and the rate achieved is what it managed (about 20), not 100."""

        async def publish(i: int) -> str:
            await asyncio.sleep(0.05)
            return f"m{i}"

        ids, seconds = asyncio.run(publish_paced(publish, 100, 0.5))
        assert 0 < len(ids) < 50
        assert seconds < 0.5 + 0.01 + 0.2  # the duration, its grace, one late publish
        assert len(ids) / seconds <= 1 / 0.05
        assert len(ids) / seconds < 0.95 * 100


class TestWarmup:
    def test_one_per_supplier_and_a_second_of_the_rate(self) -> None:
        assert warmup_count(100, 20) == 100
        assert warmup_count(3, 114.2) == 115
        assert warmup_count(3, 1e6) == WARMUP_MOST

    def test_documents_needed(self, tmp_path: Path) -> None:
        """--rate R: warm-up plus rate × duration; --rate auto: the burst's N."""
        state = StateDir(tmp_path)
        steady = BenchOptions(state, None, 3, rate=20.0, duration=5)
        assert steady_message_bound(steady) == 20 + 100
        auto = BenchOptions(state, 60, 3, rate="auto")
        assert steady_message_bound(auto) == 60


def bench(state_dir: StateDir, broker_url: str, out: Path, *extra: str) -> dict[str, Any]:
    code = main(
        [
            "--state",
            str(state_dir.root),
            "bench",
            "--suppliers",
            "3",
            "--workers",
            "1",
            "--broker",
            broker_url,
            "--json",
            str(out),
            *extra,
        ]
    )
    assert code == 0
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def assert_consistent(steady: dict[str, Any]) -> None:
    """Percentiles in order, per hop over every measured message, CPU per process."""
    n = steady["messages"]
    assert 0 <= steady["p50_ms"] <= steady["p95_ms"] <= steady["p99_ms"] <= steady["max_ms"]
    assert set(steady["latency_ms"]) == set(CHAIN_HOPS)
    for hop, stats in steady["latency_ms"].items():
        assert stats["count"] == n, hop
        assert 0 <= stats["p50"] <= stats["p95"] <= stats["p99"] <= stats["max"], hop
    e2e = steady["latency_ms"]["end_to_end"]
    assert (steady["p50_ms"], steady["p99_ms"], steady["max_ms"]) == (
        e2e["p50"],
        e2e["p99"],
        e2e["max"],
    )
    # The rate achieved is KA's own, never above the asked one; "kept" says which.
    assert 0 < steady["achieved_rate"] <= steady["rate"] * 1.001
    assert steady["achieved_rate"] == pytest.approx(n / steady["publish_seconds"], rel=0.01)
    assert steady["rate_kept"] is (steady["achieved_rate"] >= 0.95 * steady["rate"])
    assert {"ka (bench process)", "icc-1", "supplier-stub"} <= set(steady["cpu_s_per_1000"])
    assert all(v >= 0 for v in steady["cpu_s_per_1000"].values())
    assert steady["cpu_s_per_1000"]["supplier-stub"] > 0
    figures = steady["figures"]
    assert figures["ingested"] == n + steady["warmup_messages"]
    assert figures["lost"] == figures["double_ingested"] == figures["out_of_order"] == 0
    assert steady["correct"] is True


@pytest.mark.broker
@pytest.mark.integration
class TestSteadyRun:
    def test_steady_rate_for_a_duration(
        self, broker_url: str, state_dir: StateDir, tmp_path: Path
    ) -> None:
        """--rate 20 --duration 5: about 100 messages at about 20 msg/s, no burst."""
        data = bench(state_dir, broker_url, tmp_path / "b.json", "--rate", "20", "--duration", "5")
        steady = data["steady"]
        assert "chain" not in data
        assert "baseline" not in data
        assert (steady["rate"], steady["duration_s"], steady["rate_auto"]) == (20, 5, False)
        assert steady["warmup_messages"] == 20
        assert 95 <= steady["messages"] <= 100
        assert steady["achieved_rate"] == pytest.approx(20, rel=0.05)
        assert steady["rate_kept"] is True
        assert_consistent(steady)
        assert data["correct"] is True
        assert data["rss_mb"] == max(steady["rss_mb"].values())
        assert live_processes_mentioning(str(state_dir.root)) == []

    def test_auto_rate_is_half_the_burst_peak(
        self, broker_url: str, state_dir: StateDir, tmp_path: Path
    ) -> None:
        """--rate auto: a burst of 60 first, then the steady phase at half its chain rate."""
        data = bench(
            state_dir,
            broker_url,
            tmp_path / "b.json",
            "--rate",
            "auto",
            "--messages",
            "60",
            "--duration",
            "2",
        )
        steady = data["steady"]
        assert data["chain"]["figures"]["ingested"] == 60
        assert steady["rate_auto"] is True
        assert steady["peak_msgs_per_s"] == data["chain_msgs_per_s"]
        assert steady["rate"] == pytest.approx(data["chain_msgs_per_s"] / 2, abs=0.03)
        assert steady["messages"] >= 1
        assert_consistent(steady)
        assert data["correct"] is True
        assert live_processes_mentioning(str(state_dir.root)) == []
