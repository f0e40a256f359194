"""Run a scenario end to end: the conductor of the simulator.

``run_scenario`` prepares the run (PKI, registry, broker), then in asyncio
starts the supplier stub and the ICC bridge as child processes, plays the
scenario's steps with KA's producer, waits until every message is stored or
dead-lettered, stops everything and reconciles the run's files.  Nothing is
left running, whatever goes wrong.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ka_producer import Producer
from ka_producer.documents import DocumentFactory, seller_profile
from ka_producer.service import publish_round
from simulator.broker import LocalBroker, resolve_broker_url
from simulator.components import Component
from simulator.errors import B2BSimError
from simulator.pki import cert_sha256, init_pki
from simulator.reconcile import Reconciliation, loaded_messages, read_jsonl, reconcile
from simulator.registry import Registry, SupplierEntry
from simulator.scenario import Produce, Scenario, Wait
from simulator.state import StateDir
from simulator.suppliers import make_suppliers

log = logging.getLogger(__name__)


class RunTimeoutError(B2BSimError, TimeoutError):
    code = "RUN_TIMEOUT"


@dataclass
class RunOptions:
    state: StateDir
    broker_url: str | None = None  # an existing broker; None: the embedded one
    rules: str | None = None  # validate documents at the stub with these rules
    progress: Any = None  # callable(str) for progress lines, or None


@dataclass
class Expectation:
    name: str
    expected: int
    actual: int

    @property
    def passed(self) -> bool:
        return self.expected == self.actual


@dataclass
class RunResult:
    scenario: Scenario
    run_dir: Path
    figures: Reconciliation
    expectations: list[Expectation] = field(default_factory=list)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.error is None and all(e.passed for e in self.expectations)

    def to_json(self) -> dict[str, Any]:
        f = self.figures
        return {
            "scenario": self.scenario.name,
            "seed": self.scenario.seed,
            **f.figures(),
            "passed": self.passed,
            "error": self.error,
            "expectations": [
                {"name": e.name, "expected": e.expected, "actual": e.actual, "passed": e.passed}
                for e in self.expectations
            ],
            "dead_letters": f.dead_letters,
            "lost_ids": f.lost_ids,
            "run_dir": str(self.run_dir),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "rerun": f"b2bsim run {self.scenario.path}",
        }


def run_scenario(scenario: Scenario, options: RunOptions) -> RunResult:
    """Run one scenario; always stops what it started."""
    say = options.progress or (lambda _msg: None)
    state = options.state.ensure()
    started = time.monotonic()
    run_dir = _new_run_dir(state, scenario.name)
    suppliers = make_suppliers(scenario.supplier_count, scenario.seed)
    init_pki(state, suppliers)
    registry = Registry(
        SupplierEntry(
            org_number=s.org_number,
            name=s.name,
            url=f"https://127.0.0.1:{port}/b2b/envelopes",
            cert_sha256=_fingerprint(state, s.org_number),
        )
        for s, port in zip(suppliers, _free_ports(len(suppliers)), strict=True)
    )
    registry.save(run_dir / "registry.json")
    timings = {"prepare": time.monotonic() - started}

    broker: LocalBroker | None = None
    url = resolve_broker_url(options.broker_url)
    if url is None:
        broker = LocalBroker(state.broker, die_with_parent=True)
        if broker.status().running:
            url, broker = broker.status().url, None  # someone else's: use it, leave it running
        else:
            t0 = time.monotonic()
            info = broker.start()
            url = info.url
            timings["broker_start"] = time.monotonic() - t0
            say(f"broker started: {url} in {info.startup_seconds:.1f} s")
    assert url is not None
    queue = f"/queue/af.ka.outbound.run-{run_dir.name}"
    result = RunResult(scenario, run_dir, Reconciliation(), timings=timings)
    try:
        asyncio.run(
            _play(
                scenario,
                options=options,
                state=state,
                run_dir=run_dir,
                broker_url=url,
                queue=queue,
                result=result,
            )
        )
    except B2BSimError as exc:
        result.error = exc.one_line()
    finally:
        if broker is not None:
            broker.stop()
    result.figures = reconcile(
        run_dir / "produced.jsonl", run_dir / "icc.jsonl", run_dir / "supplier-stub.sqlite"
    )
    result.expectations = _expectations(scenario, result.figures)
    result.timings["total"] = time.monotonic() - started
    (run_dir / "result.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


async def _play(
    scenario: Scenario,
    *,
    options: RunOptions,
    state: StateDir,
    run_dir: Path,
    broker_url: str,
    queue: str,
    result: RunResult,
) -> None:
    say = options.progress or (lambda _msg: None)
    registry_file = run_dir / "registry.json"
    stub_args = ["--registry", str(registry_file), "--db", str(run_dir / "supplier-stub.sqlite")]
    if options.rules:
        stub_args += ["--rules", options.rules]
    components: list[Component] = []
    try:
        t0 = time.monotonic()
        components.append(
            await Component.start(
                "supplier-stub", state.root, stub_args, run_dir / "supplier-stub.log"
            )
        )
        say(f"supplier stub ready: {scenario.supplier_count} supplier endpoint(s)")
        components.append(
            await Component.start(
                "icc",
                state.root,
                [
                    "--broker",
                    broker_url,
                    "--queue",
                    queue,
                    "--registry",
                    str(registry_file),
                    "--events",
                    str(run_dir / "icc.jsonl"),
                ],
                run_dir / "icc.log",
            )
        )
        say("icc bridge ready")
        result.timings["components_start"] = time.monotonic() - t0
        t0 = time.monotonic()
        async with asyncio.timeout(scenario.timeout):
            await _steps(scenario, run_dir, broker_url, queue, say)
        result.timings["steps"] = time.monotonic() - t0
    except TimeoutError:
        raise RunTimeoutError(
            f"scenario {scenario.name!r} did not finish within {scenario.timeout:g} s",
            hint="see the component logs in the run directory; raise `timeout:` if the run is big",
        ) from None
    finally:
        for component in reversed(components):
            await component.stop()


async def _steps(scenario: Scenario, run_dir: Path, broker_url: str, queue: str, say: Any) -> None:
    factory = DocumentFactory(scenario.seed)
    sellers = [
        seller_profile(s.org_number, s.name)
        for s in make_suppliers(scenario.supplier_count, scenario.seed)
    ]
    produced = 0
    async with Producer(broker_url, queue=queue, produced_log=run_dir / "produced.jsonl") as ka:
        for step in scenario.steps:
            if isinstance(step, Produce):
                rounds = step.chains or step.count
                for _ in range(rounds):
                    produced += await publish_round(ka, factory, sellers, doc_type=step.doc_type)
                await ka.flush()
                say(f"KA produced {produced} message(s)")
            elif isinstance(step, Wait):
                await _settle(run_dir, produced, step.timeout, say)
    if not isinstance(scenario.steps[-1], Wait):
        await _settle(run_dir, produced, scenario.timeout, say)


async def _settle(run_dir: Path, expected: int, timeout: float, say: Any) -> None:
    """Wait until ``expected`` messages are loaded into the supplier's ledger or
    dead-lettered (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        loaded = await asyncio.to_thread(loaded_messages, run_dir / "supplier-stub.sqlite")
        loaded_ids = {m for m, *_ in loaded}
        dead_ids = {
            str(e.get("message_id"))
            for e in read_jsonl(run_dir / "icc.jsonl")
            if e.get("event") == "dead_lettered"
        }
        done, dead = len(loaded_ids), len(dead_ids)
        if len(loaded_ids | dead_ids) >= expected:
            say(f"settled: {done} loaded, {dead} dead-lettered of {expected}")
            return
        if time.monotonic() > deadline:
            say(f"wait timed out: {done} loaded, {dead} dead-lettered of {expected}")
            return
        await asyncio.sleep(0.2)


def _expectations(scenario: Scenario, figures: Reconciliation) -> list[Expectation]:
    actual = figures.figures()
    wanted: dict[str, int] = {
        "produced": scenario.expected_messages,
        "lost": 0,
        "double_ingested": 0,
        **scenario.expect,
    }
    return [Expectation(name, value, actual[name]) for name, value in wanted.items()]


def _new_run_dir(state: StateDir, name: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")[:-3]
    run_dir = state.runs / f"{stamp}-{name}"
    run_dir.mkdir(parents=True, mode=0o700)
    return run_dir


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held open until all are chosen)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _fingerprint(state: StateDir, org_number: str) -> str:
    return cert_sha256(state.supplier_cert(org_number))
