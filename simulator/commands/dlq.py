"""``b2bsim dlq {list,show,replay}``: inspect and re-send the ICC's dead letters.

``list`` and ``show`` browse the dead-letter queue without consuming anything;
``replay`` puts dead letters back on KA's queue with their original headers
and body, so the ICC derives the same envelope id (see docs/dlq.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from lxml import etree

from simulator.commands.args import broker_url_for
from simulator.kits.dlq import DeadLetter, DeadLetterQueue
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.messages import KA_QUEUE
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.xmlsafe import parse_xml

EXIT_OK = 0

_T = TypeVar("_T")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``b2bsim dlq`` and its three actions."""
    p = sub.add_parser(
        "dlq",
        help="list, show or replay dead letters",
        description="Inspect the dead-letter queue of KA's queue and put messages back.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    ls = actions.add_parser("list", help="list the dead letters (nothing is consumed)")
    _options(ls)
    ls.add_argument("--json", action="store_true", help="print a JSON array instead of a table")

    show = actions.add_parser("show", help="one dead letter's headers and body")
    show.add_argument("id", metavar="ID", help="KA's message id (b2b-message-id) or the broker's")
    _options(show)

    replay = actions.add_parser("replay", help="put dead letters back on the queue")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("id", metavar="ID", nargs="?", help="the message id to replay")
    which.add_argument("--all", action="store_true", help="replay every dead letter")
    _options(replay)
    p.set_defaults(func=run)


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--queue",
        default=KA_QUEUE,
        help=f"the original queue; its DLQ is /queue/DLQ.NAME (default: {KA_QUEUE})",
    )
    p.add_argument(
        "--broker",
        metavar="URL",
        help="stomp://HOST:PORT (default: $B2BSIM_BROKER, else the embedded broker)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the chosen dlq action."""
    url, _ = broker_url_for(args, StateDir.resolve(args.state))
    dlq = DeadLetterQueue(url, args.queue)
    if args.action == "list":
        letters = _with(dlq, dlq.letters)
        print(_list_json(letters) if args.json else _table(letters, dlq.dlq))
    elif args.action == "show":
        for letter in _with(dlq, lambda: dlq.get(args.id)):
            print(_show(letter))
    else:
        moved = _with(dlq, dlq.replay_all if args.all else lambda: dlq.replay(args.id))
        for letter in moved:
            print(f"replayed {letter.key} ({letter.code}) → {dlq.queue}")
        print(f"{len(moved)} dead letter(s) replayed from {dlq.dlq} to {dlq.queue}")
    return EXIT_OK


def _with(dlq: DeadLetterQueue, action: Callable[[], Awaitable[_T]]) -> _T:
    async def main() -> _T:
        async with dlq:
            return await action()

    return asyncio.run(main())


def _list_json(letters: list[DeadLetter]) -> str:
    return json.dumps([d.summary() for d in letters], indent=2, ensure_ascii=False)


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(letters: list[DeadLetter], dlq: str) -> str:
    if not letters:
        return f"{dlq} is empty"
    rows = [
        (
            "MESSAGE ID",
            "TYPE",
            "ORG NUMBER",
            "SEQ",
            "DEAD-LETTERED (UTC)",
            "BYTES",
            "CODE",
            "REASON",
        )
    ]
    for d in letters:
        seq = "-" if d.sequence is None else str(d.sequence)
        rows.append(
            (
                d.key,
                d.message_type or "-",
                d.org_number or "-",
                seq,
                _time(d.dead_lettered_at_ms),
                str(d.body_bytes),
                d.code,
                _one_line(d.reason, 80),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows
    ]
    lines.append(f"{len(letters)} dead letter(s) in {dlq}")
    return "\n".join(lines)


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _show(d: DeadLetter) -> str:
    width = max(len(k) for k in d.headers)
    headers = "\n".join(f"  {k.ljust(width)}  {v}" for k, v in sorted(d.headers.items()))
    return (
        f"dead letter {d.key}\n"
        f"  code: {d.code}\n  reason: {d.reason}\n"
        f"  dead-lettered: {_time(d.dead_lettered_at_ms)} UTC\n"
        f"headers:\n{headers}\n"
        f"body ({d.body_bytes} bytes):\n{pretty_body(d.body)}"
    )


def pretty_body(body: str) -> str:
    """``body`` indented if it is XML, else as it is."""
    try:
        root = parse_xml(body.encode("utf-8"))
    except B2BSimError:
        return body
    etree.indent(root, space="  ")
    return etree.tostring(root, encoding="unicode")
