"""Tests for simulator.runs.run_setup: a run's directory, PKI and registry, and its refusals."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from simulator.lab.suppliers import make_suppliers
from simulator.runs.endpoint import ExternalEndpoint
from simulator.runs.run_setup import (
    init_run_suppliers,
    new_run_dir,
    refuse_two_outboxes,
    refuse_unrunnable,
    suppliers_of,
)
from simulator.runs.scenario import KillBroker, RestartBroker, Scenario
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.registry import DeliveryMode, Registry
from simulator.vocabulary.state import StateDir


def scenario(**kw: object) -> Scenario:
    return Scenario("demo", "A demo.", Path("scenarios/demo.yaml"), **kw)  # type: ignore[arg-type]


class TestRefuseUnrunnable:
    def test_a_plain_scenario_runs_on_any_broker(self) -> None:
        refuse_unrunnable(scenario(), "stomp://127.0.0.1:61613")
        refuse_unrunnable(scenario(), None)

    @pytest.mark.parametrize("step", [RestartBroker(), KillBroker(1)])
    def test_a_broker_fault_needs_brokers_of_its_own(self, step: object) -> None:
        with pytest.raises(ConfigError, match="needs brokers of its own") as caught:
            refuse_unrunnable(scenario(steps=(step,)), "stomp://127.0.0.1:61613")
        assert "B2BSIM_BROKER" in (caught.value.hint or "")
        refuse_unrunnable(scenario(steps=(step,)), None)

    def test_a_network_whose_gap_timeout_cannot_keep_order(self) -> None:
        with pytest.raises(ConfigError, match="does not keep one total order"):
            refuse_unrunnable(scenario(brokers=2, gap_timeout=0.5), None)
        refuse_unrunnable(scenario(brokers=2, gap_timeout=600.0), None)


def test_new_run_dir_is_the_owners_and_named_by_time(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    first, second = new_run_dir(state, "demo"), new_run_dir(state, "other")
    assert [p.name for p in sorted(state.runs.iterdir())] == sorted([first.name, second.name])
    assert first.name.endswith("-demo")
    assert first.name[:8].isdigit()
    assert stat.S_IMODE(first.stat().st_mode) == 0o700


def test_suppliers_of_a_scenario_are_its_seeded_suppliers() -> None:
    s = scenario(supplier_count=2, seed=4)
    assert [(x.org_number, x.name) for x in suppliers_of(s)] == [
        (i.org_number, i.name) for i in make_suppliers(2, 4)
    ]


def test_init_run_suppliers_writes_pki_and_registry(tmp_path: Path) -> None:
    """Push suppliers get a port each; the pull suppliers share the outbox port."""
    identities = make_suppliers(3, 1)
    run_state, pull_port = init_run_suppliers(tmp_path, identities, pull_count=1)
    assert run_state.root == tmp_path
    registry = Registry.load(tmp_path / "registry.json")
    entries = [registry.lookup(s.org_number) for s in identities]
    assert [e.delivery_mode for e in entries] == [
        DeliveryMode.PUSH,
        DeliveryMode.PUSH,
        DeliveryMode.PULL,
    ]
    assert entries[2].url == f"https://127.0.0.1:{pull_port}/b2b/outbox"
    push_ports = {e.url.split(":")[2].split("/")[0] for e in entries[:2]}
    assert len(push_ports) == 2
    assert str(pull_port) not in push_ports
    for s in identities:
        assert run_state.supplier_cert(s.org_number).exists()


def test_external_pullers_share_one_outbox_port() -> None:
    def puller(org: str, port: int) -> ExternalEndpoint:
        url = f"https://127.0.0.1:{port}/b2b/outbox"
        return ExternalEndpoint(url, Path("ca.pem"), org, mode="pull", pull_port=port)

    push = ExternalEndpoint("https://127.0.0.1:9444/b2b/envelopes", Path("ca.pem"), "5560000001")
    refuse_two_outboxes([push, puller("5520000000", 9443), puller("5520000018", 9443)])
    with pytest.raises(ConfigError, match="ports 9443, 9500, but a run's ICC serves one"):
        refuse_two_outboxes([puller("5520000000", 9443), puller("5520000018", 9500)])
