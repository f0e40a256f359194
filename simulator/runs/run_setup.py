"""Setting up a run: its directory, its own PKI and registry, its broker or brokers.

Also the checks that refuse, before anything starts, a scenario that cannot
keep its promises.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from ka_producer.documents import Seller, seller_profile
from simulator.lab.broker import LocalBroker
from simulator.lab.network import BrokerNetwork, order_problem
from simulator.lab.pki import SupplierIdentity, cert_sha256, init_pki
from simulator.lab.pki_store import require_pki
from simulator.lab.ports import free_ports
from simulator.lab.suppliers import make_suppliers
from simulator.runs.endpoint import ExternalEndpoint
from simulator.runs.scenario import EXTERNAL_SUPPLIER, KillBroker, Scenario
from simulator.vocabulary.certs import crl_path
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.registry import DeliveryMode, Registry, SupplierEntry
from simulator.vocabulary.state import StateDir

#: In a run with an external supplier: the CAs the ICC trusts for servers (RUN_DIR/pki).
SERVER_CA = "server-ca.pem"

__all__ = [
    "SERVER_CA",
    "init_run_suppliers",
    "local_broker",
    "new_run_dir",
    "refuse_too_few_suppliers",
    "refuse_two_outboxes",
    "refuse_unrunnable",
    "run_suppliers",
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


def refuse_too_few_suppliers(scenario: Scenario, externals: int) -> None:
    """Refuse a run with more external suppliers (``--target``) than the scenario has."""
    if externals > scenario.supplier_count:
        raise ConfigError(
            f"scenario {scenario.name!r} has {scenario.supplier_count} supplier(s), but "
            f"{externals} external supplier(s) are given",
            hint="list at most that many in --target, or run a scenario with more suppliers",
        )


def refuse_two_outboxes(externals: Sequence[ExternalEndpoint]) -> None:
    """Refuse external pullers that expect different outbox ports: a run serves one."""
    ports = sorted({e.pull_port for e in externals if e.pull_port is not None})
    if len(ports) > 1:
        raise ConfigError(
            f"the external pullers expect the outbox on ports {', '.join(map(str, ports))}, "
            "but a run's ICC serves one outbox",
            hint="give every puller the same port (b2bsim run --pull-port P)",
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


def run_suppliers(
    scenario: Scenario, external: str | Sequence[str] | None = None
) -> list[SupplierIdentity]:
    """The scenario's suppliers; with ``external`` (an organisation number, or several:
    ``--target``), supplier EXTERNAL_SUPPLIER (and the next ones) has that number: it is
    the one at the external endpoint."""
    count = scenario.supplier_count
    orgs = _orgs(external)
    if not orgs:
        return make_suppliers(count, scenario.seed)
    made = make_suppliers(count + len(orgs), scenario.seed)
    others = [s for s in made if s.org_number not in orgs]
    index = EXTERNAL_SUPPLIER - 1
    for i, org in enumerate(orgs):  # never twice
        others[index + i] = replace(others[index + i], org_number=org)
    return others[:count]


def _orgs(external: str | Sequence[str] | None) -> tuple[str, ...]:
    if external is None:
        return ()
    return (external,) if isinstance(external, str) else tuple(external)


def suppliers_of(scenario: Scenario, external: str | Sequence[str] | None = None) -> list[Seller]:
    """The scenario's suppliers as KA's documents name them (seller profiles)."""
    return [seller_profile(s.org_number, s.name) for s in run_suppliers(scenario, external)]


def init_run_suppliers(
    run_dir: Path,
    suppliers: list[SupplierIdentity],
    *,
    pull_count: int = 0,
    external: ExternalEndpoint | Sequence[ExternalEndpoint] | None = None,
    state: StateDir | None = None,
) -> tuple[StateDir, int]:
    """A run's own PKI (RUN_DIR/pki) and registry (RUN_DIR/registry.json).

    Each push supplier gets a free port of its own on 127.0.0.1; the last
    ``pull_count`` suppliers pull from the ICC's outbox at one more free
    port.  Returns the run's state directory and that outbox port.

    With ``external`` (supplier EXTERNAL_SUPPLIER at a real endpoint, its pin
    known), the run's PKI starts from a copy of ``state``'s AF test CA, ICC
    certificate and CRL, because that is what the external supplier trusts: the
    ICC connects and signs with the state's ICC certificate, the other suppliers'
    certificates are issued by the same CA, and a revocation in the run changes
    only the run's copy.  The ICC also trusts ``--endpoint-ca`` for servers
    (RUN_DIR/pki/server-ca.pem); the pin still decides.
    """
    run_state = StateDir(run_dir)
    externals = (
        ()
        if external is None
        else (external,)
        if isinstance(external, ExternalEndpoint)
        else tuple(external)
    )
    k = len(externals)
    if externals:
        assert state is not None
        _copy_state_pki(state, run_state, externals)
    ours = suppliers[k:]
    init_pki(run_state, ours)
    *ports, pull_port = free_ports(len(suppliers) + 1)
    pullers = [e.pull_port for e in externals if e.pull_port is not None]
    if pullers:  # the pullers know this port (one: refuse_two_outboxes)
        pull_port = pullers[0]
    first_pull = len(suppliers) - pull_count
    entries = [
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
        if i >= k
    ]
    for i, (ext, supplier) in enumerate(zip(externals, suppliers, strict=False)):
        assert ext.cert_sha256 is not None, "check_endpoint() first: it takes the pin"
        entries.insert(
            i,
            SupplierEntry(
                org_number=supplier.org_number,
                name=supplier.name,
                url=ext.url,
                cert_sha256=ext.cert_sha256,
                delivery_mode=DeliveryMode.PULL if ext.mode == "pull" else DeliveryMode.PUSH,
            ),
        )
    Registry(entries).save(run_dir / "registry.json")
    return run_state, pull_port


def _copy_state_pki(
    state: StateDir, run_state: StateDir, externals: Sequence[ExternalEndpoint]
) -> None:
    """The state's CA, ICC certificate and CRL into the run's PKI; the server trust beside."""
    require_pki(state)
    run_state.pki.mkdir(parents=True, mode=0o700, exist_ok=True)
    for src, dst in (
        (state.ca_cert, run_state.ca_cert),
        (state.ca_key, run_state.ca_key),
        (state.icc_cert, run_state.icc_cert),
        (state.icc_key, run_state.icc_key),
        (crl_path(state), crl_path(run_state)),
    ):
        if src.is_file():
            shutil.copy2(src, dst)
    bundle = [run_state.ca_cert.read_bytes().strip()]
    for external in externals:
        theirs = external.ca.read_bytes().strip()
        if theirs not in bundle:
            bundle.append(theirs)
    (run_state.pki / SERVER_CA).write_bytes(b"\n".join(bundle) + b"\n")


def new_run_dir(state: StateDir, name: str) -> Path:
    """A new run directory under STATE/runs, named by the time and ``name`` (owner only)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")[:-3]
    run_dir = state.runs / f"{stamp}-{name}"
    run_dir.mkdir(parents=True, mode=0o700)
    return run_dir
