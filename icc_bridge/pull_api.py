"""The ICC's pull API: suppliers fetch their envelopes from the outbox over mutual TLS.

An aiohttp HTTPS server in the ICC process (``b2bsim serve icc --pull-port``).
One request's way:

1. TLS: TLS 1.2 or newer; the client must present a certificate that chains
   to the AF test CA (a client without one is refused in the handshake).
2. Identity: the organisation number comes from the client certificate
   (:func:`simulator.vocabulary.certs.org_number_of`); the registry must list it as a
   ``pull`` supplier, and the certificate must be the one registered for it
   (its SHA-256 is pinned).  Else ``403 CLIENT_NOT_SUPPLIER``.
3. ``GET /b2b/outbox?after=<cursor>&limit=<n>``: a page of the supplier's
   own unacknowledged envelopes after the cursor, in order.
4. ``POST /b2b/outbox/ack`` with ``{"up_to": <cursor>, "refused": [...]}``:
   every envelope of the supplier up to that cursor is acknowledged (``204``)
   and never returned again; the ICC logs a ``delivered`` event for each, but
   dead-letters each one listed as ``refused`` (code ``PULL_REFUSED``, the
   supplier's code and reason kept) before it acknowledges anything.

With ``--pull-faults`` it loses an acknowledgement or answers 503 on purpose
(:mod:`icc_bridge.pull_faults`); with ``--pull-log`` it writes a line per
request of a supplier (``page``/``ack``: what it asked, what it was served),
which grades a supplier's puller from the outbox's side (docs/files.md).

Errors are RFC 9457 problem details (:mod:`simulator.vocabulary.problems`).  The API
is described in docs/openapi.yaml and explained in docs/pull.md.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from icc_bridge.outbox import Outbox, OutboxRow
from icc_bridge.pull_ack import Ack, Refusal, parse_ack
from icc_bridge.pull_faults import PullFaultPlan, PullFaults
from simulator.vocabulary.certs import cert_sha256, org_number_of
from simulator.vocabulary.codes.refusals import (
    ACK_INVALID,
    CLIENT_NOT_SUPPLIER,
    CURSOR_INVALID,
    OUTBOX_UNAVAILABLE,
    PAGE_LIMIT_INVALID,
)
from simulator.vocabulary.errors import CursorError, PortInUseError
from simulator.vocabulary.http_problems import problem_response, problems_middleware
from simulator.vocabulary.messages import now_ms
from simulator.vocabulary.registry import DeliveryMode, Registry, SupplierEntry
from simulator.vocabulary.tls import peer_certificate, server_context

__all__ = [
    "ACK_PATH",
    "DEFAULT_PAGE_LIMIT",
    "MAX_PAGE_LIMIT",
    "OUTBOX_PATH",
    "DeadLetter",
    "PullApi",
    "PullApiConfig",
]

log = logging.getLogger(__name__)

OUTBOX_PATH = "/b2b/outbox"
ACK_PATH = "/b2b/outbox/ack"
DEFAULT_PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 500
#: An ack is JSON: a cursor and at most 500 refusals of 500 characters; nothing bigger is read.
MAX_ACK_BODY = 512 * 1024
_CURSOR = re.compile(r"[0-9]{1,18}")  # fits SQLite's INTEGER
#: Seconds a supplier is asked to wait when the ICC cannot dead-letter its refusals now.
DLQ_RETRY_AFTER = 1

#: Puts a refused envelope in the dead-letter queue (the bridge's; raises if it cannot now).
DeadLetter = Callable[[OutboxRow, Refusal], Awaitable[None]]


@dataclass
class PullApiConfig:
    """What the pull API serves, and as whom."""

    outbox: Path
    registry: Path
    ca_cert: Path
    icc_cert: Path  # the ICC's server certificate (it has the serverAuth EKU)
    icc_key: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port (see PullApi.port after start)
    events_log: Path | None = None  # append ``delivered`` events here (docs/files.md)
    requests_log: Path | None = None  # a line per supplier request (docs/files.md)
    faults: Path | None = None  # lose acks / answer 503 on purpose (icc_bridge/pull_faults.py)
    dead_letter: DeadLetter | None = None  # for the refused envelopes of an acknowledgement


class PullApi:
    """Serves the outbox; ``await start()`` (returns the outbox URL), ``await stop()``."""

    def __init__(self, config: PullApiConfig) -> None:
        self.config = config
        self.registry = Registry.load(config.registry)
        self._tls = server_context(config.icc_cert, config.icc_key, config.ca_cert)
        self._outbox = Outbox(config.outbox)
        self._runner: web.AppRunner | None = None
        self._events: IO[str] | None = None
        self._requests: IO[str] | None = None
        plan = PullFaultPlan.load(config.faults) if config.faults is not None else PullFaultPlan()
        self.faults = PullFaults(plan)
        self.port = config.port

    @property
    def url(self) -> str:
        """The outbox URL (the ``url`` of pull suppliers in the registry)."""
        return f"https://{self.config.host}:{self.port}{OUTBOX_PATH}"

    async def start(self) -> str:
        await self._outbox.open()
        if self.config.events_log is not None:
            self._events = self.config.events_log.open("a", encoding="utf-8", buffering=1)
        if self.config.requests_log is not None:
            self._requests = self.config.requests_log.open("a", encoding="utf-8", buffering=1)
        app = web.Application(
            client_max_size=MAX_ACK_BODY,
            middlewares=[
                problems_middleware(
                    endpoint=OUTBOX_PATH, internal="the outbox could not answer; try again"
                )
            ],
        )
        app.router.add_get(OUTBOX_PATH, self._page)
        app.router.add_post(ACK_PATH, self._ack)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=self._tls)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise PortInUseError(
                f"cannot listen on {self.config.host}:{self.config.port} for the pull API: "
                f"{exc.strerror}",
                hint="another process uses the port: stop it or pass another --pull-port",
            ) from None
        self.port = int(self._runner.addresses[0][1])  # the real one, if port 0 was asked
        log.info("pull API serving %s", self.url)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._outbox.close()
        for log_file in (self._events, self._requests):
            if log_file is not None:
                log_file.close()
        self._events = self._requests = None

    # --- handlers -------------------------------------------------------------
    def _supplier(self, request: web.Request) -> SupplierEntry | web.Response:
        """The pull supplier the client certificate names, or the problem answer."""
        cert = peer_certificate(request)
        org = org_number_of(cert) if cert is not None else None
        entry = self.registry.lookup(org) if org is not None and org in self.registry else None
        if entry is None or entry.delivery_mode is not DeliveryMode.PULL:
            return _problem(
                CLIENT_NOT_SUPPLIER,
                f"organisation {org or '(none)'} is not a pull supplier in the ICC's registry",
            )
        if cert is None or cert_sha256(cert) != entry.cert_sha256:
            return _problem(
                CLIENT_NOT_SUPPLIER,
                f"the certificate is not the one registered for supplier {org}",
            )
        return entry

    async def _page(self, request: web.Request) -> web.Response:
        supplier = self._supplier(request)
        if isinstance(supplier, web.Response):
            return supplier
        org = supplier.org_number
        after = request.query.get("after", "0")
        asked = {"after": after, "limit": request.query.get("limit")}
        busy = self._busy(org, "page", asked)
        if busy is not None:
            return busy
        if not _CURSOR.fullmatch(after):
            return self._refuse(
                org, "page", asked, CURSOR_INVALID, f"after={after!r} is not a cursor (0 or more)"
            )
        raw_limit = request.query.get("limit", str(DEFAULT_PAGE_LIMIT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE_LIMIT:
            return self._refuse(
                org, "page", asked, PAGE_LIMIT_INVALID, f"limit must be 1 to {MAX_PAGE_LIMIT}"
            )
        try:
            page = await self._outbox.page(org, int(after), int(raw_limit))
        except CursorError as exc:
            return self._refuse(org, "page", asked, CURSOR_INVALID, str(exc))
        served = [[r.cursor, r.message_id] for r in page.rows]
        self._request("page", org, after=int(after), status=200, served=served)
        body = {
            "envelopes": [_item(row) for row in page.rows],
            "next_cursor": page.next_cursor,
            "more": page.more,
        }
        log.info(
            "pull page org=%s after=%s envelopes=%d more=%s",
            org,
            after,
            len(page.rows),
            page.more,
        )
        return web.json_response(body)

    async def _ack(self, request: web.Request) -> web.Response:
        supplier = self._supplier(request)
        if isinstance(supplier, web.Response):
            return supplier
        org = supplier.org_number
        busy = self._busy(org, "ack", {})
        if busy is not None:
            return busy
        if request.content_type != "application/json":
            detail = f"the body must be application/json, got {request.content_type!r}"
            return self._refuse(org, "ack", {}, ACK_INVALID, detail)
        try:
            doc = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            detail = f"the body is larger than {MAX_ACK_BODY} bytes"
            return self._refuse(org, "ack", {}, ACK_INVALID, detail)
        except (ValueError, UnicodeDecodeError):
            return self._refuse(org, "ack", {}, ACK_INVALID, "the body is not JSON")
        ack = parse_ack(doc)
        if isinstance(ack, str):
            return self._refuse(org, "ack", {"body": _short(doc)}, ACK_INVALID, ack)
        return await self._apply(request, org, ack)

    async def _apply(self, request: web.Request, org: str, ack: Ack) -> web.Response:
        """Check the refusals against the outbox, dead-letter them, then acknowledge."""
        asked: dict[str, Any] = {"up_to": ack.up_to, "refused": [r.cursor for r in ack.refused]}
        try:
            await self._outbox.check(org, ack.up_to)
        except CursorError as exc:
            return self._refuse(org, "ack", asked, CURSOR_INVALID, str(exc))
        pending = await self._outbox.unacked(org, ack.up_to)
        served = await self._outbox.served(org, [r.cursor for r in ack.refused])
        for i, refusal in enumerate(ack.refused):
            row = served.get(refusal.cursor)
            if row is None:
                detail = f"refused[{i}].cursor {refusal.cursor} was never served to you"
                return self._refuse(org, "ack", asked, ACK_INVALID, detail)
            if row.envelope_id != refusal.envelope_id:
                detail = (
                    f"refused[{i}].envelope_id {refusal.envelope_id!r} is not the envelope at "
                    f"cursor {refusal.cursor} ({row.envelope_id})"
                )
                return self._refuse(org, "ack", asked, ACK_INVALID, detail)
        if self.faults.drop_ack(org, pending):
            log.warning("pull ack org=%s up_to=%d lost on purpose (a fault)", org, ack.up_to)
            self._request("ack", org, **asked, status=None, dropped=True, pending=pending)
            if request.transport is not None:
                request.transport.abort()  # no answer at all: the acknowledgement was lost
            return web.Response(status=204)
        refused = {r.cursor: r for r in ack.refused if r.cursor in pending}
        if refused and self.config.dead_letter is None:
            return self._unavailable(org, asked, "this ICC cannot dead-letter refused envelopes")
        for cursor, refusal in refused.items():
            try:
                assert self.config.dead_letter is not None
                await self.config.dead_letter(served[cursor], refusal)
            except Exception as exc:  # the broker is away: nothing is acknowledged
                log.warning("pull ack org=%s: cannot dead-letter cursor %d: %s", org, cursor, exc)
                return self._unavailable(org, asked, "the dead-letter queue cannot be reached now")
        try:
            acked = await self._outbox.ack(org, ack.up_to)
        except CursorError as exc:
            return self._refuse(org, "ack", asked, CURSOR_INVALID, str(exc))
        for row in acked:
            if row.cursor not in refused:
                self._delivered(row)
        self.faults.applied(org)
        self._request("ack", org, **asked, status=204, acked=len(acked))
        log.info(
            "pull ack org=%s up_to=%d acked=%d refused=%d", org, ack.up_to, len(acked), len(refused)
        )
        return web.Response(status=204)

    # --- the request log, refusals and the busy window -------------------------------
    def _request(self, kind: str, org: str, **fields: object) -> None:
        """One line in the request log (docs/files.md)."""
        if self._requests is not None:
            record = {"event": kind, "at_ms": now_ms(), "org_number": org, **fields}
            self._requests.write(json.dumps(record) + "\n")

    def _refuse(
        self, org: str, kind: str, asked: dict[str, Any], code: str, detail: str
    ) -> web.Response:
        answer = _problem(code, detail)
        self._request(kind, org, **asked, status=answer.status, code=code)
        return answer

    def _busy(self, org: str, kind: str, asked: dict[str, Any]) -> web.Response | None:
        retry_after = self.faults.busy(org)
        if retry_after is None:
            return None
        self._request(kind, org, **asked, status=503, retry_after=retry_after)
        answer = _problem(OUTBOX_UNAVAILABLE, f"the outbox is busy: retry after {retry_after} s")
        answer.headers["Retry-After"] = str(retry_after)
        return answer

    def _unavailable(self, org: str, asked: dict[str, Any], detail: str) -> web.Response:
        self._request("ack", org, **asked, status=503, retry_after=DLQ_RETRY_AFTER)
        answer = _problem(OUTBOX_UNAVAILABLE, f"{detail}; nothing was acknowledged")
        answer.headers["Retry-After"] = str(DLQ_RETRY_AFTER)
        return answer

    def _delivered(self, row: OutboxRow) -> None:
        """One ``delivered`` line in the ICC's events log (docs/files.md)."""
        log.info(
            "delivered (pulled) envelope_id=%s message_id=%s org=%s",
            row.envelope_id,
            row.message_id,
            row.org_number,
        )
        if self._events is None:
            return
        record = {
            "event": "delivered",
            "at_ms": now_ms(),
            "envelope_id": row.envelope_id,
            "message_id": row.message_id,
            "message_type": row.message_type,
            "org_number": row.org_number,
            "sequence": row.sequence,
            "status": 204,
            "detail": "pulled",
        }
        self._events.write(json.dumps(record) + "\n")


def _short(doc: object) -> str:
    return json.dumps(doc)[:200]


def _item(row: OutboxRow) -> dict[str, object]:
    return {
        "cursor": row.cursor,
        "envelope_id": row.envelope_id,
        "message_type": row.message_type,
        "created_at": datetime.fromtimestamp(row.created_at_ms / 1000, UTC).isoformat(
            timespec="milliseconds"
        ),
        "envelope": base64.b64encode(row.envelope).decode("ascii"),
    }


def _problem(code: str, detail: str, **extra: object) -> web.Response:
    return problem_response(code, detail, **extra)
