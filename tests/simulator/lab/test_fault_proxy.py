"""Tests of simulator.lab.fault_proxy: each mode, against a real echo server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from simulator.lab.fault_proxy import FaultProxy, ProxyMode
from simulator.vocabulary.errors import ConfigError


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    async with server:
        yield int(server.sockets[0].getsockname()[1])
        server.close()


@pytest.fixture
async def proxy(echo_port: int) -> AsyncIterator[FaultProxy]:
    p = await FaultProxy(("127.0.0.1", echo_port)).start()
    try:
        yield p
    finally:
        await p.stop()


async def _roundtrip(port: int, payload: bytes = b"hello", timeout: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout)
    finally:
        writer.close()


async def test_pass_forwards_both_ways(proxy: FaultProxy) -> None:
    assert await _roundtrip(proxy.port, b"x" * 200_000, timeout=5) == b"x" * 200_000
    assert proxy.accepted == 1


async def test_delay_adds_latency_to_each_direction(proxy: FaultProxy) -> None:
    proxy.set_mode(ProxyMode.DELAY, delay_ms=150)
    started = time.monotonic()
    assert await _roundtrip(proxy.port) == b"hello"
    assert time.monotonic() - started >= 0.3  # 150 ms there, 150 ms back


async def test_reset_refuses_new_connections_with_a_reset(proxy: FaultProxy) -> None:
    proxy.set_mode("reset")
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await _roundtrip(proxy.port)
    assert proxy.resets == 1
    proxy.set_mode("pass")
    assert await _roundtrip(proxy.port) == b"hello"


async def test_reset_breaks_open_connections_at_once(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    proxy.set_mode(ProxyMode.RESET)
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 2)
    writer.close()


async def test_blackhole_accepts_and_never_answers(proxy: FaultProxy) -> None:
    proxy.set_mode(ProxyMode.BLACKHOLE)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)  # accepted
    writer.write(b"anyone?")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.5)
    assert proxy.open_connections == 1  # held open: half-open, as a dead peer looks
    writer.close()
    proxy.set_mode(ProxyMode.PASS)
    assert await _roundtrip(proxy.port) == b"hello"


async def test_blackhole_silences_an_open_connection(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"a")
    assert await reader.readexactly(1) == b"a"
    proxy.set_mode(ProxyMode.BLACKHOLE)
    writer.write(b"b")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.5)
    writer.close()


async def test_a_black_holed_connection_never_resumes_it_is_reset(proxy: FaultProxy) -> None:
    """Bytes lost to the black hole are never followed by later bytes on the same
    connection (a stream with a hole would be no TCP): it is reset when the hole ends."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"a")
    assert await reader.readexactly(1) == b"a"
    proxy.set_mode(ProxyMode.BLACKHOLE)
    writer.write(b"lost")
    await writer.drain()
    await asyncio.sleep(0.2)
    proxy.set_mode(ProxyMode.PASS)
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        writer.write(b"later")
        await writer.drain()
    # never the later bytes without the lost ones: the connection is gone
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 2)
    writer.close()
    assert await _roundtrip(proxy.port) == b"hello"  # a new connection passes


async def test_an_unreachable_target_is_a_reset(proxy: FaultProxy) -> None:
    closed = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = int(closed.sockets[0].getsockname()[1])
    closed.close()
    await closed.wait_closed()
    proxy.retarget(("127.0.0.1", port))
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await _roundtrip(proxy.port)


async def test_retarget_sends_new_connections_elsewhere(proxy: FaultProxy) -> None:
    async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.read(5)).upper())
        await writer.drain()
        writer.close()

    other = await asyncio.start_server(upper, "127.0.0.1", 0)
    async with other:
        proxy.retarget(("127.0.0.1", int(other.sockets[0].getsockname()[1])))
        assert await _roundtrip(proxy.port) == b"HELLO"


async def test_stop_closes_every_connection(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"a")
    assert await reader.readexactly(1) == b"a"
    await proxy.stop()
    assert await asyncio.wait_for(reader.read(1), 2) == b""
    assert proxy.open_connections == 0
    writer.close()


def test_a_delay_out_of_range_is_refused() -> None:
    proxy = FaultProxy(("127.0.0.1", 1))
    with pytest.raises(ConfigError, match="delay"):
        proxy.set_mode(ProxyMode.DELAY, delay_ms=0)
    with pytest.raises(ValueError, match="sideways"):
        proxy.set_mode("sideways")
