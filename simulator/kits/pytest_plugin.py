"""pytest fixtures that give a running AF B2B chain, for suppliers' own tests.

Installed with b2bsim and registered by entry point (``pytest11``), so any
test can ask for:

``b2bsim_state``
    an empty state directory (:class:`~simulator.vocabulary.state.StateDir`) of its own;
``b2bsim_broker``
    (session) the STOMP URL of a real broker: ``$B2BSIM_BROKER``, or an
    embedded ActiveMQ started for the session and stopped at its end;
``b2bsim_external``
    (session) the supplier's own endpoint, already running, and the state
    directory AF gave that supplier (:class:`~simulator.kits.plugin_config.ExternalSupplier`),
    from ``--b2bsim-endpoint …`` or the ini keys; None without;
``b2bsim_chain``
    a running chain (:class:`~simulator.kits.plugin_chain.B2BSimChain`): test
    PKI, registry, supplier stub and an ICC worker, with ``produce()``,
    ``wait()``, ``reconcile()``, the fault calls (``kill_icc()``, …) and, with
    an external supplier, ``grade()``;
``b2bsim_run``
    a function that runs a scenario file and returns its
    :class:`~simulator.runs.runner.RunResult` (supplier 1 at the external
    endpoint, if one is configured).

Options: ``--b2bsim-suppliers N`` (suppliers of ``b2bsim_chain``, default 3)
and the external endpoint's (:mod:`simulator.kits.plugin_config`); the marker
``@pytest.mark.b2bsim(own_broker=True, suppliers=N, workers=N)`` for one
test's chain.  docs/testing-your-endpoint.md shows how.

Heavy modules are imported inside the fixtures, so the plugin costs little
in a pytest run that does not use it.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simulator.kits.plugin_chain import DEFAULT_SUPPLIERS, B2BSimChain, say_as
from simulator.kits.plugin_config import (
    ExternalSupplier,
    add_endpoint_options,
    check_external,
    external_from_config,
    plugin_words,
)
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.state import StateDir

if TYPE_CHECKING:
    from simulator.lab.broker import LocalBroker
    from simulator.runs.runner import RunResult
    from simulator.runs.scenario import Scenario

__all__ = ["B2BSimChain", "ExternalSupplier", "RunScenario"]

log = logging.getLogger("b2bsim.pytest")

#: ``b2bsim_run(path_or_scenario, rules=None) -> RunResult``
RunScenario = Callable[..., "RunResult"]
#: The configured external supplier (checked once tests need it), per session.
EXTERNAL = pytest.StashKey[ExternalSupplier | None]()
#: Fixtures that put the external supplier in a chain or a run.
USES_EXTERNAL = ("b2bsim_chain", "b2bsim_run", "b2bsim_external")
MARKER = (
    "b2bsim(own_broker=False, suppliers=None, workers=1): b2bsim_chain of this test; "
    "own_broker starts a broker of its own, which restart_broker() and kill_broker() may stop"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("b2bsim", "AF B2B chain simulator")
    group.addoption(
        "--b2bsim-suppliers",
        type=int,
        default=DEFAULT_SUPPLIERS,
        metavar="N",
        help=f"suppliers in the registry of b2bsim_chain (default {DEFAULT_SUPPLIERS}); "
        "with --b2bsim-endpoint, supplier 1 is yours",
    )
    add_endpoint_options(group, parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    if not getattr(config.option, "help", False):
        config.stash[EXTERNAL] = external_from_config(config)  # UsageError if wrong


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before any test runs: an external endpoint that some test needs must be usable."""
    external = config.stash.get(EXTERNAL, None)
    uses = any(
        name in getattr(item, "fixturenames", ()) for item in items for name in USES_EXTERNAL
    )
    if external is None or not uses:
        return
    try:
        config.stash[EXTERNAL] = check_external(external)
    except B2BSimError as exc:
        raise pytest.UsageError(f"b2bsim: {plugin_words(exc.one_line())}") from None


@pytest.fixture
def b2bsim_state(tmp_path: Path) -> StateDir:
    """An empty state directory (broker, PKI, registry, runs) of its own for one test."""
    return StateDir(tmp_path / "b2bsim-state").ensure()


