"""Tests of simulator.lab.network: a local network of ActiveMQ brokers, failover URLs and the
order rule for networks; the live tests run real brokers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from simulator import cli
from simulator.lab.broker import NetworkLink, broker_addresses, parse_broker_url, render_config
from simulator.lab.network import NETWORK_RECOVERY_SECONDS, BrokerNetwork, order_problem
from simulator.runs.runner import RunOptions, run_scenario
from simulator.runs.scenario import KillBroker, Scenario, Sleep, load_scenario
from simulator.vocabulary.errors import BrokerError, ConfigError, ScenarioError
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.stomp_io import Frame, StompConnection

AMQ = {"amq": "http://activemq.apache.org/schema/core"}
QUEUE = "/queue/test.network"


def _jvms_under(root: Path) -> list[int]:
    """Pids of live broker JVMs whose activemq.base lies under ``root``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\x00")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X") and any(
            part.startswith(f"-Dactivemq.base={root}".encode()) for part in cmdline
        ):
            pids.append(int(entry.name))
    return pids


async def _receive(url: str, destination: str, timeout: float) -> Frame:
    """Subscribe at ``url`` and return the first message (acked)."""
    conn = StompConnection.from_url(url)
    await conn.connect()
    try:
        await conn.subscribe(destination)
        frame = await asyncio.wait_for(conn.frames.get(), timeout)
        await conn.ack(frame)
        return frame
    finally:
        await conn.disconnect()


async def _send(url: str, destination: str, body: str) -> None:
    conn = StompConnection.from_url(url)
    await conn.connect()
    try:
        await conn.send(destination, body, {"JMSXGroupID": "5520000018"}, receipt=True)
    finally:
        await conn.disconnect()


class TestNetworkConfig:
    def test_network_broker_has_openwire_and_static_connector(self) -> None:
        """A network broker opens OpenWire on loopback and links to every peer as configured."""
        link = NetworkLink(peers=("tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002"))
        root = etree.fromstring(
            render_config(61999, name="b2bsim-1", openwire_port=7000, network=link).encode()
        )
        uris = root.xpath("//amq:transportConnector/@uri", namespaces=AMQ)
        assert uris == ["stomp://127.0.0.1:61999", "tcp://127.0.0.1:7000"]
        connectors = root.xpath("//amq:networkConnector", namespaces=AMQ)
        assert isinstance(connectors, list)
        assert len(connectors) == 1
        connector = connectors[0]
        assert isinstance(connector, etree._Element)
        assert str(connector.get("uri")).startswith(
            "static:(tcp://127.0.0.1:7001,tcp://127.0.0.1:7002)?"
        )
        assert connector.get("conduitSubscriptions") == "false"
        assert connector.get("networkTTL") == "1"
        assert connector.get("decreaseNetworkConsumerPriority") == "false"

    def test_single_broker_config_has_no_network(self) -> None:
        """The default config stays a single broker: STOMP only, no network connector."""
        root = etree.fromstring(render_config(61999).encode())
        assert root.xpath("//amq:networkConnector", namespaces=AMQ) == []
        assert root.xpath("//amq:transportConnector/@uri", namespaces=AMQ) == [
            "stomp://127.0.0.1:61999"
        ]

    def test_network_without_peers_is_refused(self) -> None:
        """A network link with no peer is a configuration error."""
        with pytest.raises(ConfigError, match="without peers"):
            render_config(61999, openwire_port=7000, network=NetworkLink(peers=()))


