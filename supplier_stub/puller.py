"""Pull mode, the supplier's side: fetch envelopes from the ICC's outbox, store, acknowledge.

For each supplier set to ``pull`` the stub runs one :class:`Puller`.  One
round (:meth:`Puller.poll_once`):

1. ``GET <outbox URL>?after=<cursor>&limit=<n>`` over mutual TLS, presenting
   the supplier's own AF-issued certificate and accepting only the ICC's
   server certificate (chain to the AF test CA, host name, and a pin on the
   ICC certificate's SHA-256 when the stub knows it).
2. Each envelope goes through the **same receive path as a pushed one**
   (:meth:`supplier_stub.app.SupplierStub.ingest`): signature, addressee,
   document rules, stored once by envelope id, then the ledger.
3. ``POST <outbox URL>/ack`` with ``{"up_to": <cursor>, "refused": [...]}``
   once everything up to that cursor is stored or refused for good (each
   refused envelope listed with the receive path's code and detail, so that
   the ICC dead-letters it), and only then is the
   cursor saved in the stub's SQLite (``pull_cursors``), so a stub that
   crashes before the ack fetches the same envelopes again: duplicate
   receipts, nothing loaded twice.

A 5xx from the receive path (e.g. a full disk) stops the round before that
envelope: it is neither acknowledged nor skipped, and is fetched again.
A 429 or 503 from the ICC is retried no sooner than its ``Retry-After`` says.
docs/pull.md explains the protocol.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import sqlite3
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from simulator.vocabulary.certs import cert_sha256, load_certificate
from simulator.vocabulary.codes.refusals import CURSOR_INVALID
from simulator.vocabulary.errors import PullError
from simulator.vocabulary.messages import now_ms
from simulator.vocabulary.registry import SupplierEntry
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import client_context
from supplier_stub.store import EnvelopeStore

__all__ = [
    "CURSOR_SCHEMA",
    "DEFAULT_POLL_INTERVAL",
    "Ingest",
    "PulledEnvelope",
    "PulledPage",
    "Puller",
    "PullerSettings",
]

log = logging.getLogger(__name__)

#: What the ICC takes as a refusal's code (docs/pull.md).
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
#: Seconds between polls when the outbox had nothing new.
DEFAULT_POLL_INTERVAL = 0.5
#: Backoff after a failed round, in seconds.
_RETRY_INITIAL, _RETRY_MAX = 0.5, 10.0

CURSOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS pull_cursors (
    org_number    TEXT PRIMARY KEY,
    cursor        INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
"""

#: The stub's receive path: (supplier, signed envelope bytes) → the HTTP answer a push gets.
Ingest = Callable[[SupplierEntry, bytes], Awaitable[web.Response]]


@dataclass(frozen=True, slots=True)
class PulledEnvelope:
    cursor: int
    envelope_id: str
    envelope: bytes  # the signed XML


@dataclass(frozen=True, slots=True)
class PulledPage:
    envelopes: list[PulledEnvelope]
    next_cursor: int
    more: bool


@dataclass(frozen=True)
class PullerSettings:
    """How one puller reaches the ICC."""

    url: str  # the ICC's outbox URL, e.g. https://127.0.0.1:9500/b2b/outbox
    cert: Path  # the supplier's certificate (presented as client certificate)
    key: Path
    ca_cert: Path
    icc_pin: str | None = None  # SHA-256 of the ICC's certificate; None: chain + host only
    limit: int = 100
    poll_interval: float = DEFAULT_POLL_INTERVAL
    timeout: float = 10.0

    @classmethod
    def for_supplier(
        cls, supplier: SupplierEntry, state: StateDir, url: str | None = None
    ) -> PullerSettings:
        """Settings from the state directory: the supplier's own keys, the ICC pinned if known."""
        pin = cert_sha256(load_certificate(state.icc_cert)) if state.icc_cert.is_file() else None
        return cls(
            url=url or supplier.url,
            cert=state.supplier_cert(supplier.org_number),
            key=state.supplier_key(supplier.org_number),
            ca_cert=state.ca_cert,
            icc_pin=pin,
        )


