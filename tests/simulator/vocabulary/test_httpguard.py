"""Tests of vocabulary.httpguard: slow clients are cut off over real TLS, others are served."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from simulator.lab.pki import init_pki, numbered_suppliers
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.httpguard import (
    GuardedTCPSite,
    SlowClientLimits,
    body_deadline,
    runner_kwargs,
)
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import client_context, server_context

LIMITS = SlowClientLimits(handshake=1.0, headers=1.0, body=1.0)
#: How much later than its deadline a cut may come (timer granularity, a loaded CI machine).
SLACK = 1.5


@dataclass
class Guarded:
    """A running guarded server and what a client needs to reach it."""

    port: int
    client: ssl.SSLContext
    bodies: list[int]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    """A test PKI for the server (a supplier) and the client (the ICC)."""
    state = StateDir(tmp_path_factory.mktemp("guard") / "state")
    init_pki(state, numbered_suppliers(1))
    return state


@pytest.fixture
async def guarded(state: StateDir) -> AsyncIterator[Guarded]:
    """An aiohttp HTTPS server with every slow-client deadline at 1 s."""
    bodies: list[int] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        bodies.append(len(body))
        return web.Response(text=str(len(body)))

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application(middlewares=[body_deadline(LIMITS.body)])
    app.router.add_post("/", echo)
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, **runner_kwargs(LIMITS))
    await runner.setup()
    org = numbered_suppliers(1)[0].org_number
    ctx = server_context(state.supplier_cert(org), state.supplier_key(org), state.ca_cert)
    site = GuardedTCPSite(runner, "127.0.0.1", 0, ssl_context=ctx, limits=LIMITS)
    await site.start()
    client = client_context(state.icc_cert, state.icc_key, state.ca_cert)
    try:
        yield Guarded(site.port, client, bodies)
    finally:
        await runner.cleanup()


async def _trickle(
    guarded: Guarded, head: bytes, drip: bytes, *, tls: bool = True, max_s: float = 10.0
) -> float:
    """Send ``head`` then ``drip`` one byte per 0.1 s; seconds until the server hung up."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1",
        guarded.port,
        ssl=guarded.client if tls else None,
        server_hostname="127.0.0.1" if tls else None,
    )
    hung_up = asyncio.ensure_future(reader.read(65536))
    try:
        writer.write(head)
        for byte in drip * 1000:
            if hung_up.done() or time.monotonic() - start > max_s:
                break
            writer.write(bytes([byte]))
            try:
                await writer.drain()
            except (ConnectionError, ssl.SSLError):
                break
            await asyncio.sleep(0.1)
        try:
            got = await asyncio.wait_for(hung_up, timeout=max_s)
        except (ConnectionError, ssl.SSLError):
            got = b""
        assert got == b"", f"the server answered instead of hanging up: {got[:80]!r}"
        return time.monotonic() - start
    finally:
        hung_up.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def _normal_requests(guarded: Guarded, stop: asyncio.Event) -> int:
    """Make ordinary requests on fresh connections until ``stop``; how many succeeded."""
    served = 0
    while not stop.is_set():
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(guarded.url, data=b"x" * 1000, ssl=guarded.client) as resp,
        ):
            assert resp.status == 200
            assert await resp.text() == "1000"
            served += 1
        await asyncio.sleep(0.1)
    return served


async def _while_serving_others(guarded: Guarded, slow: asyncio.Future[float]) -> float:
    """Run the slow client while normal clients keep being served; the slow one's time."""
    stop = asyncio.Event()
    others = asyncio.ensure_future(_normal_requests(guarded, stop))
    try:
        elapsed = await slow
    finally:
        stop.set()
    assert await others >= 3  # served all along, on other connections
    return elapsed


def cut_offs(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The cut-off lines logged by vocabulary.httpguard."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "simulator.vocabulary.httpguard" and "slow client cut off" in r.getMessage()
    ]


