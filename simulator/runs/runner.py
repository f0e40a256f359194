"""Run a scenario end to end: the conductor of the simulator.

``run_scenario`` prepares the run (PKI, registry, broker), then in asyncio
starts the chain (:class:`simulator.runs.chain.RunningChain`: the supplier stub and
the ICC workers as child processes), plays the scenario's steps with KA's
producer, waits until every message is loaded or dead-lettered, stops
everything and reconciles the run's files.  Nothing is left running,
whatever goes wrong.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ka_producer import Pacer, Producer, documents_for, publish_round
from ka_producer.documents import DocumentFactory, Seller, seller_profile
from simulator.lab.broker import LocalBroker, resolve_broker_url
from simulator.lab.network import BrokerNetwork, order_problem
from simulator.lab.pki import SupplierIdentity, cert_sha256, init_pki
from simulator.lab.ports import free_ports
from simulator.lab.suppliers import make_suppliers
from simulator.runs.attacks import Attacker, record
from simulator.runs.chain import ChainSpec, RunningChain, rule_for
from simulator.runs.reconcile import (
    Reconciliation,
    dead_lettered_ids,
    latest_envelope,
    loaded_messages,
    produced_ids,
    read_jsonl,
    reconcile,
)
from simulator.runs.scenario import (
    ZERO_BY_DEFAULT,
    Attack,
    Clock,
    IccFault,
    KillBroker,
    KillIcc,
    PkiChange,
    Poison,
    Produce,
    RestartBroker,
    Scenario,
    Sleep,
    Step,
    SupplierFault,
    Wait,
)
from simulator.vocabulary.broker_source import GIVE_UP_AFTER
from simulator.vocabulary.errors import B2BSimError, ConfigError, RunTimeoutError
from simulator.vocabulary.messages import Header, MessageMeta, MessageType, now_ms
from simulator.vocabulary.registry import DeliveryMode, Registry, SupplierEntry
from simulator.vocabulary.state import StateDir

log = logging.getLogger(__name__)

Say = Callable[[str], None]


#: A valid organisation number that no run's registry holds (poison messages).
UNREGISTERED_ORG = "5560360793"


@dataclass
class RunOptions:
    state: StateDir
    broker_url: str | None = None  # an existing broker; None: the embedded one
    rules: str | None = None  # validate documents at the stub with these rules
    progress: Say | None = None  # called with one line per event of the run
    # Awaited before each step with its index and the step (teaching mode: wait for
    # "next"); and told the run directory once the run starts (a live view tails it).
    before_step: Callable[[int, Step], Awaitable[None]] | None = None
    on_start: Callable[[Path], None] | None = None


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
    faults: dict[str, int] = field(default_factory=dict)

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
    _refuse_unrunnable(scenario, url)
    state = options.state.ensure()
    started = time.monotonic()
    run_dir = new_run_dir(state, scenario.name)
    suppliers = make_suppliers(scenario.supplier_count, scenario.seed)
    # Each run has a PKI of its own (run_dir/pki), so that a scenario may revoke,
    # expire or rotate certificates without touching any other run.
    run_state, pull_port = init_run_suppliers(run_dir, suppliers, pull_count=scenario.pull_count)
    timings = {"prepare": time.monotonic() - started}

    broker: LocalBroker | None = None
    network: BrokerNetwork | None = None
    worker_urls: tuple[str, ...] = ()
    if scenario.brokers > 1:
        network, url = _start_network(state, scenario, timings, say)
        worker_urls = tuple(network.urls)
    elif url is None:
        broker, url = _local_broker(state, scenario, timings, say)
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
        pull_port=pull_port if scenario.pull_count else None,
        worker_broker_urls=worker_urls,
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
                sellers=suppliers_of(scenario),
                result=result,
                say=say,
                options=options,
            )
        )
    except B2BSimError as exc:
        result.error = exc.one_line()
    finally:
        if chain.broker is not None:
            chain.broker.stop()
        if network is not None:
            network.stop()
    result.faults = {
        "icc_kills": chain.kills,
        "broker_restarts": chain.broker_restarts,
        "broker_kills": chain.broker_kills,
    }
    result.figures = reconcile(run_dir / "produced.jsonl", chain.events_files(), chain.db)
    result.expectations = _expectations(scenario, result.figures, run_dir)
    result.timings["total"] = time.monotonic() - started
    (run_dir / "result.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


def broker_give_up(scenario: Scenario) -> float:
    """How long KA and the ICC look for a lost broker: past the longest planned outage."""
    downs = [s.down for s in scenario.steps if isinstance(s, KillBroker | RestartBroker)]
    return max([GIVE_UP_AFTER, *(down + GIVE_UP_AFTER for down in downs)])


def _refuse_unrunnable(scenario: Scenario, url: str | None) -> None:
    """Refuse, before anything starts, a run that cannot keep its promises."""
    if url is not None and scenario.needs_embedded_broker:
        raise ConfigError(
            f"scenario {scenario.name!r} restarts or kills a broker, or runs a network of "
            "brokers, so it needs brokers of its own",
            hint="run it without --broker and with $B2BSIM_BROKER unset",
        )
    longest_down = max((s.down for s in scenario.steps if isinstance(s, KillBroker)), default=0.0)
    problem = order_problem(scenario.brokers, scenario.gap_timeout, longest_down)
    if problem is not None:  # load_scenario refuses it too; a Scenario built in code may not
        raise ConfigError(
            f"scenario {scenario.name!r}: {problem}",
            hint="raise `stub: {gap_timeout: S}`, or use one broker",
        )


def _local_broker(
    state: StateDir, scenario: Scenario, timings: dict[str, float], say: Say
) -> tuple[LocalBroker | None, str]:
    """The embedded broker (started here, or None if someone else's already runs) and its URL."""
    broker = LocalBroker(state.broker, die_with_parent=True)
    status = broker.status()
    if status.running and status.url and not scenario.needs_embedded_broker:
        return None, status.url  # someone else's: use it, leave it running
    if status.running:
        raise ConfigError(
            f"scenario {scenario.name!r} restarts the broker, but `b2bsim broker start` "
            "runs one in this state directory",
            hint="stop it (b2bsim broker stop) or use another --state",
        )
    info = broker.start()
    timings["broker_start"] = info.startup_seconds
    say(f"broker started: {info.url} in {info.startup_seconds:.1f} s")
    return broker, info.url


def _start_network(
    state: StateDir, scenario: Scenario, timings: dict[str, float], say: Say
) -> tuple[BrokerNetwork, str]:
    """Start the run's network of brokers (STATE/broker-1..N); KA publishes to broker 1."""
    network = BrokerNetwork(state.root, scenario.brokers, die_with_parent=True)
    running = [m.name for m, status in network.status() if status.running]
    if running:
        raise ConfigError(
            f"scenario {scenario.name!r} runs a network of brokers, but brokers of this state "
            f"directory already run ({', '.join(running)})",
            hint=f"stop them (b2bsim broker stop --network {scenario.brokers}) "
            "or use another --state",
        )
    timings["broker_start"] = network.start_joined()
    say(
        f"network of {network.size} brokers started and joined in "
        f"{timings['broker_start']:.1f} s: {', '.join(network.urls)}"
    )
    return network, network.urls[0]


def suppliers_of(scenario: Scenario) -> list[Seller]:
    return [
        seller_profile(s.org_number, s.name)
        for s in make_suppliers(scenario.supplier_count, scenario.seed)
    ]


async def _play(
    scenario: Scenario,
    chain: RunningChain,
    *,
    sellers: list[Seller],
    result: RunResult,
    say: Say,
    options: RunOptions,
) -> None:
    try:
        t0 = time.monotonic()
        await chain.start()
        result.timings["components_start"] = time.monotonic() - t0
        t0 = time.monotonic()
        async with asyncio.timeout(scenario.timeout):
            player = _Player(scenario, chain, sellers, say)
            player.before_step = options.before_step
            await player.play()
        result.timings["steps"] = time.monotonic() - t0
    except TimeoutError:
        raise RunTimeoutError(
            f"scenario {scenario.name!r} did not finish within {scenario.timeout:g} s",
            hint="see the component logs in the run directory; raise `timeout:` if the run is big",
        ) from None
    finally:
        await chain.stop()


class _Player:
    """Plays a scenario's steps in order; background steps run alongside."""

    def __init__(
        self, scenario: Scenario, chain: RunningChain, sellers: list[Seller], say: Say
    ) -> None:
        self.scenario, self.chain, self.sellers, self.say = scenario, chain, sellers, say
        self.factory = DocumentFactory(scenario.seed)
        self.skew_ms = 0
        self.produced = 0
        self.background: list[asyncio.Task[None]] = []
        self.poisoned: set[str] = set()
        self.before_step: Callable[[int, Step], Awaitable[None]] | None = None

    def clock(self) -> int:
        return now_ms() + self.skew_ms

    async def play(self) -> None:
        spec = self.chain.spec
        produced_log = spec.run_dir / "produced.jsonl"
        async with Producer(
            spec.broker_url,
            queue=spec.queue,
            produced_log=produced_log,
            outbox=spec.run_dir / "ka-outbox.sqlite",
            clock=self.clock,
            give_up=spec.broker_give_up or GIVE_UP_AFTER,
        ) as ka:
            self.ka = ka
            for index, step in enumerate(self.scenario.steps):
                if self.before_step is not None:
                    await self.before_step(index, step)
                action = self._action(step)
                if getattr(step, "background", False):
                    self.background.append(asyncio.create_task(action))
                else:
                    await action
            if self.background or not isinstance(self.scenario.steps[-1], Wait):
                await self._wait(Wait(timeout=self.scenario.timeout))

    def _action(self, step: Step) -> Coroutine[Any, Any, None]:
        if isinstance(step, Produce):
            return self._produce(step)
        if isinstance(step, Wait):
            return self._wait(step)
        if isinstance(step, Sleep):
            return asyncio.sleep(step.seconds)
        if isinstance(step, Clock):
            return self._clock(step)
        if isinstance(step, KillIcc):
            return self._kill(step)
        if isinstance(step, RestartBroker):
            return self.chain.restart_broker(step.down)
        if isinstance(step, KillBroker):
            return self.chain.kill_broker(step.index, step.down)
        if isinstance(step, Poison):
            return self._poison(step)
        if isinstance(step, IccFault):
            return self._icc_fault(step)
        if isinstance(step, Attack):
            return self._attack(step)
        if isinstance(step, PkiChange):
            return self._pki(step)
        return self._supplier_fault(step)

    async def _produce(self, step: Produce) -> None:
        pacer = Pacer(step.rate)
        rounds = step.chains or step.count
        for _ in range(rounds):
            self.produced += await publish_round(
                self.ka, self.factory, self.sellers, doc_type=step.doc_type, pacer=pacer
            )
        await self.ka.flush()
        self.say(f"KA produced {self.produced} message(s)")

    async def _clock(self, step: Clock) -> None:
        self.skew_ms = step.ka_skew_ms
        self.say(f"fault: KA's clock skewed by {step.ka_skew_ms} ms")

    async def _kill(self, step: KillIcc) -> None:
        if step.after:
            # The stub's SQLite file is the only signal: poll it.
            while len(await self._loaded()) < step.after:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        for n in range(step.times):
            await self.chain.kill_worker()
            if n < step.times - 1:
                await asyncio.sleep(step.every)

    async def _supplier_fault(self, step: SupplierFault) -> None:
        if step.kind == "down":
            await self.chain.supplier_down(step.seconds)
            return
        if step.kind == "clear":
            self.chain.supplier_rule(None)
            self.say("fault: supplier faults cleared")
            return
        self.chain.supplier_rule(
            rule_for(
                step.kind,
                seconds=step.seconds,
                status=step.status,
                retry_after=step.retry_after,
                probability=step.probability,
                first=step.first,
                duration=step.duration,
            )
        )
        self.say(f"fault: supplier answers {step.kind} (p={step.probability:g})")

    def _org(self, number: int) -> str:
        """The organisation number of supplier ``number`` (from 1) of the scenario."""
        return self.sellers[number - 1].org_number

    async def _pki(self, step: PkiChange) -> None:
        if step.action == "revoke":
            self.chain.revoke(self._org(step.supplier) if step.supplier else None)
        elif step.action == "expire":
            self.chain.expire(self._org(step.supplier))
        elif step.action == "rotate":
            self.chain.rotate(self._org(step.supplier))
        elif step.action == "move":
            self.chain.move(self._org(step.supplier))
        else:
            self.chain.swap(self._org(step.supplier), self._org(step.other))

    async def _attack(self, step: Attack) -> None:
        spec = self.chain.spec
        registry = Registry.load(spec.run_dir / "registry.json")
        target = registry.lookup(self._org(step.supplier))
        other = next(s for s in registry if s.org_number != target.org_number)
        seller = self.sellers[step.supplier - 1]
        document = documents_for(DocumentFactory(self.scenario.seed + 1), seller, doc_type="order")
        replay = await asyncio.to_thread(latest_envelope, self.chain.db, target.org_number)
        attacker = Attacker(spec.state, target, other, document[0].xml, replay)
        for kind in step.kinds:
            outcome = await attacker.run(kind)
            record(spec.run_dir / "attacks.jsonl", outcome)
            self.say(outcome.summary())

    async def _icc_fault(self, step: IccFault) -> None:
        self.chain.icc_fault(step.kind, step.probability)
        self.say(f"fault: the ICC {step.kind}s deliveries (p={step.probability:g})")

    async def _poison(self, step: Poison) -> None:
        """Messages the ICC must dead-letter at once, sent beside KA's own."""
        org = self.sellers[0].org_number
        doc = documents_for(self.factory, self.sellers[0], doc_type="order")[0].xml.decode()
        for kind in step.kinds:
            meta = MessageMeta.new(MessageType.INKOPSORDER, org, 10**9, message_id=f"poison-{kind}")
            headers, body = meta.headers(), doc
            if kind == "no-headers":
                headers = {"b2b-message-id": meta.message_id}
            elif kind == "unknown-type":
                headers[Header.MESSAGE_TYPE] = "FAKTURA"
            elif kind == "unknown-supplier":
                headers[Header.ORG_NUMBER] = headers[Header.GROUP] = UNREGISTERED_ORG
            else:
                body = "this is not XML"
            await self.ka.send_raw(headers, body)
            self.poisoned.add(meta.message_id)
        self.say(f"fault: {len(step.kinds)} poison message(s) on KA's queue")

    async def _loaded(self) -> set[str]:
        loaded = await asyncio.to_thread(loaded_messages, self.chain.db)
        return {m for m, *_ in loaded}

    async def _wait(self, step: Wait) -> None:
        """Let background steps finish, then wait until all is loaded or dead-lettered."""
        tasks, self.background = self.background, []
        await asyncio.gather(*tasks)
        deadline = time.monotonic() + step.timeout
        while True:
            loaded = await self._loaded()
            dead = dead_lettered_ids(self.chain.events_files())
            produced = produced_ids(self.chain.spec.run_dir / "produced.jsonl")
            counts = settle_counts(produced, loaded, dead, self.poisoned)
            if produced <= loaded | dead and self.poisoned <= dead:
                self.say(f"settled: {counts}")
                return
            if time.monotonic() > deadline:
                self.say(f"wait timed out: {counts}")
                return
            await asyncio.sleep(0.2)


def settle_counts(produced: set[str], loaded: set[str], dead: set[str], poisoned: set[str]) -> str:
    """How far KA's messages have come, each counted once, poison apart.

    A message loaded and also dead-lettered (stored, then given up on) counts
    as loaded; poison messages are not KA's, so they are told separately.
    """
    done = produced & loaded
    given_up = (produced & dead) - loaded
    told = f"{len(done)} loaded, {len(given_up)} dead-lettered of {len(produced)} produced"
    pending = len(produced) - len(done) - len(given_up)
    if pending:
        told += f", {pending} still on the way"
    if poisoned:
        told += f"; {len(poisoned & dead)} of {len(poisoned)} poison message(s) dead-lettered"
    return told


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


def init_run_suppliers(
    run_dir: Path, suppliers: list[SupplierIdentity], *, pull_count: int = 0
) -> tuple[StateDir, int]:
    """A run's own PKI (RUN_DIR/pki) and registry (RUN_DIR/registry.json).

    Each push supplier gets a free port of its own on 127.0.0.1; the last
    ``pull_count`` suppliers pull from the ICC's outbox at one more free
    port.  Returns the run's state directory and that outbox port.
    """
    run_state = StateDir(run_dir)
    init_pki(run_state, suppliers)
    *ports, pull_port = free_ports(len(suppliers) + 1)
    first_pull = len(suppliers) - pull_count
    Registry(
        SupplierEntry(
            org_number=s.org_number,
            name=s.name,
            url=(
                f"https://127.0.0.1:{port}/b2b/envelopes"
                if i < first_pull
                else f"https://127.0.0.1:{pull_port}/b2b/outbox"
            ),
            cert_sha256=cert_sha256(run_state.supplier_cert(s.org_number)),
            delivery_mode=DeliveryMode.PUSH if i < first_pull else DeliveryMode.PULL,
        )
        for i, (s, port) in enumerate(zip(suppliers, ports, strict=True))
    ).save(run_dir / "registry.json")
    return run_state, pull_port


def new_run_dir(state: StateDir, name: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")[:-3]
    run_dir = state.runs / f"{stamp}-{name}"
    run_dir.mkdir(parents=True, mode=0o700)
    return run_dir
