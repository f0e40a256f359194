"""KA's side of the queue: publish business documents as persistent messages.

Each document becomes one STOMP message on the KA queue whose headers carry
the message metadata (:class:`simulator.vocabulary.messages.MessageMeta`).  The producer
numbers each supplier's messages from 1 and stamps them with its clock, so a
supplier can restore the producer's order.  What it published is appended to
an optional JSON-lines log (``produced.jsonl``, see docs/files.md), which the
simulator reconciles against what the supplier loaded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from simulator.vocabulary.broker_url import parse_broker_url
from simulator.vocabulary.errors import BrokerUnreachableError
from simulator.vocabulary.messages import KA_QUEUE, MessageMeta, MessageType, now_ms
from simulator.vocabulary.stomp_io import StompConnection

log = logging.getLogger(__name__)

#: Ask the broker to confirm storage every this many messages (and at the end).
RECEIPT_EVERY = 200
#: How long KA keeps trying to reach a lost broker before it gives up.
RECONNECT_FOR = 120.0


class Producer:
    """Publishes documents for KA; use as ``async with Producer(url) as p``."""

    def __init__(
        self,
        broker_url: str,
        *,
        queue: str = KA_QUEUE,
        produced_log: Path | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        parse_broker_url(broker_url)  # a clear error now, not at connect
        self._broker_url = broker_url
        self.queue = queue
        self._clock = clock
        self._log_path = produced_log
        self._log: IO[str] | None = None
        self._sequences: defaultdict[str, int] = defaultdict(int)
        self._conn = StompConnection.from_url(self._broker_url)
        # Sent but not yet confirmed by a receipt: resent after a reconnect, so a
        # broker that dies loses nothing (at worst a duplicate, which the
        # supplier recognises by its envelope id).
        self._unconfirmed: list[tuple[str, dict[str, str]]] = []
        self.published = 0
        self.resent = 0

    async def __aenter__(self) -> Producer:
        await self._conn.connect()
        if self._log_path is not None:
            self._log = self._log_path.open("a", encoding="utf-8", buffering=1)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.flush()
        finally:
            await self._conn.disconnect()
            if self._log is not None:
                self._log.close()

    async def flush(self) -> None:
        """Wait until the broker has stored everything published so far."""
        try:
            await self._conn.flush()
        except BrokerUnreachableError:
            await self._recover()
        self._unconfirmed.clear()

    async def _send(self, body: str, headers: dict[str, str]) -> None:
        self._unconfirmed.append((body, headers))
        confirm = len(self._unconfirmed) >= RECEIPT_EVERY
        try:
            await self._conn.send(self.queue, body, headers, receipt=confirm)
        except BrokerUnreachableError:
            await self._recover()
            return
        if confirm:
            self._unconfirmed.clear()

    async def _recover(self) -> None:
        """Reconnect, then resend every unconfirmed message and wait for the receipt."""
        deadline = time.monotonic() + RECONNECT_FOR
        delay = 0.5
        while True:
            await self._conn.disconnect()
            self._conn = StompConnection.from_url(self._broker_url)
            try:
                await self._conn.connect()
                for i, (body, headers) in enumerate(self._unconfirmed):
                    last = i == len(self._unconfirmed) - 1
                    await self._conn.send(self.queue, body, headers, receipt=last)
                self.resent += len(self._unconfirmed)
                log.warning("reconnected; resent %d unconfirmed message(s)", len(self._unconfirmed))
                self._unconfirmed.clear()
                return
            except BrokerUnreachableError:
                if time.monotonic() > deadline:
                    raise
                log.warning("broker unreachable; KA retries in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def send_raw(self, headers: dict[str, str], body: str) -> None:
        """Send a message exactly as given (fault injection: poison messages)."""
        await self._send(body, headers)

    async def publish(
        self,
        message_type: MessageType,
        org_number: str,
        document: bytes,
        *,
        document_id: str = "",
        correlation_id: str | None = None,
        message_id: str | None = None,
    ) -> MessageMeta:
        """Publish one document to the supplier ``org_number``; returns its metadata."""
        self._sequences[org_number] += 1
        meta = MessageMeta.new(
            message_type,
            org_number,
            self._sequences[org_number],
            correlation_id=correlation_id,
            produced_at_ms=self._clock(),
            message_id=message_id,
        )
        self.published += 1
        await self._send(document.decode("utf-8"), meta.headers())
        if self._log is not None:
            record = {
                "message_id": meta.message_id,
                "message_type": meta.message_type.value,
                "org_number": meta.org_number,
                "produced_at_ms": meta.produced_at_ms,
                "sequence": meta.sequence,
                "correlation_id": meta.correlation_id,
                "document_id": document_id,
            }
            self._log.write(json.dumps(record) + "\n")
        log.debug(
            "published message_id=%s type=%s org=%s seq=%d",
            meta.message_id,
            meta.message_type,
            org_number,
            meta.sequence,
        )
        return meta
