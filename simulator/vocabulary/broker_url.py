"""Broker URLs and the STOMP probe: how a component names and reaches a broker.

A broker is named by a URL (``stomp://host:port``, or a failover list
``failover:(stomp://a:1,stomp://b:2)``): ``--broker``, or ``$B2BSIM_BROKER``;
without either the simulator uses the local broker of the state directory.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from simulator.vocabulary.errors import BrokerUnreachableError, ConfigError

__all__ = [
    "BROKER_ENV",
    "broker_addresses",
    "parse_broker_url",
    "resolve_broker_url",
    "stomp_handshake",
    "wait_for_stomp",
]

#: Environment variable naming an existing broker (``stomp://host:port``).
BROKER_ENV = "B2BSIM_BROKER"

_FAILOVER = "failover:"


def broker_addresses(url: str) -> list[tuple[str, int]]:
    """Every ``(host, port)`` a broker URL names, in the order a client tries them.

    ``stomp://host:port`` names one broker; ``failover:(stomp://a:1,stomp://b:2)``
    names several: a client connects to the first that answers (and, after a
    lost connection, tries them again from the first).
    """
    text = url.strip()
    if not text.lower().startswith(_FAILOVER):
        return [_parse_one(text)]
    hint = "write failover:(stomp://HOST:PORT,stomp://HOST:PORT,...), tried in that order"
    inner = text[len(_FAILOVER) :]
    if not (inner.startswith("(") and inner.endswith(")")):
        raise ConfigError(
            f"broker URL {url!r}: the failover list must be in parentheses, without options",
            hint=hint,
        )
    parts = [part.strip() for part in inner[1:-1].split(",")]
    if not parts or any(not part for part in parts):
        raise ConfigError(
            f"broker URL {url!r} has an empty address in its failover list", hint=hint
        )
    addresses = [_parse_one(part) for part in parts]
    if len(set(addresses)) != len(addresses):
        raise ConfigError(f"broker URL {url!r} names the same broker twice", hint=hint)
    return addresses


def parse_broker_url(url: str) -> tuple[str, int]:
    """``(host, port)`` of ``stomp://host:port`` (``tcp://`` is accepted too).

    A failover URL (:func:`broker_addresses`) is accepted and gives its first,
    preferred address; a client that should fail over uses all of them
    (``StompConnection.from_url``).
    """
    return broker_addresses(url)[0]


def _parse_one(url: str) -> tuple[str, int]:
    """``(host, port)`` of one ``stomp://host:port``."""
    hint = (
        "give the broker as stomp://HOST:PORT, for example stomp://127.0.0.1:61613, "
        "or several as failover:(stomp://HOST:PORT,stomp://HOST:PORT)"
    )
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"broker URL {url!r} is malformed", hint=hint) from None
    if parts.scheme not in ("stomp", "tcp"):
        raise ConfigError(f"broker URL {url!r} must use stomp:// or tcp://", hint=hint)
    if not parts.hostname:
        raise ConfigError(f"broker URL {url!r} has no host", hint=hint)
    if port is None or port == 0:
        raise ConfigError(f"broker URL {url!r} has no port", hint=hint)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(f"broker URL {url!r} has parts a broker address cannot have", hint=hint)
    return parts.hostname, port


def resolve_broker_url(explicit: str | None) -> str | None:
    """``--broker`` if given, else ``$B2BSIM_BROKER``, else None (use the local broker).

    A URL found either way is checked with :func:`parse_broker_url`.
    """
    chosen = explicit or os.environ.get(BROKER_ENV) or None
    if chosen is not None:
        parse_broker_url(chosen)
    return chosen


def stomp_handshake(host: str, port: int, timeout: float) -> None:
    """Send a STOMP CONNECT and read the answer; raise OSError unless CONNECTED."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:" + host.encode() + b"\n\n\x00")
        answer = b""
        while b"\x00" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("connection closed before a STOMP answer")
            answer += chunk
        if not answer.lstrip(b"\r\n").startswith(b"CONNECTED"):
            first = answer.lstrip(b"\r\n").split(b"\n", 1)[0].decode(errors="replace")
            raise ConnectionError(f"broker answered {first!r} instead of CONNECTED")
        with contextlib.suppress(OSError):
            sock.sendall(b"DISCONNECT\n\n\x00")


def wait_for_stomp(
    host: str,
    port: int,
    timeout: float,
    *,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Return once a STOMP CONNECT at host:port is answered with CONNECTED.

    Raises :class:`BrokerUnreachableError` after ``timeout`` seconds, or at
    once if ``alive`` (a check of the process meant to answer) says False.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        remaining = deadline - time.monotonic()
        try:
            stomp_handshake(host, port, max(0.2, min(2.0, remaining)))
        except OSError as exc:
            last = exc
        else:
            return
        if alive is not None and not alive():
            raise BrokerUnreachableError(f"the broker process for {host}:{port} exited")
        if time.monotonic() >= deadline:
            raise BrokerUnreachableError(
                f"no STOMP broker answers at {host}:{port} after {timeout:g} s ({last})",
                hint="start one with 'b2bsim broker start', or check the --broker URL",
            )
        time.sleep(0.1)
