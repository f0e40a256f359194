"""The running chain of one scenario run: its processes and the faults it suffers.

The runner asks this class to start the supplier stub and the ICC workers
(``b2bsim serve …`` child processes), and, for fault steps, to kill -9 a
worker, to take the supplier endpoint down, to write the stub's faults file,
to restart the embedded broker, and to kill -9 one broker of a network.
Every file it uses is in the run directory (docs/files.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from icc_bridge import write_delivery_faults, write_hold_ack
from simulator.lab.broker import BrokerInfo, LocalBroker
from simulator.lab.components import Component
from simulator.lab.network import BrokerNetwork, kill_jvm
from simulator.lab.pki import (
    issue_supplier_cert,
    revoke_certificate,
    rotate_supplier_cert,
    supplier_identity,
)
from simulator.lab.ports import free_ports
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.messages import now_ms
from simulator.vocabulary.registry import Registry, update_registry_cert
from simulator.vocabulary.retry import RetryPolicy
from simulator.vocabulary.state import StateDir
from supplier_stub import write_faults

log = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass
class ChainSpec:
    state: StateDir  # the run's own: its PKI (run_dir/pki), handed to every component
    broker_dir: Path  # the embedded broker's directory (in the user's state directory)
    run_dir: Path
    broker_url: str
    queue: str
    workers: int = 1
    request_timeout: float = 10.0
    retry: RetryPolicy | None = None
    gap_timeout: float = 5.0
    rules: str | None = None  # the stub's --rules (None: $B2BSIM_RULES_DIR, else the shipped)
    validate: bool = True  # False: the stub checks no document rules (--no-validate)
    seed: int = 1
    pull_port: int | None = None  # worker 1 serves the pull API here, if any supplier pulls
    # A network of brokers: ICC worker i (from 0) consumes from broker i mod N, its
    # home broker, and waits for it if it goes down (docs/deploy.md says why).
    worker_broker_urls: tuple[str, ...] = ()
    # An external supplier (b2bsim run --endpoint): the stub serves only these suppliers
    # (None: every one; empty: no stub at all), and the ICC trusts servers issued by the
    # CAs in ``server_ca`` (the pin in the registry still decides).
    stub_orgs: tuple[str, ...] | None = None
    server_ca: Path | None = None
    # Workers follow the embedded broker (its broker.json in broker_dir) wherever it
    # restarts, instead of a fixed --broker URL (docs/messages.md).
    follow_broker: bool = False
    broker_give_up: float | None = None  # workers' --broker-give-up (None: their default)
    # The pull API's faults (icc_bridge/pull_faults.py, as JSON), for an external puller.
    pull_faults: dict[str, object] | None = None

    def worker_broker_url(self, i: int) -> str:
        """The broker ICC worker ``i`` (from 0) consumes from."""
        urls = self.worker_broker_urls or (self.broker_url,)
        return urls[i % len(urls)]


class RunningChain:
    """The stub and the ICC workers of a run, as child processes."""

    def __init__(
        self,
        spec: ChainSpec,
        broker: LocalBroker | None,
        say: Say,
        network: BrokerNetwork | None = None,
    ) -> None:
        self.spec, self.broker, self.say, self.network = spec, broker, say, network
        self.stub: Component | None = None
        self.workers: list[Component | None] = [None] * spec.workers
        self.kills = 0
        self.broker_restarts = 0
        self.broker_kills = 0
        self._rng = random.Random(spec.seed)  # noqa: S311 - which worker to kill, not security
        self._fault_rules: list[dict[str, Any]] = []
        self._icc_faults: dict[str, float] = {}
        self._hold_ack: dict[str, float] = {}  # kill_at_receipt's kill point, while it waits
        self.icc_revoked_at_ms: int | None = None  # when a step revoked the ICC's certificate

    @property
    def faults_file(self) -> Path:
        return self.spec.run_dir / "faults.json"

    @property
    def icc_faults_file(self) -> Path:
        return self.spec.run_dir / "icc-faults.json"

    @property
    def db(self) -> Path:
        return self.spec.run_dir / "supplier-stub.sqlite"

    def events_files(self) -> list[Path]:
        return sorted(self.spec.run_dir.glob("icc*.jsonl"))

    # --- life cycle -----------------------------------------------------------
    async def start(self) -> None:
        write_faults(self.faults_file, [])
        write_delivery_faults(self.icc_faults_file)
        if self.spec.stub_orgs != ():
            await self.start_stub()
            self.say("supplier stub ready")
        for i in range(self.spec.workers):
            await self.start_worker(i)
        self.say(f"icc bridge ready ({self.spec.workers} worker(s))")

    async def stop(self) -> None:
        for component in [*self.workers, self.stub]:
            if component is not None:
                await component.stop()

    async def start_stub(self) -> None:
        s = self.spec
        args = [
            "--registry",
            str(s.run_dir / "registry.json"),
            "--db",
            str(self.db),
            "--faults",
            str(self.faults_file),
            "--gap-timeout",
            str(s.gap_timeout),
        ]
        if not s.validate:
            args.append("--no-validate")
        elif s.rules:
            args += ["--rules", s.rules]
        for org in s.stub_orgs or ():
            args += ["--org-number", org]
        self.stub = await Component.start(
            "supplier-stub", s.state.root, args, s.run_dir / "supplier-stub.log"
        )

    async def start_worker(self, i: int) -> None:
        s = self.spec
        retry = s.retry or RetryPolicy()
        broker: dict[str, object] = (
            {"--broker-file": s.broker_dir / "broker.json"}
            if s.follow_broker
            else {"--broker": s.worker_broker_url(i)}
        )
        options = {
            **broker,
            "--queue": s.queue,
            "--registry": s.run_dir / "registry.json",
            "--events": s.run_dir / f"icc-{i + 1}.jsonl",
            "--request-timeout": s.request_timeout,
            "--retry-max-attempts": retry.max_attempts,
            "--retry-max-age": retry.max_age,
            "--retry-initial-delay": retry.initial_delay,
            "--retry-max-delay": retry.max_delay,
            "--outbox": s.run_dir / "icc-outbox.sqlite",
            "--faults": self.icc_faults_file,
        }
        if s.broker_give_up is not None:
            options["--broker-give-up"] = s.broker_give_up
        if i == 0 and s.pull_port is not None:
            options["--pull-port"] = s.pull_port
            options["--pull-log"] = s.run_dir / "pull.jsonl"
            if s.pull_faults is not None:
                faults = s.run_dir / "pull-faults.json"
                faults.write_text(json.dumps(s.pull_faults) + "\n")
                options["--pull-faults"] = faults
        if s.server_ca is not None:  # an external supplier: keep what it was sent
            options["--server-ca"] = s.server_ca
            options["--sent-log"] = s.run_dir / f"sent-{i + 1}.jsonl"
        args = [str(part) for pair in options.items() for part in pair]
        self.workers[i] = await Component.start(
            "icc", s.state.root, args, s.run_dir / f"icc-{i + 1}.log"
        )

    # --- faults -----------------------------------------------------------------
    async def kill_worker(self, index: int | None = None, *, when: str = "") -> None:
        """kill -9 ICC worker ``index`` (from 0; None: chosen by the seed), start it again."""
        i = self._rng.randrange(len(self.workers)) if index is None else index
        worker = self.workers[i]
        if worker is not None:
            await worker.kill()
        self.kills += 1
        self.say(f"fault: killed icc worker {i + 1} (kill -9 #{self.kills}){when}")
        if self._hold_ack:  # the kill point struck: the other workers ack again
            self._hold_ack = {}
            write_delivery_faults(self.icc_faults_file, **self._icc_faults)
        await self.start_worker(i)

    async def supplier_down(self, seconds: float) -> None:
        """The endpoint refuses connections for ``seconds``: the stub process is stopped."""
        if self.stub is not None:
            await self.stub.stop()
        self.say(f"fault: supplier endpoint down for {seconds:g} s")
        await asyncio.sleep(seconds)
        if self.spec.stub_orgs != ():
            await self.start_stub()
        self.say("fault over: supplier endpoint back")

    def supplier_rule(self, rule: dict[str, Any] | None) -> None:
        """Add a rule to the stub's faults file (None clears them all)."""
        self._fault_rules = [] if rule is None else [*self._fault_rules, rule]
        write_faults(self.faults_file, self._fault_rules)

    # --- certificates -------------------------------------------------------------
    def revoke(self, org_number: str | None) -> None:
        """Revoke a supplier's certificate (None: the ICC's); the CRL is re-published."""
        revoke_certificate(self.spec.state, org_number or "icc")
        if org_number is None:
            self.icc_revoked_at_ms = now_ms()
        self.say(f"pki: revoked the certificate of {org_number or 'the ICC'}")

    def expire(self, org_number: str) -> None:
        """Replace a supplier's registered certificate by one that expired yesterday."""
        now = datetime.now(UTC)
        issued = issue_supplier_cert(
            self.spec.state,
            supplier_identity(self.spec.state, org_number),
            not_before=now - timedelta(days=2),
            not_after=now - timedelta(days=1),
        )
        update_registry_cert(self.registry_file, org_number, issued.sha256)
        self.say(f"pki: {org_number}'s certificate expired")

    def rotate(self, org_number: str) -> None:
        """A new key and certificate for a supplier, registered at once."""
        issued = rotate_supplier_cert(self.spec.state, org_number)
        update_registry_cert(self.registry_file, org_number, issued.sha256)
        self.say(f"pki: {org_number}'s certificate rotated (sha256 {issued.sha256[:12]}…)")

    def swap(self, org_number: str, other: str) -> None:
        """``org_number``'s endpoint presents ``other``'s certificate from now on."""
        state = self.spec.state
        for src, dst in (
            (state.supplier_key(other), state.supplier_key(org_number)),
            (state.supplier_cert(other), state.supplier_cert(org_number)),
        ):
            tmp = dst.with_suffix(".swap")
            shutil.copy2(src, tmp)
            os.replace(tmp, dst)
        self.say(f"pki: {org_number}'s endpoint now presents {other}'s certificate")

    def move(self, org_number: str) -> str:
        """The supplier's endpoint moves to a new URL (a new port); the registry says so."""
        (port,) = free_ports(1)
        registry = Registry.load(self.registry_file)
        moved = [
            replace(e, url=f"https://127.0.0.1:{port}/b2b/envelopes")
            if e.org_number == org_number
            else e
            for e in registry
        ]
        Registry(moved).save(self.registry_file)
        url = next(e.url for e in moved if e.org_number == org_number)
        self.say(f"registry: {org_number} moved to {url}")
        return url

    @property
    def registry_file(self) -> Path:
        return self.spec.run_dir / "registry.json"

    def icc_fault(self, kind: str, probability: float) -> None:
        """Make every ICC worker duplicate or reorder deliveries (clear: stop)."""
        self._icc_faults = {} if kind == "clear" else {**self._icc_faults, kind: probability}
        write_hold_ack(self.icc_faults_file, self._hold_ack, **self._icc_faults)

    async def kill_at_receipt(self, org_number: str, *, within: float) -> bool:
        """kill -9 the ICC worker that has just had ``org_number``'s receipt, before its
        broker ack (icc_bridge/faults.py ``hold_ack``), and start it again: the broker
        redelivers a message the supplier already has, re-signed by the next worker.

        False (and no kill) if no receipt of that supplier came ``within`` seconds.
        """
        seen = {f: held_answers(f) for f in self.events_files()}
        self._hold_ack = {org_number: within + 5}
        write_hold_ack(self.icc_faults_file, self._hold_ack, **self._icc_faults)
        deadline = asyncio.get_running_loop().time() + within
        try:
            while asyncio.get_running_loop().time() < deadline:
                for i in range(len(self.workers)):
                    events = self.spec.run_dir / f"icc-{i + 1}.jsonl"
                    if held_answers(events) > seen.get(events, 0):
                        when = f" right after supplier {org_number}'s receipt, before the ack"
                        await self.kill_worker(i, when=when)
                        return True
                await asyncio.sleep(0.02)
            self.say(f"fault: no receipt of supplier {org_number} within {within:g} s: no kill")
            return False
        finally:
            if self._hold_ack:
                self._hold_ack = {}
                write_delivery_faults(self.icc_faults_file, **self._icc_faults)

    async def restart_broker(self, down: float) -> None:
        if self.broker is None:
            raise ConfigError(
                "a scenario step restarts the broker, but this run uses an external one",
                hint="run it without --broker / $B2BSIM_BROKER, so it starts the embedded broker",
            )
        info = self.broker.info()
        port = info.port if info else None
        await asyncio.to_thread(self.broker.stop)  # the event loop (and KA) keep running
        self.say(f"fault: broker stopped (down for {down:g} s)")
        await asyncio.sleep(down)
        self.broker = LocalBroker(self.spec.broker_dir, port=port, die_with_parent=True)
        # Started on this (the main) thread, on purpose: PR_SET_PDEATHSIG ties the JVM to
        # the thread that forks it, and a worker thread ends before the run does.  The
        # loop stalls for the start-up (about 2 s), while the broker is down anyway.
        restarted = self.broker.start()
        self.broker_restarts += 1
        self.say(f"fault over: broker back in {restarted.startup_seconds:.1f} s")

    async def kill_broker(self, index: int, down: float) -> None:
        """kill -9 broker ``index`` (from 1), keep it down ``down`` s, start it again."""
        if self.network is None and self.broker is None:
            raise ConfigError(
                "a scenario step kills a broker, but this run uses an external one",
                hint="run it without --broker / $B2BSIM_BROKER, so it starts its own brokers",
            )
        if self.network is not None:
            await asyncio.to_thread(self.network.kill, index)
            name = self.network.broker(index).name
        else:
            assert self.broker is not None
            info = self.broker.info()
            await asyncio.to_thread(kill_jvm, self.broker)
            self.broker = LocalBroker(
                self.spec.broker_dir, port=info.port if info else None, die_with_parent=True
            )
            name = "the broker"
        self.broker_kills += 1
        self.say(f"fault: kill -9 {name} (down for {down:g} s)")
        await asyncio.sleep(down)
        restarted = await self._start_again(index)
        self.say(f"fault over: {name} back in {restarted.startup_seconds:.1f} s")

    async def _start_again(self, index: int) -> BrokerInfo:
        """Start a killed broker again.  The JVM is forked on this (the main) thread, for
        PR_SET_PDEATHSIG (see restart_broker); the wait for STOMP runs in a worker thread,
        so KA and the rest of the chain carry on meanwhile."""
        if self.network is None:
            assert self.broker is not None
            return self.broker.start()
        broker = self.network.broker(index)
        launched = broker.launch()
        if isinstance(launched, BrokerInfo):
            return launched
        what = f"{broker.name} (broker {index} of {self.network.size})"
        return await asyncio.to_thread(broker.await_started, launched, 120, what)


def held_answers(events: Path) -> int:
    """How many ``ack_held`` events an ICC worker's events file has (0 if none yet)."""
    try:
        return events.read_bytes().count(b'"event": "ack_held"')
    except FileNotFoundError:
        return 0


def rule_for(
    kind: str,
    *,
    seconds: float,
    status: int,
    retry_after: float | None,
    probability: float,
    first: int | None,
    duration: float | None,
) -> dict[str, Any]:
    """A faults-file rule (supplier_stub/faults.py) for a scenario's supplier fault."""
    rule: dict[str, Any] = {"kind": kind, "probability": probability}
    if kind == "status":
        rule["status"] = status
        if retry_after is not None:
            rule["retry_after"] = retry_after
    if kind == "delay":
        rule["seconds"] = seconds
    if first is not None:
        rule["first"] = first
    if duration is not None:
        rule["until_ms"] = now_ms() + int(duration * 1000)
    return rule
