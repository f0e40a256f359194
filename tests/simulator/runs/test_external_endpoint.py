"""`b2bsim run --endpoint`: a scenario run against a supplier's own endpoint.

The receivers (tests/simulator/runs/receivers.py) are written for the tests,
independently of ``supplier_stub/``.  A correct one passes a small copy of
``scenarios/bridge-crash.yaml``; broken ones fail, each naming its case.  The
reference stub started by hand (``b2bsim serve supplier-stub``) passes too.

The redelivery after an ICC crash really happens: like bridge-crash, the copy
kills an ICC worker right after supplier 1's receipt and before the broker ack
(``{kill: icc, at: receipt}``); the broker hands the message to another worker,
which signs it again (new signature, new creation time) and re-sends it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from simulator.cli import main
from simulator.lab.pki import SupplierIdentity, init_pki
from simulator.lab.ports import free_ports
from simulator.runs.endpoint import ExternalEndpoint, LedgerEntry, check_endpoint, read_page
from simulator.runs.endpoint_grading import grade_endpoint
from simulator.runs.runner import RunOptions, RunResult, run_scenario
from simulator.runs.scenario import KillIcc, Produce, Scenario, Sleep, Wait, load_scenario
from simulator.vocabulary.state import StateDir
from tests.simulator.runs.receivers import Receiver, hand_started_stub

REPO = Path(__file__).resolve().parents[3]
BRIDGE_CRASH = REPO / "scenarios" / "bridge-crash.yaml"
ORG = "5520000000"  # Luhn-valid; supplier 1 of the run
SBD = "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"
NS = {"sbd": SBD}


def small_bridge_crash() -> Scenario:
    """scenarios/bridge-crash.yaml, small: 2 suppliers and 2 ICC workers, killed twice
    right after supplier 1's receipt and twice at random."""
    big = load_scenario(BRIDGE_CRASH)
    assert KillIcc(times=3, every=0.5, at="receipt") in big.steps  # the copy is like it
    return dataclasses.replace(
        big,
        supplier_count=2,
        icc_workers=2,
        timeout=120,
        steps=(
            Produce(chains=4, rate=2, background=True),  # 12 s: traffic for every kill
            Sleep(0.5),
            KillIcc(times=2, every=0.5, at="receipt"),
            KillIcc(times=2, every=1),
            Wait(timeout=60),
        ),
        expect={"produced": 24, "ingested": 24, "dead_lettered": 0},
    )


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def ext_state(tmp_path: Path) -> StateDir:
    """A state directory as AF gives it to a supplier: the test CA, the ICC, supplier ORG."""
    state = StateDir(tmp_path / "state").ensure()
    init_pki(state, [SupplierIdentity(ORG, "Leverantör Extern AB")])
    return state


def run_against(
    receiver: Receiver, state: StateDir, broker_url: str, *, readback: bool = True
) -> RunResult:
    endpoint = ExternalEndpoint(
        url=receiver.url,
        ca=state.ca_cert,
        org_number=ORG,
        readback=receiver.readback if readback else None,
    )
    options = RunOptions(state=state, broker_url=broker_url, endpoint=endpoint)
    return run_scenario(small_bridge_crash(), options)


def failed(result: RunResult) -> dict[str, str]:
    return {e.name: e.reason for e in result.expectations if e.status == "graded" and not e.passed}


def failed_cases(result: RunResult) -> set[str]:
    """The external supplier's cases that failed (the scenario's own figures left out)."""
    return {name for name in failed(result) if name.startswith("endpoint.")}


# --- runs -------------------------------------------------------------------------------


