"""The pytest plugin suppliers use: its fixtures run in a pytest of their own (pytester)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from simulator.lab.broker import BROKER_ENV
from simulator.lab.pki import SupplierIdentity, init_pki
from simulator.vocabulary.state import StateDir

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[3]
HAPPY_PATH = REPO / "scenarios" / "happy-path.yaml"

#: The inner runs are a supplier's pytest: no ini of ours, only what they would set.
INNER_INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


@pytest.fixture
def supplier_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, broker_url: str
) -> pytest.Pytester:
    """A supplier's test directory whose runs use our session's real broker."""
    monkeypatch.setenv(BROKER_ENV, broker_url)
    pytester.makeini(INNER_INI)
    return pytester


class TestRegistration:
    def test_entry_point_names_the_plugin(self) -> None:
        """The plugin is registered under pytest11, so installing b2bsim is enough."""
        found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
        assert found.get("b2bsim") == "simulator.kits.pytest_plugin"

    def test_fixtures_and_option_are_offered(self, pytester: pytest.Pytester) -> None:
        """A plain pytest run knows the fixtures and the --b2bsim-suppliers option."""
        pytester.makeini(INNER_INI)
        fixtures = pytester.runpytest("--fixtures")
        for name in ("b2bsim_state", "b2bsim_broker", "b2bsim_chain", "b2bsim_run"):
            fixtures.stdout.fnmatch_lines([f"{name}*"])
        pytester.runpytest("--help").stdout.fnmatch_lines(["*--b2bsim-suppliers=N*"])


@pytest.mark.broker
@pytest.mark.integration
class TestFixtures:
    @pytest.mark.timeout(300)
    def test_run_fixture_runs_happy_path(self, supplier_tests: pytest.Pytester) -> None:
        """b2bsim_run runs scenarios/happy-path.yaml end to end and returns a passing result."""
        supplier_tests.makepyfile(
            f"""
            def test_happy_path(b2bsim_run):
                result = b2bsim_run({str(HAPPY_PATH)!r})
                assert result.passed, result.to_json()
                assert result.figures.ingested == 9
                assert result.figures.lost == 0
            """
        )
        result = supplier_tests.runpytest_subprocess("-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)

    @pytest.mark.timeout(300)
    def test_chain_fixture_produces_and_reconciles(self, supplier_tests: pytest.Pytester) -> None:
        """b2bsim_chain delivers what a test produces, for --b2bsim-suppliers suppliers."""
        supplier_tests.makepyfile(
            """
            def test_chain(b2bsim_chain):
                assert len(b2bsim_chain.registry) == 2
                assert b2bsim_chain.produce(chains=1) == 6
                assert b2bsim_chain.produce(doc_type="order", count=1) == 2
                figures = b2bsim_chain.wait(timeout=60)
                assert (figures.ingested, figures.lost, figures.double_ingested) == (8, 0, 0)
                assert b2bsim_chain.reconcile().figures() == figures.figures()
                assert (b2bsim_chain.run_dir / "produced.jsonl").exists()

            def test_point_at_moves_a_supplier(b2bsim_chain):
                org = b2bsim_chain.suppliers[0].org_number
                b2bsim_chain.point_at(org, "https://127.0.0.1:9/b2b/envelopes")
                assert b2bsim_chain.registry.lookup(org).url == "https://127.0.0.1:9/b2b/envelopes"
            """
        )
        result = supplier_tests.runpytest_subprocess(
            "-p", "no:cacheprovider", "--b2bsim-suppliers=2"
        )
        result.assert_outcomes(passed=2)


class TestBrokerFixture:
    def test_unusable_broker_fails_never_skips(
        self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A $B2BSIM_BROKER nobody answers at is an error of the test, not a skip."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed when the block ends: nothing listens there
        monkeypatch.setenv(BROKER_ENV, f"stomp://127.0.0.1:{port}")
        pytester.makeini(INNER_INI)
        pytester.makepyfile("def test_needs_broker(b2bsim_broker):\n    pass\n")
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines([f"*${BROKER_ENV}=stomp://127.0.0.1:{port} is not usable*"])


# --- a supplier's own endpoint, already running, in the chain ------------------------------

RECEIVER = Path(__file__).with_name("receivers_for_plugin.py")
ORG = "5520000000"  # Luhn-valid: the supplier AF gave the state directory to

#: A supplier's test that uses only the public calls: the ICC killed mid-flight.
KILLED_MID_FLIGHT = f"""
import pytest

from simulator.vocabulary.errors import ConfigError


