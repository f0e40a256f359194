"""Tests of simulator.lab.broker and the ``b2bsim broker`` command."""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import stomp
from lxml import etree

from simulator.commands import broker as broker_command
from simulator.lab.broker import (
    BROKER_ENV,
    LocalBroker,
    docker_available,
    find_activemq_home,
    parse_broker_url,
    render_config,
    resolve_broker_url,
    wait_for_stomp,
)
from simulator.vocabulary.errors import (
    BrokerError,
    BrokerNotInstalledError,
    BrokerUnreachableError,
    ConfigError,
    PortInUseError,
)

AMQ = {"amq": "http://activemq.apache.org/schema/core"}
QUEUE = "/queue/test.broker"


def _gone(pid: int, timeout: float = 10) -> bool:
    """True once /proc shows no live thread of process ``pid`` (a zombie at most)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
            threads = len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            return True
        if state in ("Z", "X") and threads <= 1:
            return True
        time.sleep(0.05)
    return False


class _Collector(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.frames: queue.Queue[stomp.utils.Frame] = queue.Queue()
        self.receipts: queue.Queue[str] = queue.Queue()

    def on_message(self, frame: stomp.utils.Frame) -> None:
        self.frames.put(frame)

    def on_receipt(self, frame: stomp.utils.Frame) -> None:
        self.receipts.put(frame.headers["receipt-id"])


def _connect(url: str) -> stomp.Connection12:
    host, port = parse_broker_url(url)
    conn = stomp.Connection12([(host, port)])
    conn.connect(wait=True)
    return conn


def _send(url: str, body: str) -> None:
    """Send one persistent message and wait for the broker's receipt (it is stored then)."""
    collector = _Collector()
    conn = _connect(url)
    conn.set_listener("collector", collector)
    try:
        conn.send(QUEUE, body, headers={"persistent": "true", "receipt": "sent-1"})
        assert collector.receipts.get(timeout=10) == "sent-1"
    finally:
        conn.disconnect()


def _receive_one(url: str, timeout: float = 10) -> str:
    """Subscribe with client-individual ack, take one message, ack it, return its body."""
    collector = _Collector()
    conn = _connect(url)
    conn.set_listener("collector", collector)
    try:
        conn.subscribe(QUEUE, id="1", ack="client-individual")
        frame = collector.frames.get(timeout=timeout)
        conn.ack(frame.headers["ack"], receipt="a1")
        return str(frame.body)
    finally:
        conn.disconnect()