class TestFailoverUrl:
    def test_failover_list_in_order(self) -> None:
        """A failover URL names every broker in order; parse_broker_url gives the first."""
        url = "failover:(stomp://127.0.0.1:1001,stomp://10.0.0.2:1002)"
        assert broker_addresses(url) == [("127.0.0.1", 1001), ("10.0.0.2", 1002)]
        assert parse_broker_url(url) == ("127.0.0.1", 1001)
        assert broker_addresses("stomp://h:5") == [("h", 5)]

    @pytest.mark.parametrize(
        "url",
        [
            "failover:stomp://h:1,stomp://h:2",
            "failover:(stomp://h:1,)",
            "failover:(stomp://h:1,stomp://h:1)",
            "failover:(stomp://h:1)?randomize=false",
            "failover:(http://h:1)",
        ],
    )
    def test_bad_failover_url_is_refused(self, url: str) -> None:
        """A malformed failover URL is a ConfigError naming it."""
        with pytest.raises(ConfigError, match="broker URL"):
            broker_addresses(url)

    def test_connection_tries_every_address(self) -> None:
        """StompConnection.from_url hands every address of a failover URL to stomp.py."""
        conn = StompConnection.from_url("failover:(stomp://127.0.0.1:1,stomp://127.0.0.1:2)")
        assert conn.addresses == [("127.0.0.1", 1), ("127.0.0.1", 2)]

    async def test_failover_reaches_the_broker_that_answers(self, broker_url: str) -> None:
        """With the first address dead, the connection lands on the next one."""
        host, port = parse_broker_url(broker_url)
        url = f"failover:(stomp://127.0.0.1:1,stomp://{host}:{port})"
        conn = StompConnection.from_url(url)
        await conn.connect()
        try:
            assert conn.is_connected()
        finally:
            await conn.disconnect()


class TestOrderRule:
    def test_one_broker_needs_no_gap_timeout(self) -> None:
        """One broker keeps per-supplier order with message groups: no rule applies."""
        assert order_problem(1, 0) is None

    def test_network_without_gap_timeout_is_refused(self) -> None:
        """Brokers > 1 with a gap timeout of 0 cannot keep order, and the reason says why."""
        problem = order_problem(3, 0)
        assert problem is not None
        assert "total order" in problem
        assert order_problem(3, NETWORK_RECOVERY_SECONDS + 3, longest_down=3) is None
        assert order_problem(3, NETWORK_RECOVERY_SECONDS + 2, longest_down=3) is not None

    def test_scenario_loader_refuses_with_file_and_line(self, tmp_path: Path) -> None:
        """load_scenario refuses a network with a short gap timeout, at its line."""
        path = tmp_path / "n.yaml"
        path.write_text(
            "name: n\ndescription: d\nbrokers: 2\nstub: {gap_timeout: 0}\n"
            "steps:\n  - produce: {chains: 1}\n"
        )
        with pytest.raises(ScenarioError, match=r"n\.yaml:4: a network of 2 brokers"):
            load_scenario(path)

    @pytest.mark.parametrize(
        ("steps", "wanted"),
        [
            ("  - fault: {kill: broker, index: 3}\n", "from 1 to 2"),
            ("  - fault: {kill: broker}\n", "missing key 'index'"),
            ("  - fault: {restart: broker}\n", "has 2 brokers"),
        ],
    )
    def test_bad_broker_fault_is_refused(self, tmp_path: Path, steps: str, wanted: str) -> None:
        """Killing a broker the network lacks, or restarting 'the' broker of a network, fails."""
        path = tmp_path / "k.yaml"
        path.write_text(
            "name: k\ndescription: d\nbrokers: 2\nstub: {gap_timeout: 60}\nsteps:\n" + steps
        )
        with pytest.raises(ScenarioError, match=wanted):
            load_scenario(path)

    def test_runner_refuses_before_anything_starts(self, tmp_path: Path) -> None:
        """A scenario built in code with an unsafe network is refused before any run starts."""
        scenario = Scenario(
            name="unsafe",
            description="d",
            path=tmp_path / "unsafe.yaml",
            brokers=3,
            gap_timeout=0,
            steps=(Sleep(0.1), KillBroker(index=2, down=5)),
        )
        state = StateDir(tmp_path / "state")
        with pytest.raises(ConfigError, match="gap timeout"):
            run_scenario(scenario, RunOptions(state=state))
        assert not state.root.exists()


