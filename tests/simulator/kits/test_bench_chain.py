"""The chain a bench drives: documents in turn, CPU meter, waiting for the ICC's log."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from simulator.kits import bench_chain
from simulator.kits.bench_chain import KA_PROCESS, CpuMeter, make_documents, wait_delivered
from simulator.lab.suppliers import make_suppliers
from simulator.runs.chain import ChainSpec, RunningChain
from simulator.vocabulary.state import StateDir


def test_documents_go_to_the_suppliers_in_turn() -> None:
    suppliers = [(s.org_number, s.name) for s in make_suppliers(2, 1)]
    docs = make_documents(suppliers, distinct=4, seed=1)
    assert docs.count == 4
    picked = [docs.pick(i) for i in range(6)]
    assert [org for org, _, _ in picked] == [org for org, _ in suppliers] * 3
    assert picked[0][1] is not picked[2][1]  # a supplier's documents in turn
    assert picked[0][1] is picked[4][1]  # ... and cycled
    assert picked[0][2] == picked[0][1].xml.decode("utf-8")


def test_ka_cpu_counts_only_while_it_publishes() -> None:
    meter = CpuMeter({KA_PROCESS: os.getpid()})
    sum(i * i for i in range(300_000))  # before KA starts: not KA's
    meter.ka_starts()
    meter.ka_stops()
    assert meter.used()[KA_PROCESS] < 0.01


def chain_in(tmp_path: Path, said: list[str]) -> RunningChain:
    spec = ChainSpec(StateDir(tmp_path), tmp_path, tmp_path, "stomp://127.0.0.1:1", "/queue/q")
    return RunningChain(spec, None, said.append)


def delivered(n: int) -> str:
    return "".join(
        json.dumps({"event": e, "message_id": f"m{i}"}) + "\n"
        for i in range(n)
        for e in ("consumed", "delivered")
    )


def test_wait_delivered_returns_once_the_icc_logged_them(tmp_path: Path) -> None:
    said: list[str] = []
    (tmp_path / "icc-1.jsonl").write_text(delivered(3))
    started = time.monotonic()
    asyncio.run(wait_delivered(chain_in(tmp_path, said), 3))
    assert time.monotonic() - started < 1
    assert said == []


def test_wait_delivered_gives_up_after_its_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery never logged: the bench goes on, and says why a hop may lack it."""
    monkeypatch.setattr(bench_chain, "DELIVERED_GRACE", 0.3)
    said: list[str] = []
    (tmp_path / "icc-1.jsonl").write_text(delivered(2))
    asyncio.run(wait_delivered(chain_in(tmp_path, said), 3))
    assert said == ["the ICC did not log every delivery: some hops lack a delivered stamp"]
