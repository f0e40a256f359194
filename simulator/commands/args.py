"""Helpers shared by the command modules: reading their arguments.

The command modules import these from here, never from each other.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from simulator.lab.broker import LocalBroker, resolve_broker_url
from simulator.vocabulary.broker_source import read_broker_file, wait_for_broker_file
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.state import StateDir

__all__ = ["broker_url_for", "check_port"]

log = logging.getLogger(__name__)


def broker_url_for(
    args: argparse.Namespace, state: StateDir, *, wait: bool = False
) -> tuple[str, Path | None]:
    """The broker to start with and the broker.json to follow (None: a fixed URL).

    --broker or $B2BSIM_BROKER name a fixed broker; --broker-file a broker.json
    to follow; neither: the running embedded broker of ``state``, followed.
    With ``wait`` an embedded broker that is down but has a broker.json (killed,
    or being restarted) will do, and a --broker-file that names no broker yet is
    waited for: the component waits for its broker, for its give-up time.
    """
    follow: Path | None = getattr(args, "broker_file", None)
    if follow is not None:
        url = read_broker_file(follow)
        if url is None and wait:
            log.warning("%s names no broker: waiting for it", follow)
            url = wait_for_broker_file(follow, args.broker_give_up)
        if url is None:
            raise ConfigError(
                f"{follow} names no broker (missing, unreadable or without a url)",
                hint="start the broker (`b2bsim broker start`), or pass --broker stomp://HOST:PORT",
            )
        return url, follow
    url = resolve_broker_url(args.broker)
    if url:
        return url, None
    broker = LocalBroker(state.broker)
    status = broker.status()
    info = broker.info()
    if wait and not status.running and info is not None:
        log.warning("the state directory's broker (%s) is down: waiting for it", info.url)
        return info.url, broker.info_file
    if not status.running or not status.url:
        raise ConfigError(
            "no broker given and the embedded broker is not running",
            hint="run `b2bsim broker start`, or pass --broker stomp://HOST:PORT",
        )
    return status.url, broker.info_file


def check_port(port: int) -> int:
    """``port`` if it is a TCP port number (0: any free one), else a usage error."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is not a TCP port", hint="use 1-65535, or 0 for a free one")
    return port
