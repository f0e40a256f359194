"""Setting up a run: its directory, its own PKI and registry, its broker or brokers.

Also the checks that refuse, before anything starts, a scenario that cannot
keep its promises.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ka_producer.documents import Seller, seller_profile
from simulator.lab.broker import LocalBroker
from simulator.lab.network import BrokerNetwork, order_problem
from simulator.lab.pki import SupplierIdentity, cert_sha256, init_pki
from simulator.lab.ports import free_ports
from simulator.lab.suppliers import make_suppliers
from simulator.runs.scenario import KillBroker, Scenario
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.registry import DeliveryMode, Registry, SupplierEntry
from simulator.vocabulary.state import StateDir

__all__ = [
    "init_run_suppliers",
    "local_broker",
    "new_run_dir",
    "refuse_unrunnable",
    "start_network",
    "suppliers_of",
]

Say = Callable[[str], None]


def refuse_unrunnable(scenario: Scenario, url: str | None) -> None:
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


def local_broker(
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


def start_network(
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
    """The scenario's suppliers as KA's documents name them (seller profiles)."""
    return [
        seller_profile(s.org_number, s.name)
        for s in make_suppliers(scenario.supplier_count, scenario.seed)
    ]


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
    """A new run directory under STATE/runs, named by the time and ``name`` (owner only)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")[:-3]
    run_dir = state.runs / f"{stamp}-{name}"
    run_dir.mkdir(parents=True, mode=0o700)
    return run_dir