class Puller:
    """Pulls one supplier's envelopes; ``await run(stop)`` or drive :meth:`poll_once`."""

    def __init__(
        self,
        supplier: SupplierEntry,
        settings: PullerSettings,
        *,
        ingest: Ingest,
        store: EnvelopeStore,
    ) -> None:
        self.supplier = supplier
        self.settings = settings
        self._ingest = ingest
        self._store = store
        self._ssl: ssl.SSLContext = client_context(
            settings.cert, settings.key, settings.ca_cert, pin_sha256=settings.icc_pin
        )
        self._session: aiohttp.ClientSession | None = None
        self.cursor = 0  # the last cursor acknowledged (saved in the stub's SQLite)
        self.stored = 0  # envelopes handed to the receive path and answered 2xx
        self.refused: list[dict[str, Any]] = []  # the page's refusals, for its acknowledgement
        self._retry_after = 0.0  # seconds the ICC asked to wait (429/503 Retry-After)

    @property
    def _org(self) -> str:
        return self.supplier.org_number

    async def open(self) -> None:
        """Open the HTTP session and read the saved cursor."""
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self.cursor = await self._store.call(lambda db: _load_cursor(db, self._org))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; failures are logged and retried with backoff."""
        await self.open()
        delay = _RETRY_INITIAL
        try:
            while not stop.is_set():
                try:
                    more = await self.poll_once()
                    delay = _RETRY_INITIAL
                    wait = 0.0 if more else self.settings.poll_interval
                except PullError as exc:
                    wait = max(delay, self._retry_after)
                    log.warning("pull org=%s failed: %s (retry in %.1f s)", self._org, exc, wait)
                    delay, self._retry_after = min(delay * 2, _RETRY_MAX), 0.0
                if wait:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
        finally:
            await self.close()

    async def poll_once(self) -> bool:
        """Fetch one page, store it, acknowledge it; True if more is waiting now."""
        page = await self.fetch()
        last, complete = await self.store_page(page)
        if last > self.cursor:
            await self.ack(last)
        if not complete:
            raise PullError(f"the receive path failed after cursor {last}; retrying later")
        return page.more

    async def fetch(self) -> PulledPage:
        """GET the page after the saved cursor (a cursor the ICC never issued restarts at 0)."""
        status, doc = await self._request("GET", params={"after": str(self.cursor)})
        if status == 400 and isinstance(doc, dict) and doc.get("code") == CURSOR_INVALID:
            log.warning(
                "pull org=%s: the ICC does not know cursor %d (%s); starting again from 0",
                self._org,
                self.cursor,
                doc.get("detail", ""),
            )
            await self._save_cursor(0)
            status, doc = await self._request("GET", params={"after": "0"})
        if status != 200:
            raise PullError(f"GET {self.settings.url} answered {status} {_code(doc)}")
        return _parse_page(doc)

    async def store_page(self, page: PulledPage) -> tuple[int, bool]:
        """Hand each envelope to the receive path, in order.

        Returns the cursor up to which everything is settled (stored, or
        refused for good) and whether the whole page was.  A 5xx answer stops
        the page there: that envelope is fetched again next round.
        """
        last = self.cursor
        self.refused = []
        for item in page.envelopes:
            try:
                answer = await self._ingest(self.supplier, item.envelope)
            except Exception:  # the push path's middleware would answer 500: the same here
                log.exception("pull org=%s envelope_id=%s failed", self._org, item.envelope_id)
                return last, False
            if answer.status >= 500:
                log.warning(
                    "pull org=%s envelope_id=%s not stored (%d): fetched again later",
                    self._org,
                    item.envelope_id,
                    answer.status,
                )
                return last, False
            if answer.status < 300:
                self.stored += 1
            else:  # refused for good (signature, addressee, conflict, rules): never loads
                problem = _json(answer.body)
                code = _code(problem)
                code = code if _CODE.fullmatch(code) else f"HTTP_{answer.status}"
                log.warning(
                    "pull org=%s envelope_id=%s refused %d %s",
                    self._org,
                    item.envelope_id,
                    answer.status,
                    code,
                )
                detail = problem.get("detail") if isinstance(problem, dict) else None
                self.refused.append(
                    {
                        "cursor": item.cursor,
                        "envelope_id": item.envelope_id,
                        "code": code,
                        "reason": str(detail or f"refused with HTTP {answer.status}")[:500],
                    }
                )
            last = item.cursor
        return last, True

    async def ack(self, up_to: int) -> None:
        """Acknowledge everything up to ``up_to``, reporting the refusals of the page just
        stored (:attr:`refused`), then save it as the cursor."""
        body: dict[str, Any] = {"up_to": up_to}
        if self.refused:
            body["refused"] = [r for r in self.refused if r["cursor"] <= up_to]
        status, doc = await self._request("POST", path="/ack", json_body=body)
        if status != 204:
            raise PullError(f"ack up to {up_to} answered {status} {_code(doc)}")
        await self._save_cursor(up_to)

    async def _save_cursor(self, cursor: int) -> None:
        await self._store.call(lambda db: _save_cursor(db, self._org, cursor))
        self.cursor = cursor

    async def _request(
        self,
        method: str,
        *,
        path: str = "",
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        if self._session is None:
            raise RuntimeError("Puller.open() was not awaited")
        url = self.settings.url.rstrip("/") + path
        query = {**(params or {}), "limit": str(self.settings.limit)} if method == "GET" else None
        try:
            async with self._session.request(
                method,
                url,
                params=query,
                json=json_body,
                ssl=self._ssl,
                headers={"Accept": "application/json"},
            ) as resp:
                if resp.status in (429, 503):
                    self._retry_after = _seconds(resp.headers.get("Retry-After"))
                return resp.status, _json(await resp.read())
        except aiohttp.ClientConnectorCertificateError as exc:
            raise PullError(
                f"{url}: the server's certificate is refused ({exc.certificate_error})",
                hint="the outbox URL must reach the ICC, whose certificate the stub pins",
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PullError(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        except TimeoutError:
            raise PullError(f"{method} {url}: timed out") from None


def _json(body: bytes | Any) -> Any:
    if not isinstance(body, bytes | bytearray):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _seconds(retry_after: str | None) -> float:
    """A Retry-After header's delay in seconds (0 if absent or not a number of seconds)."""
    try:
        return max(0.0, float(retry_after)) if retry_after else 0.0
    except ValueError:
        return 0.0


