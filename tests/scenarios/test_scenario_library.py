"""Every scenario in scenarios/ runs end to end and passes, against real parts.

These are the onboarding test plan's scenarios: each runs the whole chain
(real ActiveMQ, real mutual TLS, child processes) with its faults, and must
pass its own expectations, which always include lost = 0 and
double_ingested = 0. Sizes are the library's own, in CI too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simulator.runs.runner import RunOptions, run_scenario
from simulator.runs.scenario import load_scenario
from simulator.vocabulary.state import StateDir

REPO = Path(__file__).resolve().parents[2]
LIBRARY = sorted((REPO / "scenarios").glob("*.yaml"))
RULES = os.environ.get("B2BSIM_RULES_DIR")

pytestmark = [pytest.mark.broker, pytest.mark.integration]


def test_library_is_complete() -> None:
    """The scenarios the issues ask for are all in the library."""
    names = {p.stem for p in LIBRARY}
    wanted = {
        "happy-path",
        "bridge-crash",
        "broker-restart",
        "supplier-outage",
        "supplier-flaky",
        "poison-message",
        "out-of-order",
        "pull-mode",
        "many-suppliers",
        "cert-expired",
        "cert-revoked",
        "cert-rotation",
        "wrong-addressee",
        "tampered-envelope",
        "replayed-envelope",
        "hostile-xml",
        "url-move",
        "trainer-walkthrough",
        "month-end-batch",
        "happy-path-order",
        "happy-path-invoice",
        "happy-path-credit",
        "broker-network",
    }
    assert wanted <= names


@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_scenario_passes(path: Path, broker_url: str, tmp_path: Path) -> None:
    """The scenario passes its expectations, with nothing lost and nothing loaded twice."""
    scenario = load_scenario(path)
    # A scenario that restarts the broker needs its own embedded one.
    url = None if scenario.needs_embedded_broker else broker_url
    result = run_scenario(
        scenario, RunOptions(state=StateDir(tmp_path / "state"), broker_url=url, rules=RULES)
    )
    summary = result.to_json()
    assert result.error is None, summary
    assert [e.name for e in result.expectations if not e.passed] == [], summary
    assert summary["lost"] == 0
    assert summary["double_ingested"] == 0
    assert summary["produced"] == scenario.expected_messages
