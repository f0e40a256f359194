"""``conformance --icc`` against our own ICC (``b2bsim serve icc``) over a real broker.

The correct ICC passes every case; started with one of its test-only switches
(icc_bridge/broken_on_purpose.py) it fails exactly the cases that switch breaks.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from simulator.kits.conformance import ConformanceReport
from simulator.kits.icc_harness_cases import ICC_CASES
from simulator.kits.icc_harness_run import registry_entry, run_icc_conformance
from simulator.kits.icc_harness_trial import IccTarget
from simulator.lab.components import Component
from simulator.lab.pki import init_pki, numbered_suppliers
from simulator.lab.ports import free_ports
from simulator.vocabulary.codes.dead_letters import DELIVERY_REFUSED
from simulator.vocabulary.registry import Registry, SupplierEntry
from simulator.vocabulary.state import StateDir

pytestmark = [pytest.mark.broker, pytest.mark.integration]

SUPPLIER = numbered_suppliers(1)[0]
RETRY_CASES = {"icc-retry-backoff", "icc-retry-after", "icc-timeout", "icc-reset"}
ICC_TIMEOUT = 2.0  # serve icc --request-timeout, and the harness's --icc-request-timeout


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    state = StateDir(tmp_path_factory.mktemp("icc-harness") / "state").ensure()
    init_pki(state, [SUPPLIER])
    return state


def _target(state: StateDir, broker_url: str) -> IccTarget:
    return IccTarget(
        state=state,
        org_number=SUPPLIER.org_number,
        host="127.0.0.1",
        port=free_ports(1)[0],
        broker_url=broker_url,
        queue=f"/queue/test.icc-harness.{uuid.uuid4().hex[:8]}",
        timeout=4.0,
        icc_timeout=ICC_TIMEOUT,
        quiet=1.5,
        seed=7,
    )


async def grade_our_icc(
    state: StateDir, broker_url: str, tmp: Path, env: dict[str, str] | None = None
) -> ConformanceReport:
    """Start ``serve icc`` with the registry entry the harness prints, and grade it."""
    target = _target(state, broker_url)
    entry = registry_entry(target)
    registry = tmp / "registry.json"
    Registry([SupplierEntry(name=SUPPLIER.name, **entry)]).save(registry)
    args = [
        "--broker", broker_url,
        "--queue", target.queue,
        "--registry", str(registry),
        "--request-timeout", str(ICC_TIMEOUT),
        "--outbox", str(tmp / "outbox.sqlite"),
        "--events", str(tmp / "icc.jsonl"),
    ]  # fmt: skip
    icc = await Component.start("icc", state.root, args, tmp / "icc.log", env=env)
    broken = sorted(k for k in env or {} if k.startswith("B2BSIM_ICC_TEST_NO_"))
    try:
        assert icc.ready.get("test_only_broken", []) == broken  # it says that it is broken
        return await run_icc_conformance(target)
    finally:
        await icc.stop()


def _failed(report: ConformanceReport) -> set[str]:
    return {r.case_id for r in report.results if not r.passed}


async def test_our_icc_passes_every_case(pki: StateDir, broker_url: str, tmp_path: Path) -> None:
    report = await grade_our_icc(pki, broker_url, tmp_path)
    assert [r.case_id for r in report.results] == [c.id for c in ICC_CASES]
    assert report.passed, json.dumps(report.to_json(), indent=1)
    events = [json.loads(line) for line in (tmp_path / "icc.jsonl").read_text().splitlines()]
    dead = [e for e in events if e["event"] == "dead_lettered"]
    # Only the moved case's message is dead-lettered: a 308 is a refusal naming the new place.
    assert [d["code"] for d in dead] == [DELIVERY_REFUSED]
    assert "moved to https://127.0.0.1:" in dead[0]["detail"]


async def test_an_icc_without_pinning_fails_the_pin_case_only(
    pki: StateDir, broker_url: str, tmp_path: Path
) -> None:
    env = {"B2BSIM_ICC_TEST_NO_PIN": "1", "B2BSIM_ICC_TEST_SWITCHES": "allow"}
    report = await grade_our_icc(pki, broker_url, tmp_path, env)
    assert _failed(report) == {"icc-pin"}, json.dumps(report.to_json(), indent=1)
    pin = next(r for r in report.results if r.case_id == "icc-pin")
    assert pin.grade.value == "fail"
    assert "docs/conformance.md#icc-pin" in pin.advice


async def test_an_icc_without_retries_fails_the_retry_cases_only(
    pki: StateDir, broker_url: str, tmp_path: Path
) -> None:
    env = {"B2BSIM_ICC_TEST_NO_RETRY": "1", "B2BSIM_ICC_TEST_SWITCHES": "allow"}
    report = await grade_our_icc(pki, broker_url, tmp_path, env)
    assert _failed(report) == RETRY_CASES, json.dumps(report.to_json(), indent=1)
    assert all(r.grade.value == "fail" for r in report.results if r.case_id in RETRY_CASES)
