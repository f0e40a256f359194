"""A small TCP fault proxy on loopback: pass, delay, reset or black-hole a link.

``b2bsim soak`` puts one between the ICC and each supplier endpoint, and one
between the components and the broker, and switches their mode while the
chain runs (docs/reliability.md):

- ``pass``: forward bytes both ways, as they come;
- ``delay``: forward each chunk ``delay_ms`` late (latency; order is kept);
- ``reset``: answer every new connection, and every open one at once, with a
  TCP reset (RST);
- ``blackhole``: accept new connections and never forward or answer
  (half-open); open connections stop forwarding too.  The client finds out
  only through its own timeouts or heart-beats.  A connection that lost bytes
  to the black hole never forwards again (TCP never drops bytes from the
  middle of a live stream): it is reset when the black hole ends, as a peer's
  retransmissions would time out.

A proxy listens on one address and forwards to one target; :meth:`FaultProxy.retarget`
points it elsewhere (a broker that came back on another port).  Everything it
opens it closes in :meth:`FaultProxy.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from dataclasses import dataclass, field
from enum import StrEnum

from simulator.vocabulary.errors import ConfigError

__all__ = ["FaultProxy", "ProxyMode"]

log = logging.getLogger(__name__)

#: Bytes read at a time from either side.
CHUNK = 64 * 1024
#: The longest delay a proxy accepts (a mistake beyond it, not a fault).
MAX_DELAY_MS = 600_000


class ProxyMode(StrEnum):
    PASS = "pass"  # noqa: S105 - a mode, not a password
    DELAY = "delay"
    RESET = "reset"
    BLACKHOLE = "blackhole"


@dataclass(eq=False)
class _Link:
    """One client connection and, unless black-holed from the start, its upstream."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    swallowed: bool = False  # it lost bytes to a black hole: it never forwards again


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s socket with a TCP reset (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Listens on ``listen_host:listen_port`` and forwards to ``target``, in a mode."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        name: str = "proxy",
    ) -> None:
        self.target = target
        self.listen_host, self._listen_port, self.name = listen_host, listen_port, name
        self.mode = ProxyMode.PASS
        self.delay_ms = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self.accepted = 0
        self.resets = 0

    @property
    def port(self) -> int:
        """The port it listens on (known once started)."""
        if self._server is None:
            return self._listen_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def open_connections(self) -> int:
        return len(self._links)

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(
            self._accept, self.listen_host, self._listen_port, reuse_address=True
        )
        host, port = self.target
        log.info("%s on %s:%d → %s:%d", self.name, self.listen_host, self.port, host, port)
        return self

    async def stop(self) -> None:
        """Stop listening and close every connection it holds."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._close(link, reset=False)
        tasks = [t for link in list(self._links) for t in link.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._links.clear()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    def set_mode(self, mode: ProxyMode | str, *, delay_ms: int = 0) -> None:
        """Switch mode; ``reset`` also resets every open connection now."""
        mode = ProxyMode(mode)
        if mode is ProxyMode.DELAY and not 0 < delay_ms <= MAX_DELAY_MS:
            raise ConfigError(
                f"{self.name}: delay {delay_ms} ms is out of range",
                hint=f"give 1 to {MAX_DELAY_MS} ms",
            )
        self.mode, self.delay_ms = mode, delay_ms if mode is ProxyMode.DELAY else 0
        for link in list(self._links):
            if mode is ProxyMode.RESET or (mode is not ProxyMode.BLACKHOLE and link.swallowed):
                self._close(link, reset=True)
        log.info("%s now %s%s", self.name, mode, f" {delay_ms} ms" if delay_ms else "")

    def retarget(self, target: tuple[str, int]) -> None:
        """Forward new connections to ``target`` from now on."""
        self.target = target

    # --- connections ---------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(writer)
        if self.mode is ProxyMode.RESET:
            self.resets += 1
            _reset(writer)
            return
        self._links.add(link)
        try:
            if self.mode is ProxyMode.BLACKHOLE:
                link.swallowed = True
                await self._swallow(reader)
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.target), 10
                )
            except (OSError, TimeoutError):
                _reset(writer)  # as the target itself would: connection refused
                return
            link.upstream = up_writer
            link.tasks = [
                asyncio.create_task(self._pipe(link, reader, up_writer)),
                asyncio.create_task(self._pipe(link, up_reader, writer)),
            ]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
            self._close(link, reset=False)
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            if not writer.is_closing():
                writer.close()

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        """Read and drop what a black-holed client sends, until it gives up."""
        with contextlib.suppress(OSError):
            while await reader.read(CHUNK):
                pass

    async def _pipe(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Copy one direction until EOF, in the proxy's current mode."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                if self.mode is ProxyMode.BLACKHOLE or link.swallowed:
                    link.swallowed = True  # dropped: the link is half-open for good
                    continue
                if self.mode is ProxyMode.DELAY and self.delay_ms:
                    await asyncio.sleep(self.delay_ms / 1000)
                if writer.is_closing():
                    return
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()

    def _close(self, link: _Link, *, reset: bool) -> None:
        for w in (link.client, link.upstream):
            if w is None or w.is_closing():
                continue
            if reset:
                _reset(w)
            else:
                w.close()
        if reset:
            self.resets += 1
