"""The chain a pytest test drives: :class:`B2BSimChain` (the plugin's ``b2bsim_chain``).

Its pieces are the runner's: the run's PKI and registry
(:func:`simulator.runs.run_setup.init_run_suppliers`), the components
(:class:`simulator.runs.chain.RunningChain`), KA's producer, and the scenario
steps (:class:`simulator.runs.steps.StepPlayer`) for what a test does and the
faults it injects (:mod:`simulator.kits.plugin_faults`).  With an external
supplier (:class:`~simulator.kits.plugin_config.ExternalSupplier`) supplier 1
is the supplier's own endpoint, graded as ``b2bsim run --endpoint`` grades it
(:func:`simulator.runs.endpoint_run.grade_run_endpoint`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from simulator.kits.plugin_config import ExternalSupplier
from simulator.kits.plugin_faults import FaultCalls
from simulator.runs.endpoint_grading import GRADED, NOT_GRADED
from simulator.vocabulary.errors import ConfigError, RunTimeoutError
from simulator.vocabulary.state import StateDir

if TYPE_CHECKING:
    from ka_producer import Producer
    from simulator.lab.broker import LocalBroker
    from simulator.lab.pki import SupplierIdentity
    from simulator.runs.chain import RunningChain
    from simulator.runs.endpoint_grading import EndpointGrade
    from simulator.runs.reconcile import Reconciliation
    from simulator.runs.scenario import Step
    from simulator.runs.steps import StepPlayer
    from simulator.vocabulary.registry import Registry

__all__ = ["DEFAULT_SUPPLIERS", "B2BSimChain"]

log = logging.getLogger("b2bsim.pytest")
T = TypeVar("T")
DEFAULT_SUPPLIERS = 3


def say_as(name: str) -> Callable[[str], None]:
    def say(msg: str) -> None:
        log.info("[%s] %s", name, msg)

    return say


class B2BSimChain(FaultCalls):
    """A chain that runs beside a test: KA's producer, the ICC and the supplier stub.

    With ``external``, supplier 1 is the supplier's own endpoint (already
    running; the run's PKI is a copy of the CA and ICC certificate of the
    state directory AF gave it); the other suppliers stay on the stub.  With
    ``broker`` (a started :class:`~simulator.lab.broker.LocalBroker` the chain
    may restart and kill) the broker faults work too.

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
        external: ExternalSupplier | None = None,
        workers: int = 1,
        broker: LocalBroker | None = None,
    ) -> None:
        if suppliers < 1 or workers < 1:
            raise ConfigError(
                f"a chain needs at least one supplier and one ICC worker, not {suppliers} "
                f"and {workers}",
                hint="pass --b2bsim-suppliers N with N ≥ 1",
            )
        self.state, self.broker_url, self.seed = state, broker_url, seed
        self.supplier_count, self.endpoint, self.external = suppliers, endpoint, external
        self.workers, self.broker = workers, broker
        self.suppliers: list[SupplierIdentity] = []
        self.run_dir = Path()
        self.pki = state
        self.components: RunningChain | None = None
        self._producer: Producer | None = None
        self._player: StepPlayer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stub_urls: set[str] = set()
        self._background: list[concurrent.futures.Future[None]] = []

    # --- life cycle -------------------------------------------------------------
    def start(self) -> None:
        """Write the PKI and registry, start the stub and the ICC, connect KA.

        With an external supplier, check its endpoint first (EndpointError,
        ReadbackError) and note its read-back's position: what was loaded
        before this chain is not this chain's.
        """
        from ka_producer import Producer
        from ka_producer.documents import seller_profile
        from simulator.kits.plugin_config import check_external
        from simulator.runs.chain import ChainSpec, RunningChain
        from simulator.runs.run_setup import (
            SERVER_CA,
            init_run_suppliers,
            new_run_dir,
            run_suppliers,
        )
        from simulator.runs.scenario import Scenario
        from simulator.runs.steps import StepPlayer

        if self.external is not None:
            self.external = check_external(self.external)
        org = None if self.external is None else self.external.endpoint.org_number
        scenario = Scenario(
            "pytest",
            "a chain beside a pytest test",
            Path("pytest"),
            seed=self.seed,
            supplier_count=self.supplier_count,
            icc_workers=self.workers,
        )
        self.run_dir = new_run_dir(self.state, "pytest")
        self.suppliers = run_suppliers(scenario, org)
        ext = self.external
        self.pki, _ = init_run_suppliers(
            self.run_dir,
            self.suppliers,
            external=None if ext is None else ext.endpoint,
            state=None if ext is None else ext.state,
        )
        self._stub_urls = {e.url for e in self.registry if e.org_number != org}
        spec = ChainSpec(
            state=self.pki,
            broker_dir=self.state.broker,
            run_dir=self.run_dir,
            broker_url=self.broker_url,
            queue=f"/queue/af.ka.outbound.run-{self.run_dir.name}",
            workers=self.workers,
            seed=self.seed,
            stub_orgs=None if org is None else tuple(s.org_number for s in self.suppliers[1:]),
            server_ca=None if org is None else self.pki.pki / SERVER_CA,
        )
        self.components = RunningChain(spec, self.broker, say_as("chain"))
        sellers = [seller_profile(s.org_number, s.name) for s in self.suppliers]
        self._player = player = StepPlayer(scenario, self.components, sellers, say_as("chain"))
        player.external = org
        if org is not None:  # the endpoint remembers earlier chains: ids of this one's own
            player.id_salt = f"{self.run_dir.name}:"
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
            clock=player.clock,
        )
        self._call(self._producer.__aenter__(), timeout=60)
        player.ka = self._producer
        if self.endpoint is not None:
            self.point_at(self.suppliers[0].org_number, self.endpoint)

    def stop(self) -> None:
        """Disconnect KA, stop the stub and the ICC (and the chain's own broker), end the
        loop's thread.  Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            for pending in self._background:
                pending.cancel()
            if self._producer is not None:
                producer, self._producer = self._producer, None
                self._call(producer.__aexit__(None, None, None), timeout=30)
            if self.components is not None:
                self._call(self.components.stop(), timeout=60)
        finally:
            try:
                if self.components is not None and self.components.broker is not None:
                    self.components.broker.stop()  # the chain's own, the last after restarts
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=10)
                loop.close()
                self._loop = self._thread = None

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the chain's loop and wait for its result."""
        if self._loop is None:
            coro.close()
            raise ConfigError("the chain is not running", hint="call start() first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _play(self, step: Step, *, background: bool = False, timeout: float = 600) -> None:
        """Play a scenario step on the chain (the runner's code); in the background: the
        call returns at once and ``wait()`` waits for it."""
        player = self._player
        if player is None or self._loop is None:
            raise ConfigError("the chain is not running", hint="call start() first")
        if background:
            self._background.append(
                asyncio.run_coroutine_threadsafe(player.play_step(step), self._loop)
            )
            return
        self._call(player.play_step(step), timeout=timeout)

    # --- what a test does -----------------------------------------------------------
    def produce(
        self, chains: int = 1, *, doc_type: str | None = None, count: int = 0, rate: float = 0
    ) -> int:
        """KA publishes, for every supplier, ``chains`` chains (or ``count`` of ``doc_type``).

        Returns how many messages were published.
        """
        from simulator.runs.scenario import Produce

        if self._player is None:
            raise ConfigError("the chain is not running", hint="call start() first")
        before = self._player.produced
        if doc_type is None:
            self._play(Produce(chains=chains, rate=rate))
        elif count > 0:
            self._play(Produce(doc_type=doc_type, count=count, rate=rate))
        return self._player.produced - before

    def wait(self, timeout: float = 60) -> Reconciliation:
        """Wait for the faults in the background, then until every message produced is
        settled; return the reconciliation.

        Settled: loaded into the stub's ledger, dead-lettered, or, for a
        supplier at another endpoint, delivered there (a 2xx answer).
        Raises :class:`~simulator.vocabulary.errors.RunTimeoutError` after ``timeout`` s.
        """
        from simulator.runs.reconcile import dead_lettered_ids, icc_events, produced_records
        from simulator.runs.stub_records import loaded_messages

        assert self.components is not None, "start() first"
        deadline = time.monotonic() + timeout
        pending, self._background = self._background, []
        for task in pending:
            try:
                task.result(max(0.1, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                raise RunTimeoutError(
                    f"a fault in the background did not end within {timeout:g} s",
                    hint=f"see the component logs in {self.run_dir}",
                ) from None
        elsewhere = self._elsewhere()
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
                    if e.get("event") == "delivered" and e.get("org_number") in elsewhere
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
        """The run's figures now: produced, delivered, ingested, lost, … (docs/files.md).

        With an external supplier its ledger is its read-back (or, without one,
        what it acknowledged), as ``b2bsim run --endpoint`` counts it.
        """
        from simulator.runs.reconcile import reconcile

        assert self.components is not None, "start() first"
        if self.external is not None:
            return self._graded()[1]
        return reconcile(
            self.run_dir / "produced.jsonl", self.components.events_files(), self.components.db
        )

    def grade(self) -> EndpointGrade:
        """The external supplier's grade now, as ``b2bsim run --endpoint`` grades it.

        Its ``checks`` (``endpoint.accepted_once``, ``endpoint.resend_duplicate``,
        ``endpoint.redelivery_not_conflict``, ``endpoint.lost``, and from the
        read-back ``endpoint.double_ingested``, ``endpoint.out_of_order``,
        ``endpoint.credit_before_invoice``) each say how many messages fail and
        why; ``accepted``, ``duplicates``, ``loaded`` and ``latency_ms`` are the
        endpoint's answers.  ConfigError without an external supplier.
        """
        return self._graded()[0]

    def assert_endpoint_ok(self, *, need_readback: bool = True) -> EndpointGrade:
        """The grade, or AssertionError naming each case the endpoint failed and why.

        A case only a read-back can grade (order, loaded once) fails as **not
        graded (no read-back)** unless ``need_readback=False``; a case whose
        situation did not arise (**not exercised**) is not a failure, and not a pass.
        """
        grade = self.grade()
        wrong = [
            f"{c.name}: {c.reason}"
            for c in grade.checks
            if (c.status == GRADED and not c.passed) or (need_readback and c.status == NOT_GRADED)
        ]
        if wrong:
            raise AssertionError(
                f"the endpoint of {grade.org_number} failed {len(wrong)} case(s): "
                + "; ".join(wrong)
            )
        return grade

    def _graded(self) -> tuple[EndpointGrade, Reconciliation]:
        from simulator.runs.endpoint_run import grade_run_endpoint

        if self.external is None or self.components is None:
            raise ConfigError(
                "grade() needs an external supplier",
                hint="pass --b2bsim-endpoint URL --b2bsim-state DIR --b2bsim-org-number N",
            )
        grades, figures = grade_run_endpoint(
            self.external.state,
            self.external.endpoint,
            self.run_dir,
            self.components.events_files(),
            self.components.db,
            icc_revoked_at_ms=self.components.icc_revoked_at_ms,
        )
        return grades[0], figures

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
        return {e.org_number for e in self.registry if e.url not in self._stub_urls}
