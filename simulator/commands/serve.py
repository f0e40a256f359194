"""``b2bsim serve {broker,producer,icc,supplier-stub}``: one component, long-lived.

Each runs until SIGTERM or Ctrl-C, so that a real ICC or a real supplier can
take the place of ours.  When ready, each prints one JSON line on stdout:
``{"event": "ready", "component": ..., ...}``; logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from simulator.commands.args import broker_url_for
from simulator.lab.broker import LocalBroker
from simulator.lab.pki import require_crl
from simulator.vocabulary.broker_source import GIVE_UP_AFTER
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.identifiers import normalise_org_number
from simulator.vocabulary.messages import KA_QUEUE
from simulator.vocabulary.retry import RetryPolicy
from simulator.vocabulary.state import StateDir

if TYPE_CHECKING:
    from supplier_stub import OwnKeyPair

log = logging.getLogger(__name__)

#: A directory: run each served component under cProfile, statistics written there.
PROFILE_DIR_ENV = "B2BSIM_PROFILE_DIR"
#: ``uvloop`` (the default) or ``asyncio``: the event loop of each served component.
EVENT_LOOP_ENV = "B2BSIM_EVENT_LOOP"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run one component as a long-lived process")
    comp = p.add_subparsers(dest="component", metavar="COMPONENT", required=True)

    b = comp.add_parser("broker", help="the embedded ActiveMQ broker, in the foreground")
    b.add_argument(
        "--port",
        type=int,
        help="STOMP port on 127.0.0.1 (default: the last one if free, else a free one)",
    )
    b.set_defaults(func=_serve_broker)

    _add_stub_parser(comp)
    _add_icc_parser(comp)
    _add_producer_parser(comp)


def _add_stub_parser(comp: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = comp.add_parser("supplier-stub", help="the reference supplier endpoint(s)")
    s.add_argument("--registry", type=Path, help="supplier registry (default: STATE/registry.json)")
    s.add_argument("--db", type=Path, help="SQLite inbox (default: STATE/supplier-stub.sqlite)")
    s.add_argument(
        "--org-number",
        action="append",
        dest="org_numbers",
        help="serve only this supplier (repeatable; default: every push supplier)",
    )
    s.add_argument(
        "--cert",
        type=Path,
        metavar="FILE",
        help="serve the supplier this certificate names with it and --key (the supplier's own "
        "key, e.g. after `b2bsim pki issue --csr`), and only that supplier",
    )
    s.add_argument("--key", type=Path, metavar="FILE", help="the private key of --cert (PEM)")
    rules = s.add_mutually_exclusive_group()
    rules.add_argument(
        "--rules",
        help="validate documents with the rule sets in DIR "
        "(default: $B2BSIM_RULES_DIR, else the official rule sets shipped with b2bsim)",
    )
    rules.add_argument(
        "--no-validate",
        dest="validate",
        action="store_false",
        help="do not validate documents (envelope, signature and addressee are still checked)",
    )
    s.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="HOST",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    s.add_argument(
        "--faults",
        type=Path,
        metavar="FILE",
        help="inject the faults this JSON file lists (re-read when it changes)",
    )
    s.add_argument("--max-body", type=int, default=2 * 1024 * 1024, metavar="BYTES")
    s.add_argument(
        "--gap-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds a message waits for its predecessor (or a credit for its invoice) "
        "before it loads anyway and the gap is reported (default 5)",
    )
    s.add_argument(
        "--pull-url",
        metavar="URL",
        help="pull suppliers fetch from this ICC outbox URL (default: their registry URL)",
    )
    s.add_argument(
        "--poll-interval", type=float, default=0.5, metavar="S", help="empty-outbox poll (0.5)"
    )
    s.add_argument(
        "--accept-unsigned",
        action="store_true",
        help="BROKEN ON PURPOSE, to test the conformance kit: skip the signature check",
    )
    s.add_argument(
        "--ignore-addressee",
        action="store_true",
        help="BROKEN ON PURPOSE, to test the conformance kit: skip the addressee check",
    )
    s.set_defaults(func=_serve_stub)


def _add_icc_parser(comp: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    i = comp.add_parser("icc", help="the ICC bridge: KA queue → signed envelopes → suppliers")
    _broker_options(i)
    i.add_argument("--registry", type=Path, help="supplier registry (default: STATE/registry.json)")
    i.add_argument("--events", type=Path, help="append the ICC's events log (JSON lines) here")
    i.add_argument(
        "--sent-log",
        type=Path,
        metavar="FILE",
        help="append every envelope signed for a push here, as sent (JSON lines; for tests)",
    )
    i.add_argument("--prefetch", type=int, default=200)
    i.add_argument(
        "--faults", type=Path, metavar="FILE", help="inject delivery faults (icc_bridge/faults.py)"
    )
    i.add_argument(
        "--request-timeout", type=float, default=10.0, metavar="S", help="per POST (default 10)"
    )
    defaults = RetryPolicy()
    i.add_argument("--retry-max-attempts", type=int, default=defaults.max_attempts, metavar="N")
    i.add_argument("--retry-max-age", type=float, default=defaults.max_age, metavar="S")
    i.add_argument("--retry-initial-delay", type=float, default=defaults.initial_delay, metavar="S")
    i.add_argument("--retry-max-delay", type=float, default=defaults.max_delay, metavar="S")
    i.add_argument(
        "--outbox",
        type=Path,
        metavar="FILE",
        help="SQLite outbox for pull suppliers (default: STATE/icc-outbox.sqlite)",
    )
    i.add_argument(
        "--pull-port", type=int, metavar="P", help="serve the pull API on this port (docs/pull.md)"
    )
    i.add_argument("--pull-bind", default="127.0.0.1", metavar="HOST", help="pull API address")
    i.add_argument(
        "--pull-log",
        type=Path,
        metavar="FILE",
        help="write a line per pull request of a supplier here (docs/files.md)",
    )
    i.add_argument(
        "--pull-faults",
        type=Path,
        metavar="FILE",
        help="lose acknowledgements or answer 503 on purpose (icc_bridge/pull_faults.py)",
    )
    i.add_argument(
        "--server-ca",
        type=Path,
        metavar="FILE",
        help="trust suppliers' server certificates issued by the CAs in FILE "
        "(default: the state's test CA); the registry's pin still applies",
    )
    i.set_defaults(func=_serve_icc)


def _add_producer_parser(comp: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = comp.add_parser("producer", help="a fake KA publishing document chains")
    _broker_options(k)
    k.add_argument(
        "--registry", type=Path, help="suppliers to produce for (default: STATE/registry.json)"
    )
    k.add_argument("--seed", type=int, default=1)
    k.add_argument("--chains", type=int, default=1, help="chains per supplier (0: until stopped)")
    k.add_argument(
        "--rate", type=float, default=0.0, help="messages per second (0: as fast as possible)"
    )
    k.add_argument("--log", type=Path, help="append KA's record (produced.jsonl) here")
    k.add_argument(
        "--outbox",
        type=Path,
        metavar="FILE",
        help="KA's SQLite outbox and sequences, kept across restarts "
        "(default: STATE/ka-outbox.sqlite)",
    )
    k.set_defaults(func=_serve_producer)


def _broker_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--broker",
        help="stomp://HOST:PORT (default: $B2BSIM_BROKER, else the embedded broker of the "
        "state directory, followed to its new address if it restarts elsewhere)",
    )
    where.add_argument(
        "--broker-file",
        type=Path,
        metavar="FILE",
        help="follow the broker this broker.json names (default without --broker: "
        "STATE/broker/broker.json)",
    )
    p.add_argument(
        "--broker-give-up",
        type=float,
        default=GIVE_UP_AFTER,
        metavar="S",
        help=f"seconds to look for a lost broker before exiting (default {GIVE_UP_AFTER:g})",
    )
    p.add_argument("--queue", default=KA_QUEUE, help=f"KA's queue (default: {KA_QUEUE})")


def _run_until_signal(name: str, main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run component ``name``'s ``main`` until SIGTERM or SIGINT.

    With ``$B2BSIM_PROFILE_DIR`` set, the event loop's thread runs under
    cProfile and its statistics go to ``DIR/<name>-<pid>.prof`` on the way out
    (docs/performance.md: how to read them).
    """

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    loop_factory = _loop_factory()
    profile_dir = os.environ.get(PROFILE_DIR_ENV)
    profiler = cProfile.Profile() if profile_dir else None
    if profiler is not None:
        profiler.enable()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as loop:
            loop.run(runner())
    finally:
        if profiler is not None and profile_dir:
            profiler.disable()
            Path(profile_dir).mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(Path(profile_dir) / f"{name}-{os.getpid()}.prof")
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop a served component runs on: uvloop unless ``$B2BSIM_EVENT_LOOP``
    says ``asyncio`` (uvloop's loop and TLS took 8-14 % less CPU per message in the
    bench, and less memory per connection: docs/performance.md)."""
    choice = os.environ.get(EVENT_LOOP_ENV, "uvloop")
    if choice == "asyncio":
        return None
    if choice != "uvloop":
        raise ConfigError(
            f"${EVENT_LOOP_ENV} is {choice!r}",
            hint="set it to uvloop (the default) or asyncio, or leave it unset",
        )
    import uvloop  # only served components need it

    return uvloop.new_event_loop


def _ready(component: str, **extra: object) -> None:
    print(json.dumps({"event": "ready", "component": component, **extra}), flush=True)


def _serve_broker(args: argparse.Namespace) -> int:
    state = StateDir.resolve(args.state).ensure()
    broker = LocalBroker(state.broker, port=args.port, die_with_parent=True)
    info = broker.start()
    _ready("broker", url=info.url, pid=info.pid, startup_seconds=round(info.startup_seconds, 2))

    async def wait(stop: asyncio.Event) -> None:
        await stop.wait()

    try:
        return _run_until_signal("broker", wait)
    finally:
        broker.stop()


def _serve_stub(args: argparse.Namespace) -> int:
    from supplier_stub import StubConfig, document_check_for, serve_forever

    state = StateDir.resolve(args.state)
    own_keys, org_numbers = _own_keys(args.cert, args.key, args.org_numbers)
    config = StubConfig(
        registry=args.registry or state.registry,
        state=state,
        db=args.db or state.root / "supplier-stub.sqlite",
        org_numbers=org_numbers,
        own_keys=own_keys,
        max_body=args.max_body,
        bind_host=args.bind,
        faults=args.faults,
        document_check=document_check_for(args.rules, validate=args.validate),
        gap_timeout=args.gap_timeout,
        pull_url=args.pull_url,
        poll_interval=args.poll_interval,
        accept_unsigned=args.accept_unsigned,
        ignore_addressee=args.ignore_addressee,
    )
    return _run_until_signal("supplier-stub", lambda stop: serve_forever(config, stop))


def _own_keys(
    cert: Path | None, key: Path | None, org_numbers: list[str] | None
) -> tuple[OwnKeyPair | None, list[str] | None]:
    """``--cert``/``--key``: the pair, and the one supplier it is for (ConfigError if unusable)."""
    from supplier_stub import OwnKeyPair

    if cert is None and key is None:
        return None, org_numbers
    if cert is None or key is None:
        raise ConfigError("--cert and --key go together", hint="give both, or neither")
    own = OwnKeyPair(cert, key)
    org = own.org_number
    if org is None:
        raise ConfigError(
            f"{cert} names no organisation number", hint="give a supplier certificate of the AF CA"
        )
    wanted = [normalise_org_number(o) for o in org_numbers or [org]]
    if wanted != [org]:
        raise ConfigError(
            f"--cert {cert} is supplier {org}'s, but --org-number asks for {', '.join(wanted)}",
            hint=f"leave --org-number out, or give --org-number {org}",
        )
    return own, [org]


def _serve_icc(args: argparse.Namespace) -> int:
    from icc_bridge import Bridge, BridgeConfig, read_test_switches

    switches = read_test_switches(os.environ)  # TEST ONLY (docs/icc.md); refused first
    state = StateDir.resolve(args.state)
    broker_url, broker_file = broker_url_for(args, state, wait=True)
    config = BridgeConfig(
        broker_url=broker_url,
        broker_file=broker_file,
        broker_give_up=args.broker_give_up,
        registry=args.registry or state.registry,
        ca_cert=state.ca_cert,
        icc_cert=state.icc_cert,
        icc_key=state.icc_key,
        queue=args.queue,
        events_log=args.events,
        prefetch=args.prefetch,
        request_timeout=args.request_timeout,
        faults=args.faults,
        crl=require_crl(state),
        retry=RetryPolicy(
            max_attempts=args.retry_max_attempts,
            max_age=args.retry_max_age,
            initial_delay=args.retry_initial_delay,
            max_delay=args.retry_max_delay,
        ),
        outbox=args.outbox or state.root / "icc-outbox.sqlite",
        server_ca=args.server_ca,
        test_switches=switches,
        sent_log=args.sent_log,
    )
    bridge = Bridge(config)
    pull_api = None
    if args.pull_port is not None:
        from icc_bridge import PullApi, PullApiConfig

        assert config.outbox is not None
        pull_api = PullApi(
            PullApiConfig(
                outbox=config.outbox,
                registry=config.registry,
                ca_cert=state.ca_cert,
                icc_cert=state.icc_cert,
                icc_key=state.icc_key,
                host=args.pull_bind,
                port=args.pull_port,
                events_log=args.events,
                requests_log=args.pull_log,
                faults=args.pull_faults,
                dead_letter=bridge.dead_letter_pulled,
            )
        )

    async def main(stop: asyncio.Event) -> None:
        if pull_api is not None:
            await pull_api.start()
        try:
            await run_bridge(stop)
        finally:
            if pull_api is not None:
                await pull_api.stop()

    async def run_bridge(stop: asyncio.Event) -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(bridge.run(stop, ready))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if ready.is_set():
            pull = {"pull_url": pull_api.url} if pull_api is not None else {}
            broken = config.test_switches.names
            extra = {**pull, **({"test_only_broken": list(broken)} if broken else {})}
            _ready("icc", queue=config.queue, suppliers=len(bridge.registry), **extra)
        await task

    return _run_until_signal("icc", main)


def _serve_producer(args: argparse.Namespace) -> int:
    from ka_producer import produce_chains
    from simulator.vocabulary.registry import Registry

    state = StateDir.resolve(args.state)
    registry = Registry.load(args.registry or state.registry)
    url, broker_file = broker_url_for(args, state, wait=True)

    async def main(stop: asyncio.Event) -> None:
        await produce_chains(
            url,
            [(s.org_number, s.name) for s in registry],
            outbox=args.outbox or state.root / "ka-outbox.sqlite",
            broker_file=broker_file,
            give_up=args.broker_give_up,
            queue=args.queue,
            seed=args.seed,
            chains=args.chains,
            rate=args.rate,
            produced_log=args.log,
            stop=stop,
            on_connected=lambda: _ready("producer", queue=args.queue, suppliers=len(registry)),
        )

    return _run_until_signal("ka-producer", main)
