"""The reference supplier as a graded harness for an ICC: a scripted HTTPS server.

``b2bsim conformance --icc`` (simulator/kits/icc_harness_run.py) listens here,
over mutual TLS, with a supplier certificate of the state directory, and the
ICC under test pushes to it.  The server:

- answers each KA message (found by the ``MESSAGE_ID`` of the envelope it
  carries) by a script, one :class:`Reply` after the other (a status, a delay,
  a connection reset); once the script is used up it answers like the
  reference supplier: 201 ``accepted`` the first time, 200 ``duplicate`` for an
  envelope id already stored (a 2xx reply stores the envelope when it arrives,
  before any delay);
- presents, per :class:`Mode`, its own certificate, a certificate the ICC must
  not trust (the pin mismatch), or only TLS 1.0/1.1.  The mode is read when a
  TCP connection is accepted, so every connection is counted with its mode,
  whether or not a request follows: a client that refuses the server sends
  no request, and :attr:`IccHarness.seen` then holds none in that mode;
- closes every connection after one answer (``Connection: close``), so that
  each attempt of the ICC opens a connection of its own in the current mode;
- records every request (:class:`Seen`) for the cases to grade.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import ssl
import struct
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from simulator.vocabulary.certs import is_icc_certificate
from simulator.vocabulary.envelope_xml import parse_envelope
from simulator.vocabulary.errors import B2BSimError, ConfigError
from simulator.vocabulary.messages import now_ms
from simulator.vocabulary.timestamps import format_timestamp
from simulator.vocabulary.tls import peer_certificate, server_context
from simulator.vocabulary.xmlsafe import parse_xml

__all__ = ["ENVELOPES_PATH", "IccHarness", "Mode", "Reply", "Seen"]

#: Where the ICC pushes (the URL's path in the registry entry).
ENVELOPES_PATH = "/b2b/envelopes"
#: Polling interval of the waits, seconds.
_POLL = 0.02
#: The largest envelope the harness reads (bytes).
_MAX_BODY = 16 * 1024 * 1024


class Mode(enum.Enum):
    """What the server presents to a new connection."""

    GOOD = "the supplier's registered certificate"
    WRONG_CERT = "a certificate the ICC must not trust"
    OLD_TLS = "only TLS 1.0 and 1.1"


@dataclass(frozen=True)
class Reply:
    """One scripted answer: ``status`` after ``delay`` seconds, or a connection reset."""

    status: int = 201
    delay: float = 0.0
    reset: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    """One HTTP request the harness received."""

    at: float  # time.monotonic() when it arrived
    path: str
    size: int
    body: bytes
    mode: Mode  # what the server presented to its connection
    tls_version: str | None
    client_is_icc: bool
    message_id: str | None  # from the envelope (not yet verified); None: unreadable
    envelope_id: str | None
    answer: int | None = None  # the status sent; None: reset, or not answered yet
    answered_at: float | None = None
    receipt: str | None = None  # accepted | duplicate for a 2xx


class IccHarness:
    """The scripted server; :meth:`start` it, then script, wait and read :attr:`seen`."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        cert: Path,
        key: Path,
        ca: Path,
        wrong_cert: tuple[Path, Path],
    ) -> None:
        self.host, self.port = host, port
        self._good, self._wrong = (cert, key), wrong_cert
        self._ctx = server_context(cert, key, ca)
        self._ctx.options |= ssl.OP_NO_TICKET  # no resumption: every connection shows its cert
        self._ctx.num_tickets = 0
        self.mode = Mode.GOOD
        self.connections: list[tuple[float, Mode]] = []
        self.seen: list[Seen] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._stored: dict[str, int] = {}  # envelope id -> epoch ms first stored
        self._modes: dict[RequestHandler, Mode] = {}
        self._runner: web.AppRunner | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The URL the ICC's registry entry must hold."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}{ENVELOPES_PATH}"

    async def start(self) -> None:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        handlers = self._runner.server
        assert handlers is not None

        def factory() -> RequestHandler:
            protocol = handlers()
            self._modes[protocol] = self.mode
            self.connections.append((time.monotonic(), self.mode))
            return protocol

        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                factory, self.host, self.port, ssl=self._ctx, reuse_address=True
            )
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}",
                hint="choose a free port on an address of this machine with --listen HOST:PORT",
            ) from None

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        if self._runner is not None:
            await self._runner.cleanup()

    # -- what the server presents --------------------------------------------------

    def set_mode(self, mode: Mode) -> None:
        """Present ``mode`` to every connection from now on (open ones are closed after use)."""
        cert, key = self._wrong if mode is Mode.WRONG_CERT else self._good
        self._ctx.load_cert_chain(certfile=cert, keyfile=key)
        with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            if mode is Mode.OLD_TLS:
                self._ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
                self._ctx.minimum_version = ssl.TLSVersion.TLSv1
                self._ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            else:
                self._ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
                self._ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                self._ctx.set_ciphers("DEFAULT")
        self.mode = mode

    def connections_in(self, mode: Mode, since: float) -> int:
        return sum(1 for at, m in self.connections if m is mode and at >= since)

    # -- scripts and what was seen -------------------------------------------------

    def script(self, message_id: str, *replies: Reply) -> None:
        """Answer the attempts for ``message_id`` with ``replies``, in turn."""
        self._scripts[message_id] = deque(replies)

    def attempts(self, message_id: str) -> list[Seen]:
        return [s for s in self.seen if s.message_id == message_id]

    def delivered(self, message_id: str) -> bool:
        """True once an attempt for ``message_id`` was answered 2xx."""
        return any(
            s.answer is not None and 200 <= s.answer < 300 for s in self.attempts(message_id)
        )

    async def settle(
        self, message_ids: list[str], *, done: Callable[[], bool], idle: float
    ) -> None:
        """Wait until ``done()``, or until no attempt for ``message_ids`` came for ``idle`` s."""
        last = time.monotonic()
        count = -1
        while not done():
            now = time.monotonic()
            attempts = sum(len(self.attempts(m)) for m in message_ids)
            if attempts != count:
                count, last = attempts, now
            if now - last >= idle:
                return
            await asyncio.sleep(_POLL)

    async def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()`` (True) or ``timeout`` seconds (False)."""
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() >= end:
                return False
            await asyncio.sleep(_POLL)
        return True

    # -- the handler ---------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        body = await request.read()
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        client = peer_certificate(request)
        message_id, envelope_id = _ids(body)
        seen = Seen(
            at=arrived,
            path=request.path,
            size=len(body),
            body=body,
            mode=self._modes.get(request.protocol, self.mode),
            tls_version=ssl_object.version() if ssl_object is not None else None,
            client_is_icc=client is not None and is_icc_certificate(client),
            message_id=message_id,
            envelope_id=envelope_id,
        )
        self.seen.append(seen)
        script = self._scripts.get(message_id or "")
        reply = script.popleft() if script else Reply()
        if reply.reset:
            _reset(request)
            return web.Response(status=500)  # never reaches the ICC: the connection is gone
        receipt = None
        if 200 <= reply.status < 300 and envelope_id is not None:
            receipt = "duplicate" if envelope_id in self._stored else "accepted"
            self._stored.setdefault(envelope_id, now_ms())
        if reply.delay:
            await asyncio.sleep(reply.delay)
        response = _response(reply, receipt, envelope_id, self._stored.get(envelope_id or ""))
        response.force_close()
        seen.answer, seen.answered_at, seen.receipt = reply.status, time.monotonic(), receipt
        return response


def _ids(body: bytes) -> tuple[str | None, str | None]:
    """The message id and envelope id an envelope carries (None, None if unreadable)."""
    try:
        envelope = parse_envelope(parse_xml(body, comments=False)).envelope
    except (B2BSimError, ValueError):
        return None, None
    return envelope.message_id, envelope.envelope_id


def _reset(request: web.Request) -> None:
    """Reset the connection (RST, not a TLS close) before any answer."""
    transport = request.transport
    if transport is None:
        return
    sock: socket.socket | None = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _response(
    reply: Reply, receipt: str | None, envelope_id: str | None, stored_ms: int | None
) -> web.Response:
    headers: dict[str, Any] = dict(reply.headers)
    if receipt is not None and envelope_id is not None and stored_ms is not None:
        doc = {
            "envelope_id": envelope_id,
            "received_at": format_timestamp(stored_ms),
            "status": receipt,
        }
        status = 200 if receipt == "duplicate" else reply.status
        return web.json_response(doc, status=status, headers=headers)
    if 200 <= reply.status < 300:  # not an envelope: nothing stored
        return web.json_response({"status": "accepted"}, status=reply.status, headers=headers)
    return web.json_response(
        {"title": "scripted", "detail": f"the harness answers {reply.status} on purpose"},
        status=reply.status,
        headers=headers,
    )
