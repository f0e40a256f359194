"""`b2bsim run --target FILE`: several external suppliers, push and pull, each graded on its own."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.lab.pki import SupplierIdentity, cert_sha256, init_pki
from simulator.lab.ports import free_ports
from simulator.runs.pull_endpoint import DEFAULT_PULL_PORT, outbox_url
from simulator.runs.target_file import read_target
from simulator.vocabulary.errors import EndpointError
from simulator.vocabulary.state import StateDir
from tests.simulator.runs.pullers import PULL_CHECKS, Puller
from tests.simulator.runs.receivers import Receiver

REPO = Path(__file__).resolve().parents[3]
ORGS = ("5520000000", "5520000018")  # both Luhn-valid
CA = "state/pki/ca.pem"


@pytest.fixture
def two_state(tmp_path: Path) -> StateDir:
    """A state directory with AF's test CA and ICC, and two suppliers' certificates."""
    state = StateDir(tmp_path / "state").ensure()
    init_pki(state, [SupplierIdentity(org, f"Leverantör {org} AB") for org in ORGS])
    return state


def write(tmp_path: Path, text: str, name: str = "target.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


ENTRY = """\
- org_number: 5520000000
  endpoint: https://127.0.0.1:9444/b2b/envelopes
  endpoint_ca: state/pki/ca.pem
  readback: https://127.0.0.1:9444/b2b/ledger
"""


class TestReading:
    def test_entries_in_order_with_the_ca_relative_to_the_file(
        self, tmp_path: Path, two_state: StateDir
    ) -> None:
        path = write(
            tmp_path,
            ENTRY
            + """\
- org_number: "552000-0018"
  endpoint: https://127.0.0.1:9445/b2b/envelopes
  endpoint_ca: state/pki/ca.pem
  endpoint_cert_sha256: "{PIN}"
  mode: push
""".replace("{PIN}", "AB:CD:" + "ef" * 30),
        )
        first, second = read_target(path, two_state)
        assert (first.org_number, second.org_number) == ORGS
        assert first.ca == tmp_path / CA
        assert first.readback == "https://127.0.0.1:9444/b2b/ledger"
        assert second.readback is None
        assert second.cert_sha256 is not None

    def test_json_is_read_too(self, tmp_path: Path, two_state: StateDir) -> None:
        entry = {"org_number": ORGS[0], "endpoint": "https://h:1/b2b/envelopes", "endpoint_ca": CA}
        (only,) = read_target(write(tmp_path, json.dumps([entry]), "target.json"), two_state)
        assert only.url == "https://h:1/b2b/envelopes"

    @pytest.mark.parametrize(
        ("text", "where", "what"),
        [
            (ENTRY + "  mdoe: push\n", ":5:", "unknown key 'mdoe' (at [0].mdoe)"),
            (ENTRY.replace("5520000000", "5520000001"), ":1:", "not a valid organisation"),
            (ENTRY + ENTRY, ":5:", "listed twice (also entry 1) (at [1].org_number)"),
            (ENTRY.replace("pki/ca.pem", "pki/none.pem"), ":3:", "no CA file"),
            (ENTRY.replace("https://127.0.0.1:9444/b2b/ledger", "http://x"), ":4:", "https"),
            (ENTRY + "  mode: pull\n", ":2:", "a pulling supplier has none (at [0].endpoint)"),
            (ENTRY + "  endpoint_cert: state/pki/ca.pem\n", ":5:", "a push entry has none"),
            ("- org_number: 5520000000\n  endpoint_ca: x.pem\n", ":1:", "missing key 'endpoint'"),
            (ENTRY + "  mode: poll\n", ":5:", "(at [0].mode)"),
            ("org_number: 5520000000\n", ":1:", "expected a list"),
            ("- endpoint: https://h/b2b/envelopes\n", ":1:", "org_number"),
            ("- [oops\n", ":2:", "YAML syntax error"),
        ],
    )
    def test_a_mistake_names_file_line_and_key(
        self, tmp_path: Path, two_state: StateDir, text: str, where: str, what: str
    ) -> None:
        path = write(tmp_path, text)
        with pytest.raises(EndpointError) as caught:
            read_target(path, two_state)
        message = str(caught.value)
        assert f"{path}{where}" in message
        assert what in message
        assert len(caught.value.one_line().splitlines()) == 1

    def test_no_such_file(self, tmp_path: Path, two_state: StateDir) -> None:
        with pytest.raises(EndpointError, match="no such file"):
            read_target(tmp_path / "nothing.yaml", two_state)


PULLER = """\
- org_number: 5520000018
  mode: pull
