"""The pull conformance kit's outbox: the ICC's pull API, played towards a supplier's puller.

``b2bsim conformance --mode pull`` (:mod:`simulator.kits.conformance_pull`)
listens here, over mutual TLS with the ICC's certificate of the state
directory, for the supplier's puller: ``GET /b2b/outbox?after=C&limit=N`` and
``POST /b2b/outbox/ack`` as docs/pull.md and docs/openapi.yaml describe them,
the acknowledgement's ``refused`` list included.  The client is identified as
the ICC does: its certificate must chain to the AF test CA, name the
organisation number under test and be the certificate pinned for it; any
other client gets ``403 CLIENT_NOT_SUPPLIER`` and is noted in
:attr:`KitOutbox.strangers`.

Unlike the ICC's outbox, this one records what a grade needs: when each
envelope was first served and acknowledged, what the puller refused and why,
every request's time, and each acknowledgement that went beyond what was
served (:attr:`KitOutbox.violations`).  Such an acknowledgement is counted
only up to what was served, so that one flaw fails one case; and it can
answer one request with a planned :class:`Fault` (429/503 with
``Retry-After``, a 503 or a dropped connection to an acknowledgement, which
is then lost).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from simulator.vocabulary.certs import cert_sha256, org_number_of
from simulator.vocabulary.codes.refusals import (
    ACK_INVALID,
    CLIENT_NOT_SUPPLIER,
    CURSOR_INVALID,
    PAGE_LIMIT_INVALID,
    SIMULATED_FAULT,
)
from simulator.vocabulary.errors import PortInUseError
from simulator.vocabulary.http_problems import problem_response
from simulator.vocabulary.problems import PROBLEM_MEDIA_TYPE, problem
from simulator.vocabulary.tls import peer_certificate, server_context

__all__ = [
    "ACK_PATH",
    "MAX_PAGE_LIMIT",
    "OUTBOX_PATH",
    "Fault",
    "Item",
    "KitOutbox",
    "Refusal",
    "Seen",
]

OUTBOX_PATH = "/b2b/outbox"
ACK_PATH = "/b2b/outbox/ack"
DEFAULT_PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 500
MAX_ACK_BODY = 256 * 1024  # an ack with a long refused list is still small
_CURSOR = re.compile(r"[0-9]{1,18}")


@dataclass
class Refusal:
    """One entry of an acknowledgement's ``refused`` list."""

    code: str
    reason: str


@dataclass
class Item:
    """One envelope in the kit's outbox, and what the puller did with it."""

    cursor: int
    envelope_id: str
    message_type: str
    body: bytes
    added_at: float
    served_at: float | None = None  # first served in a page (time.monotonic)
    served: int = 0  # how many pages carried it
    acked_at: float | None = None
    refusal: Refusal | None = None

    @property
    def settled(self) -> bool:
        return self.acked_at is not None


@dataclass
class Fault:
    """One request answered with a failure: ``status`` (None: the connection is dropped)."""

    method: str  # "GET" (a page) or "POST" (an acknowledgement)
    status: int | None
    retry_after: int | None = None
    hit_at: float | None = None  # when it was answered (time.monotonic)
    lost: dict[int, int] = field(default_factory=dict)  # a lost ack's cursors → pages so far


@dataclass(frozen=True)
class Seen:
    """One request from the puller."""

    at: float
    method: str


