"""A local network of ActiveMQ brokers: N private brokers joined by static connectors.

Each broker of the network is a :class:`LocalBroker` of its own, under
``STATE/broker-1`` … ``STATE/broker-N``, with STOMP on 127.0.0.1 for the
clients (KA, the ICC workers) and OpenWire on 127.0.0.1 for the links between
brokers.  ``STATE/network.json`` records every broker's name and ports, so a
broker that is killed comes back on the same ports and its peers (and its
clients) find it again.

The settings of the network (docs/deploy.md says why):

* every broker has a static network connector to every other one (a full
  mesh), ``duplex=false``: each broker forwards its own messages;
* ``conduitSubscriptions=false``: each remote consumer counts as a consumer of
  its own, so a queue is load-balanced over every consumer of the network;
* ``networkTTL=1``: in a full mesh every broker is one hop away; a message
  crosses the network once and is never passed on (no ping-pong, no loops);
* ``decreaseNetworkConsumerPriority=false``: KA publishes to broker 1 only,
  so consumers behind the network must get an equal share.

A network does not keep one total order, and message groups hold per broker.
Per-supplier order is restored at the supplier, whose ledger resequences by
KA's per-supplier sequence and holds a message up to its gap timeout
(docs/supplier.md); :func:`order_problem` says when a configuration cannot
keep that promise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from simulator.lab.broker import (
    LOCAL_HOST,
    BrokerInfo,
    BrokerStatus,
    LocalBroker,
    NetworkLink,
    _check_port_free,
    find_activemq_home,
    render_config,
    wait_for_stomp,
)
from simulator.lab.ports import free_ports
from simulator.vocabulary.errors import BrokerError, BrokerUnreachableError, ConfigError

__all__ = [
    "MAX_BROKERS",
    "NETWORK_RECOVERY_SECONDS",
    "BrokerNetwork",
    "Launched",
    "Member",
    "NetworkBroker",
    "kill_jvm",
    "order_problem",
]

log = logging.getLogger(__name__)

#: The largest network ``b2bsim broker start --network N`` builds on one machine.
MAX_BROKERS = 9
#: Seconds a broker of the network needs, after it is back, before the messages
#: it held reach a supplier: JVM start and KahaDB recovery (about 3 s here), the
#: ICC worker's reconnect back-off (at most 10 s) and the peers' reconnect (1 s),
#: with room to spare on a slow machine.
NETWORK_RECOVERY_SECONDS = 30.0
_LAYOUT = "network.json"
#: What a broker logs as it starts: the log is appended to over restarts.
_STARTING = ") is starting"


def order_problem(brokers: int, gap_timeout: float, longest_down: float = 0.0) -> str | None:
    """Why ``brokers`` brokers with this supplier gap timeout cannot keep per-supplier
    order (None if they can).

    Messages of one supplier travel different ways through a network: a broker
    that drops out holds its share until it is back, while the supplier's later
    messages arrive through the other brokers.  The supplier's ledger restores
    KA's order only if it holds those later messages long enough: the gap
    timeout must cover the longest time a broker is down plus its recovery.
    """
    if brokers <= 1:
        return None
    needed = longest_down + NETWORK_RECOVERY_SECONDS
    if gap_timeout >= needed:
        return None
    down = f" plus {longest_down:g} s that a broker is down" if longest_down else ""
    return (
        f"a network of {brokers} brokers does not keep one total order: a supplier's messages "
        f"take different brokers, and its ledger restores KA's order only within the gap "
        f"timeout ({gap_timeout:g} s); it must be at least {needed:g} s "
        f"({NETWORK_RECOVERY_SECONDS:g} s for a broker's recovery{down})"
    )


@dataclass(frozen=True)
class Launched:
    """A broker JVM started but not yet answering."""

    pid: int
    begun: float


@dataclass(frozen=True)
class Member:
    """One broker of the network: its name and its ports on 127.0.0.1."""

    index: int  # from 1
    name: str
    stomp_port: int
    openwire_port: int

    @property
    def url(self) -> str:
        return f"stomp://{LOCAL_HOST}:{self.stomp_port}"

    @property
    def openwire_url(self) -> str:
        return f"tcp://{LOCAL_HOST}:{self.openwire_port}"


class NetworkBroker(LocalBroker):
    """A :class:`LocalBroker` whose config also opens OpenWire and links it to its peers."""

    def __init__(
        self,
        base: Path,
        member: Member,
        peers: list[Member],
        *,
        home: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        super().__init__(
            base,
            port=member.stomp_port,
            home=home,
            name=member.name,
            die_with_parent=die_with_parent,
        )
        self.member = member
        self.link = NetworkLink(peers=tuple(p.openwire_url for p in peers))

    def _write_config(self, port: int) -> None:
        super()._write_config(port)
        self.config_file.write_text(
            render_config(
                port,
                name=self.name,
                openwire_port=self.member.openwire_port,
                network=self.link,
            )
        )

    def launch(self) -> BrokerInfo | Launched:
        """Start the JVM without waiting (or return the broker already answering)."""
        current = self.info()
        if current is not None and self.status().answering:
            return current
        self._clean_up_stale()
        home = self.home or find_activemq_home()
        _check_port_free(self.member.stomp_port)
        _check_port_free(self.member.openwire_port)
        self._write_config(self.member.stomp_port)
        begun = time.monotonic()
        return Launched(pid=self._launch(home), begun=begun)

    def await_started(self, launched: Launched, timeout: float, what: str) -> BrokerInfo:
        """Wait until the launched JVM answers STOMP; name it (``what``) and show its
        log tail if it does not."""
        url = self.member.url
        try:
            wait_for_stomp(
                LOCAL_HOST,
                self.member.stomp_port,
                timeout,
                alive=lambda: self._child_alive(launched.pid),
            )
        except BrokerUnreachableError as exc:
            self._kill(launched.pid, grace=2)
            raise BrokerError(
                f"{what} did not come up: no STOMP answer at {url} ({exc.message}); "
                f"last lines of {self.log_file}:\n{self._log_tail()}",
                hint="read its broker.log; a taken port or a locked data directory are "
                "common causes",
            ) from None
        info = BrokerInfo(
            url=url,
            port=self.member.stomp_port,
            pid=launched.pid,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            startup_seconds=round(time.monotonic() - launched.begun, 2),
        )
        self.info_file.write_text(json.dumps(asdict(info), indent=2) + "\n")
        log.info("broker %s started: %s (pid %d)", self.name, url, launched.pid)
        return info

    def kill(self) -> bool:
        """kill -9 the broker's JVM (no clean shutdown); True if one was running."""
        return kill_jvm(self)