def test_the_icc_killed_mid_flight(b2bsim_chain):
    assert b2bsim_chain.registry.lookup({ORG!r}).url.startswith("https://127.0.0.1:")
    produced = b2bsim_chain.produce(chains=3)
    b2bsim_chain.kill_icc(times=2, every=2.0, after=1)  # while an answer is held
    b2bsim_chain.wait(timeout=120)
    grade = b2bsim_chain.assert_endpoint_ok()  # fails naming each case and why
    mine = 9  # 3 chains of order, invoice, credit note
    assert grade.produced == mine and produced == mine * len(b2bsim_chain.suppliers)
    assert grade.loaded == mine, grade.to_json()
    assert (grade.lost_ids, grade.double_ids) == ([], [])
    assert grade.duplicates >= 1, "no re-signed redelivery happened"
    # What does not apply to an external supplier is refused with the reason.
    with pytest.raises(ConfigError, match="not applicable to the external endpoint"):
        b2bsim_chain.revoke_certificate(0)
    with pytest.raises(ConfigError, match="own_broker=True"):
        b2bsim_chain.restart_broker()


def test_a_whole_scenario_with_the_endpoint_as_supplier_1(b2bsim_run):
    result = b2bsim_run({str(HAPPY_PATH)!r})
    assert result.passed, result.to_json()
    assert (result.endpoint.org_number, result.endpoint.loaded) == ({ORG!r}, 3)
"""


@pytest.fixture
def af_state(tmp_path: Path) -> StateDir:
    """The state directory AF gives a supplier: the test CA, the ICC, the supplier's own."""
    state = StateDir(tmp_path / "af-state").ensure()
    init_pki(state, [SupplierIdentity(ORG, "Leverantör Plugin AB")])
    return state