@pytest.mark.broker
@pytest.mark.integration
class TestReceiversInTheChain:
    def test_a_correct_receiver_passes_bridge_crash(
        self, broker_url: str, ext_state: StateDir
    ) -> None:
        with Receiver(ext_state, ORG) as receiver:
            result = run_against(receiver, ext_state, broker_url)
        grade = result.endpoint
        assert grade is not None
        assert result.passed, (failed(result), result.error)
        assert (len(grade.lost_ids), len(grade.double_ids)) == (0, 0)
        assert grade.produced == 12
        # Each message was accepted once; an answer lost with the killed worker came back,
        # on the re-send, as a duplicate (accepted_once allows exactly that case).
        assert grade.accepted <= 12
        assert grade.accepted + grade.duplicates >= 12
        # The kills at supplier 1's receipt really re-sent re-signed envelopes, each
        # answered `duplicate`, and the case was graded (not merely not exercised).
        assert grade.crash_resends >= 2
        assert receiver.resends >= 2
        assert grade.duplicates >= 2
        checks = {c.name: c for c in grade.checks}
        assert checks["endpoint.redelivery_not_conflict"].status == "graded"
        assert checks["endpoint.redelivery_not_conflict"].passed
        assert "re-signed re-send(s) after an ICC crash" in (
            checks["endpoint.redelivery_not_conflict"].reason
        )
        # Nothing had to be refused in this run: not exercised, never passed.
        assert checks["endpoint.nothing_refused_accepted"].status == "not exercised"
        assert not checks["endpoint.nothing_refused_accepted"].passed
        assert result.figures.lost == 0
        assert result.figures.ingested == 24
        latency = grade.to_json()["latency_ms"]
        assert latency["p50"] is not None
        assert latency["p99"] >= latency["p50"]
        saved = json.loads((result.run_dir / "result.json").read_text())
        assert saved["endpoint"]["lost"] == 0
        assert saved["endpoint"]["crash_resends"] == grade.crash_resends
        assert saved["verdict"] == "passed"

    def test_a_409_to_a_re_signed_redelivery_fails_its_case(
        self, broker_url: str, ext_state: StateDir
    ) -> None:
        with Receiver(ext_state, ORG, "conflict") as receiver:
            result = run_against(receiver, ext_state, broker_url)
        failures = failed(result)
        assert result.verdict == "failed"
        assert failed_cases(result) == {"endpoint.redelivery_not_conflict"}
        assert "redelivery-after-crash" in failures["endpoint.redelivery_not_conflict"]
        assert "409" in failures["endpoint.redelivery_not_conflict"]

    def test_loading_duplicates_twice_fails_its_case(
        self, broker_url: str, ext_state: StateDir
    ) -> None:
        with Receiver(ext_state, ORG, "double") as receiver:
            result = run_against(receiver, ext_state, broker_url)
        failures = failed(result)
        assert result.verdict == "failed"
        assert failed_cases(result) == {"endpoint.double_ingested"}  # its answers were right
        assert "loaded-once" in failures["endpoint.double_ingested"]

    def test_loading_out_of_order_fails_its_case(
        self, broker_url: str, ext_state: StateDir
    ) -> None:
        with Receiver(ext_state, ORG, "disorder") as receiver:
            result = run_against(receiver, ext_state, broker_url)
        failures = failed(result)
        assert result.verdict == "failed"
        assert failed_cases(result) <= {"endpoint.out_of_order", "endpoint.credit_before_invoice"}
        assert "in-order" in failures["endpoint.out_of_order"]

    def test_without_a_read_back_the_ledger_is_not_graded(
        self, broker_url: str, ext_state: StateDir
    ) -> None:
        with Receiver(ext_state, ORG, "double") as receiver:  # would fail loaded-once, if seen
            result = run_against(receiver, ext_state, broker_url, readback=False)
        statuses = {e.name: (e.status, e.reason) for e in result.expectations}
        assert statuses["endpoint.double_ingested"] == ("not graded", "not graded (no read-back)")
        assert statuses["ingested"][0] == "not graded"
        assert statuses["endpoint.accepted_once"][0] == "graded"
        assert result.verdict == "not graded (no read-back)"
        assert not result.passed