@pytest.fixture(scope="session")
def b2bsim_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The STOMP URL of a real broker: $B2BSIM_BROKER if set, else an embedded ActiveMQ."""
    from simulator.lab.broker import BROKER_ENV, LocalBroker, parse_broker_url, wait_for_stomp

    explicit = os.environ.get(BROKER_ENV)
    if explicit:
        try:
            wait_for_stomp(*parse_broker_url(explicit), timeout=10)
        except B2BSimError as exc:
            pytest.fail(f"${BROKER_ENV}={explicit} is not usable: {exc.one_line()}", pytrace=False)
        yield explicit
        return
    broker = LocalBroker(tmp_path_factory.mktemp("b2bsim-broker"), die_with_parent=True)
    try:
        info = broker.start(timeout=90)
    except B2BSimError as exc:
        broker.stop(grace=5)
        pytest.fail(f"cannot start the embedded broker: {exc.one_line()}", pytrace=False)
    try:
        yield info.url
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def b2bsim_external(pytestconfig: pytest.Config) -> ExternalSupplier | None:
    """The supplier's own endpoint and AF's state directory for it, or None (the stub).

    From ``--b2bsim-endpoint URL --b2bsim-state DIR --b2bsim-org-number N``
    (or the ini keys); override this fixture in a conftest.py to give one from code:
    ``ExternalSupplier(StateDir(DIR), ExternalEndpoint(url, ca, org, readback=…))``.
    """
    return pytestconfig.stash.get(EXTERNAL, None)


@pytest.fixture
def b2bsim_run(
    b2bsim_state: StateDir, b2bsim_broker: str, b2bsim_external: ExternalSupplier | None
) -> RunScenario:
    """A function that runs a scenario (a file or a loaded Scenario) and returns its RunResult.

    With an external supplier, supplier 1 of the scenario is its endpoint, as
    with ``b2bsim run --endpoint``: the test's state directory starts from a copy
    of the PKI of the state directory AF gave the supplier.
    Call it from a plain ``def`` test: a run has an event loop of its own.
    """
    from simulator.runs.runner import RunOptions, run_scenario
    from simulator.runs.scenario import Scenario, load_scenario

    endpoint = None
    if b2bsim_external is not None:
        shutil.copytree(b2bsim_external.state.pki, b2bsim_state.pki, dirs_exist_ok=True)
        endpoint = b2bsim_external.endpoint

    def run(scenario: str | os.PathLike[str] | Scenario, *, rules: str | None = None) -> RunResult:
        loaded = scenario if isinstance(scenario, Scenario) else load_scenario(Path(scenario))
        # A scenario that restarts the broker needs one of its own, in the state directory.
        url = None if loaded.needs_embedded_broker else b2bsim_broker
        options = RunOptions(
            state=b2bsim_state,
            broker_url=url,
            rules=rules,
            progress=say_as(loaded.name),
            endpoint=endpoint,
        )
        return run_scenario(loaded, options)

    return run


@pytest.fixture
def b2bsim_chain(
    request: pytest.FixtureRequest,
    b2bsim_state: StateDir,
    b2bsim_broker: str,
    b2bsim_external: ExternalSupplier | None,
) -> Iterator[B2BSimChain]:
    """A running chain: PKI, registry, supplier stub and an ICC worker; stopped afterwards.

    Supplier 1 is the external endpoint, if one is configured; the marker
    ``@pytest.mark.b2bsim(own_broker=True, suppliers=N, workers=N)`` shapes it.
    """
    marker = request.node.get_closest_marker("b2bsim")
    wanted = dict(marker.kwargs) if marker is not None else {}
    unknown = set(wanted) - {"own_broker", "suppliers", "workers"}
    if unknown:
        pytest.fail(
            f"@pytest.mark.b2bsim does not know {', '.join(sorted(unknown))}: it takes "
            "own_broker, suppliers and workers",
            pytrace=False,
        )
    broker = _own_broker(b2bsim_state) if wanted.get("own_broker") else None
    chain = B2BSimChain(
        b2bsim_state,
        b2bsim_broker if broker is None else _url_of(broker),
        suppliers=int(wanted.get("suppliers") or request.config.getoption("--b2bsim-suppliers")),
        workers=int(wanted.get("workers", 1)),
        external=b2bsim_external,
        broker=broker,
    )
    try:
        chain.start()
    except B2BSimError as exc:
        chain.stop()
        _stop(broker)
        pytest.fail(f"cannot start the chain: {plugin_words(exc.one_line())}", pytrace=False)
    except BaseException:
        chain.stop()  # nothing is left running, whatever went wrong
        _stop(broker)
        raise
    try:
        yield chain
    finally:
        chain.stop()


def _own_broker(state: StateDir) -> LocalBroker:
    """A broker of the test's own (in its state directory), for the broker faults."""
    from simulator.lab.broker import LocalBroker

    broker = LocalBroker(state.broker, die_with_parent=True)
    try:
        broker.start(timeout=90)
    except B2BSimError as exc:
        broker.stop(grace=5)
        pytest.fail(f"cannot start the chain's own broker: {exc.one_line()}", pytrace=False)
    return broker


def _url_of(broker: LocalBroker) -> str:
    info = broker.info()
    assert info is not None, "started"
    return info.url


def _stop(broker: LocalBroker | None) -> None:
    if broker is not None:
        broker.stop()