@contextlib.contextmanager
def running_receiver(state: StateDir, log: Path, mode: str = "correct") -> Iterator[dict[str, str]]:
    """receivers_for_plugin.py as a process of its own; its URLs while it runs."""
    receiver = subprocess.Popen(
        [
            sys.executable,
            str(RECEIVER),
            *("--cert", str(state.supplier_cert(ORG)), "--key", str(state.supplier_key(ORG))),
            *("--ca", str(state.ca_cert), "--icc", str(state.icc_cert)),
            *("--org", ORG, "--log", str(log), "--mode", mode),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        line = receiver.stdout.readline()
        assert line, "the receiver did not start"
        yield dict(json.loads(line))
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(20)
        if receiver.stdout is not None:
            receiver.stdout.close()


def endpoint_args(state: StateDir, urls: dict[str, str], *extra: str) -> list[str]:
    return [
        "-p",
        "no:cacheprovider",
        f"--b2bsim-state={state.root}",
        f"--b2bsim-endpoint={urls['url']}",
        f"--b2bsim-endpoint-ca={state.ca_cert}",
        f"--b2bsim-org-number={ORG}",
        f"--b2bsim-readback={urls['readback']}",
        *extra,
    ]


def answers(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.broker
@pytest.mark.integration
class TestExternalEndpoint:
    @pytest.mark.timeout(300)
    def test_icc_killed_mid_flight_each_message_accepted_once_and_loaded_once(
        self, supplier_tests: pytest.Pytester, af_state: StateDir, tmp_path: Path
    ) -> None:
        """A receiver running before the session; the ICC killed through the public calls."""
        log = tmp_path / "answers.jsonl"
        supplier_tests.makepyfile(KILLED_MID_FLIGHT)
        with running_receiver(af_state, log) as urls:
            result = supplier_tests.runpytest_subprocess(
                *endpoint_args(af_state, urls, "--b2bsim-suppliers=2")
            )
        result.assert_outcomes(passed=2)
        # The receiver's own record: one 201 per envelope, a re-signed redelivery answered 200
        # (9 envelopes of the chain, 3 of happy-path's run).
        seen = answers(log)
        accepted = [a["envelope_id"] for a in seen if a["status"] == 201]
        assert len(accepted) == len(set(accepted)) == 9 + 3
        bodies: dict[str, set[str]] = {}
        for a in seen:
            bodies.setdefault(a["envelope_id"], set()).add(a["body"])
        resigned = [e for e, b in bodies.items() if len(b) > 1]
        assert resigned, "the kill -9 re-sent no envelope signed anew"
        assert {a["status"] for a in seen if a["envelope_id"] in resigned} == {200, 201}
        # The AF state directory is only read: the chain worked on a copy.
        assert not af_state.runs.exists() or not any(af_state.runs.iterdir())

    @pytest.mark.timeout(300)
    def test_a_409_to_the_re_signed_redelivery_fails_naming_why(
        self, supplier_tests: pytest.Pytester, af_state: StateDir, tmp_path: Path
    ) -> None:
        """The broken receiver of issue 15: the supplier's test fails and says why."""
        log = tmp_path / "answers.jsonl"
        supplier_tests.makepyfile(KILLED_MID_FLIGHT)
        with running_receiver(af_state, log, "conflict") as urls:
            result = supplier_tests.runpytest_subprocess(
                *endpoint_args(af_state, urls, "--b2bsim-suppliers=1")
            )
        result.assert_outcomes(failed=1, passed=1)  # happy-path re-sends nothing: it passes
        result.stdout.fnmatch_lines(
            [
                "*the endpoint of 5520000000 failed 1 case(s): endpoint.redelivery_not_conflict: "
                "redelivery-after-crash: the endpoint answered 409*it must answer 200 `duplicate`*"
            ]
        )
        assert 409 in {a["status"] for a in answers(log)}

    @pytest.mark.timeout(300)
    def test_broker_and_icc_faults_on_a_chain_with_its_own_broker(
        self, supplier_tests: pytest.Pytester
    ) -> None:
        """restart_broker() and duplicate() on the stub: nothing lost, nothing loaded twice."""
        supplier_tests.makepyfile(
            """
            import pytest

            @pytest.mark.b2bsim(own_broker=True, suppliers=1)
            def test_faults(b2bsim_chain):
                assert b2bsim_chain.produce(chains=1) == 3
                b2bsim_chain.restart_broker(down=1.0)
                b2bsim_chain.duplicate()
                assert b2bsim_chain.produce(chains=1) == 3
                b2bsim_chain.restart_broker(down=1.0, background=True)  # wait() waits for it
                assert b2bsim_chain.produce(chains=1, rate=5) == 3
                figures = b2bsim_chain.wait(timeout=120)
                assert (figures.ingested, figures.lost, figures.double_ingested) == (9, 0, 0)
                assert figures.redelivered >= 1  # the ICC's duplicates reached the stub
                assert b2bsim_chain.components.broker_restarts == 2
            """
        )
        result = supplier_tests.runpytest_subprocess("-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)


class TestExternalConfig:
    def test_the_options_and_ini_keys_are_offered(self, pytester: pytest.Pytester) -> None:
        pytester.makeini(INNER_INI)
        help_text = pytester.runpytest("--help").stdout
        help_text.fnmatch_lines(["*--b2bsim-state=DIR*", "*--b2bsim-endpoint=URL*"])
        help_text.fnmatch_lines(["*--b2bsim-org-number=N*", "*--b2bsim-readback=URL*"])
        help_text.fnmatch_lines(["*b2bsim_endpoint_ca*"])

    def test_a_non_luhn_org_number_is_a_one_line_usage_error(
        self, pytester: pytest.Pytester, af_state: StateDir
    ) -> None:
        pytester.makeini(INNER_INI)
        pytester.makepyfile("def test_x(b2bsim_chain):\n    pass\n")
        result = pytester.runpytest_subprocess(
            f"--b2bsim-state={af_state.root}",
            "--b2bsim-endpoint=https://127.0.0.1:9/b2b/envelopes",
            "--b2bsim-org-number=5520000001",
        )
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        errors = [line for line in result.stderr.lines if line.strip()]
        assert errors == [
            "ERROR: b2bsim: --b2bsim-org-number '5520000001' is not a valid organisation "
            "number: give the 10 digits of your number, the last a Luhn check digit"
        ]

    def test_ini_keys_are_relative_to_the_ini_file(self, pytester: pytest.Pytester) -> None:
        pytester.makeini(
            INNER_INI + "b2bsim_state = given/af-state\n"
            "b2bsim_endpoint = https://127.0.0.1:9/b2b/envelopes\n"
            f"b2bsim_org_number = {ORG}\n"
        )
        pytester.makepyfile("def test_x():\n    pass\n")
        result = pytester.runpytest_subprocess()
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        where = pytester.path / "given" / "af-state"
        result.stderr.fnmatch_lines(
            [f"ERROR: b2bsim: --b2bsim-state {where} is not a state directory AF gave you*"]
        )

    def test_an_endpoint_option_without_an_endpoint_is_a_usage_error(
        self, pytester: pytest.Pytester
    ) -> None:
        pytester.makeini(INNER_INI)
        result = pytester.runpytest_subprocess(f"--b2bsim-org-number={ORG}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(
            ["ERROR: b2bsim: --b2bsim-org-number given without --b2bsim-endpoint URL"]
        )

    def test_an_unreachable_endpoint_stops_the_session_before_any_test(
        self, pytester: pytest.Pytester, af_state: StateDir
    ) -> None:
        """Checked once collected tests need it: a usage error, no test runs, no traceback."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed when the block ends: nothing listens there
        pytester.makeini(INNER_INI)
        pytester.makepyfile(
            test_chain="def test_x(b2bsim_chain):\n    pass\n",
            test_plain="def test_y():\n    pass\n",
        )
        args = (
            f"--b2bsim-state={af_state.root}",
            f"--b2bsim-endpoint=https://127.0.0.1:{port}/b2b/envelopes",
            f"--b2bsim-org-number={ORG}",
        )
        result = pytester.runpytest_subprocess(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(
            [
                "ERROR: b2bsim: error ?ENDPOINT_UNUSABLE?: "
                f"cannot reach the endpoint 127.0.0.1:{port} over mutual TLS*"
            ]
        )
        assert "Traceback" not in result.stderr.str()
        result.stdout.no_fnmatch_line("*passed*")
        # A run that needs no chain does not need the endpoint either.
        plain = pytester.runpytest_subprocess(*args, "test_plain.py")
        plain.assert_outcomes(passed=1)