@pytest.mark.broker
@pytest.mark.integration
def test_the_reference_stub_started_by_hand_passes(broker_url: str, tmp_path: Path) -> None:
    """`b2bsim serve supplier-stub` as the endpoint, `b2bsim run … --readback`: passes,
    with re-signed re-sends after ICC crashes that reached it."""
    with hand_started_stub(tmp_path) as stub:
        scenario = tmp_path / "bridge-crash.yaml"
        scenario.write_text(
            BRIDGE_CRASH.read_text()
            .replace("suppliers: {count: 20}", "suppliers: {count: 2}")
            .replace("produce: {chains: 34, rate: 80", "produce: {chains: 3, rate: 1.5")
            .replace("times: 3, every: 0.5, at: receipt", "times: 2, every: 0.5, at: receipt")
            .replace("times: 10, every: 1.5", "times: 2, every: 1")
            .replace("produced: 2040", "produced: 18")
            .replace("ingested: 2040", "ingested: 18")
        )
        out = tmp_path / "result.json"
        argv = ["--state", str(stub.state), "run", str(scenario), "--broker", broker_url]
        code = main([*argv, *stub.endpoint_args(), "--result-json", str(out)])
        result = json.loads(out.read_text())
        assert code == 0, result["expectations"]
        assert result["endpoint"]["lost"] == 0
        assert result["endpoint"]["double_ingested"] == 0
        assert result["endpoint"]["loaded"] == result["endpoint"]["produced"] == 9
        assert result["endpoint"]["crash_resends"] >= 2
        checks = {c["name"]: c for c in result["endpoint"]["checks"]}
        assert checks["endpoint.redelivery_not_conflict"]["status"] == "graded"
        # Its read-back answers what docs/openapi.yaml specifies, page by page.
        endpoint = ExternalEndpoint(
            stub.url, stub.state / "pki" / "ca.pem", stub.org, readback=stub.readback
        )
        page_schema = ledger_page_schema()
        state = StateDir(stub.state)
        first = read_page(state, check_endpoint(state, endpoint), 0, 4)
        jsonschema.Draft202012Validator(page_schema).validate(first)
        assert [e["position"] for e in first["entries"]] == sorted(
            e["position"] for e in first["entries"]
        )
        assert len(first["entries"]) == 4
        assert first["next"] == first["entries"][-1]["position"]


def ledger_page_schema() -> dict[str, Any]:
    """The LedgerPage schema of docs/openapi.yaml, its references resolved."""
    spec = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
    schemas = spec["components"]["schemas"]
    text = yaml.safe_dump({**schemas["LedgerPage"], "$defs": schemas})
    return dict(yaml.safe_load(text.replace("#/components/schemas/", "#/$defs/")))


# --- bad input: a one-line error, exit 2, nothing started --------------------------------


