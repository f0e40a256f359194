"""Tests of simulator.lab.ports: listening ports outside the ephemeral range."""

from __future__ import annotations

import socket

import pytest

from simulator.lab import ports


def test_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    """Each port can be bound, none twice, none where outgoing connections take theirs."""
    got = ports.free_ports(50)
    assert len(set(got)) == 50
    assert all(10_000 <= p < ports._ephemeral_start() for p in got)
    for port in got:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_is_not_handed_out_twice() -> None:
    """Ports not yet bound by their component are not given to the next caller."""
    first = set(ports.free_ports(200))
    second = set(ports.free_ports(200))
    assert not first & second


def test_a_listening_port_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A port something listens on is passed over for the next candidate."""
    unused = (p for p in range(20_000, 30_000) if p not in ports._recent)
    busy_port, free_port = next(unused), next(unused)
    candidates = iter([busy_port, free_port])

    class Draws:
        def randrange(self, low: int, high: int) -> int:
            return next(candidates)

    monkeypatch.setattr(ports, "_rng", Draws())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", busy_port))
        busy.listen()
        assert ports.free_ports(1) == [free_port]
