"""``b2bsim plan`` for a supplier that pulls: init with its puller, run, status and evidence.

The supplier's puller is the one written for the tests from docs/pull.md
(tests/simulator/kits/pullers.py, independent of ``supplier_stub/``), polling
in a thread of its own at the plan's fixed ``--listen`` address across the
pull kit's outbox and the scenario run's, with its read-back.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.cli import main
from simulator.kits.conformance_pull_cases import PULL_CASES
from simulator.lab.pki import SupplierIdentity, cert_sha256, init_pki
from simulator.vocabulary.state import StateDir
from tests.simulator.kits.pullers import Puller, PullerThread, free_port

ORG = "5520000000"
SCENARIO = """\
name: pull-small
description: Two suppliers, three chains each; supplier 1 is the plan's puller, which refuses
  one credit note by its own rules.
seed: 3
timeout: 120
suppliers: {count: 2}
steps:
  - produce: {chains: 3, rate: 5, background: true}
  - wait: {timeout: 90}
expect: {produced: 18, ingested: 17, dead_lettered: 1}
"""


@dataclass
class Setup:
    state: StateDir
    plan: Path
    port: int
    scenarios: Path

    def cli(self, *argv: str) -> int:
        return main(["--state", str(self.state.root), *argv])

    def init(self, *extra: str, host: str = "127.0.0.1") -> int:
        return self.cli(
            "plan", "init", "--org-number", ORG, "--name", "Leverantör Hämtar AB",
            "--mode", "pull", "--listen", f"{host}:{self.port}",
            "--endpoint-cert", str(self.state.supplier_cert(ORG)),
            "--start", "2027-01", "--go-live", "2027-03",
            "--scenarios", str(self.scenarios), "--out", str(self.plan), *extra,
        )  # fmt: skip

    def runs(self) -> list[Path]:
        folder = self.plan.with_name(self.plan.name + ".runs")
        return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    state = StateDir(tmp_path / "state").ensure()
    init_pki(state, [SupplierIdentity(ORG, "Leverantör Hämtar AB")])
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "pull-small.yaml").write_text(SCENARIO, encoding="utf-8")
    return Setup(state, tmp_path / "plans" / "puller.yaml", free_port(), scenarios)


@pytest.fixture
def puller(setup: Setup) -> Iterator[PullerThread]:
    """The supplier's puller, configured with the plan's outbox before anything listens."""
    url = f"https://127.0.0.1:{setup.port}/b2b/outbox"
    puller = Puller(setup.state, ORG, url, restart_after_reset=3, refuse_after_reset="KREDIT")
    with PullerThread(puller) as running:
        yield running


def run_json(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "run.json").read_text())
    return data


def verdicts(run: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in run["cases"]}


class TestInit:
    def test_plans_the_pull_cases_and_the_puller(self, setup: Setup) -> None:
        assert setup.init() == 0
        data = yaml.safe_load(setup.plan.read_text())
        endpoint = data["endpoint"]
        assert endpoint["mode"] == "pull"
        assert endpoint["listen"] == f"127.0.0.1:{setup.port}"
        assert endpoint["cert_sha256"] == cert_sha256(setup.state.supplier_cert(ORG))
        assert "url" not in endpoint
        assert Path(setup.plan.parent, endpoint["cert"]).resolve() == (
            setup.state.supplier_cert(ORG).resolve()
        )
        ids = [c["id"] for c in data["cases"]]
        assert ids == [f"conformance/{c.id}" for c in PULL_CASES] + ["scenario/pull-small"]
        assert "conformance/client-not-icc" not in ids  # push only
        assert "conformance/lost-ack-503" in ids

    @pytest.mark.parametrize(
        ("extra", "says"),
        [
            (("--endpoint", "https://127.0.0.1:1/b2b/envelopes"), "a pulling supplier has none"),
            (("--listen", "127.0.0.1:0"), "has no fixed port"),
            (("--listen", "nowhere"), "is not HOST:PORT"),
        ],
    )
    def test_bad_input_is_one_line_and_writes_nothing(
        self,
        setup: Setup,
        extra: tuple[str, ...],
        says: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        assert setup.init(*extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert says in err
        assert not setup.plan.exists()

    def test_a_puller_certificate_of_another_ca_is_refused(
        self, setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        other = StateDir(tmp_path / "other").ensure()
        init_pki(other, [SupplierIdentity(ORG, "X")])
        assert setup.init("--endpoint-cert", str(other.supplier_cert(ORG))) == 2
        assert "is not issued by the AF test CA of --state" in capsys.readouterr().err
        assert not setup.plan.exists()

    def test_a_push_plan_with_pull_options_is_refused(
        self, setup: Setup, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = setup.cli(
            "plan", "init", "--org-number", ORG, "--name", "X",
            "--endpoint", "https://127.0.0.1:1/b2b/envelopes",
            "--endpoint-ca", str(setup.state.ca_cert), "--listen", "127.0.0.1:9443",
            "--scenarios", str(setup.scenarios), "--out", str(setup.plan),
        )  # fmt: skip
        assert code == 2
        assert "--listen only with --mode pull" in capsys.readouterr().err

    def test_a_state_without_its_ca_is_refused(
        self, setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        empty = StateDir(tmp_path / "empty").ensure()
        code = main(
            ["--state", str(empty.root), "plan", "init", "--org-number", ORG, "--name", "X",
             "--mode", "pull", "--listen", "127.0.0.1:9443", "--scenarios", str(setup.scenarios),
             "--out", str(setup.plan)]
        )  # fmt: skip
        assert code == 2
        assert "no AF test CA in" in capsys.readouterr().err
        assert not setup.plan.exists()


class TestRunWithoutThePuller:
    def test_a_puller_that_never_comes_fails_not_exercised_never_passed(self, setup: Setup) -> None:
        assert setup.init() == 0
        code = setup.cli(
            "plan", "run", str(setup.plan), "--case", "valid-order", "--case", "retry-after-429",
            "--timeout", "0.5",
        )  # fmt: skip
        assert code == 1
        (run_dir,) = setup.runs()
        run = run_json(run_dir)
        assert set(verdicts(run).values()) == {"failed"}
        for case in run["cases"]:
            assert case["reason"].startswith("not exercised: no puller fetched from https://")
        assert run["endpoint"]["listen"] == f"127.0.0.1:{setup.port}"

    def test_scenarios_of_a_plan_listening_off_loopback_are_not_run(self, setup: Setup) -> None:
        assert setup.init(host="localhost") == 0
        assert setup.cli("plan", "run", str(setup.plan), "--case", "scenario/pull-small") == 1
        (run_dir,) = setup.runs()
        (case,) = run_json(run_dir)["cases"]
        assert case["verdict"] == "not run"
        assert "serves its outbox at https://127.0.0.1:" in case["reason"]


@pytest.mark.broker
@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_pull_plan_runs_kit_and_scenario_then_status_and_evidence(
    setup: Setup,
    puller: PullerThread,
    broker_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert setup.init("--readback", puller.readback) == 0
    code = setup.cli(
        "plan", "run", str(setup.plan), "--seed", "7", "--broker", broker_url,
        "--case", "valid-order", "--case", "tampered", "--case", "lost-ack-503",
        "--case", "scenario/pull-small", "--timeout", "10",
    )  # fmt: skip
    (run_dir,) = setup.runs()
    run = run_json(run_dir)
    reasons = {c["id"]: c["reason"] for c in run["cases"]}
    assert verdicts(run) == {
        "conformance/valid-order": "passed",
        "conformance/tampered": "passed",
        "conformance/lost-ack-503": "passed",
        "scenario/pull-small": "passed",
    }, reasons
    assert code == 0
    assert run["endpoint"]["mode"] == "pull"
    assert run["endpoint"]["cert_sha256"] == cert_sha256(setup.state.supplier_cert(ORG))

    # What each kit case served, and what the puller did with it.
    folder = run_dir / "cases" / "conformance-tampered"
    outcome = json.loads((folder / "001-outcome.json").read_text())
    assert outcome["served_file"] == "001-served.xml"
    assert outcome["served"] >= 1
    assert outcome["acknowledged"] is False
    assert outcome["refused"]["code"] == "SIGNATURE_INVALID"
    assert outcome["answer"].startswith("refused SIGNATURE_INVALID")
    assert outcome["envelope_id"].encode() in (folder / "001-served.xml").read_bytes()
    order = json.loads((run_dir / "cases/conformance-valid-order/001-outcome.json").read_text())
    assert (order["acknowledged"], order["refused"]) == (True, None)
    assert order["answer"] == "acknowledged, not listed as refused, loaded once"
    assert order["envelope_id"] in {e["envelope_id"] for e in puller.puller.ledger}
    lost = json.loads((run_dir / "cases/conformance-lost-ack-503/001-outcome.json").read_text())
    assert lost["served"] >= 2  # fetched again after its acknowledgement was lost
    html = (run_dir / "report.html").read_text()
    assert "Puller fetching from" in html
    assert "puller's client certificate SHA-256" in html
    files = {c["id"]: c["files"] for c in run["cases"]}
    assert "cases/conformance-tampered/001-served.xml" in files["conformance/tampered"]

    # The scenario, with the puller as supplier 1: what the ICC served it is kept.
    scenario = run_dir / "cases" / "scenario-pull-small"
    result = json.loads((scenario / "result.json").read_text())
    assert result["endpoint"]["org_number"] == ORG
    checks = {c["name"]: c for c in result["endpoint"]["checks"]}
    pull_checks = {n: c["status"] for n, c in checks.items() if n.startswith("pull.")}
    assert pull_checks == dict.fromkeys(pull_checks, "graded")
    assert len(pull_checks) == 5
    assert result["dead_letters"][0]["reason"].startswith("DOCUMENT_INVALID: ")
    served = [json.loads(line) for line in (scenario / "served.jsonl").read_text().splitlines()]
    assert len(served) == 9  # supplier 1's three chains, each envelope once
    for record in served:
        body = (scenario / record["file"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == record["sha256"]
        assert record["acked_at_ms"] is not None
    pages = [json.loads(line) for line in (scenario / "pull.jsonl").read_text().splitlines()]
    assert {p["org_number"] for p in pages} == {ORG}
    assert not (scenario / "sent.jsonl").exists()  # the other supplier's pushes are not kept

    # Status: what ran passed; the rest of the pull plan is still to do.
    capsys.readouterr()
    assert setup.cli("plan", "status", str(setup.plan), "--json") == 1
    status = json.loads(capsys.readouterr().out)
    cases = {c["id"]: c for c in status["cases"]}
    assert (cases["conformance/tampered"]["verdict"], cases["conformance/tampered"]["seed"]) == (
        "passed",
        7,
    )
    assert cases["conformance/month-end-burst"]["verdict"] == "never run"
    steps = {s["step"]: s for s in status["checklist"]}
    assert steps[4]["done"]
    open_cases = f"{len(PULL_CASES) - 3} conformance case(s) not passed yet ("
    assert steps[5]["missing"][0].startswith(open_cases), steps[5]
    assert steps[6]["done"], steps[6]
    assert not steps[7]["done"]
    assert status["endpoint"]["mode"] == "pull"

    # The evidence pack claims only what was run, and verifies.
    pack = tmp_path / "evidence.zip"
    assert setup.cli("plan", "evidence", str(setup.plan), "--out", str(pack)) == 0
    capsys.readouterr()
    assert setup.cli("evidence", "verify", str(pack)) == 0, capsys.readouterr()
    with zipfile.ZipFile(pack) as z:
        manifest = json.loads(z.read("manifest.json"))
        names = set(z.namelist())
    packed = {c["id"]: c["verdict"] for c in manifest["cases"]}
    assert packed["conformance/valid-order"] == "passed"
    assert packed["conformance/ack-only-fetched"] == "never run"
    assert manifest["endpoint"]["mode"] == "pull"
    assert manifest["supplier_cert_sha256"] == cert_sha256(setup.state.supplier_cert(ORG))
    assert any(n.endswith("conformance-tampered/001-served.xml") for n in names)
    assert any(n.endswith("conformance-tampered/001-outcome.json") for n in names)
