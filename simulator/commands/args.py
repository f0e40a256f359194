"""Helpers shared by the command modules: reading their arguments.

The command modules import these from here, never from each other.
"""

from __future__ import annotations

import argparse

from simulator.lab.broker import LocalBroker, resolve_broker_url
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.state import StateDir

__all__ = ["broker_url_for", "check_port"]


def broker_url_for(args: argparse.Namespace, state: StateDir) -> str:
    """--broker, $B2BSIM_BROKER, or the running embedded broker of ``state``."""
    url = resolve_broker_url(args.broker)
    if url:
        return url
    status = LocalBroker(state.broker).status()
    if not status.running or not status.url:
        raise ConfigError(
            "no broker given and the embedded broker is not running",
            hint="run `b2bsim broker start`, or pass --broker stomp://HOST:PORT",
        )
    return status.url


def check_port(port: int) -> int:
    """``port`` if it is a TCP port number (0: any free one), else a usage error."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is not a TCP port", hint="use 1-65535, or 0 for a free one")
    return port