@pytest.fixture
def stomp_free_port() -> Iterator[int]:
    """A port on 127.0.0.1 with a listener that accepts TCP but never speaks STOMP."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="b2bsim")
    parser.add_argument("--state")
    broker_command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


class TestRenderConfig:
    """The generated activemq.xml."""

    def test_well_formed_with_stomp_on_chosen_port(self) -> None:
        """The config parses and opens exactly one STOMP connector on 127.0.0.1:<port>."""
        root = etree.fromstring(render_config(61999).encode())
        uris = root.xpath("//amq:transportConnector/@uri", namespaces=AMQ)
        assert uris == ["stomp://127.0.0.1:61999"]

    def test_persistence_scheduler_groups_and_dlq(self) -> None:
        """KahaDB, scheduler support, 4096 group buckets and DLQ.-prefixed dead letters are on."""
        root = etree.fromstring(render_config(61999, name="b1").encode())
        broker = root.find("amq:broker", AMQ)
        assert broker is not None
        assert broker.get("schedulerSupport") == "true"
        assert broker.get("brokerName") == "b1"
        assert root.xpath("//amq:kahaDB/@directory", namespaces=AMQ) == ["${activemq.data}/kahadb"]
        assert root.xpath("//amq:messageGroupHashBucketFactory/@bucketCount", namespaces=AMQ) == [
            "4096"
        ]
        assert root.xpath("//amq:individualDeadLetterStrategy/@queuePrefix", namespaces=AMQ) == [
            "DLQ."
        ]
        assert root.xpath("//amq:storeUsage/@limit", namespaces=AMQ) == ["2 gb"]

    def test_no_redelivery_plugin(self) -> None:
        """The broker does not redeliver by itself: the bridge dead-letters."""
        root = etree.fromstring(render_config(61999).encode())
        assert root.xpath("//amq:redeliveryPlugin", namespaces=AMQ) == []


class TestParseBrokerUrl:
    """parse_broker_url and resolve_broker_url."""

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("stomp://127.0.0.1:61613", ("127.0.0.1", 61613)),
            ("tcp://broker.example:1234", ("broker.example", 1234)),
            ("stomp://localhost:5/", ("localhost", 5)),
        ],
    )
    def test_good(self, url: str, expected: tuple[str, int]) -> None:
        """stomp:// and tcp:// URLs with host and port parse."""
        assert parse_broker_url(url) == expected

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:61613",
            "stomp://127.0.0.1",
            "stomp://:61613",
            "stomp://host:99999",
            "stomp://host:0",
            "stomp://host:61613/queue",
            "127.0.0.1:61613",
            "",
        ],
    )
    def test_bad(self, url: str) -> None:
        """Anything else is a ConfigError that shows the expected form."""
        with pytest.raises(ConfigError, match="stomp://HOST:PORT"):
            parse_broker_url(url)

    def test_resolve_prefers_explicit_then_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """--broker wins over $B2BSIM_BROKER, which wins over the local broker (None)."""
        monkeypatch.delenv(BROKER_ENV, raising=False)
        assert resolve_broker_url(None) is None
        monkeypatch.setenv(BROKER_ENV, "stomp://env:1")
        assert resolve_broker_url(None) == "stomp://env:1"
        assert resolve_broker_url("stomp://cli:2") == "stomp://cli:2"

    def test_resolve_checks_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A malformed $B2BSIM_BROKER is a ConfigError, not a later connection failure."""
        monkeypatch.setenv(BROKER_ENV, "nonsense")
        with pytest.raises(ConfigError):
            resolve_broker_url(None)


class TestFindActivemqHome:
    """find_activemq_home."""

    def test_default_install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The Debian package's directory is found when ACTIVEMQ_HOME is unset."""
        monkeypatch.delenv("ACTIVEMQ_HOME", raising=False)
        assert (find_activemq_home() / "bin" / "activemq.jar").is_file()

    def test_home_without_jar(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """An ACTIVEMQ_HOME without bin/activemq.jar says what to install."""
        monkeypatch.setenv("ACTIVEMQ_HOME", str(tmp_path))
        with pytest.raises(BrokerNotInstalledError, match="apt-get install activemq"):
            find_activemq_home()

    def test_no_java(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without java on PATH the error names the Java runtime to install."""
        monkeypatch.delenv("ACTIVEMQ_HOME", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(BrokerNotInstalledError, match="Java 17"):
            find_activemq_home()


class TestWaitForStomp:
    """wait_for_stomp needs a real STOMP answer."""

    def test_nothing_listening(self) -> None:
        """A closed port raises BrokerUnreachableError after the timeout."""
        with pytest.raises(BrokerUnreachableError, match="no STOMP broker answers"):
            wait_for_stomp("127.0.0.1", _closed_port(), 0.5)

    def test_tcp_accept_is_not_enough(self, stomp_free_port: int) -> None:
        """A listener that accepts TCP but never answers CONNECT does not count."""
        with pytest.raises(BrokerUnreachableError):
            wait_for_stomp("127.0.0.1", stomp_free_port, 1.0)


class TestDockerAvailable:
    """docker_available."""

    def _fake_docker(self, folder: Path, exit_code: int) -> None:
        script = folder / "docker"
        script.write_text(f"#!/bin/sh\nexit {exit_code}\n")
        script.chmod(0o755)

    def test_no_cli(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without a docker CLI there is no Docker."""
        monkeypatch.setenv("PATH", str(tmp_path))
        assert docker_available() is False

    def test_cli_without_engine(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """A CLI whose 'docker info' fails (no engine) is not Docker."""
        self._fake_docker(tmp_path, 1)
        monkeypatch.setenv("PATH", str(tmp_path))
        assert docker_available() is False

    def test_cli_with_engine(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """A CLI whose 'docker info' succeeds is Docker."""
        self._fake_docker(tmp_path, 0)
        monkeypatch.setenv("PATH", str(tmp_path))
        assert docker_available() is True


class TestLocalBrokerFailures:
    """LocalBroker refuses or reports bad starts clearly."""

    def test_port_in_use(self, tmp_path: Path, stomp_free_port: int) -> None:
        """An explicit port that is taken raises PortInUseError before any JVM starts."""
        broker = LocalBroker(tmp_path, port=stomp_free_port)
        with pytest.raises(PortInUseError, match=f"port {stomp_free_port}"):
            broker.start(timeout=5)
        assert not broker.log_file.exists()
        assert not broker.info_file.exists()

    def test_jvm_exits(self, tmp_path: Path) -> None:
        """A JVM that dies at once raises BrokerError quoting the end of broker.log."""
        home = tmp_path / "home"
        (home / "bin").mkdir(parents=True)
        (home / "bin" / "activemq.jar").write_text("not a jar")
        broker = LocalBroker(tmp_path / "base", home=home)
        with pytest.raises(BrokerError, match=r"(?i)jar"):
            broker.start(timeout=30)
        assert not broker.info_file.exists()
        assert broker.status().running is False


@pytest.mark.broker
class TestLocalBrokerLifecycle:
    """A real ActiveMQ JVM: start, use, stop, restart."""

    def test_start_round_trip_stop(self, tmp_path: Path) -> None:
        """A started broker answers, carries a persistent message, and stops without a trace."""
        broker = LocalBroker(tmp_path, die_with_parent=True)
        info = broker.start()
        try:
            assert info.url == f"stomp://127.0.0.1:{info.port}"
            status = broker.status()
            assert (status.running, status.answering, status.pid) == (True, True, info.pid)
            assert json.loads(broker.info_file.read_text())["pid"] == info.pid
            assert broker.start().pid == info.pid  # already running: the same JVM
            _send(info.url, "hej")
            assert _receive_one(info.url) == "hej"
        finally:
            assert broker.stop() is True
        assert _gone(info.pid)
        assert not broker.info_file.exists()
        assert broker.status().running is False
        assert broker.stop() is False

    def test_restart_keeps_persistent_message(self, tmp_path: Path) -> None:
        """A persistent message published before a stop is consumed after the next start."""
        with LocalBroker(tmp_path, die_with_parent=True) as first:
            _send(first.url, "survives")
        assert _gone(first.pid)
        with LocalBroker(tmp_path, die_with_parent=True) as second:
            assert _receive_one(second.url) == "survives"

    def test_stale_jvms_are_cleaned_up(self, tmp_path: Path) -> None:
        """A killed broker's broker.json, and a live JVM nobody records, do not block a start."""
        killed = LocalBroker(tmp_path, die_with_parent=True)
        first = killed.start()
        os.kill(first.pid, signal.SIGKILL)
        assert _gone(first.pid)
        assert killed.info_file.exists()
        assert killed.status().running is False

        forgetful = LocalBroker(tmp_path, die_with_parent=True)
        orphaned = forgetful.start()
        assert orphaned.pid != first.pid
        (tmp_path / "broker.json").unlink()

        broker = LocalBroker(tmp_path, die_with_parent=True)
        try:
            third = broker.start()
            assert _gone(orphaned.pid)
            assert forgetful.status().pid == third.pid
            assert third.pid not in (first.pid, orphaned.pid)
            assert broker.status().answering is True
        finally:
            broker.stop()
        assert _gone(third.pid)

    def test_restart_after_kill_prefers_the_old_port(self, tmp_path: Path) -> None:
        """A start without a port, after a kill -9 (stale broker.json) and after a clean
        stop (no broker.json), takes the port the broker had, so clients find it again."""
        killed = LocalBroker(tmp_path, die_with_parent=True)
        first = killed.start()
        os.kill(first.pid, signal.SIGKILL)
        assert _gone(first.pid)
        assert killed.status().running is False  # (and its exit status collected)
        broker = LocalBroker(tmp_path, die_with_parent=True)
        try:
            second = broker.start()
            assert second.pid != first.pid
            assert second.port == first.port
        finally:
            broker.stop()
        assert not broker.info_file.exists()
        try:
            assert broker.start().port == first.port
        finally:
            broker.stop()

    def test_restart_takes_another_port_when_the_old_one_is_taken(self, tmp_path: Path) -> None:
        """The old port is only a preference: taken by someone else, another is chosen."""
        broker = LocalBroker(tmp_path, die_with_parent=True)
        first = broker.start()
        broker.stop()
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
            squatter.bind(("127.0.0.1", first.port))
            squatter.listen(1)
            try:
                second = broker.start()
                assert second.port != first.port
                assert broker.status().answering is True
            finally:
                broker.stop()

    def test_dies_with_parent(self, tmp_path: Path) -> None:
        """With die_with_parent the JVM is killed when the process that started it dies."""
        code = textwrap.dedent(
            f"""
            import time
            from pathlib import Path
            from simulator.lab.broker import LocalBroker
            info = LocalBroker(Path({str(tmp_path)!r}), die_with_parent=True).start()
            print(info.pid, flush=True)
            time.sleep(60)
            """
        )
        parent = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
        )
        try:
            assert parent.stdout is not None
            jvm = int(parent.stdout.readline())
            assert not _gone(jvm, timeout=0.5)
        finally:
            parent.kill()
            parent.wait()
            assert parent.stdout is not None
            parent.stdout.close()
        assert _gone(jvm)


@pytest.mark.broker
class TestBrokerCommand:
    """``b2bsim broker start|stop|status``."""

    def test_status_without_broker(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """status exits 1 when no broker runs in the state directory."""
        monkeypatch.delenv(BROKER_ENV, raising=False)
        assert _cli("--state", str(tmp_path), "broker", "status") == 1

    def test_status_of_remote(self, broker_url: str, capsys: pytest.CaptureFixture[str]) -> None:
        """status --broker exits 0 for a broker that answers and 1 for one that does not."""
        assert _cli("broker", "status", "--broker", broker_url) == 0
        dead = f"stomp://127.0.0.1:{_closed_port()}"
        assert _cli("broker", "status", "--broker", dead) == 1
        assert "not answering" in capsys.readouterr().out

    def test_start_status_stop(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """start runs a detached broker, status sees it, a second start reuses it, stop ends it."""
        monkeypatch.delenv(BROKER_ENV, raising=False)
        state = str(tmp_path)
        try:
            assert _cli("--state", state, "broker", "start", "--timeout", "60") == 0
            assert "broker started: stomp://127.0.0.1:" in capsys.readouterr().out
            pid = json.loads((tmp_path / "broker" / "broker.json").read_text())["pid"]
            assert _cli("--state", state, "broker", "status") == 0
            assert _cli("--state", state, "broker", "start") == 0
            assert "already running: stomp://127.0.0.1:" in capsys.readouterr().out
        finally:
            assert _cli("--state", state, "broker", "stop") == 0
        assert _gone(pid)
        assert "broker stopped" in capsys.readouterr().out
        assert _cli("--state", state, "broker", "status") == 1

    def test_two_concurrent_starts_share_one_jvm(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two ``broker start`` at once on one state: one JVM; one starts it, one reports it."""
        monkeypatch.delenv(BROKER_ENV, raising=False)
        command = [sys.executable, "-m", "simulator.cli", "--state", str(tmp_path)]
        starts = [
            subprocess.Popen(
                [*command, "broker", "start", "--timeout", "90"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            results = [(start.wait(150), *start.communicate()) for start in starts]
            outs = sorted(out for _, out, _ in results)
            assert [code for code, _, _ in results] == [0, 0], results
            assert outs[0].startswith("broker already running: stomp://127.0.0.1:"), results
            assert outs[1].startswith("broker started: stomp://127.0.0.1:"), results
            jvms = LocalBroker(tmp_path / "broker")._our_jvms()
            recorded = json.loads((tmp_path / "broker" / "broker.json").read_text())
            assert jvms == [recorded["pid"]]
            assert all(f"(pid {recorded['pid']})" in out for out in outs)
            assert _cli("--state", str(tmp_path), "broker", "status") == 0
        finally:
            for start in starts:
                if start.poll() is None:
                    start.kill()
                    start.communicate()
            LocalBroker(tmp_path / "broker").stop()


@pytest.mark.broker
class TestBrokerUrlFixture:
    """The session's broker_url fixture."""

    def test_answers_stomp(self, broker_url: str) -> None:
        """The fixture's broker answers a STOMP CONNECT."""
        wait_for_stomp(*parse_broker_url(broker_url), timeout=5)