def kill_jvm(broker: LocalBroker) -> bool:
    """kill -9 the JVM of a local broker, as a crash would; True if one was running.

    Its store (KahaDB) recovers when it starts again.
    """
    if broker._proc is not None:  # reap our own child if it already died
        broker._child_alive(broker._proc.pid)
    pids = set(broker._our_jvms())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not broker._wait_gone(pid, 10):
            raise BrokerError(f"broker JVM {pid} survived SIGKILL", hint="kill it by hand")
    broker.info_file.unlink(missing_ok=True)
    return bool(pids)


class BrokerNetwork:
    """N local brokers, ``root/broker-1`` … ``root/broker-N``, joined as a network.

    ``die_with_parent=True`` makes every JVM die with the thread that started
    it (the runner's); otherwise the JVMs run detached (``b2bsim broker start``).
    """

    def __init__(
        self,
        root: Path,
        size: int,
        *,
        home: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        if not 2 <= size <= MAX_BROKERS:
            raise ConfigError(
                f"a network of {size} broker(s) is not possible here",
                hint=f"give --network from 2 to {MAX_BROKERS} (1 is the plain local broker)",
            )
        self.root = Path(root).absolute()
        self.size = size
        self.home = home
        self.die_with_parent = die_with_parent
        self.members = self._layout()
        self.brokers = [
            NetworkBroker(
                self.broker_dir(m.index),
                m,
                [p for p in self.members if p.index != m.index],
                home=home,
                die_with_parent=die_with_parent,
            )
            for m in self.members
        ]

    def broker_dir(self, index: int) -> Path:
        return self.root / f"broker-{index}"

    @property
    def layout_file(self) -> Path:
        return self.root / _LAYOUT

    @property
    def urls(self) -> list[str]:
        """The STOMP URL of every broker, broker 1 first."""
        return [m.url for m in self.members]

    def failover_url(self, start: int = 1) -> str:
        """A failover URL over every broker, starting at broker ``start``."""
        order = self.members[start - 1 :] + self.members[: start - 1]
        return "failover:(" + ",".join(m.url for m in order) + ")"

    def broker(self, index: int) -> NetworkBroker:
        """Broker ``index`` (from 1); a clear error for an index outside the network."""
        if not 1 <= index <= self.size:
            raise ConfigError(
                f"there is no broker {index} in a network of {self.size}",
                hint=f"name a broker from 1 to {self.size}",
            )
        return self.brokers[index - 1]

    # --- life cycle -------------------------------------------------------------
    def start(self, timeout: float = 60) -> list[BrokerInfo]:
        """Start every broker and return once each answers STOMP.

        The JVMs start side by side.  A broker that does not come up is named,
        with the tail of its log; the brokers already started are stopped again.
        """
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.layout_file.write_text(
            json.dumps({"brokers": [asdict(m) for m in self.members]}, indent=2) + "\n"
        )
        try:
            launched = [b.launch() for b in self.brokers]
            return [
                self._await(b, started, timeout)
                for b, started in zip(self.brokers, launched, strict=True)
            ]
        except BaseException:
            self.stop(grace=5)
            raise

    def _await(
        self, broker: NetworkBroker, launched: BrokerInfo | Launched, timeout: float
    ) -> BrokerInfo:
        if isinstance(launched, BrokerInfo):
            return launched
        what = f"{broker.member.name} (broker {broker.member.index} of {self.size})"
        return broker.await_started(launched, timeout, what)

    def start_joined(self, timeout: float = 60) -> float:
        """Start every broker and wait until each is linked to its peers; the seconds it took.

        If the network does not join in ``timeout`` seconds, it is stopped again.
        """
        begun = time.monotonic()
        self.start(timeout)
        try:
            self.wait_linked(timeout)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - begun

    def restart(self, index: int, timeout: float = 60) -> BrokerInfo:
        """Start broker ``index`` again, on its old ports, and wait until it answers."""
        broker = self.broker(index)
        return self._await(broker, broker.launch(), timeout)

    def kill(self, index: int) -> bool:
        """kill -9 broker ``index``; True if it was running."""
        return self.broker(index).kill()

    def stop(self, grace: float = 15) -> list[str]:
        """Stop every broker (SIGTERM, then SIGKILL); the names of those that ran."""
        stopped = []
        for broker in reversed(self.brokers):
            if broker.stop(grace=grace):
                stopped.append(broker.member.name)
        return stopped

    def status(self) -> list[tuple[Member, BrokerStatus]]:
        """Every broker with whether it runs and answers STOMP."""
        return [(b.member, b.status()) for b in self.brokers]

    def wait_linked(self, timeout: float = 30) -> None:
        """Return once every broker logged a network bridge to each of its peers."""
        deadline = time.monotonic() + timeout
        while True:
            missing = [
                f"{b.member.name}→{p}" for b in self.brokers for p in self._unlinked_peers(b)
            ]
            if not missing:
                return
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"the network of brokers is not joined after {timeout:g} s: "
                    f"no bridge {', '.join(missing)}",
                    hint="read the brokers' broker.log files",
                )
            time.sleep(0.2)

    def _unlinked_peers(self, broker: NetworkBroker) -> list[str]:
        try:
            text = broker.log_file.read_text(errors="replace")
        except OSError:
            text = ""
        # The log grows over restarts: only what follows the latest start counts.
        text = text.rsplit(_STARTING, 1)[-1]
        return [
            p.name
            for p in self.members
            if p.index != broker.member.index and f"({p.name}) has been established" not in text
        ]

    # --- ports ------------------------------------------------------------------
    def _layout(self) -> list[Member]:
        """The members as network.json records them (same ports again), or new ones."""
        try:
            data = json.loads(self.layout_file.read_text())
            members = [Member(**m) for m in data["brokers"]]
        except (OSError, ValueError, KeyError, TypeError):
            members = []
        if len(members) == self.size and [m.index for m in members] == list(
            range(1, self.size + 1)
        ):
            return members
        ports = free_ports(2 * self.size, LOCAL_HOST)
        return [
            Member(
                index=i,
                name=f"b2bsim-{i}",
                stomp_port=ports[2 * (i - 1)],
                openwire_port=ports[2 * (i - 1) + 1],
            )
            for i in range(1, self.size + 1)
        ]
