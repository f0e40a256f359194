"""``b2bsim health {broker,supplier-stub}``: is a component up? (exit 0 yes, 1 no)

Used by the compose files' health checks and by operators.  The check is the
real thing: a STOMP CONNECT to the broker; a mutual-TLS ``GET /health`` to
every supplier endpoint in the registry, as the ICC, with the pinned
certificate.  ``/health`` is optional for a supplier's own endpoint
(docs/openapi.yaml): one that does not serve it answers 404, which the line
for it explains.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import aiohttp

from simulator.lab.broker import parse_broker_url, wait_for_stomp
from simulator.vocabulary.errors import BrokerError
from simulator.vocabulary.registry import Registry
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import client_context

#: The probed path, next to the registry URL's ``/b2b/…`` (optional for a supplier's own server).
HEALTH_PATH = "/health"
#: Seconds each endpoint has to answer.
TIMEOUT = 3.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("health", help="check that a component answers (exit 0 yes, 1 no)")
    comp = p.add_subparsers(dest="component", metavar="COMPONENT", required=True)
    b = comp.add_parser("broker", help="a STOMP CONNECT gets CONNECTED")
    b.add_argument("--broker", required=True, help="stomp://HOST:PORT")
    b.set_defaults(func=_broker)
    s = comp.add_parser("supplier-stub", help="every registry URL answers GET /health over mTLS")
    s.add_argument("--registry", type=Path, help="default: STATE/registry.json")
    s.set_defaults(func=_stub)


def _broker(args: argparse.Namespace) -> int:
    host, port = parse_broker_url(args.broker)
    try:
        wait_for_stomp(host, port, timeout=3.0)
    except BrokerError as exc:
        print(exc.one_line())
        return 1
    print(f"broker {args.broker}: ok")
    return 0


def _stub(args: argparse.Namespace) -> int:
    state = StateDir.resolve(args.state)
    registry = Registry.load(args.registry or state.registry)
    return asyncio.run(_check_stub(state, registry))


async def _check_stub(state: StateDir, registry: Registry) -> int:
    failures = 0
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for s in registry:
            ctx = client_context(
                state.icc_cert, state.icc_key, state.ca_cert, pin_sha256=s.cert_sha256
            )
            url = s.url.rsplit("/b2b/", 1)[0] + HEALTH_PATH
            try:
                async with session.get(url, ssl=ctx) as resp:
                    ok = resp.status == 200
            except TimeoutError:  # before OSError, which it is since Python 3.11
                ok, why = False, f"no answer within {TIMEOUT:g} s"
            except (aiohttp.ClientError, OSError) as exc:
                ok, why = False, f"{type(exc).__name__}: {exc}"
            else:
                why = f"HTTP {resp.status}"
                if resp.status == 404:
                    why += (
                        f" ({HEALTH_PATH} is optional for a supplier's own endpoint and this one "
                        "does not serve it; the endpoint is reachable and presents the pinned "
                        "certificate)"
                    )
            print(f"{s.org_number} {url}: {'ok' if ok else why}")
            failures += not ok
    return 0 if failures == 0 else 1
