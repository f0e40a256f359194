"""Run a scenario end to end: the conductor of the simulator.

``run_scenario`` prepares the run (PKI, registry, broker), then in asyncio
starts the chain (:class:`simulator.runs.chain.RunningChain`: the supplier stub and
the ICC workers as child processes), plays the scenario's steps with KA's
producer, waits until every message is loaded or dead-lettered, stops
everything and reconciles the run's files.  Nothing is left running,
whatever goes wrong.  Setting up the run is :mod:`simulator.runs.run_setup`,
playing its steps :mod:`simulator.runs.steps`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ka_producer.documents import Seller
from simulator.lab.broker import LocalBroker, resolve_broker_url
from simulator.lab.network import BrokerNetwork
from simulator.runs.chain import ChainSpec, RunningChain
from simulator.runs.endpoint import ExternalEndpoint
from simulator.runs.endpoint_grading import EndpointGrade
from simulator.runs.endpoint_run import (
    GRADED,
    endpoint_expectations,
    grade_run_endpoint,
    last_sequences,
    prepare_endpoint,
    record_sequences,
    verdict_of,
)
from simulator.runs.pull_grading import pull_fault_plan, pulls
from simulator.runs.reconcile import Reconciliation, read_jsonl, reconcile
from simulator.runs.run_setup import (
    SERVER_CA,
    init_run_suppliers,
    local_broker,
    new_run_dir,
    refuse_too_few_suppliers,
    refuse_two_outboxes,
    refuse_unrunnable,
    run_suppliers,
    start_network,
    suppliers_of,
)
from simulator.runs.scenario import ZERO_BY_DEFAULT, KillBroker, RestartBroker, Scenario, Step
from simulator.runs.steps import StepPlayer
from simulator.vocabulary.broker_source import GIVE_UP_AFTER
from simulator.vocabulary.errors import B2BSimError, RunTimeoutError
from simulator.vocabulary.state import StateDir

log = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass
class RunOptions:
    state: StateDir
    broker_url: str | None = None  # an existing broker; None: the embedded one
    # The stub validates documents with these rules (None: $B2BSIM_RULES_DIR, else the
    # official rule sets shipped with b2bsim).
    rules: str | None = None
    progress: Say | None = None  # called with one line per event of the run
    # Awaited before each step with its index and the step (teaching mode: wait for
    # "next"); and told the run directory once the run starts (a live view tails it).
    before_step: Callable[[int, Step], Awaitable[None]] | None = None
    on_start: Callable[[Path], None] | None = None
    # Supplier 1 at the supplier's own endpoint (b2bsim run --endpoint), if any; or
    # suppliers 1..k at theirs (b2bsim run --target FILE), if ``endpoints`` is given.
    endpoint: ExternalEndpoint | None = None
    endpoints: tuple[ExternalEndpoint, ...] = ()

    def external_endpoints(self) -> tuple[ExternalEndpoint, ...]:
        return self.endpoints or (() if self.endpoint is None else (self.endpoint,))


@dataclass
class Expectation:
    name: str
    expected: int
    actual: int
    # graded; or, with an external supplier, "not graded" (no read-back) or
    # "not applicable" (a step it did not get), with the reason.
    status: str = GRADED
    reason: str = ""

    @property
    def passed(self) -> bool:
        """Held, and graded: what is not graded or not applicable never passes."""
        return self.status == GRADED and self.expected == self.actual


@dataclass
class RunResult:
    scenario: Scenario
    run_dir: Path
    figures: Reconciliation
    expectations: list[Expectation] = field(default_factory=list)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    endpoint: EndpointGrade | None = None  # supplier 1's (the first external one)
    endpoints: list[EndpointGrade] = field(default_factory=list)  # each external one's

    @property
    def verdict(self) -> str:
        """passed, failed, not graded (no read-back) or not applicable."""
        return verdict_of(self.error, self.expectations)

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def to_json(self) -> dict[str, Any]:
        f = self.figures
        return {
            "scenario": self.scenario.name,
            "seed": self.scenario.seed,
            **f.figures(),
            "passed": self.passed,
            "verdict": self.verdict,
            "error": self.error,
            "expectations": [
                {
                    "name": e.name,
                    "expected": e.expected,
                    "actual": e.actual,
                    "passed": e.passed,
                    **({} if e.status == GRADED else {"status": e.status, "reason": e.reason}),
                }
                for e in self.expectations
            ],
            **({} if self.endpoint is None else {"endpoint": self.endpoint.to_json()}),
            **(
                {"endpoints": [g.to_json() for g in self.endpoints]}
                if len(self.endpoints) > 1
                else {}
            ),
            "faults": self.faults,
            "dead_letters": f.dead_letters,
            "lost_ids": f.lost_ids,
            "unsent_ids": f.unsent_ids,
            "run_dir": str(self.run_dir),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "rerun": f"b2bsim run {self.scenario.path}",
        }


def run_scenario(scenario: Scenario, options: RunOptions) -> RunResult:
    """Run one scenario; always stops what it started."""
    say = options.progress or (lambda _msg: None)
    url = resolve_broker_url(options.broker_url)
    refuse_unrunnable(scenario, url)
    state = options.state.ensure()
    # Before anything starts: a one-line error, nothing left behind.
    endpoints = [prepare_endpoint(state, e) for e in options.external_endpoints()]
    refuse_too_few_suppliers(scenario, len(endpoints))
    refuse_two_outboxes(endpoints)
    endpoint = endpoints[0] if endpoints else None
    external = endpoint.org_number if endpoint is not None else None
    externals = tuple(e.org_number for e in endpoints)
    started = time.monotonic()
    run_dir = new_run_dir(state, scenario.name)
    suppliers = run_suppliers(scenario, externals)
    # Each run has a PKI of its own (run_dir/pki), so that a scenario may revoke,
    # expire or rotate certificates without touching any other run.  With an external
    # supplier it starts from the state's CA and ICC certificate (run_setup says why).
    run_state, pull_port = init_run_suppliers(
        run_dir, suppliers, pull_count=scenario.pull_count, external=endpoints, state=state
    )
    timings = {"prepare": time.monotonic() - started}

    broker: LocalBroker | None = None
    network: BrokerNetwork | None = None
    worker_urls: tuple[str, ...] = ()
    if scenario.brokers > 1:
        network, url = start_network(state, scenario, timings, say)
        worker_urls = tuple(network.urls)
    elif url is None:
        broker, url = local_broker(state, scenario, timings, say)
    spec = ChainSpec(
        state=run_state,
        broker_dir=state.broker,
        run_dir=run_dir,
        broker_url=url,
        queue=f"/queue/af.ka.outbound.run-{run_dir.name}",
        workers=scenario.icc_workers,
        request_timeout=scenario.request_timeout,
        retry=scenario.retry,
        gap_timeout=scenario.gap_timeout,
        rules=options.rules,
        seed=scenario.seed,
        pull_port=pull_port if scenario.pull_count or any(map(pulls, endpoints)) else None,
        pull_faults=pull_fault_plan(endpoints),
        worker_broker_urls=worker_urls,
        stub_orgs=None
        if external is None
        else tuple(s.org_number for s in suppliers[len(externals) :]),
        server_ca=None if external is None else run_state.pki / SERVER_CA,
        broker_give_up=broker_give_up(scenario),
    )
    chain = RunningChain(spec, broker, say, network)
    result = RunResult(scenario, run_dir, Reconciliation(), timings=timings)
    try:
        if options.on_start is not None:
            options.on_start(run_dir)
        asyncio.run(
            _play(
                scenario,
                chain,
                sellers=suppliers_of(scenario, externals),
                result=result,
                say=say,
                options=options,
                external=external,
                externals=externals,
            )
        )
    except B2BSimError as exc:
        result.error = exc.one_line()
    finally:
        if chain.broker is not None:
            chain.broker.stop()
        if network is not None:
            network.stop()
    if externals:
        record_sequences(state, run_dir, externals)
    result.faults = {
        "icc_kills": chain.kills,
        "broker_restarts": chain.broker_restarts,
        "broker_kills": chain.broker_kills,
    }
    if endpoint is None:
        result.figures = reconcile(run_dir / "produced.jsonl", chain.events_files(), chain.db)
        result.expectations = _expectations(scenario, result.figures, run_dir)
    else:
        _grade_external(scenario, state, endpoints=endpoints, chain=chain, result=result, say=say)
    result.timings["total"] = time.monotonic() - started
    (run_dir / "result.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


def _grade_external(
    scenario: Scenario,
    state: StateDir,
    *,
    endpoints: list[ExternalEndpoint],
    chain: RunningChain,
    result: RunResult,
    say: Say,
) -> None:
    """The external suppliers' grades, the figures with their ledgers, the expectations."""
    pulling = {pulls(e) for e in endpoints}
    say(
        "grading the external "
        + (
            "puller from the outbox's side"
            if pulling == {True}
            else "endpoint from its answers"
            if pulling == {False}
            else "endpoints from their answers and pullers from the outbox's side"
        )
        + (" and its read-back" * any(e.readback for e in endpoints))
    )
    result.endpoints, result.figures = grade_run_endpoint(
        state,
        endpoints,
        result.run_dir,
        chain.events_files(),
        chain.db,
        icc_revoked_at_ms=chain.icc_revoked_at_ms,
    )
    result.endpoint = result.endpoints[0]
    graded = _expectations(scenario, result.figures, result.run_dir)
    result.expectations = [
        Expectation(*e)
        for e in endpoint_expectations(
            scenario, [(e.name, e.expected, e.actual) for e in graded], result.endpoints, endpoints
        )
    ]