"""


class TestPullEntries:
    """A `mode: pull` entry: no endpoint, its puller's certificate pinned, one outbox."""

    def test_a_puller_beside_a_push_endpoint(self, tmp_path: Path, two_state: StateDir) -> None:
        path = write(tmp_path, ENTRY + PULLER + "  readback: https://127.0.0.1:9446/b2b/ledger\n")
        push, pull = read_target(path, two_state)
        assert (push.mode, pull.mode) == ("push", "pull")
        assert pull.org_number == ORGS[1]
        assert pull.url == outbox_url(DEFAULT_PULL_PORT)
        assert pull.pull_port == DEFAULT_PULL_PORT
        # with neither endpoint_cert nor a pin: its certificate in the state directory
        assert pull.cert_sha256 == cert_sha256(two_state.supplier_cert(ORGS[1]))
        assert pull.ca == two_state.ca_cert  # its read-back's CA: the AF test CA
        assert pull.readback == "https://127.0.0.1:9446/b2b/ledger"
        assert pull.pull_faults is True
        assert push.pull_port is None

    def test_every_puller_fetches_from_the_runs_one_port(
        self, tmp_path: Path, two_state: StateDir
    ) -> None:
        text = PULLER.replace("5520000018", "5520000000") + PULLER
        one, two = read_target(write(tmp_path, text), two_state, pull_port=9500, pull_faults=False)
        assert one.url == two.url == outbox_url(9500)
        assert one.pull_port == two.pull_port == 9500
        assert (one.pull_faults, two.pull_faults) == (False, False)
        assert one.cert_sha256 != two.cert_sha256

    def test_endpoint_cert_relative_to_the_file_and_a_matching_pin(
        self, tmp_path: Path, two_state: StateDir
    ) -> None:
        cert = two_state.supplier_cert(ORGS[1])
        pin = cert_sha256(cert)
        text = PULLER + f"  endpoint_cert: state/pki/suppliers/{ORGS[1]}.pem\n"
        (pull,) = read_target(write(tmp_path, text + f"  endpoint_cert_sha256: {pin}\n"), two_state)
        assert pull.cert_sha256 == pin
        (alone,) = read_target(
            write(tmp_path, PULLER + f"  endpoint_cert_sha256: {pin}\n"), two_state
        )
        assert alone.cert_sha256 == pin  # a pin alone: no certificate file needed

    def test_another_ca_names_the_entrys_line(self, tmp_path: Path, two_state: StateDir) -> None:
        other = StateDir(tmp_path / "other").ensure()
        init_pki(other, [SupplierIdentity(ORGS[1], "Leverantör AB")])
        path = write(
            tmp_path, ENTRY + PULLER + f"  endpoint_cert: {other.supplier_cert(ORGS[1])}\n"
        )
        with pytest.raises(EndpointError) as caught:
            read_target(path, two_state)
        message = str(caught.value)
        assert f"{path}:7:" in message
        assert "is not issued by the AF test CA of --state" in message
        assert "(at [1].endpoint_cert)" in message

    @pytest.mark.parametrize(
        ("extra", "key", "what"),
        [
            (
                f"  endpoint_cert: state/pki/suppliers/{ORGS[0]}.pem\n",
                "endpoint_cert",
                f"names organisation {ORGS[0]}, not org_number {ORGS[1]}",
            ),
            (
                f"  endpoint_cert: state/pki/suppliers/{ORGS[1]}.pem\n"
                f"  endpoint_cert_sha256: {'ab' * 32}\n",
                "endpoint_cert",
                f"not endpoint_cert_sha256 {'ab' * 32}",
            ),
            ("  endpoint_cert: state/nothing.pem\n", "endpoint_cert", "no certificate file"),
            ("  endpoint_ca: state/nothing.pem\n", "endpoint_ca", "no CA file"),
            (
                "  endpoint: https://127.0.0.1:9/b2b/envelopes\n",
                "endpoint",
                "`endpoint` is the URL the ICC pushes to; a pulling supplier has none",
            ),
            ("  endpoint_cert_sha256: beef\n", "endpoint_cert_sha256", "not a SHA-256 fingerprint"),
        ],
    )
    def test_a_mistake_names_file_line_and_key(
        self, tmp_path: Path, two_state: StateDir, extra: str, key: str, what: str
    ) -> None:
        path = write(tmp_path, PULLER + extra)
        with pytest.raises(EndpointError) as caught:
            read_target(path, two_state)
        message = str(caught.value)
        assert f"{path}:3: " in message
        assert what in message
        assert f"(at [0].{key})" in message
        assert len(caught.value.one_line().splitlines()) == 1

    def test_a_puller_whose_certificate_is_not_known(
        self, tmp_path: Path, two_state: StateDir
    ) -> None:
        path = write(tmp_path, PULLER.replace("5520000018", "5560000001"))
        with pytest.raises(EndpointError) as caught:
            read_target(path, two_state)
        assert f"{path}:2: no certificate of the puller of 5560000001" in str(caught.value)
        assert "endpoint_cert: FILE" in (caught.value.hint or "")


