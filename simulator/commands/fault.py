"""``b2bsim fault …``: inject faults into a chain that is already running.

The same faults a scenario scripts, started by hand (docs/scenarios.md):

- ``b2bsim fault supplier status|delay|reset|clear --faults FILE …`` writes
  the faults file a supplier stub was started with (``serve supplier-stub
  --faults FILE``); the stub applies it at its next request.
- ``b2bsim fault supplier disk-full --on|--off --faults FILE [--for S]``
  fills the stub's disk (its database may not grow) or frees it; the other
  rules stay, and ``clear`` frees it too.
- ``b2bsim fault icc duplicate|reorder|clear --faults FILE …`` does the same
  for ICC workers started with ``serve icc --faults FILE``: each kind changes
  only its own probability (``--probability 0`` stops it), ``clear`` stops all.
- ``b2bsim fault kill PID`` is kill -9 of a component (a worker of the ICC,
  say); the broker redelivers what it had not acked.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from typing import Any

from icc_bridge import read_delivery_faults, write_delivery_faults
from simulator.runs.chain import rule_for
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.messages import now_ms
from supplier_stub import DISK_FULL, read_faults, set_disk_full, write_faults


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("fault", help="inject a fault into a running chain")
    target = p.add_subparsers(dest="target", metavar="TARGET", required=True)

    s = target.add_parser("supplier", help="the supplier stub's answers (its --faults file)")
    s.add_argument("kind", choices=("status", "delay", "reset", DISK_FULL, "clear"))
    full = s.add_mutually_exclusive_group()
    full.add_argument(
        "--on",
        dest="full",
        action="store_true",
        default=None,
        help="disk-full: fill the stub's disk",
    )
    full.add_argument("--off", dest="full", action="store_false", help="disk-full: free it")
    s.add_argument("--faults", type=Path, required=True, help="the stub's --faults FILE")
    s.add_argument("--status", type=int, default=503, help="status: the HTTP status to answer")
    s.add_argument("--retry-after", type=float, metavar="S", help="status: a Retry-After header")
    s.add_argument("--seconds", type=float, default=0.0, help="delay: answer this much later")
    s.add_argument("--probability", type=float, default=1.0, metavar="P")
    s.add_argument("--first", type=int, metavar="N", help="only the first N requests")
    s.add_argument("--for", dest="duration", type=float, metavar="S", help="for S seconds")
    s.add_argument("--org-number", help="only this supplier")
    s.set_defaults(func=_supplier)

    i = target.add_parser(
        "icc",
        help="the ICC's deliveries (its --faults file)",
        description="Set one kind of ICC fault; the other kind keeps its probability. "
        "--probability 0 stops that kind; clear stops every kind.",
    )
    i.add_argument("kind", choices=("duplicate", "reorder", "clear"))
    i.add_argument("--faults", type=Path, required=True, help="the ICC's --faults FILE")
    i.add_argument("--probability", type=float, default=1.0, metavar="P", help="0 to 1 (default 1)")
    i.set_defaults(func=_icc)

    k = target.add_parser("kill", help="kill -9 a component process")
    k.add_argument("pid", type=int)
    k.set_defaults(func=_kill)


def _probability(p: float) -> float:
    if not 0 <= p <= 1:
        raise ConfigError(f"--probability {p} is not between 0 and 1", hint="e.g. 0.3")
    return p


def _supplier(args: argparse.Namespace) -> int:
    if args.kind == DISK_FULL or args.full is not None:
        return _disk_full(args)
    rules: list[dict[str, Any]] = []
    if args.kind != "clear":
        if args.kind == "status" and not 400 <= args.status <= 599:
            raise ConfigError(f"--status {args.status} is not an error status", hint="400..599")
        rule = rule_for(
            args.kind,
            seconds=args.seconds,
            status=args.status,
            retry_after=args.retry_after,
            probability=_probability(args.probability),
            first=args.first,
            duration=args.duration,
        )
        if args.org_number:
            rule["org_number"] = args.org_number
        rules = [*read_faults(args.faults), rule]
    write_faults(args.faults, rules)
    print(f"{args.faults}: {len(rules)} supplier fault rule(s) active")
    return 0


def _disk_full(args: argparse.Namespace) -> int:
    """``fault supplier disk-full --on|--off``: the stub's whole database, not its answers."""
    if args.kind != DISK_FULL:
        raise ConfigError(f"--on/--off are for disk-full, not {args.kind}", hint="drop them")
    if args.full is None:
        raise ConfigError("disk-full needs --on or --off", hint="fault supplier disk-full --on")
    per_request = {
        "--org-number": args.org_number is not None,
        "--first": args.first is not None,
        "--probability": args.probability != 1.0,
    }
    given = [name for name, set_ in per_request.items() if set_]
    if given:
        raise ConfigError(
            f"disk-full fills the stub's whole database: {', '.join(given)} does not apply",
            hint="drop it (only --for S bounds disk-full)",
        )
    until = None if args.duration is None else now_ms() + int(args.duration * 1000)
    set_disk_full(args.faults, args.full, until_ms=until if args.full else None)
    state = "full" if args.full else "free"
    print(f"{args.faults}: the supplier stub's disk {state}")
    return 0


def _icc(args: argparse.Namespace) -> int:
    p = _probability(args.probability)
    if args.kind == "clear":
        faults: dict[str, float] = {}
    else:
        try:
            current = read_delivery_faults(args.faults)
        except ValueError:
            raise ConfigError(
                f"{args.faults} is not an ICC faults file", hint="clear it: fault icc clear"
            ) from None
        faults = {**current, args.kind: p}
    write_delivery_faults(args.faults, **faults)
    active = ", ".join(f"{kind} {q:g}" for kind, q in faults.items() if q > 0)
    print(f"{args.faults}: ICC faults {f'now {active}' if active else 'cleared'}")
    return 0


def _kill(args: argparse.Namespace) -> int:
    cmdline = Path(f"/proc/{args.pid}/cmdline")
    try:
        argv = cmdline.read_bytes().split(b"\0")
    except OSError:
        raise ConfigError(
            f"no process {args.pid}", hint="see `ps` for the component's pid"
        ) from None
    if not any(b"b2bsim" in a or b"simulator.cli" in a or b"activemq" in a for a in argv):
        raise ConfigError(
            f"process {args.pid} is not a b2bsim component or broker", hint="check the pid"
        )
    os.kill(args.pid, signal.SIGKILL)
    print(f"killed {args.pid} (kill -9)")
    return 0
