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
4. ``POST /b2b/outbox/ack`` with ``{"up_to": <cursor>}``: every envelope of
   the supplier up to that cursor is acknowledged (``204``) and never
   returned again; the ICC logs a ``delivered`` event for each.

Errors are RFC 9457 problem details (:mod:`simulator.vocabulary.problems`).  The API
is described in docs/openapi.yaml and explained in docs/pull.md.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from aiohttp import web

from icc_bridge.outbox import Outbox, OutboxRow
from simulator.vocabulary.certs import cert_sha256, org_number_of
from simulator.vocabulary.codes.refusals import (
    ACK_INVALID,
    CLIENT_NOT_SUPPLIER,
    CURSOR_INVALID,
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
    "PullApi",
    "PullApiConfig",
]

log = logging.getLogger(__name__)

OUTBOX_PATH = "/b2b/outbox"
ACK_PATH = "/b2b/outbox/ack"
DEFAULT_PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 500
#: An ack is a few bytes of JSON; nothing bigger is read.
MAX_ACK_BODY = 4096
_CURSOR = re.compile(r"[0-9]{1,18}")  # fits SQLite's INTEGER


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


class PullApi:
    """Serves the outbox; ``await start()`` (returns the outbox URL), ``await stop()``."""

    def __init__(self, config: PullApiConfig) -> None:
        self.config = config
        self.registry = Registry.load(config.registry)
        self._tls = server_context(config.icc_cert, config.icc_key, config.ca_cert)
        self._outbox = Outbox(config.outbox)
        self._runner: web.AppRunner | None = None
        self._events: IO[str] | None = None
        self.port = config.port

    @property
    def url(self) -> str:
        """The outbox URL (the ``url`` of pull suppliers in the registry)."""
        return f"https://{self.config.host}:{self.port}{OUTBOX_PATH}"

    async def start(self) -> str:
        await self._outbox.open()
        if self.config.events_log is not None:
            self._events = self.config.events_log.open("a", encoding="utf-8", buffering=1)
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
        if self._events is not None:
            self._events.close()
            self._events = None

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
        after = request.query.get("after", "0")
        if not _CURSOR.fullmatch(after):
            return _problem(CURSOR_INVALID, f"after={after!r} is not a cursor (0 or more)")
        raw_limit = request.query.get("limit", str(DEFAULT_PAGE_LIMIT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE_LIMIT:
            return _problem(PAGE_LIMIT_INVALID, f"limit must be 1 to {MAX_PAGE_LIMIT}")
        try:
            page = await self._outbox.page(supplier.org_number, int(after), int(raw_limit))
        except CursorError as exc:
            return _problem(CURSOR_INVALID, str(exc))
        body = {
            "envelopes": [_item(row) for row in page.rows],
            "next_cursor": page.next_cursor,
            "more": page.more,
        }
        log.info(
            "pull page org=%s after=%s envelopes=%d more=%s",
            supplier.org_number,
            after,
            len(page.rows),
            page.more,
        )
        return web.json_response(body)

    async def _ack(self, request: web.Request) -> web.Response:
        supplier = self._supplier(request)
        if isinstance(supplier, web.Response):
            return supplier
        if request.content_type != "application/json":
            return _problem(
                ACK_INVALID, f"the body must be application/json, got {request.content_type!r}"
            )
        try:
            doc = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return _problem(ACK_INVALID, f"the body is larger than {MAX_ACK_BODY} bytes")
        except (ValueError, UnicodeDecodeError):
            return _problem(ACK_INVALID, "the body is not JSON")
        up_to = doc.get("up_to") if isinstance(doc, dict) else None
        if set(doc if isinstance(doc, dict) else ()) != {"up_to"} or not _is_cursor(up_to):
            return _problem(ACK_INVALID, 'send exactly {"up_to": <cursor>}, a whole number ≥ 0')
        assert isinstance(up_to, int)
        try:
            acked = await self._outbox.ack(supplier.org_number, up_to)
        except CursorError as exc:
            return _problem(CURSOR_INVALID, str(exc))
        for row in acked:
            self._delivered(row)
        log.info("pull ack org=%s up_to=%d acked=%d", supplier.org_number, up_to, len(acked))
        return web.Response(status=204)

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


def _is_cursor(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18


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