def _code(doc: Any) -> str:
    if isinstance(doc, dict):
        return str(doc.get("code") or doc.get("status") or "")
    return ""


def _parse_page(doc: Any) -> PulledPage:
    """The page as the ICC sent it, checked (docs/openapi.yaml, ``OutboxPage``)."""
    try:
        items = [
            PulledEnvelope(
                cursor=_int(e["cursor"]),
                envelope_id=str(e["envelope_id"]),
                envelope=base64.b64decode(e["envelope"], validate=True),
            )
            for e in doc["envelopes"]
        ]
        page = PulledPage(items, _int(doc["next_cursor"]), bool(doc["more"]))
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise PullError(f"the outbox page is malformed ({type(exc).__name__}: {exc})") from None
    cursors = [e.cursor for e in items]
    if cursors != sorted(set(cursors)):
        raise PullError("the outbox page is not in cursor order")
    return page


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _load_cursor(db: sqlite3.Connection, org: str) -> int:
    db.executescript(CURSOR_SCHEMA)
    row = db.execute("SELECT cursor FROM pull_cursors WHERE org_number = ?", (org,)).fetchone()
    return int(row[0]) if row else 0


def _save_cursor(db: sqlite3.Connection, org: str, cursor: int) -> None:
    db.execute(
        "INSERT INTO pull_cursors (org_number, cursor, updated_at_ms) VALUES (?, ?, ?) "
        "ON CONFLICT (org_number) DO UPDATE SET cursor = excluded.cursor, "
        "updated_at_ms = excluded.updated_at_ms",
        (org, cursor, now_ms()),
    )