class TestSlowClients:
    """Each phase's deadline cuts off a trickling client and only it."""

    async def test_slow_headers_are_cut_off(
        self, guarded: Guarded, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A request head sent byte by byte is cut off after the head deadline, logged once."""
        with caplog.at_level(logging.INFO, logger="simulator.vocabulary.httpguard"):
            slow = asyncio.ensure_future(
                _trickle(guarded, b"POST / HTTP/1.1\r\nHost: x\r\n", b"X-Slow: aaaa\r\n")
            )
            elapsed = await _while_serving_others(guarded, slow)
        assert LIMITS.headers * 0.9 <= elapsed <= LIMITS.headers + SLACK
        (line,) = cut_offs(caplog)
        assert "request head not received in 1s" in line
        assert "code=REQUEST_TIMEOUT" in line
        assert f"port={guarded.port}" in line
        assert "peer=('127.0.0.1'," in line

    async def test_slow_body_is_cut_off(
        self, guarded: Guarded, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A body sent byte by byte is cut off after the body deadline, and that is logged."""
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
        with caplog.at_level(logging.WARNING, logger="simulator.vocabulary.httpguard"):
            slow = asyncio.ensure_future(_trickle(guarded, head, b"<a>"))
            elapsed = await _while_serving_others(guarded, slow)
        assert LIMITS.body * 0.9 <= elapsed <= LIMITS.body + SLACK
        (line,) = cut_offs(caplog)
        assert "body not received in 1s" in line
        assert "code=REQUEST_TIMEOUT" in line
        assert f"port={guarded.port}" in line
        assert 100000 not in guarded.bodies

    async def test_slow_handshake_is_cut_off(self, guarded: Guarded) -> None:
        """A TCP client that trickles (or never finishes) the TLS handshake is cut off."""
        record = b"\x16\x03\x01\x02\x00"  # a TLS handshake record of 512 bytes, sent slowly
        slow = asyncio.ensure_future(_trickle(guarded, record, b"\x01", tls=False))
        elapsed = await _while_serving_others(guarded, slow)
        assert LIMITS.handshake * 0.9 <= elapsed <= LIMITS.handshake + SLACK

    async def test_idle_connection_is_closed(
        self, guarded: Guarded, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A connection that sends nothing after the handshake is closed at the head deadline."""
        with caplog.at_level(logging.INFO, logger="simulator.vocabulary.httpguard"):
            elapsed = await _trickle(guarded, b"", b"")
        assert elapsed <= LIMITS.headers + SLACK
        assert cut_offs(caplog) == []  # nothing was refused: there was no request

    async def test_idle_keep_alive_after_requests_is_not_a_cut_off(
        self, guarded: Guarded, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Requests (with bodies) on one connection, then idle until closed: no cut-off logged."""
        with caplog.at_level(logging.INFO, logger="simulator.vocabulary.httpguard"):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", guarded.port, ssl=guarded.client, server_hostname="127.0.0.1"
            )
            try:
                for _ in range(2):
                    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.1)
                    writer.write(b"abc")
                    await writer.drain()
                    assert (await reader.readuntil(b"\r\n\r\n3")).startswith(b"HTTP/1.1 200")
                closed = await asyncio.wait_for(reader.read(65536), LIMITS.headers + SLACK)
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    await writer.wait_closed()
        assert closed == b""
        assert cut_offs(caplog) == []

    async def test_body_in_time_is_served(self, guarded: Guarded) -> None:
        """A body that arrives in a few pieces, within the deadline, is answered normally."""
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", guarded.port, ssl=guarded.client, server_hostname="127.0.0.1"
        )
        try:
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
            for piece in (b"ab", b"cd", b"ef"):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.2)
            answer = await asyncio.wait_for(reader.read(65536), timeout=5)
        finally:
            writer.close()
            await writer.wait_closed()
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.endswith(b"\r\n\r\n6")

    async def test_get_without_body_is_not_timed(self, guarded: Guarded) -> None:
        """A request without a body passes the body deadline untouched."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(guarded.url, ssl=guarded.client) as resp,
        ):
            assert await resp.text() == "hello"


class TestLimits:
    """Configuration of the deadlines."""

    @pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
    def test_bad_deadline_is_a_config_error(self, bad: float) -> None:
        """A deadline that is not a positive finite number of seconds is a ConfigError."""
        with pytest.raises(ConfigError, match="positive number of seconds"):
            SlowClientLimits(headers=bad)
        with pytest.raises(ConfigError):
            body_deadline(bad)

    def test_runner_kwargs(self) -> None:
        """The head deadline is aiohttp's keepalive_timeout; lingering is the body deadline."""
        limits = SlowClientLimits(handshake=2, headers=3, body=4)
        assert runner_kwargs(limits) == {"keepalive_timeout": 3, "lingering_time": 4}
