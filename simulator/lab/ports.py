"""Choosing TCP ports for the simulator's components to listen on (127.0.0.1).

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range,
the same range it takes the local port of every outgoing connection from.
Between choosing a port and the component binding it (a supplier stub that
starts after the brokers, say), an outgoing connection — a broker's network
bridge, a client — can take it, and the component fails with "address
already in use".  So ports are chosen *below* the ephemeral range, where the
kernel never puts an outgoing connection, and a port this process handed out
recently is not handed out again.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

from simulator.vocabulary.errors import ConfigError

__all__ = ["free_ports"]

_LOWEST = 10_000
_EPHEMERAL_DEFAULT = 32_768  # Linux's default start of ip_local_port_range
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_RECENT_MAX = 8_192  # ports handed out by this process that are not handed out again
_recent: dict[int, None] = {}  # insertion-ordered: the oldest first
_lock = threading.Lock()
_rng = random.Random()  # noqa: S311 - spreading ports, not security


def _ephemeral_start() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _EPHEMERAL_DEFAULT


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports on ``host`` that nothing listens on now, below the ephemeral
    range, none handed out recently by this process (held open until all are chosen)."""
    high = _ephemeral_start()
    span = high - _LOWEST
    if count > span // 4:
        raise ConfigError(
            f"{count} ports asked for, but only {span} lie between {_LOWEST} and the start of "
            f"the ephemeral range ({high})",
            hint="ask for fewer suppliers, or lower net.ipv4.ip_local_port_range's start",
        )
    chosen: list[int] = []
    socks: list[socket.socket] = []
    with _lock:
        try:
            for _ in range(50 * count + 1000):
                if len(chosen) == count:
                    break
                port = _rng.randrange(_LOWEST, high)
                if port in _recent or port in chosen:
                    continue
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    sock.bind((host, port))
                except OSError:
                    sock.close()
                    continue
                socks.append(sock)
                chosen.append(port)
            else:
                raise ConfigError(
                    f"found only {len(chosen)} of {count} free ports between {_LOWEST} and {high}",
                    hint="stop what listens on those ports, or ask for fewer",
                )
            for port in chosen:
                _recent[port] = None
            while len(_recent) > _RECENT_MAX:
                del _recent[next(iter(_recent))]
            return chosen
        finally:
            for sock in socks:
                sock.close()
