"""``b2bsim broker start|stop|status``: the local ActiveMQ broker of a state directory.

With ``--network N`` each action applies to a local network of N brokers
(``STATE/broker-1`` … ``STATE/broker-N``, simulator/network.py).
"""

from __future__ import annotations

import argparse
import sys

from simulator.lab.broker import LocalBroker, parse_broker_url, resolve_broker_url, wait_for_stomp
from simulator.lab.network import MAX_BROKERS, BrokerNetwork
from simulator.vocabulary.errors import BrokerUnreachableError, ConfigError
from simulator.vocabulary.state import StateDir

EXIT_OK = 0
EXIT_FAILED = 1


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``b2bsim broker`` and its three actions."""
    parser = subparsers.add_parser(
        "broker",
        help="start, stop or check the local ActiveMQ broker",
        description="Manage the private ActiveMQ broker kept in the state directory.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser("start", help="start the broker in the background")
    _network_option(start)
    start.add_argument(
        "--port",
        type=_port,
        default=None,
        help="STOMP port on 127.0.0.1 (default: the last one if free, else a free one)",
    )
    start.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for STOMP to answer (default: 60)",
    )
    _network_option(actions.add_parser("stop", help="stop the broker"))
    status = actions.add_parser(
        "status", help="tell whether the broker runs and answers (exit 0) or not (exit 1)"
    )
    _network_option(status)
    status.add_argument(
        "--broker",
        metavar="URL",
        help="check this broker (stomp://HOST:PORT) instead of the local one "
        "(default: $B2BSIM_BROKER)",
    )
    parser.set_defaults(func=run)


def _network_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--network",
        type=_network_size,
        default=None,
        metavar="N",
        help=f"a local network of N brokers (2 to {MAX_BROKERS}), STATE/broker-1..N",
    )


def _network_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of brokers") from None
    if not 2 <= size <= MAX_BROKERS:
        raise argparse.ArgumentTypeError(
            f"a network has 2 to {MAX_BROKERS} brokers, not {size} (leave --network out for one)"
        )
    return size


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not between 1 and 65535")
    return port


def run(args: argparse.Namespace) -> int:
    """Run the chosen broker action."""
    state = StateDir.resolve(args.state)
    action: str = args.action
    if args.network is not None:
        return _network(state, action, args)
    if action == "start":
        return _start(state, args.port, args.timeout)
    if action == "stop":
        return _stop(state)
    if action == "status":
        return _status(state, args.broker)
    raise ConfigError(f"unknown broker action {action!r}", hint="use start, stop or status")


def _network(state: StateDir, action: str, args: argparse.Namespace) -> int:
    """start, stop or status of the network of ``args.network`` brokers."""
    network = BrokerNetwork(state.root, args.network)
    if action == "start":
        if args.port is not None:
            raise ConfigError(
                "--port names one broker's port; a network picks free ports for all",
                hint="leave --port out with --network",
            )
        state.ensure()
        for info in network.start(timeout=args.timeout):
            print(f"broker answering: {info.url} (pid {info.pid})")
        network.wait_linked(args.timeout)
        print(f"network of {network.size} brokers joined; clients: {network.failover_url()}")
        return EXIT_OK
    if action == "stop":
        stopped = network.stop()
        print(
            f"stopped {', '.join(stopped)}" if stopped else "no broker of the network was running"
        )
        return EXIT_OK
    if action == "status":
        if args.broker is not None:
            raise ConfigError(
                "--broker checks one broker elsewhere; --network checks the local network",
                hint="use one of them",
            )
        failed = 0
        for member, status in network.status():
            if status.answering:
                print(f"{member.name}: running {member.url} (pid {status.pid})")
            else:
                failed += 1
                what = "running but not answering STOMP" if status.running else "not running"
                print(f"{member.name}: {what} ({member.url})")
        return EXIT_FAILED if failed else EXIT_OK
    raise ConfigError(f"unknown broker action {action!r}", hint="use start, stop or status")


def _start(state: StateDir, port: int | None, timeout: float) -> int:
    state.ensure()
    broker = LocalBroker(state.broker, port=port)

    def waiting() -> None:
        print(
            f"broker already starting (another 'b2bsim broker start' of {state.root}): waiting",
            file=sys.stderr,
            flush=True,
        )

    info, started = broker.start_or_reuse(timeout, on_wait=waiting)
    if not started:
        print(f"broker already running: {info.url} (pid {info.pid})")
    else:
        print(f"broker started: {info.url} (pid {info.pid}) in {info.startup_seconds:.1f} s")
    return EXIT_OK


def _stop(state: StateDir) -> int:
    broker = LocalBroker(state.broker)
    info = broker.info()
    if broker.stop():
        print(f"broker stopped (pid {info.pid})" if info else "broker stopped")
    else:
        print("no broker was running")
    return EXIT_OK


def _status(state: StateDir, explicit: str | None) -> int:
    url = resolve_broker_url(explicit)
    if url is not None:
        host, port = parse_broker_url(url)
        try:
            wait_for_stomp(host, port, 3.0)
        except BrokerUnreachableError as exc:
            print(f"broker not answering at {url}: {exc.message}")
            return EXIT_FAILED
        print(f"broker answering at {url}")
        return EXIT_OK
    status = LocalBroker(state.broker).status()
    if not status.running:
        print(f"no broker running (state {state.root})")
        return EXIT_FAILED
    if not status.answering:
        print(f"broker running but not answering STOMP: {status.url} (pid {status.pid})")
        return EXIT_FAILED
    print(f"broker running: {status.url} (pid {status.pid})")
    return EXIT_OK
