"""Shared pytest fixtures: a real STOMP broker for the session and a fresh state directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.lab.broker import BROKER_ENV, LocalBroker, docker_available, parse_broker_url
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.state import StateDir

#: The broker image used when a Docker engine is available.
ACTIVEMQ_IMAGE = "apache/activemq-classic:5.18.6"


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A STOMP URL of a real broker: $B2BSIM_BROKER, a container, or a local ActiveMQ."""
    explicit = os.environ.get(BROKER_ENV)
    if explicit:
        try:
            parse_broker_url(explicit)
        except B2BSimError as exc:
            pytest.fail(f"${BROKER_ENV} is not usable: {exc}")
        yield explicit
    elif docker_available():
        yield from _container_broker()
    else:
        yield from _local_broker(tmp_path_factory.mktemp("broker"))


def _container_broker() -> Iterator[str]:
    # Imported here: only this path needs testcontainers and a Docker engine.
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    started = LogMessageWaitStrategy("Connector stomp started").with_startup_timeout(90)
    image = DockerContainer(ACTIVEMQ_IMAGE).with_exposed_ports(61613).waiting_for(started)
    with image as container:
        host = container.get_container_host_ip()
        yield f"stomp://{host}:{container.get_exposed_port(61613)}"


def _local_broker(base: Path) -> Iterator[str]:
    broker = LocalBroker(base, die_with_parent=True)
    try:
        info = broker.start(timeout=90)
    except B2BSimError as exc:
        broker.stop(grace=5)
        pytest.fail(f"cannot start the test broker: {exc}")
    try:
        yield info.url
    finally:
        broker.stop()


@pytest.fixture
def state_dir(tmp_path: Path) -> StateDir:
    """An empty state directory of its own for one test."""
    return StateDir(tmp_path / "state").ensure()