def children() -> set[int]:
    """This process's child processes now (Linux: /proc/self/task/*/children)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            found |= {int(pid) for pid in (task / "children").read_text().split()}
    return found


class TestBadInput:
    """Each: exit 2 with a one-line error before anything starts, no process left behind."""

    @pytest.fixture(autouse=True)
    def _nothing_left_running(self) -> Iterator[None]:
        before = children()
        yield
        assert children() <= before, "a bad-input run left a process behind"

    def _run(self, state: StateDir, *extra: str) -> int:
        return main(["--state", str(state.root), "run", str(BRIDGE_CRASH), *extra])

    def _nothing_started(self, state: StateDir, err: str) -> None:
        assert len(err.strip().splitlines()) == 1, err
        assert not state.runs.exists() or not any(state.runs.iterdir())

    def test_a_read_back_that_answers_json_that_is_no_ledger_page(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with Receiver(ext_state, ORG, "garbage") as receiver:
            code = self._run(
                ext_state,
                *("--endpoint", receiver.url, "--endpoint-ca", str(ext_state.ca_cert)),
                *("--org-number", ORG, "--readback", receiver.readback),
            )
        err = capsys.readouterr().err.strip()
        assert code == 2
        assert len(err.splitlines()) == 1
        assert "READBACK_INVALID" in err
        assert "answered garbage" in err
        assert not ext_state.runs.exists() or not any(ext_state.runs.iterdir())

    def test_a_non_luhn_org_number(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with Receiver(ext_state, ORG) as receiver:
            code = self._run(
                ext_state,
                "--endpoint",
                receiver.url,
                "--endpoint-ca",
                str(ext_state.ca_cert),
                "--org-number",
                "5520000001",
            )
        err = capsys.readouterr().err.strip()
        assert code == 2
        assert "not a valid organisation number" in err
        assert len(err.splitlines()) == 1
        assert not ext_state.runs.exists() or not any(ext_state.runs.iterdir())

    def test_a_certificate_that_does_not_match_the_pin(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with Receiver(ext_state, ORG) as receiver:
            code = self._run(
                ext_state,
                "--endpoint",
                receiver.url,
                "--endpoint-ca",
                str(ext_state.ca_cert),
                "--org-number",
                ORG,
                "--endpoint-cert-sha256",
                "ab" * 32,
            )
        err = capsys.readouterr().err
        assert code == 2
        assert "ENDPOINT_UNUSABLE" in err
        assert "--endpoint-cert-sha256" in err
        self._nothing_started(ext_state, err)

    def test_an_untrusted_endpoint(
        self, ext_state: StateDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        other = StateDir(tmp_path / "other").ensure()
        init_pki(other, [])
        with Receiver(ext_state, ORG) as receiver:
            code = self._run(
                ext_state,
                "--endpoint",
                receiver.url,
                "--endpoint-ca",
                str(other.ca_cert),
                "--org-number",
                ORG,
            )
        assert code == 2
        err = capsys.readouterr().err
        assert "untrusted certificate" in err
        self._nothing_started(ext_state, err)

    def test_an_unreachable_endpoint(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (port,) = free_ports(1)
        code = self._run(
            ext_state,
            "--endpoint",
            f"https://127.0.0.1:{port}/b2b/envelopes",
            "--endpoint-ca",
            str(ext_state.ca_cert),
            "--org-number",
            ORG,
        )
        assert code == 2
        err = capsys.readouterr().err
        assert "cannot reach the endpoint" in err
        self._nothing_started(ext_state, err)

    def test_a_read_back_that_answers_garbage(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with Receiver(ext_state, ORG) as receiver:
            code = self._run(
                ext_state,
                "--endpoint",
                receiver.url,
                "--endpoint-ca",
                str(ext_state.ca_cert),
                "--org-number",
                ORG,
                "--readback",
                receiver.url.replace("envelopes", "nothing"),
            )
        err = capsys.readouterr().err
        assert code == 2
        assert "READBACK_INVALID" in err
        self._nothing_started(ext_state, err)


# --- grading, on hand-written events -------------------------------------------------------


def _produced(n: int) -> list[dict[str, Any]]:
    return [
        {
            "message_id": f"m{i}",
            "org_number": ORG,
            "produced_at_ms": 1000 + i,
            "sequence": i,
            "message_type": "INKOPSORDER",
            "correlation_id": f"c{i}",
        }
        for i in range(1, n + 1)
    ]


def _answer(
    event: str, m: str, receipt: str | None, status: int = 200, at: int = 5000
) -> dict[str, Any]:
    return {
        "event": event,
        "message_id": m,
        "org_number": ORG,
        "status": status,
        "receipt": receipt,
        "latency_ms": 7,
        "at_ms": at,
    }


class TestGrading:
    def test_an_accepted_answer_lost_with_a_killed_worker_is_no_failure(self) -> None:
        events = [
            {"event": "consumed", "message_id": "m1", "org_number": ORG, "at_ms": 1},
            {"event": "consumed", "message_id": "m1", "org_number": ORG, "at_ms": 2},
            _answer("delivered", "m1", "duplicate"),
        ]
        grade = grade_endpoint(ORG, _produced(1), events, None)
        checks = {c.name: c for c in grade.checks}
        assert checks["endpoint.accepted_once"].passed

    def _consumed(self, at: int) -> dict[str, Any]:
        return {"event": "consumed", "message_id": "m1", "org_number": ORG, "at_ms": at}

    def test_a_re_signed_re_send_after_a_crash_answered_duplicate_is_graded(self) -> None:
        events = [
            self._consumed(1),
            _answer("ack_held", "m1", "accepted", 201, at=2),  # then kill -9
            self._consumed(3),
            _answer("delivered", "m1", "duplicate", at=4),
        ]
        grade = grade_endpoint(ORG, _produced(1), events, None)
        checks = {c.name: c for c in grade.checks}
        assert grade.crash_resends == 1
        assert (grade.accepted, grade.duplicates) == (1, 1)
        for name in ("redelivery_not_conflict", "resend_duplicate", "accepted_once"):
            assert checks[f"endpoint.{name}"].status == "graded"
            assert checks[f"endpoint.{name}"].passed, checks[f"endpoint.{name}"].reason

    def test_a_held_answer_whose_worker_lived_is_one_answer(self) -> None:
        events = [
            self._consumed(1),
            _answer("ack_held", "m1", "accepted", 201, at=2),
            _answer("delivered", "m1", "accepted", 201, at=3),
        ]
        grade = grade_endpoint(ORG, _produced(1), events, None)
        checks = {c.name: c for c in grade.checks}
        assert (grade.accepted, grade.crash_resends) == (1, 0)
        assert checks["endpoint.accepted_once"].passed

    def test_a_re_send_after_a_crash_accepted_again_fails(self) -> None:
        events = [
            self._consumed(1),
            _answer("ack_held", "m1", "accepted", 201, at=2),
            self._consumed(3),
            _answer("delivered", "m1", "accepted", 201, at=4),
        ]
        checks = {c.name: c for c in grade_endpoint(ORG, _produced(1), events, None).checks}
        assert checks["endpoint.resend_duplicate"].failures == 1
        assert checks["endpoint.accepted_once"].failures == 1

    def test_a_run_without_re_sends_does_not_exercise_them(self) -> None:
        events = [self._consumed(1), _answer("delivered", "m1", "accepted", 201, at=2)]
        checks = {c.name: c for c in grade_endpoint(ORG, _produced(1), events, None).checks}
        for name in ("redelivery_not_conflict", "resend_duplicate", "nothing_refused_accepted"):
            assert checks[f"endpoint.{name}"].status == "not exercised"
            assert not checks[f"endpoint.{name}"].passed
        assert checks["endpoint.accepted_once"].passed

    def test_the_iccs_own_re_send_is_written_first_yet_answered_second(self) -> None:
        """The ICC writes `duplicated` (its second push) before `delivered` (its first)."""
        events = [
            self._consumed(1),
            _answer("duplicated", "m1", "duplicate", at=3),
            _answer("delivered", "m1", "accepted", 201, at=4),
        ]
        checks = {c.name: c for c in grade_endpoint(ORG, _produced(1), events, None).checks}
        assert checks["endpoint.resend_duplicate"].passed, checks["endpoint.resend_duplicate"]
        assert checks["endpoint.accepted_once"].passed

    def test_a_duplicate_never_consumed_twice_fails_accepted_once(self) -> None:
        grade = grade_endpoint(ORG, _produced(1), [_answer("delivered", "m1", "duplicate")], None)
        check = next(c for c in grade.checks if c.name == "endpoint.accepted_once")
        assert check.failures == 1
        assert "before this run" in check.reason

    def test_a_re_send_accepted_again_fails(self) -> None:
        events = [
            _answer("delivered", "m1", "accepted", 201),
            _answer("duplicated", "m1", "accepted", 201),
        ]
        grade = grade_endpoint(ORG, _produced(1), events, None)
        checks = {c.name: c for c in grade.checks}
        assert checks["endpoint.resend_duplicate"].failures == 1
        assert checks["endpoint.accepted_once"].failures == 1

    def test_accepted_after_the_icc_was_revoked_fails(self) -> None:
        events = [_answer("delivered", "m1", "accepted", 201, at=10_000)]
        grade = grade_endpoint(ORG, _produced(1), events, None, icc_revoked_at_ms=5_000)
        check = next(c for c in grade.checks if c.name == "endpoint.nothing_refused_accepted")
        assert check.failures == 1
        assert "revoked" in check.reason

    def test_a_read_back_that_fails_mid_run_fails_the_ledger_cases(self) -> None:
        events = [_answer("delivered", "m1", "accepted", 201)]
        grade = grade_endpoint(
            ORG, _produced(1), events, None, readback_error="garbage: no entries"
        )
        ledger = [c for c in grade.checks if c.name == "endpoint.out_of_order"]
        assert ledger[0].status == "graded"
        assert not ledger[0].passed
        assert "garbage" in ledger[0].reason

    def test_a_credit_before_its_invoice(self) -> None:

        produced = [
            {
                "message_id": "inv",
                "org_number": ORG,
                "produced_at_ms": 1,
                "sequence": 1,
                "message_type": "SJALVFAKTURA",
                "correlation_id": "c",
            },
            {
                "message_id": "cred",
                "org_number": ORG,
                "produced_at_ms": 2,
                "sequence": 2,
                "message_type": "KREDIT",
                "correlation_id": "c",
            },
        ]
        events = [_answer("delivered", m, "accepted", 201) for m in ("inv", "cred")]
        ledger = [LedgerEntry(1, "e2", "cred", 1), LedgerEntry(2, "e1", "inv", 2)]
        grade = grade_endpoint(ORG, produced, events, ledger)
        checks = {c.name: c for c in grade.checks}
        assert checks["endpoint.credit_before_invoice"].failures == 1
        assert checks["endpoint.out_of_order"].failures == 1
        assert checks["endpoint.lost"].passed
        assert checks["endpoint.double_ingested"].passed


def test_scenario_list_endpoint_says_what_applies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "list", "--endpoint", "--dir", str(REPO / "scenarios")]) == 0
    out = capsys.readouterr().out
    assert "bridge-crash: every step applies" in out
    outage = out.split("supplier-outage:")[1].split("\n")
    assert "1 step(s) not applicable" in outage[0]
    assert "step 4: not applicable: `fault: {supplier: down}`" in outage[1]
    assert "`pki: {revoke: icc}`" in out.split("cert-revoked:")[1].split("cert-rotation:")[0]


def test_only_this_runs_loads_are_graded_from_the_read_back() -> None:
    """An envelope the endpoint held from before (a conformance case's) and loaded
    during the run is not this run's; a load under this run's envelope of a message
    KA never produced is."""
    events = [
        {**_answer("delivered", "m1", "accepted"), "envelope_id": "e1"},
        {**_answer("delivered", "m2", "accepted"), "envelope_id": "e2"},
    ]
    earlier = LedgerEntry(1, "kit-envelope", "kit-message", 900)
    ledger = [earlier, LedgerEntry(2, "e1", "m1", 1001), LedgerEntry(3, "e2", "m2", 1002)]
    checks = {c.name: c for c in grade_endpoint(ORG, _produced(2), events, ledger).checks}
    assert checks["endpoint.double_ingested"].passed
    garbage = LedgerEntry(4, "e2", "not-ka", 1003)
    checks = {
        c.name: c for c in grade_endpoint(ORG, _produced(2), events, [*ledger, garbage]).checks
    }
    assert checks["endpoint.double_ingested"].failures == 1