class TestTheCommand:
    def test_a_bad_target_file_is_exit_2_before_anything_starts(
        self, tmp_path: Path, two_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write(tmp_path, ENTRY + "  mode: pull\n")
        scenario = str(REPO / "scenarios" / "bridge-crash.yaml")
        code = main(["--state", str(two_state.root), "run", scenario, "--target", str(path)])
        err = capsys.readouterr().err.strip()
        assert code == 2
        assert len(err.splitlines()) == 1
        assert "a pulling supplier has none (at [0].endpoint)" in err
        assert not two_state.runs.exists() or not any(two_state.runs.iterdir())

    def test_target_and_endpoint_together_are_refused(
        self, tmp_path: Path, two_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write(tmp_path, ENTRY)
        scenario = str(REPO / "scenarios" / "bridge-crash.yaml")
        argv = ["--state", str(two_state.root), "run", scenario, "--target", str(path)]
        code = main([*argv, "--org-number", ORGS[0]])
        assert code == 2
        assert "--target and --org-number" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("text", "extra", "says"),
        [
            (ENTRY, ["--pull-port", "9500"], "--pull-port only applies to a `mode: pull` entry"),
            (ENTRY, ["--no-pull-faults"], "--no-pull-faults only applies to a `mode: pull`"),
            (PULLER, ["--endpoint-mode", "pull"], "--target and --endpoint-mode pull both name"),
            (PULLER, ["--endpoint-cert", CA], "--target and --endpoint-cert both name"),
        ],
    )
    def test_options_that_do_not_go_with_the_file(
        self,
        tmp_path: Path,
        two_state: StateDir,
        capsys: pytest.CaptureFixture[str],
        *,
        text: str,
        extra: list[str],
        says: str,
    ) -> None:
        path = write(tmp_path, text)
        scenario = str(REPO / "scenarios" / "bridge-crash.yaml")
        argv = ["--state", str(two_state.root), "run", scenario, "--target", str(path), *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert says in err

    def test_the_pullers_outbox_port_in_use_is_exit_2(
        self, tmp_path: Path, two_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write(tmp_path, PULLER)
        scenario = str(REPO / "scenarios" / "bridge-crash.yaml")
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            argv = ["--state", str(two_state.root), "run", scenario, "--target", str(path)]
            code = main([*argv, "--pull-port", str(port)])
        assert code == 2
        assert f"cannot serve the outbox on 127.0.0.1:{port}" in capsys.readouterr().err
        assert not two_state.runs.exists() or not any(two_state.runs.iterdir())

    def test_more_external_suppliers_than_the_scenario_has(
        self, tmp_path: Path, two_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with Receiver(two_state, ORGS[0]) as one, Receiver(two_state, ORGS[1]) as two:
            path = write(tmp_path, _target([one, two]))
            scenario = write(
                tmp_path,
                (REPO / "scenarios" / "happy-path.yaml")
                .read_text()
                .replace("  count: 3", "  count: 1")
                .replace("produced: 9", "produced: 3"),
                "one-supplier.yaml",
            )
            argv = ["--state", str(two_state.root), "run", str(scenario), "--target", str(path)]
            code = main(argv)
        assert code == 2
        assert "has 1 supplier(s), but 2 external supplier(s)" in capsys.readouterr().err


def _target(receivers: list[Receiver]) -> str:
    return "".join(
        f"- org_number: {r.org}\n  endpoint: {r.url}\n  endpoint_ca: {CA}\n"
        f"  readback: {r.readback}\n"
        for r in receivers
    )


@pytest.mark.broker
@pytest.mark.integration
def test_each_external_supplier_is_graded_on_its_own(
    broker_url: str, tmp_path: Path, two_state: StateDir
) -> None:
    """Supplier 1 a receiver that loads duplicates twice, supplier 2 a correct one: the
    run fails, naming supplier 1's case only, and each is graded in the result."""
    scenario = write(
        tmp_path,
        (REPO / "scenarios" / "bridge-crash.yaml")
        .read_text()
        .replace("suppliers: {count: 20}", "suppliers: {count: 3}")
        .replace("produce: {chains: 34, rate: 80", "produce: {chains: 3, rate: 2")
        .replace("times: 3, every: 0.5, at: receipt", "times: 2, every: 0.5, at: receipt")
        .replace("times: 10, every: 1.5", "times: 1, every: 1")
        .replace("produced: 2040", "produced: 27")
        .replace("ingested: 2040", "ingested: 27"),
        "bridge-crash.yaml",
    )
    out = tmp_path / "result.json"
    with Receiver(two_state, ORGS[0], "double") as one, Receiver(two_state, ORGS[1]) as two:
        path = write(tmp_path, _target([one, two]))
        code = main(
            [
                *("--state", str(two_state.root), "run", str(scenario)),
                *("--broker", broker_url, "--target", str(path), "--result-json", str(out)),
            ]
        )
    result = json.loads(out.read_text())
    assert code == 1
    grades = {g["org_number"]: g for g in result["endpoints"]}
    assert set(grades) == set(ORGS)
    assert grades[ORGS[0]]["produced"] == grades[ORGS[1]]["produced"] == 9
    assert grades[ORGS[0]]["crash_resends"] >= 2  # the kills at supplier 1's receipt
    assert grades[ORGS[0]]["double_ingested"] >= 2
    assert grades[ORGS[1]]["double_ingested"] == 0
    failed = {e["name"] for e in result["expectations"] if not e["passed"] and "status" not in e}
    assert f"endpoint.double_ingested[{ORGS[0]}]" in failed
    assert not any(name.endswith(f"[{ORGS[1]}]") for name in failed)
    assert one.resends >= 2
    assert two.ledger  # supplier 2 got its messages at its own endpoint
    assert result["endpoint"]["org_number"] == ORGS[0]


@pytest.mark.broker
@pytest.mark.integration
def test_a_push_endpoint_and_a_puller_in_one_run_each_graded_on_its_own(
    broker_url: str, tmp_path: Path, two_state: StateDir, capsys: pytest.CaptureFixture[str]
) -> None:
    """Supplier 1 a correct push receiver, supplier 2 a puller that retries a 503 too soon:
    the puller meets the pull faults and is graded with the pull checks, failing only its
    own case; the receiver is graded from its answers and fails none."""
    scenario = write(
        tmp_path,
        "name: push-and-pull\ndescription: a push endpoint and a puller in one run\n"
        "seed: 3\nsuppliers: {count: 2}\nicc: {workers: 1}\ntimeout: 120\n"
        "steps:\n  - produce: {chains: 3, rate: 20, background: true}\n"
        "  - wait: {timeout: 60}\n"
        "expect: {produced: 18, ingested: 17, dead_lettered: 1}\n",  # the puller refuses 1
        "push-and-pull.yaml",
    )
    (port,) = free_ports(1)
    out = tmp_path / "result.json"
    with (
        Receiver(two_state, ORGS[0]) as receiver,
        Puller(two_state, ORGS[1], outbox_url(port), "impatient") as puller,
    ):
        path = write(
            tmp_path,
            _target([receiver])
            + f"- org_number: {ORGS[1]}\n  mode: pull\n"
            + f"  endpoint_cert: state/pki/suppliers/{ORGS[1]}.pem\n"
            + f"  readback: {puller.readback}\n",
        )
        code = main(
            [
                *("--state", str(two_state.root), "run", str(scenario), "--broker", broker_url),
                *("--target", str(path), "--pull-port", str(port), "--result-json", str(out)),
            ]
        )
    said = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert f"external supplier {ORGS[0]} (supplier 1) at {receiver.url}" in said
    assert f"external supplier {ORGS[1]} (supplier 2) pulls from {outbox_url(port)}" in said
    grades = {g["org_number"]: g for g in result["endpoints"]}
    assert set(grades) == set(ORGS)
    pushed = {c["name"]: c for c in grades[ORGS[0]]["checks"]}
    pulled = {c["name"]: c for c in grades[ORGS[1]]["checks"]}
    assert not any(name.startswith("pull.") for name in pushed)
    assert set(pulled) >= PULL_CHECKS
    assert {n: pulled[n]["status"] for n in PULL_CHECKS} == dict.fromkeys(PULL_CHECKS, "graded")
    # The faults reached this puller: its acknowledgement was lost and fetched again.
    assert pulled["pull.refetch_after_lost_ack"]["failures"] == 0
    failed = {e["name"] for e in result["expectations"] if not e["passed"] and "status" not in e}
    assert failed == {f"pull.honours_retry_after[{ORGS[1]}]"}, result["expectations"]
    assert code == 1
    assert (grades[ORGS[0]]["lost"], grades[ORGS[0]]["double_ingested"]) == (0, 0)
    assert (grades[ORGS[1]]["lost"], grades[ORGS[1]]["double_ingested"]) == (0, 0)
    assert len(receiver.ledger) == 9
    assert len(puller.ledger) == 8  # the credit note it refused reached the DLQ
    assert [d["code"] for d in result["dead_letters"]] == ["PULL_REFUSED"]