@dataclass
class KitOutbox:
    """The outbox the puller fetches from; ``await start()`` → its URL, ``await stop()``."""

    host: str
    port: int
    org_number: str
    pin: str  # the SHA-256 of the puller's certificate
    cert: Path  # the ICC's server certificate and key, and the AF test CA
    key: Path
    ca: Path
    items: dict[int, Item] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    strangers: list[str] = field(default_factory=list)
    acks: int = 0
    page_cap: int | None = None  # serve at most this many per page (None: as asked)
    max_served: int = 0
    _faults: list[Fault] = field(default_factory=list)
    _cursor: int = 0
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}{OUTBOX_PATH}"

    async def start(self) -> str:
        app = web.Application(client_max_size=MAX_ACK_BODY)
        app.router.add_get(OUTBOX_PATH, self._page)
        app.router.add_post(ACK_PATH, self._ack)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        tls = server_context(self.cert, self.key, self.ca)
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise PortInUseError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}",
                hint="another process uses the port, or the address is not this machine's: "
                "stop it or give another --listen HOST:PORT",
            ) from None
        self.port = int(self._runner.addresses[0][1])
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- what the cases do -------------------------------------------------------
    def add(self, body: bytes, envelope_id: str, message_type: str) -> Item:
        """Put one envelope in the outbox (a new cursor)."""
        self._cursor += 1
        item = Item(self._cursor, envelope_id, message_type, body, time.monotonic())
        self.items[item.cursor] = item
        return item

    def fault(self, fault: Fault) -> Fault:
        """Answer the next request of ``fault.method`` with it."""
        self._faults.append(fault)
        return fault

    def last_request(self) -> float | None:
        return self.requests[-1].at if self.requests else None

    async def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()`` (re-checked after every request) or ``timeout`` seconds."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(done), timeout)
            except TimeoutError:
                return done()
        return True

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- the API -----------------------------------------------------------------
    def _identify(self, request: web.Request) -> web.Response | None:
        cert = peer_certificate(request)
        org = org_number_of(cert) if cert is not None else None
        if cert is not None and org == self.org_number and cert_sha256(cert) == self.pin:
            return None
        sha = cert_sha256(cert) if cert is not None else "(none)"
        who = (
            f"organisation {org or '(none)'}'s certificate {sha[:16]}…"
            if org == self.org_number
            else f"a client naming organisation {org or '(none)'}"
        )
        if who not in self.strangers:
            self.strangers.append(who)
        return problem_response(
            CLIENT_NOT_SUPPLIER,
            f"the kit serves organisation {self.org_number} with its certificate "
            f"{self.pin[:16]}…, not {who}",
        )

    def _take_fault(self, method: str) -> Fault | None:
        for fault in self._faults:
            if fault.method == method:
                self._faults.remove(fault)
                fault.hit_at = time.monotonic()
                return fault
        return None

    def _fault_answer(self, request: web.Request, fault: Fault) -> web.Response:
        if fault.status is None:
            if request.transport is not None:
                request.transport.abort()  # the answer never arrives
            return web.Response(status=204)
        _, body = problem(SIMULATED_FAULT, "the conformance kit answers this request so, once")
        doc = json.loads(body)
        doc["status"] = fault.status
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        return web.Response(
            status=fault.status,
            body=json.dumps(doc).encode(),
            content_type=PROBLEM_MEDIA_TYPE,
            headers=headers,
        )

    async def _page(self, request: web.Request) -> web.Response:
        try:
            return self._answer_page(request)
        finally:
            await self._notify()

    def _answer_page(self, request: web.Request) -> web.Response:
        stranger = self._identify(request)
        if stranger is not None:
            return stranger
        now = time.monotonic()
        self.requests.append(Seen(now, "GET"))
        fault = self._take_fault("GET")
        if fault is not None:
            return self._fault_answer(request, fault)
        after = request.query.get("after", "0")
        if not _CURSOR.fullmatch(after) or int(after) > self._cursor:
            return problem_response(
                CURSOR_INVALID, f"after={after!r} is not a cursor this outbox issued"
            )
        raw_limit = request.query.get("limit", str(DEFAULT_PAGE_LIMIT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE_LIMIT:
            return problem_response(PAGE_LIMIT_INVALID, f"limit must be 1 to {MAX_PAGE_LIMIT}")
        limit = min(int(raw_limit), self.page_cap or MAX_PAGE_LIMIT)
        pending = [i for c, i in sorted(self.items.items()) if c > int(after) and not i.settled]
        rows = pending[:limit]
        for item in rows:
            item.served += 1
            item.served_at = item.served_at or now
            self.max_served = max(self.max_served, item.cursor)
        return web.json_response(
            {
                "envelopes": [_entry(item) for item in rows],
                "next_cursor": rows[-1].cursor if rows else int(after),
                "more": len(pending) > len(rows),
            }
        )

    async def _ack(self, request: web.Request) -> web.Response:
        try:
            return await self._answer_ack(request)
        finally:
            await self._notify()

    async def _answer_ack(self, request: web.Request) -> web.Response:
        stranger = self._identify(request)
        if stranger is not None:
            return stranger
        now = time.monotonic()
        self.requests.append(Seen(now, "POST"))
        try:
            doc = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return self._invalid_ack(f"the body is larger than {MAX_ACK_BODY} bytes")
        except (ValueError, UnicodeDecodeError):
            return self._invalid_ack("the body is not JSON")
        if request.content_type != "application/json":
            return self._invalid_ack(f"the body is sent as {request.content_type!r}")
        parsed = _parse_ack(doc)
        if isinstance(parsed, str):
            return self._invalid_ack(parsed)
        up_to, refused = parsed
        fault = self._take_fault("POST")
        if fault is not None:  # the acknowledgement is lost: nothing is recorded
            fault.lost = {
                c: i.served
                for c, i in self.items.items()
                if c <= up_to and i.served and not i.settled
            }
            return self._fault_answer(request, fault)
        self.acks += 1
        if up_to > self.max_served:
            self.violations.append(
                f"acknowledged up to cursor {up_to}, but the kit had served it only up to "
                f"{self.max_served}: envelopes it never fetched would leave the outbox"
            )
        counted = min(up_to, self.max_served)
        self._record_refusals(up_to, refused)
        for cursor, item in self.items.items():
            if cursor <= counted and not item.settled and item.served:
                item.acked_at = now
        return web.Response(status=204)

    def _record_refusals(self, up_to: int, refused: list[tuple[int, str, str, str]]) -> None:
        for cursor, envelope_id, code, reason in refused:
            item = self.items.get(cursor)
            if item is None or not item.served or cursor > up_to:
                where = "beyond its up_to" if cursor <= self.max_served else "never served to it"
                self.violations.append(f"listed cursor {cursor} as refused, {where}")
            elif item.envelope_id != envelope_id:
                self.violations.append(
                    f"listed cursor {cursor} as refused with envelope id {envelope_id}, "
                    f"but cursor {cursor} carries {item.envelope_id}"
                )
            elif not item.settled:
                item.refusal = Refusal(code, reason)

    def _invalid_ack(self, why: str) -> web.Response:
        self.violations.append(f"sent an acknowledgement the ICC refuses: {why}")
        return problem_response(
            ACK_INVALID,
            f'{why}; send {{"up_to": <cursor>, "refused": [{{"cursor", "envelope_id", "code", '
            '"reason"}]}} as application/json',
        )


def _entry(item: Item) -> dict[str, object]:
    return {
        "cursor": item.cursor,
        "envelope_id": item.envelope_id,
        "message_type": item.message_type,
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "envelope": base64.b64encode(item.body).decode("ascii"),
    }


def _is_cursor(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18


def _parse_ack(doc: object) -> tuple[int, list[tuple[int, str, str, str]]] | str:
    """``(up_to, refused)`` of an acknowledgement, or what is wrong with it."""
    if not isinstance(doc, dict) or not set(doc) <= {"up_to", "refused"}:
        return 'the body is not an object with "up_to" and an optional "refused"'
    up_to = doc.get("up_to")
    if not _is_cursor(up_to):
        return f'"up_to" is {up_to!r}, not a whole number >= 0'
    assert isinstance(up_to, int)
    entries = doc.get("refused", [])
    if not isinstance(entries, list):
        return '"refused" is not a list'
    refused: list[tuple[int, str, str, str]] = []
    for entry in entries:
        if not (
            isinstance(entry, dict)
            and set(entry) == {"cursor", "envelope_id", "code", "reason"}
            and _is_cursor(entry.get("cursor"))
            and isinstance(entry.get("envelope_id"), str)
            and isinstance(entry.get("code"), str)
            and isinstance(entry.get("reason"), str)
        ):
            return (
                f"the refused entry {str(entry)[:120]} is not {{cursor, envelope_id, code, reason}}"
            )
        refused.append((entry["cursor"], entry["envelope_id"], entry["code"], entry["reason"]))
    return up_to, refused
