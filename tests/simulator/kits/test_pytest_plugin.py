"""The pytest plugin suppliers use: its fixtures run in a pytest of their own (pytester)."""

from __future__ import annotations

import socket
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from simulator.lab.broker import BROKER_ENV

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
