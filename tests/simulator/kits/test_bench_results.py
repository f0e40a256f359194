"""Tests for simulator.kits.bench_results: a bench's figures and its JSON."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from simulator.kits.bench_baseline import BaselineResult
from simulator.kits.bench_options import BenchOptions
from simulator.kits.bench_procs import summarise
from simulator.kits.bench_results import (
    CHAIN_HOPS,
    BenchResult,
    ChainResult,
    SteadyRate,
    SteadyResult,
    chain_hops,
)
from simulator.vocabulary.state import StateDir
from supplier_stub.ledger import LEDGER_SCHEMA
from supplier_stub.store import SCHEMA

T0 = 1_767_225_600_000


def chain(figures: dict[str, int], seconds: float = 2.0) -> ChainResult:
    return ChainResult(
        messages=100,
        seconds=seconds,
        produce_seconds=1.0,
        hops_ms={"end_to_end": {"p99": 12.5}},
        cpu_seconds={"icc-1": 0.5},
        rss_mb={"icc-1": 40.04, "supplier-stub": 55.55},
        figures=figures,
        run_dir=Path("/runs/x"),
    )


def result(tmp_path: Path, figures: dict[str, int]) -> BenchResult:
    baseline = BaselineResult(100, 0.5, summarise([1.0, 2.0]), 0.1, None, "/queue/q")
    options = BenchOptions(StateDir(tmp_path), messages=100, suppliers=10)
    return BenchResult(options, "stomp://127.0.0.1:61613", 50, 1234.4, baseline, chain(figures))


GOOD = {"ingested": 100, "lost": 0, "double_ingested": 0, "out_of_order": 0, "dead_lettered": 0}


def test_ratio_and_summary_figures(tmp_path: Path) -> None:
    r = result(tmp_path, GOOD)
    assert r.chain is not None
    assert r.chain.msgs_per_s == 50.0
    assert r.ratio == 0.25
    data = r.to_json()
    assert data["baseline_msgs_per_s"] == 200.0
    assert data["chain_msgs_per_s"] == 50.0
    assert data["p99_ms"] == 12.5
    assert data["rss_mb"] == 55.5
    assert data["correct"] is True
    assert data["chain"]["cpu_s_per_1000"] == {"icc-1": 5.0}
    assert data["document_bytes_mean"] == 1234
    json.dumps(data)


@pytest.mark.parametrize(
    "change",
    [
        {"ingested": 99},
        {"lost": 1},
        {"double_ingested": 1},
        {"out_of_order": 2},
        {"dead_lettered": 1},
    ],
)
def test_any_loss_or_disorder_is_not_correct(tmp_path: Path, change: dict[str, int]) -> None:
    assert result(tmp_path, GOOD | change).correct is False


def test_chain_hops_from_the_run_files(tmp_path: Path) -> None:
    """Seconds from the first send to the last load, and each hop's percentiles."""
    produced: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    con = sqlite3.connect(tmp_path / "supplier-stub.sqlite")
    con.executescript(SCHEMA + LEDGER_SCHEMA)
    for n in (1, 2):
        produced.append({"message_id": f"m{n}", "produced_at_ms": T0 + n * 100, "sequence": n})
        base = {"message_id": f"m{n}", "envelope_id": f"e{n}"}
        events.append(base | {"event": "consumed", "at_ms": T0 + n * 100 + 10})
        events.append(base | {"event": "delivered", "at_ms": T0 + n * 100 + 30})
        con.execute(
            "INSERT INTO envelopes VALUES (?, 'o', ?, 'SJALVFAKTURA', 'c', 0, ?, '', ?, x'00')",
            (f"e{n}", f"m{n}", n, T0 + n * 100 + 20),
        )
        con.execute(
            "INSERT INTO ledger (org_number, envelope_id, message_id, message_type, document_id, "
            "produced_at_ms, sequence, received_at_ms, loaded_at_ms, late) "
            "VALUES ('o', ?, ?, 'SJALVFAKTURA', 'd', 0, ?, 0, ?, 0)",
            (f"e{n}", f"m{n}", n, T0 + n * 100 + 20 + n * 5),
        )
    con.commit()
    con.close()
    (tmp_path / "produced.jsonl").write_text("".join(json.dumps(p) + "\n" for p in produced))
    (tmp_path / "icc-1.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    seconds, hops = chain_hops(tmp_path)
    assert seconds == pytest.approx((230 - 100) / 1000)  # m1 produced → m2 loaded
    assert set(hops) == set(CHAIN_HOPS)
    assert hops["ka_to_icc"]["p50"] == 10.0
    assert hops["icc_consumed_to_delivered"]["max"] == 20.0
    assert hops["stub_received_to_loaded"]["max"] == 10.0
    assert hops["end_to_end"]["max"] == 30.0


def steady(achieved_messages: int, figures: dict[str, int] | None = None) -> SteadyResult:
    """Asked 20 msg/s for 5 s; KA published ``achieved_messages`` in 5 s."""
    return SteadyResult(
        rate=SteadyRate(20.0),
        duration_s=5.0,
        messages=achieved_messages,
        warmup_messages=20,
        publish_seconds=5.0,
        seconds=5.05,
        hops_ms={"end_to_end": {"count": 1, "p50": 10.0, "p95": 20.0, "p99": 30.0, "max": 40.0}},
        cpu_seconds={"icc-1": 0.2},
        rss_mb={"icc-1": 70.0},
        figures=figures or GOOD | {"ingested": achieved_messages + 20},
        run_dir=Path("/runs/x/steady"),
    )


def test_steady_figures_in_the_json() -> None:
    data = steady(100).to_json()
    assert (data["rate"], data["achieved_rate"], data["rate_kept"]) == (20.0, 20.0, True)
    assert (data["duration_s"], data["messages"], data["warmup_messages"]) == (5.0, 100, 20)
    assert [data[f"{k}_ms"] for k in ("p50", "p95", "p99", "max")] == [10.0, 20.0, 30.0, 40.0]
    assert data["latency_ms"]["end_to_end"]["p99"] == 30.0
    assert data["cpu_s_per_1000"] == {"icc-1": 2.0}
    assert data["loaded_rate"] == pytest.approx(100 / 5.05, abs=0.01)
    assert (data["rate_auto"], data["peak_msgs_per_s"]) == (False, None)
    assert data["correct"] is True
    json.dumps(data)


def test_a_rate_not_kept_is_reported_as_achieved() -> None:
    """KA published 90 of the 100 asked (18 msg/s, below 95 % of 20): not kept."""
    data = steady(90).to_json()
    assert data["achieved_rate"] == 18.0
    assert data["rate"] == 20.0
    assert data["rate_kept"] is False
    assert steady(95).rate_kept is True  # exactly 95 % is kept


def test_auto_rate_names_its_peak() -> None:
    result = steady(100)
    result.rate = SteadyRate(57.05, peak=114.1)
    data = result.to_json()
    assert (data["rate"], data["rate_auto"], data["peak_msgs_per_s"]) == (57.05, True, 114.1)


def test_steady_counts_warmup_in_its_correctness() -> None:
    """Every message, warm-up included, must be loaded once."""
    assert steady(100, GOOD | {"ingested": 100}).correct is False
    assert steady(100, GOOD | {"ingested": 120, "lost": 1}).correct is False


def test_steady_only_json_has_no_burst_figures(tmp_path: Path) -> None:
    """--rate R: no baseline nor chain; the steady phase decides `correct`."""
    options = BenchOptions(StateDir(tmp_path), None, 10, rate=20.0, duration=5)
    r = BenchResult(options, "stomp://h:1", 50, 1.0, None, None, steady=steady(100))
    data = r.to_json()
    assert "chain" not in data
    assert "ratio" not in data
    assert data["messages"] is None
    assert data["steady"]["rate"] == 20.0
    assert data["rss_mb"] == 70.0
    assert data["correct"] is True
    bad = BenchResult(options, "stomp://h:1", 50, 1.0, None, None, steady=steady(100, GOOD))
    assert bad.correct is False


def test_burst_and_steady_are_both_needed_for_correct(tmp_path: Path) -> None:
    r = result(tmp_path, GOOD)
    r.steady = steady(100)
    assert r.correct is True
    assert r.to_json()["rss_mb"] == 70.0  # the largest over both phases
    r.steady = steady(100, GOOD)
    assert r.correct is False


def test_chain_hops_of_some_messages_only(tmp_path: Path) -> None:
    """``only``: the figures of the measured messages, without the warm-up's."""
    test_chain_hops_from_the_run_files(tmp_path)
    seconds, hops = chain_hops(tmp_path, only={"m2"})
    assert seconds == pytest.approx((230 - 200) / 1000)  # m2 produced → m2 loaded
    assert hops["end_to_end"] == {"count": 1, "p50": 30.0, "p95": 30.0, "p99": 30.0, "max": 30.0}
