"""pytest fixtures that give a running AF B2B chain, for suppliers' own tests.

Installed with b2bsim and registered by entry point (``pytest11``), so any
test can ask for:

``b2bsim_state``
    an empty state directory (:class:`~simulator.vocabulary.state.StateDir`) of its own;
``b2bsim_broker``
    (session) the STOMP URL of a real broker: ``$B2BSIM_BROKER``, or an
    embedded ActiveMQ started for the session and stopped at its end;
``b2bsim_chain``
    a running chain (:class:`B2BSimChain`): test PKI, registry, supplier stub
    and one ICC worker, with ``produce()``, ``wait()`` and ``reconcile()``;
``b2bsim_run``
    a function that runs a scenario file and returns its
    :class:`~simulator.runs.runner.RunResult`.

Options: ``--b2bsim-suppliers N`` (suppliers of ``b2bsim_chain``, default 3)
and ``--b2bsim-endpoint URL`` (deliver the first supplier's envelopes to this
endpoint instead of the stub).  docs/testing-your-endpoint.md shows how.

Heavy modules are imported inside the fixtures, so the plugin costs nothing
in a pytest run that does not use it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from simulator.vocabulary.errors import B2BSimError, RunTimeoutError
from simulator.vocabulary.state import StateDir

if TYPE_CHECKING:
    from ka_producer import Producer
    from ka_producer.documents import DocumentFactory
    from simulator.lab.pki import SupplierIdentity
    from simulator.runs.chain import RunningChain
    from simulator.runs.reconcile import Reconciliation
    from simulator.runs.runner import RunResult
    from simulator.runs.scenario import Scenario
    from simulator.vocabulary.registry import Registry

__all__ = ["B2BSimChain", "RunScenario"]

log = logging.getLogger("b2bsim.pytest")
T = TypeVar("T")

#: ``b2bsim_run(path_or_scenario, rules=None) -> RunResult``
RunScenario = Callable[..., "RunResult"]
DEFAULT_SUPPLIERS = 3


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("b2bsim", "AF B2B chain simulator")
    group.addoption(
        "--b2bsim-suppliers",
        type=int,
        default=DEFAULT_SUPPLIERS,
        metavar="N",
        help=f"suppliers in the registry of b2bsim_chain (default {DEFAULT_SUPPLIERS})",
    )
    group.addoption(
        "--b2bsim-endpoint",
        metavar="URL",
        help="b2bsim_chain delivers the first supplier's envelopes to this https URL "
        "(your own endpoint) instead of the supplier stub",
    )


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


@pytest.fixture
def b2bsim_run(b2bsim_state: StateDir, b2bsim_broker: str) -> RunScenario:
    """A function that runs a scenario (a file or a loaded Scenario) and returns its RunResult.

    Call it from a plain ``def`` test: a run has an event loop of its own.
    """
    from simulator.runs.runner import RunOptions, run_scenario
    from simulator.runs.scenario import Scenario, load_scenario

    def run(scenario: str | os.PathLike[str] | Scenario, *, rules: str | None = None) -> RunResult:
        loaded = scenario if isinstance(scenario, Scenario) else load_scenario(Path(scenario))
        # A scenario that restarts the broker needs one of its own, in the state directory.
        url = None if loaded.needs_embedded_broker else b2bsim_broker
        options = RunOptions(
            state=b2bsim_state, broker_url=url, rules=rules, progress=_say(loaded.name)
        )
        return run_scenario(loaded, options)

    return run


@pytest.fixture
def b2bsim_chain(
    request: pytest.FixtureRequest, b2bsim_state: StateDir, b2bsim_broker: str
) -> Iterator[B2BSimChain]:
    """A running chain: PKI, registry, supplier stub and one ICC worker; stopped afterwards."""
    config = request.config
    chain = B2BSimChain(
        b2bsim_state,
        b2bsim_broker,
        suppliers=config.getoption("--b2bsim-suppliers"),
        endpoint=config.getoption("--b2bsim-endpoint"),
    )
    try:
        chain.start()
    except B2BSimError as exc:
        chain.stop()
        pytest.fail(f"cannot start the chain: {exc.one_line()}", pytrace=False)
    except BaseException:
        chain.stop()  # nothing is left running, whatever went wrong
        raise
    try:
        yield chain
    finally:
        chain.stop()


def _say(name: str) -> Callable[[str], None]:
    def say(msg: str) -> None:
        log.info("[%s] %s", name, msg)

    return say


class B2BSimChain:
    """A chain that runs beside a test: KA's producer, the ICC and the supplier stub.

    Its methods are plain (blocking) calls, so a supplier's tests need no
    asyncio: the chain's event loop runs on a thread of its own, which also
    owns the child processes (they die with it).
    """

    def __init__(
        self,
        state: StateDir,
        broker_url: str,
        *,
        suppliers: int = DEFAULT_SUPPLIERS,
        seed: int = 1,
        endpoint: str | None = None,
    ) -> None:
        if suppliers < 1:
            from simulator.vocabulary.errors import ConfigError

            raise ConfigError(
                f"a chain needs at least one supplier, not {suppliers}",
                hint="pass --b2bsim-suppliers N with N ≥ 1",
            )
        self.state, self.broker_url, self.seed = state, broker_url, seed
        self.supplier_count, self.endpoint = suppliers, endpoint
        self.suppliers: list[SupplierIdentity] = []
        self.run_dir = Path()
        self.pki = state
        self.components: RunningChain | None = None
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._factory: DocumentFactory | None = None
        self._ports: list[int] = []

    # --- life cycle -------------------------------------------------------------
    def start(self) -> None:
        """Write the PKI and registry, start the stub and an ICC worker, connect KA."""
        from ka_producer import Producer
        from simulator.lab.pki import init_pki
        from simulator.lab.ports import free_ports
        from simulator.lab.suppliers import make_suppliers
        from simulator.runs.chain import ChainSpec, RunningChain
        from simulator.runs.run_setup import new_run_dir

        self.run_dir = new_run_dir(self.state, "pytest")
        self.pki = StateDir(self.run_dir)  # the run's own PKI, as `b2bsim run` makes it
        self.suppliers = make_suppliers(self.supplier_count, self.seed)
        init_pki(self.pki, self.suppliers)
        self._write_registry(free_ports(len(self.suppliers)))
        spec = ChainSpec(
            state=self.pki,
            broker_dir=self.state.broker,
            run_dir=self.run_dir,
            broker_url=self.broker_url,
            queue=f"/queue/af.ka.outbound.run-{self.run_dir.name}",
            seed=self.seed,
        )
        self.components = RunningChain(spec, None, _say("chain"))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="b2bsim-chain", daemon=True
        )
        self._thread.start()
        self._call(self.components.start(), timeout=180)
        self._producer = Producer(
            self.broker_url,
            queue=spec.queue,
            produced_log=self.run_dir / "produced.jsonl",
            outbox=self.run_dir / "ka-outbox.sqlite",
        )
        self._call(self._producer.__aenter__(), timeout=60)
        if self.endpoint is not None:
            self.point_at(self.suppliers[0].org_number, self.endpoint)

    def stop(self) -> None:
        """Disconnect KA, stop the stub and the ICC, end the loop's thread.  Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if self._producer is not None:
                producer, self._producer = self._producer, None
                self._call(producer.__aexit__(None, None, None), timeout=30)
            if self.components is not None:
                self._call(self.components.stop(), timeout=60)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            self._loop = self._thread = None

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the chain's loop and wait for its result."""
        if self._loop is None:
            coro.close()
            from simulator.vocabulary.errors import ConfigError

            raise ConfigError("the chain is not running", hint="call start() first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- what a test does -----------------------------------------------------------
    def produce(
        self, chains: int = 1, *, doc_type: str | None = None, count: int = 0, rate: float = 0
    ) -> int:
        """KA publishes, for every supplier, ``chains`` chains (or ``count`` of ``doc_type``).

        Returns how many messages were published.
        """
        from ka_producer import Pacer, publish_round
        from ka_producer.documents import DocumentFactory, seller_profile

        producer = self._producer
        if producer is None:
            from simulator.vocabulary.errors import ConfigError

            raise ConfigError("the chain is not running", hint="call start() first")
        if self._factory is None:
            self._factory = DocumentFactory(self.seed)  # one per chain: ids never repeat
        factory = self._factory
        sellers = [seller_profile(s.org_number, s.name) for s in self.suppliers]
        rounds = count if doc_type is not None else chains

        async def publish() -> int:
            pacer, total = Pacer(rate), 0
            for _ in range(rounds):
                total += await publish_round(
                    producer, factory, sellers, doc_type=doc_type, pacer=pacer
                )
            await producer.flush()
            return total

        return self._call(publish(), timeout=600)

    def wait(self, timeout: float = 60) -> Reconciliation:
        """Wait until every message produced is settled; return the reconciliation.

        Settled: loaded into the stub's ledger, dead-lettered, or, for a
        supplier pointed at another endpoint, delivered there (a 2xx answer).
        Raises :class:`~simulator.vocabulary.errors.RunTimeoutError` after ``timeout`` s.
        """
        from simulator.runs.reconcile import dead_lettered_ids, icc_events, produced_records
        from simulator.runs.stub_records import loaded_messages

        assert self.components is not None, "start() first"
        elsewhere = self._elsewhere()
        deadline = time.monotonic() + timeout
        while True:
            produced = produced_records(self.run_dir / "produced.jsonl")
            events = self.components.events_files()
            settled = {m for m, *_ in loaded_messages(self.components.db)} | dead_lettered_ids(
                events
            )
            if elsewhere:
                settled |= {
                    str(e.get("message_id"))
                    for e in icc_events(events)
                    if e.get("event") == "delivered"
                }
            waiting = [r for r in produced if str(r["message_id"]) not in settled]
            if not waiting:
                return self.reconcile()
            if time.monotonic() > deadline:
                raise RunTimeoutError(
                    f"{len(waiting)} of {len(produced)} message(s) not settled after {timeout:g} s",
                    hint=f"see the component logs in {self.run_dir}",
                )
            time.sleep(0.2)

    def reconcile(self) -> Reconciliation:
        """The run's figures now: produced, delivered, ingested, lost, … (docs/files.md)."""
        from simulator.runs.reconcile import reconcile

        assert self.components is not None, "start() first"
        return reconcile(
            self.run_dir / "produced.jsonl", self.components.events_files(), self.components.db
        )

    # --- the registry ------------------------------------------------------------------
    @property
    def registry_file(self) -> Path:
        return self.run_dir / "registry.json"

    @property
    def registry(self) -> Registry:
        """The registry the ICC reads now (organisation number → URL, certificate, mode)."""
        from simulator.vocabulary.registry import Registry

        return Registry.load(self.registry_file)

    def point_at(self, org_number: str, url: str, *, cert: Path | None = None) -> None:
        """Deliver ``org_number``'s envelopes to ``url`` from the next message on.

        The ICC pins the endpoint's server certificate: by default the test
        PKI's certificate of that supplier (``pki.supplier_cert(org)``, with
        ``pki.supplier_key(org)``), or ``cert``, which must be issued by the
        test CA (``pki.ca_cert``).
        """
        from simulator.lab.pki import cert_sha256
        from simulator.vocabulary.registry import Registry

        registry = self.registry
        entry = registry.lookup(org_number)
        pin = cert_sha256(cert) if cert is not None else entry.cert_sha256
        moved = replace(entry, url=url, cert_sha256=pin)
        Registry(moved if e.org_number == org_number else e for e in registry).save(
            self.registry_file
        )
        log.info("supplier %s now delivered to %s", org_number, url)

    def _elsewhere(self) -> set[str]:
        stub = {f"https://127.0.0.1:{port}/" for port in self._ports}
        return {e.org_number for e in self.registry if not e.url.startswith(tuple(stub))}

    def _write_registry(self, ports: list[int]) -> None:
        from simulator.lab.pki import cert_sha256
        from simulator.vocabulary.registry import DeliveryMode, Registry, SupplierEntry

        self._ports = ports
        Registry(
            SupplierEntry(
                org_number=s.org_number,
                name=s.name,
                url=f"https://127.0.0.1:{port}/b2b/envelopes",
                cert_sha256=cert_sha256(self.pki.supplier_cert(s.org_number)),
                delivery_mode=DeliveryMode.PUSH,
            )
            for s, port in zip(self.suppliers, ports, strict=True)
        ).save(self.registry_file)
