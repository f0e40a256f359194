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
from simulator.kits.bench_results import CHAIN_HOPS, BenchResult, ChainResult, chain_hops
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
