"""Deadlines that cut off slow ("slow-loris") clients of an aiohttp HTTPS server.

aiohttp has no read timeout of its own for a request's head or body; a
client that sends one byte a second could hold a connection for ever.  Three
deadlines close that gap, one per phase of a connection:

=============  =========================================================  ======================
phase          what must arrive in time                                   how
=============  =========================================================  ======================
handshake      the TLS handshake, from TCP accept                         :class:`GuardedTCPSite`
                                                                          (``ssl_handshake_timeout``)
headers        a complete request head, from the handshake or from the    ``keepalive_timeout`` of
               previous response (an idle keep-alive connection counts   aiohttp's RequestHandler,
               the same: it too is closed)                                via :func:`runner_kwargs`
body           the whole body, from the end of the head                   :func:`body_deadline`
                                                                          middleware
=============  =========================================================  ======================

A cut-off client gets no answer, not even a 408: its connection is closed
(the body deadline aborts it, so the socket is freed at once and a slow
client cannot hold it by reading an answer slowly).  A client sees a reset
or closed connection, which the ICC retries like any connection error.
Other connections are not affected.  Each cut-off of a started request (a
partial head, a partial body) is logged once, at WARNING, with the code
``REQUEST_TIMEOUT``, the peer and the local port; a connection closed idle
(no byte of a next request) is not a refusal and is not logged, nor is a
handshake cut-off (asyncio's own, below any request).  Wiring, for an
``app`` served with ``ssl_context``::

    limits = SlowClientLimits(handshake=10, headers=10, body=30)
    app = web.Application(middlewares=[..., body_deadline(limits.body)])
    runner = web.AppRunner(app, **runner_kwargs(limits))
    await runner.setup()
    site = GuardedTCPSite(runner, host, port, ssl_context=ctx, limits=limits)
    await site.start()
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler

from simulator.vocabulary.codes.refusals import REQUEST_TIMEOUT
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.problems import PROBLEM_MEDIA_TYPE, problem

__all__ = [
    "GuardedTCPSite",
    "SlowClientLimits",
    "body_deadline",
    "runner_kwargs",
]

log = logging.getLogger(__name__)

#: The problem code a cut-off is logged with (the client never sees an answer).
CUT_OFF_CODE = REQUEST_TIMEOUT


@dataclass(frozen=True, slots=True)
class SlowClientLimits:
    """Seconds each phase of a connection may take (see the module docstring)."""

    handshake: float = 10.0
    headers: float = 10.0
    body: float = 30.0

    def __post_init__(self) -> None:
        for name in ("handshake", "headers", "body"):
            value = getattr(self, name)
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigError(
                    f"the {name} deadline {value!r} is not a positive number of seconds",
                    hint="give each slow-client deadline in seconds, e.g. 10",
                )


def runner_kwargs(limits: SlowClientLimits) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner`` (passed on to each connection's handler).

    ``keepalive_timeout`` is the head deadline: aiohttp starts that timer when
    a connection is made and after each response, and closes the connection if
    no complete request head has arrived when it fires.  ``lingering_time``
    bounds how long aiohttp reads an unread body after an early answer.
    """
    return {"keepalive_timeout": limits.headers, "lingering_time": limits.body}


class GuardedTCPSite(web.TCPSite):
    """A ``web.TCPSite`` whose TLS handshake (and TLS shutdown) has a deadline.

    ``TCPSite`` cannot pass ``ssl_handshake_timeout`` to ``loop.create_server``
    (asyncio's default is 60 s); this one does.
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None = None,
        port: int | None = None,
        *,
        ssl_context: Any = None,
        limits: SlowClientLimits | None = None,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, backlog=backlog)
        self.limits = limits or SlowClientLimits()

    async def start(self) -> None:
        # Same as TCPSite.start, plus the two TLS deadlines (aiohttp 3.9-3.14 attribute names).
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        tls = self._ssl_context is not None
        listening = await loop.create_server(
            lambda: _HeadWatchingHandler(server, loop=loop, **server._kwargs),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
            ssl_handshake_timeout=self.limits.handshake if tls else None,
            ssl_shutdown_timeout=self.limits.handshake if tls else None,
        )
        self._server = listening
        sockets = listening.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def body_deadline(seconds: float) -> Middleware:
    """Middleware: abort the connection if the body is not in ``seconds`` after the head.

    It does not read the body itself, so the handler's own checks keep their
    order; a handler that is still waiting for the body when the deadline
    passes sees the connection lost, and the middleware answers for it with
    the problem ``REQUEST_TIMEOUT`` (408; the client, gone, never reads it).
    Put it after a catch-all error middleware, so that one never sees the
    lost connection.  Processing after the body arrived is not limited.
    """
    SlowClientLimits(body=seconds)  # the same check as the other limits

    @web.middleware
    async def deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.content.is_eof():
            return await handler(request)
        expired = False

        def expire() -> None:
            nonlocal expired
            if request.content.is_eof() or request.transport is None:
                return
            expired = True
            transport = request.transport
            _log_cut_off("body", seconds, transport.get_extra_info("peername"), transport)
            transport.abort()

        timer = asyncio.get_running_loop().call_later(seconds, expire)
        try:
            return await handler(request)
        except OSError:  # ConnectionResetError from the body read once the transport is gone
            if not expired:
                raise
        finally:
            timer.cancel()
        status, body = problem(
            REQUEST_TIMEOUT, f"the request body did not arrive within {seconds:g} s"
        )
        return web.Response(status=status, body=body, content_type=PROBLEM_MEDIA_TYPE)

    return deadline


def _log_cut_off(what: str, seconds: float, peer: Any, transport: Any) -> None:
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    log.warning(
        "slow client cut off code=%s: request %s not received in %gs peer=%s port=%s",
        CUT_OFF_CODE,
        what,
        seconds,
        peer,
        sockname[1] if sockname else None,
    )


class _HeadWatchingHandler(RequestHandler):
    """aiohttp's connection handler, logging a connection cut off with a partial request head.

    aiohttp closes a connection whose head did not arrive within ``keepalive_timeout``
    silently, and an idle keep-alive connection the same way.  This tells them apart: it
    notes bytes that arrive while no request is in progress and that do not complete a
    head (aiohttp 3.9-3.14 attribute names).
    """

    __slots__ = ("_partial_head",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._partial_head = False

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        between_requests = self._request_count == 0 or (waiter is not None and not waiter.done())
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads:
            self._partial_head = False
        elif between_requests and data:
            self._partial_head = True

    def _process_keepalive(self) -> None:
        was_open = not self._force_close
        transport = self.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        super()._process_keepalive()
        if was_open and self._force_close and self._partial_head:
            _log_cut_off("head", self._keepalive_timeout, peer, transport)
