"""`b2bsim run --endpoint-mode pull`: a scenario run against a supplier's own puller.

The pullers (tests/simulator/runs/pullers.py) are written for the tests,
independently of ``supplier_stub/``; every one of them refuses the first credit
note it gets and "restarts" after its third acknowledgement.  The run loses one
acknowledgement and answers 503 ``Retry-After: 2`` once, on purpose.

A correct puller passes; each broken one fails exactly its own check of the
puller (``pull.*``); the reference stub's puller, started by hand
(``b2bsim serve supplier-stub``), fails none.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.lab.pki import SupplierIdentity, cert_sha256, init_pki
from simulator.lab.ports import free_ports
from simulator.runs.pull_endpoint import outbox_url, pull_endpoint
from simulator.runs.runner import RunOptions, RunResult, run_scenario
from simulator.runs.scenario import Produce, Scenario, Wait, load_scenario
from simulator.vocabulary.registry import DeliveryMode, Registry, SupplierEntry
from simulator.vocabulary.state import StateDir
from tests.simulator.runs.pullers import PULL_CHECKS, Puller

REPO = Path(__file__).resolve().parents[3]
ORG = "5520000000"  # Luhn-valid; supplier 1 of the run


def small_pull_scenario() -> Scenario:
    """2 suppliers, 3 chains each (order, invoice, credit note): 18 messages; ours refuses 1."""
    base = load_scenario(REPO / "scenarios" / "bridge-crash.yaml")
    return dataclasses.replace(
        base,
        name="pull-external",
        supplier_count=2,
        icc_workers=1,
        timeout=120,
        steps=(Produce(chains=3, rate=20, background=True), Wait(timeout=60)),
        expect={"produced": 18, "ingested": 17, "dead_lettered": 1},
    )


@pytest.fixture
def ext_state(tmp_path: Path) -> StateDir:
    """A state directory as AF gives it to a supplier: the test CA, the ICC, supplier ORG."""
    state = StateDir(tmp_path / "state").ensure()
    init_pki(state, [SupplierIdentity(ORG, "Leverantör Extern AB")])
    return state


def run_with(mode: str, state: StateDir, broker_url: str) -> tuple[RunResult, Puller]:
    (port,) = free_ports(1)
    with Puller(state, ORG, outbox_url(port), mode) as puller:
        endpoint = pull_endpoint(
            state,
            org_number=ORG,
            cert=state.supplier_cert(ORG),
            pull_port=port,
            readback=puller.readback,
        )
        options = RunOptions(state=state, broker_url=broker_url, endpoint=endpoint)
        result = run_scenario(small_pull_scenario(), options)
    return result, puller


def pull_failures(result: RunResult) -> dict[str, str]:
    return {
        e.name: e.reason
        for e in result.expectations
        if e.name in PULL_CHECKS and e.status == "graded" and not e.passed
    }


@pytest.mark.broker
@pytest.mark.integration
class TestPullersInTheChain:
    def test_a_correct_puller_passes(self, broker_url: str, ext_state: StateDir) -> None:
        result, puller = run_with("correct", ext_state, broker_url)
        statuses = {e.name: e.status for e in result.expectations}
        assert result.passed, ([(e.name, e.reason) for e in result.expectations], result.error)
        assert {n: statuses[n] for n in PULL_CHECKS} == dict.fromkeys(PULL_CHECKS, "graded")
        assert result.figures.lost == 0
        assert result.figures.dead_lettered == 1
        assert result.figures.dead_letters[0]["code"] == "PULL_REFUSED"
        assert result.figures.dead_letters[0]["reason"].startswith("DOCUMENT_INVALID: ")
        assert len(puller.ledger) == 8  # the lost acknowledgement's envelopes loaded once
        grade = result.endpoint
        assert grade is not None
        assert (len(grade.lost_ids), len(grade.double_ids)) == (0, 0)
        saved = json.loads((result.run_dir / "result.json").read_text())
        assert saved["verdict"] == "passed"

    @pytest.mark.parametrize(
        ("mode", "check", "says"),
        [
            ("overack", "pull.ack_only_fetched", "ack-only-fetched"),
            ("impatient", "pull.honours_retry_after", "honours-retry-after"),
            ("silent", "pull.refusals_reported", "refusals-reported"),
        ],
    )
    def test_a_broken_puller_fails_exactly_its_check(
        self, broker_url: str, ext_state: StateDir, mode: str, check: str, says: str
    ) -> None:
        result, _ = run_with(mode, ext_state, broker_url)
        failures = pull_failures(result)
        assert set(failures) == {check}, failures
        assert says in failures[check]
        assert result.verdict == "failed"


@pytest.mark.broker
@pytest.mark.integration
def test_the_reference_stubs_puller_started_by_hand_fails_no_check(
    broker_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`b2bsim serve supplier-stub` pulling, `b2bsim run --endpoint-mode pull`: no pull check
    fails, nothing is lost (the stub serves no read-back for a pulling supplier)."""
    state = tmp_path / "af-state"
    cli = [sys.executable, "-m", "simulator.cli", "--state", str(state)]
    subprocess.run([*cli, "pki", "init", "--suppliers", "1"], check=True, capture_output=True)
    org = json.loads((state / "registry.json").read_text())["suppliers"][0]["org_number"]
    (port,) = free_ports(1)
    registry = tmp_path / "stub-registry.json"
    Registry(
        [
            SupplierEntry(
                org_number=org,
                name="Leverantör Extern AB",
                url=outbox_url(port),
                cert_sha256=cert_sha256(StateDir(state).supplier_cert(org)),
                delivery_mode=DeliveryMode.PULL,
            )
        ]
    ).save(registry)
    stub = subprocess.Popen(
        [
            *cli,
            "serve",
            "supplier-stub",
            "--registry",
            str(registry),
            "--db",
            str(tmp_path / "stub.sqlite"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert stub.stdout is not None
        stub.stdout.readline()  # ready
        scenario = tmp_path / "pull-external.yaml"
        scenario.write_text(
            "name: pull-external\ndescription: the stub's puller as an external supplier\n"
            "seed: 3\nsuppliers: {count: 2}\ntimeout: 120\n"
            "steps:\n  - produce: {chains: 3, rate: 20, background: true}\n"
            "  - wait: {timeout: 60}\n"
            "expect: {produced: 18, ingested: 18}\n"
        )
        out = tmp_path / "result.json"
        code = main(
            [
                "--state",
                str(state),
                "run",
                str(scenario),
                "--broker",
                broker_url,
                "--endpoint-mode",
                "pull",
                "--org-number",
                org,
                "--pull-port",
                str(port),
                "--result-json",
                str(out),
            ]
        )
        result = json.loads(out.read_text())
    finally:
        stub.send_signal(signal.SIGTERM)
        stub.wait(20)
        if stub.stdout is not None:
            stub.stdout.close()
    # The run told the puller where to fetch, what to trust and what it registered.
    said = capsys.readouterr().out
    assert f"external supplier {org} pulls from {outbox_url(port)}" in said
    assert str(state / "pki" / "ca.pem") in said
    checks = {c["name"]: c for c in result["endpoint"]["checks"]}
    assert {
        n for n in PULL_CHECKS if checks[n]["status"] == "graded" and checks[n]["failures"]
    } == set()
    for name in (
        "pull.ack_only_fetched",
        "pull.refetch_after_lost_ack",
        "pull.honours_retry_after",
    ):
        assert checks[name]["status"] == "graded", checks[name]
    assert result["endpoint"]["lost"] == 0
    assert result["lost"] == 0
    assert result["verdict"] == "not graded (no read-back)"
    assert code == 1  # what only a read-back proves was not graded


class TestBadInput:
    def _run(self, state: StateDir, *extra: str) -> int:
        scenario = str(REPO / "scenarios" / "pull-mode.yaml")
        return main(
            ["--state", str(state.root), "run", scenario, "--endpoint-mode", "pull", *extra]
        )

    def _one_line(self, capsys: pytest.CaptureFixture[str]) -> str:
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    def test_endpoint_is_refused_in_pull_mode(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = self._run(ext_state, "--org-number", ORG, "--endpoint", "https://127.0.0.1:1/x")
        assert code == 2
        assert "a pulling supplier has none" in self._one_line(capsys)
        assert not ext_state.runs.exists() or not any(ext_state.runs.iterdir())

    def test_a_certificate_of_another_ca(
        self, ext_state: StateDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        other = StateDir(tmp_path / "other").ensure()
        init_pki(other, [SupplierIdentity(ORG, "Leverantör Extern AB")])
        code = self._run(
            ext_state, "--org-number", ORG, "--endpoint-cert", str(other.supplier_cert(ORG))
        )
        assert code == 2
        assert "is not issued by the AF test CA of --state" in self._one_line(capsys)

    def test_a_certificate_of_another_supplier(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = self._run(
            ext_state,
            "--org-number",
            "5560000001",
            "--endpoint-cert",
            str(ext_state.supplier_cert(ORG)),
        )
        assert code == 2
        assert f"names organisation {ORG}, not --org-number 5560000001" in self._one_line(capsys)

    def test_no_certificate_known(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert self._run(ext_state, "--org-number", "5560000001") == 2
        assert "pass --endpoint-cert FILE" in self._one_line(capsys)

    def test_a_pull_port_in_use(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            code = self._run(ext_state, "--org-number", ORG, "--pull-port", str(port))
        assert code == 2
        assert f"cannot serve the outbox on 127.0.0.1:{port}" in self._one_line(capsys)

    def test_pull_options_without_pull_mode(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        scenario = str(REPO / "scenarios" / "pull-mode.yaml")
        code = main(["--state", str(ext_state.root), "run", scenario, "--pull-port", "9500"])
        assert code == 2
        assert "--pull-port only applies with --endpoint-mode pull" in self._one_line(capsys)