def broker_give_up(scenario: Scenario) -> float:
    """How long KA and the ICC look for a lost broker: past the longest planned outage."""
    downs = [s.down for s in scenario.steps if isinstance(s, KillBroker | RestartBroker)]
    return float(max([GIVE_UP_AFTER, *(down + GIVE_UP_AFTER for down in downs)]))


async def _play(
    scenario: Scenario,
    chain: RunningChain,
    *,
    sellers: list[Seller],
    result: RunResult,
    say: Say,
    options: RunOptions,
    external: str | None = None,
    externals: tuple[str, ...] = (),
) -> None:
    try:
        t0 = time.monotonic()
        await chain.start()
        result.timings["components_start"] = time.monotonic() - t0
        t0 = time.monotonic()
        async with asyncio.timeout(scenario.timeout):
            player = StepPlayer(scenario, chain, sellers, say)
            player.before_step = options.before_step
            player.external = external
            player.externals = externals
            player.sequences_after = last_sequences(options.state, externals)
            if external is not None:  # an endpoint remembers earlier runs: ids of this run's own
                player.id_salt = f"{chain.spec.run_dir.name}:"
            await player.play()
        result.timings["steps"] = time.monotonic() - t0
    except TimeoutError:
        raise RunTimeoutError(
            f"scenario {scenario.name!r} did not finish within {scenario.timeout:g} s",
            hint="see the component logs in the run directory; raise `timeout:` if the run is big",
        ) from None
    finally:
        await chain.stop()


def _expectations(scenario: Scenario, figures: Reconciliation, run_dir: Path) -> list[Expectation]:
    actual: dict[str, int] = dict(figures.figures())
    for attack in read_jsonl(run_dir / "attacks.jsonl"):
        key = f"refused.{attack['code']}"
        actual[key] = actual.get(key, 0) + 1
    for letter in figures.dead_letters:
        key = f"dead_letter_codes.{letter['code']}"
        actual[key] = actual.get(key, 0) + 1
    wanted: dict[str, int] = {
        "produced": scenario.expected_messages,
        **dict.fromkeys(ZERO_BY_DEFAULT, 0),
        **scenario.expect,
    }
    return [Expectation(name, value, actual.get(name, 0)) for name, value in wanted.items()]
