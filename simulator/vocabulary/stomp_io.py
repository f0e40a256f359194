"""An asyncio face on stomp.py, shared by KA, the ICC and the simulator.

stomp.py delivers frames on its own receiver thread.  This module hands each
frame to the event loop with ``call_soon_threadsafe`` and runs every socket
write (SEND, ACK, SUBSCRIBE) on the connection's one writer thread, so the
event loop never blocks on the broker.  Frames are written in the order they
were asked for, and the writes asked for while the thread was busy go
together: a burst of ACKs from many lanes costs one trip to the thread.

Decisions made here on purpose (see docs/messages.md):

* every SEND is ``persistent: true``;
* no ``content-length`` header: ActiveMQ then makes a TextMessage, which is
  what an XML document is (XML cannot contain the NUL that ends a frame);
* consumers use ``ack: client-individual`` and ack only when told to;
* a SEND may ask for a receipt: ActiveMQ answers once the message is stored,
  and since it handles one connection's frames in order, a receipt also
  confirms every SEND before it on that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import stomp
import stomp.exception

from simulator.vocabulary.broker_url import broker_addresses
from simulator.vocabulary.errors import BrokerUnreachableError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Frame:
    """One MESSAGE frame as the application sees it."""

    headers: Mapping[str, str]
    body: str

    @property
    def ack_id(self) -> str:
        return self.headers["ack"]

    @property
    def redelivered(self) -> bool:
        return self.headers.get("redelivered") == "true"


@dataclass
class _Listener(stomp.ConnectionListener):  # type: ignore[misc]
    loop: asyncio.AbstractEventLoop
    inbox: asyncio.Queue[Frame]
    receipts: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None

    def _to_loop(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the event loop, unless the loop is already gone."""
        if not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed between check and call
                self.loop.call_soon_threadsafe(fn, *args)

    def on_message(self, frame: Any) -> None:
        msg = Frame(headers=dict(frame.headers), body=frame.body or "")
        self._to_loop(self.inbox.put_nowait, msg)

    def on_receipt(self, frame: Any) -> None:
        self._to_loop(self._resolve, frame.headers.get("receipt-id", ""))

    def _resolve(self, receipt_id: str) -> None:
        fut = self.receipts.pop(receipt_id, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def on_error(self, frame: Any) -> None:
        self.error = f"{frame.headers.get('message', '')} {frame.body or ''}".strip()
        log.warning("broker ERROR frame: %s", self.error)

    def on_disconnected(self) -> None:
        self._to_loop(self._lost)

    def _lost(self) -> None:
        self.disconnected.set()
        for fut in self.receipts.values():
            if not fut.done():
                fut.set_exception(
                    BrokerUnreachableError(
                        "the broker connection closed before it confirmed a message",
                        hint="check the broker (b2bsim broker status); the message was not acked",
                    )
                )
        self.receipts.clear()


class StompConnection:
    """One STOMP 1.2 connection used from asyncio.

    ``failover`` names more brokers (``(host, port)``) to try, in order, when
    ``host:port`` does not answer; :meth:`from_url` takes them from a
    ``failover:(…)`` URL.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        heartbeats: tuple[int, int] = (10_000, 10_000),
        failover: Sequence[tuple[str, int]] = (),
    ) -> None:
        self.host, self.port = host, port
        self.addresses = [(host, port), *failover]
        self._conn = stomp.Connection12(
            self.addresses,
            heartbeats=heartbeats,
            auto_content_length=False,
            reconnect_attempts_max=1,
            heart_beat_receive_scale=2.5,  # ActiveMQ may be up to 2x late
        )
        self._listener: _Listener | None = None
        self._receipt_ids = itertools.count(1)
        self._sub_ids = itertools.count(1)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stomp-write")
        self._pending: list[tuple[Callable[[], object], asyncio.Future[None]]] = []
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None

    @classmethod
    def from_url(
        cls, url: str, *, heartbeats: tuple[int, int] = (10_000, 10_000)
    ) -> StompConnection:
        """A connection to ``stomp://host:port``, or to the first broker of a failover
        URL that answers (``failover:(stomp://a:1,stomp://b:2)``)."""
        (host, port), *more = broker_addresses(url)
        return cls(host, port, heartbeats=heartbeats, failover=more)

    @property
    def where(self) -> str:
        """The broker address(es), for messages."""
        return ",".join(f"{h}:{p}" for h, p in self.addresses)

    @property
    def frames(self) -> asyncio.Queue[Frame]:
        """MESSAGE frames of every subscription, in arrival order."""
        assert self._listener is not None, "connect() first"
        return self._listener.inbox

    @property
    def disconnected(self) -> asyncio.Event:
        assert self._listener is not None, "connect() first"
        return self._listener.disconnected

    async def connect(self, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        self._listener = _Listener(loop=loop, inbox=asyncio.Queue())
        self._conn.set_listener("b2bsim", self._listener)
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self._conn.connect, wait=True, headers={"client-id": _cid()}),
                timeout,
            )
        except (stomp.exception.StompException, OSError, TimeoutError) as exc:
            raise BrokerUnreachableError(
                f"no STOMP broker answers at {self.where} ({type(exc).__name__})",
                hint="start one with `b2bsim broker start` or pass --broker stomp://HOST:PORT",
            ) from None

    async def send(
        self,
        destination: str,
        body: str,
        headers: Mapping[str, str],
        *,
        receipt: bool = False,
        timeout: float = 30.0,
    ) -> None:
        """Send one persistent message; with ``receipt`` wait until the broker stored it."""
        all_headers = {**headers, "persistent": "true"}
        fut = self._expect_receipt(all_headers) if receipt else None
        await self._write(self._conn.send, destination, body, headers=all_headers)
        if fut is not None:
            await self._confirmed(fut, timeout)

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until the broker has handled every frame sent so far."""
        headers: dict[str, str] = {}
        fut = self._expect_receipt(headers)
        # BEGIN/ABORT of an empty transaction is the cheapest frame that takes a receipt.
        tx = f"flush-{headers['receipt']}"
        await self._write(self._conn.begin, tx)
        await self._write(self._conn.abort, tx, headers=headers)
        await self._confirmed(fut, timeout)

    async def _write(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        """One frame, written on the writer thread; a dead connection is a clear error."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((functools.partial(fn, *args, **kwargs), fut))
        if not self._draining:
            self._draining = True
            self._drain_task = loop.create_task(self._drain_writes(), name="stomp-write")
        try:
            await fut
        except (stomp.exception.StompException, OSError) as exc:
            raise BrokerUnreachableError(
                f"lost the broker at {self.where} ({type(exc).__name__})",
                hint="check the broker (b2bsim broker status); unconfirmed frames must be resent",
            ) from None

    async def _drain_writes(self) -> None:
        """Write what is pending, batch by batch, in order, on the writer thread."""
        loop = asyncio.get_running_loop()
        batch: list[tuple[Callable[[], object], asyncio.Future[None]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                outcomes = await loop.run_in_executor(
                    self._writer, _call_each, [call for call, _ in batch]
                )
                for (_, fut), error in zip(batch, outcomes, strict=True):
                    if fut.done():  # the caller gave up waiting
                        continue
                    if error is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(error)
        except BaseException as exc:  # e.g. the loop is closing: fail what still waits
            for _, fut in batch + self._pending:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else OSError(str(exc)))
            self._pending = []
            raise
        finally:
            self._draining = False

    async def _confirmed(self, fut: asyncio.Future[None], timeout: float) -> None:
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise BrokerUnreachableError(
                f"the broker at {self.where} did not confirm within {timeout:g} s",
                hint="check the broker (b2bsim broker status); unconfirmed frames must be resent",
            ) from None

    def _expect_receipt(self, headers: dict[str, str]) -> asyncio.Future[None]:
        assert self._listener is not None, "connect() first"
        receipt_id = f"r{next(self._receipt_ids)}"
        headers["receipt"] = receipt_id
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._listener.receipts[receipt_id] = fut
        return fut

    async def subscribe(
        self, destination: str, *, prefetch: int = 100, selector: str | None = None
    ) -> str:
        """Subscribe with ``client-individual`` ack; frames arrive on :attr:`frames`."""
        sub_id = f"s{next(self._sub_ids)}"
        headers = {"activemq.prefetchSize": str(prefetch)}
        if selector:
            headers["selector"] = selector
        await self._write(
            self._conn.subscribe, destination, sub_id, ack="client-individual", headers=headers
        )
        return sub_id

    async def browse(self, destination: str, selector: str | None = None) -> str:
        """Browse a queue without consuming: copies arrive on :attr:`frames`, then
        a frame with header ``browser: end`` (ActiveMQ shows at most 400 per browse)."""
        sub_id = f"b{next(self._sub_ids)}"
        headers = {"browser": "true"}
        if selector:
            headers["selector"] = selector
        await self._write(self._conn.subscribe, destination, sub_id, ack="auto", headers=headers)
        return sub_id

    async def unsubscribe(self, sub_id: str) -> None:
        await self._write(self._conn.unsubscribe, id=sub_id)

    async def ack(self, frame: Frame) -> None:
        await self._write(self._conn.ack, frame.ack_id)

    async def disconnect(self) -> None:
        if self._conn.is_connected():
            try:
                await asyncio.wait_for(asyncio.to_thread(self._conn.disconnect), 5.0)
            except (TimeoutError, OSError, stomp.exception.StompException):
                log.debug("disconnect did not finish cleanly", exc_info=True)

    def is_connected(self) -> bool:
        return bool(self._conn.is_connected())


def _call_each(calls: list[Callable[[], object]]) -> list[BaseException | None]:
    """Run each call; what each raised (None if nothing), in order."""
    outcomes: list[BaseException | None] = []
    for call in calls:
        try:
            call()
        except Exception as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)
    return outcomes


def _cid() -> str:
    return f"b2bsim-{uuid.uuid4().hex[:12]}"