class TestBrokerNetworkShape:
    def test_size_must_be_a_network(self, tmp_path: Path) -> None:
        """A network has 2 to 9 brokers."""
        with pytest.raises(ConfigError, match="not possible"):
            BrokerNetwork(tmp_path, 1)

    def test_members_have_distinct_ports_and_names(self, tmp_path: Path) -> None:
        """Each broker has its own name, STOMP port and OpenWire port; failover starts anywhere."""
        network = BrokerNetwork(tmp_path, 3)
        ports = [p for m in network.members for p in (m.stomp_port, m.openwire_port)]
        assert len(set(ports)) == 6
        assert [m.name for m in network.members] == ["b2bsim-1", "b2bsim-2", "b2bsim-3"]
        assert network.failover_url(2).startswith(f"failover:({network.urls[1]},")
        with pytest.raises(ConfigError, match="no broker 4"):
            network.broker(4)

    def test_cli_refuses_a_network_of_one(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`b2bsim broker start --network 1` is a usage error (exit 2)."""
        with pytest.raises(SystemExit) as exited:
            cli.main(["broker", "start", "--network", "1"])
        assert exited.value.code == 2
        assert "2 to 9 brokers" in capsys.readouterr().err


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerNetwork]:
    """A running network of two brokers, shared by TestLocalNetwork (stopped by its last test)."""
    network = BrokerNetwork(tmp_path_factory.mktemp("net"), 2, die_with_parent=True)
    network.start(timeout=90)
    try:
        network.wait_linked(60)
        yield network
    finally:
        network.stop()


@pytest.mark.broker
class TestLocalNetwork:
    @pytest.mark.timeout(240)
    async def test_message_crosses_the_network(self, network: BrokerNetwork) -> None:
        """A message sent on broker 1 is consumed by a consumer on broker 2."""
        receiving = asyncio.create_task(_receive(network.urls[1], QUEUE, 60))
        await asyncio.sleep(1)  # the consumer's demand reaches broker 1 over the network
        await _send(network.urls[0], QUEUE, "over the network")
        frame = await receiving
        assert frame.body == "over the network"

    @pytest.mark.timeout(240)
    async def test_killed_broker_keeps_its_messages(self, network: BrokerNetwork) -> None:
        """kill -9 of a broker loses no stored message; it comes back on the same port."""
        queue = f"{QUEUE}.kill"
        await _send(network.urls[1], queue, "kept in the store")
        assert await asyncio.to_thread(network.kill, 2)
        statuses = {m.name: s.running for m, s in network.status()}
        assert statuses == {"b2bsim-1": True, "b2bsim-2": False}
        # On this thread: the JVM dies with the thread that forks it (die_with_parent).
        info = network.restart(2, 90)
        assert info.url == network.urls[1]
        frame = await _receive(network.urls[1], queue, 60)
        assert frame.body == "kept in the store"

    @pytest.mark.timeout(120)
    def test_stop_leaves_no_jvm(self, network: BrokerNetwork) -> None:
        """Stopping the network stops every broker JVM."""
        assert _jvms_under(network.root)
        assert sorted(network.stop()) == ["b2bsim-1", "b2bsim-2"]
        assert _jvms_under(network.root) == []


@pytest.mark.broker
class TestBrokerThatFails:
    @pytest.mark.timeout(240)
    def test_is_named_with_its_log_tail(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A broker whose JVM cannot start is reported by name with its log; none is left."""
        real = render_config

        def broken_for_second(port: int, **kwargs: object) -> str:
            text = real(port, **kwargs)  # type: ignore[arg-type]
            return text.replace("<broker ", "<brokken ") if kwargs["name"] == "b2bsim-2" else text

        monkeypatch.setattr("simulator.lab.network.render_config", broken_for_second)
        network = BrokerNetwork(tmp_path, 2, die_with_parent=True)
        with pytest.raises(BrokerError) as raised:
            network.start(timeout=90)
        assert "b2bsim-2 (broker 2 of 2) did not come up" in raised.value.message
        assert "last lines of" in raised.value.message
        assert _jvms_under(tmp_path) == []
