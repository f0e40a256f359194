"""KA's side of the queue: publish business documents as persistent messages.

Each document becomes one STOMP message on the KA queue whose headers carry
the message metadata (:class:`simulator.vocabulary.messages.MessageMeta`).  The producer
numbers each supplier's messages from 1 and stamps them with its clock, so a
supplier can restore the producer's order.

Nothing is sent before it is on disk (:mod:`ka_producer.outbox`): a message
published waits in memory until a background writer has stored its batch in
the outbox (with the suppliers' sequence numbers) and recorded it in
``produced.jsonl`` (fsync); then the batch is sent, the last SEND asks for a
receipt, and once the broker confirmed it the batch is marked sent.  A broker
lost on the way is looked for again (:mod:`simulator.vocabulary.broker_source`)
and the unconfirmed messages re-sent: at worst a duplicate, which the
supplier recognises by its envelope id.

Test-only hook: with ``$B2BSIM_KA_CRASH_AFTER_RECORD=N`` KA kills itself
(SIGKILL) once it has recorded N messages, before it sends them: a crash
between record and SEND, on purpose (docs/files.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from ka_producer.outbox import RECORDED, KaOutbox, Outgoing
from simulator.vocabulary.broker_source import GIVE_UP_AFTER, BrokerSource, reconnect
from simulator.vocabulary.broker_url import parse_broker_url
from simulator.vocabulary.errors import BrokerUnreachableError
from simulator.vocabulary.messages import KA_QUEUE, MessageMeta, MessageType, now_ms
from simulator.vocabulary.stomp_io import StompConnection

log = logging.getLogger(__name__)

#: At most this many messages are recorded, then sent, as one batch (one receipt).
RECEIPT_EVERY = 200
#: ``publish`` waits while this many messages wait to be recorded.
MAX_WAITING = 2000
#: Test-only: KA SIGKILLs itself after recording this many messages, before sending them.
CRASH_AFTER_RECORD_ENV = "B2BSIM_KA_CRASH_AFTER_RECORD"


class Producer:
    """Publishes documents for KA; use as ``async with Producer(url) as p``.

    ``produced_log`` is the record (``produced.jsonl``), ``outbox`` the SQLite
    outbox that survives a restart (None: kept in memory).  ``broker_file``
    (a broker.json) makes KA follow the broker it names when it reconnects;
    ``give_up`` is how long KA looks for a lost broker before it fails.
    """

    def __init__(
        self,
        broker_url: str,
        *,
        queue: str = KA_QUEUE,
        produced_log: Path | None = None,
        outbox: Path | None = None,
        clock: Callable[[], int] = now_ms,
        broker_file: Path | None = None,
        give_up: float = GIVE_UP_AFTER,
    ) -> None:
        parse_broker_url(broker_url)  # a clear error now, not at connect
        self._broker = BrokerSource(broker_url, follow=broker_file)
        self._give_up = give_up
        self.queue = queue
        self._clock = clock
        self._store = KaOutbox(outbox, produced_log)
        self._sequences: dict[str, int] = {}
        self._known: dict[str, MessageMeta] = {}
        self._conn = StompConnection.from_url(self._broker.current())
        self._waiting: list[Outgoing] = []  # published, not yet recorded
        self._unconfirmed: list[Outgoing] = []  # recorded and sent, not yet confirmed
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None
        crash = os.environ.get(CRASH_AFTER_RECORD_ENV, "")
        self._crash_after = int(crash) if crash.isdigit() else 0
        self._recorded = 0
        self.published = 0
        self.resent = 0
        self.skipped = 0  # publications of a message id already recorded

    async def __aenter__(self) -> Producer:
        restored = await self._store.open()
        try:
            await self._connect_first()
        except BaseException:
            await self._store.close()
            raise
        self._sequences, self._known = restored.sequences, restored.known
        if restored.unsent:
            log.warning("re-sending %d message(s) recorded but not confirmed", len(restored.unsent))
            self.resent += len(restored.unsent)
            self._enqueue(restored.unsent)
        self._writer = asyncio.create_task(self._write_loop(), name="ka-writer")
        return self

    async def _connect_first(self) -> None:
        """Connect; a broker KA follows may be (re)starting: it is waited for, up to give_up."""
        if self._broker.follow is None:
            await self._conn.connect()
            return

        async def attempt(url: str) -> StompConnection:
            conn = StompConnection.from_url(url)
            await conn.connect()
            return conn

        conn = await reconnect(
            self._broker, attempt, who="KA", give_up=self._give_up, first_delay=0.0
        )
        assert conn is not None  # no stop event: reconnect returns or raises
        self._conn = conn

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
            if self._writer is not None:
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._writer
            await self._conn.disconnect()
            await self._store.close()

    async def flush(self) -> None:
        """Wait until the broker has stored everything published so far."""
        self._raise_if_failed()
        await self._idle.wait()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise self._failed

    def continue_sequences(self, last: Mapping[str, int]) -> None:
        """Number these suppliers' next messages after ``last`` (organisation number →
        last sequence): for a supplier whose endpoint remembers an earlier stream."""
        for org_number, sequence in last.items():
            self._sequences[org_number] = max(self._sequences.get(org_number, 0), sequence)

    def has_recorded(self, message_id: str) -> bool:
        """Whether KA has recorded ``message_id`` (in this outbox, before a restart too)."""
        return message_id in self._known

    async def send_raw(self, headers: dict[str, str], body: str) -> None:
        """Send a message exactly as given, unrecorded (fault injection: poison messages)."""
        await self._put(Outgoing(headers.get("b2b-message-id", ""), dict(headers), body))

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
        """Publish one document to the supplier ``org_number``; returns its metadata.

        A ``message_id`` KA has already recorded (in this outbox, before a
        restart too) is not published again: its first metadata is returned.
        """
        if message_id is not None and message_id in self._known:
            self.skipped += 1
            return self._known[message_id]
        sequence = self._sequences.get(org_number, 0) + 1
        self._sequences[org_number] = sequence
        meta = MessageMeta.new(
            message_type,
            org_number,
            sequence,
            correlation_id=correlation_id,
            produced_at_ms=self._clock(),
            message_id=message_id,
        )
        self._known[meta.message_id] = meta
        record = {
            "state": RECORDED,
            "message_id": meta.message_id,
            "message_type": meta.message_type.value,
            "org_number": meta.org_number,
            "produced_at_ms": meta.produced_at_ms,
            "sequence": meta.sequence,
            "correlation_id": meta.correlation_id,
            "document_id": document_id,
        }
        self.published += 1
        await self._put(Outgoing(meta.message_id, meta.headers(), document.decode("utf-8"), record))
        log.debug(
            "published message_id=%s type=%s org=%s seq=%d",
            meta.message_id,
            meta.message_type,
            org_number,
            meta.sequence,
        )
        return meta

    # --- the writer: record, send, confirm ------------------------------------------
    async def _put(self, item: Outgoing) -> None:
        self._raise_if_failed()
        while len(self._waiting) >= MAX_WAITING:
            self._room.clear()
            await self._room.wait()
            self._raise_if_failed()
        self._enqueue([item])

    def _enqueue(self, items: list[Outgoing]) -> None:
        self._waiting.extend(items)
        self._idle.clear()
        self._wake.set()

    async def _write_loop(self) -> None:
        try:
            while True:
                if not self._waiting:
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch = self._waiting[:RECEIPT_EVERY]
                del self._waiting[:RECEIPT_EVERY]
                self._room.set()
                await self._store.record([o for o in batch if o.record and not o.stored])
                self._crash_if_asked(batch)
                self._unconfirmed.extend(batch)
                await self._send_unconfirmed(batch)
        except Exception as exc:  # the broker is gone for good, or the disk failed
            log.error("KA stops publishing: %s", exc)
            self._failed = exc
            self._room.set()
            self._idle.set()

    def _crash_if_asked(self, batch: list[Outgoing]) -> None:
        """The test-only crash between record and SEND ($B2BSIM_KA_CRASH_AFTER_RECORD)."""
        self._recorded += sum(1 for o in batch if o.record and not o.stored)
        if self._crash_after and self._recorded >= self._crash_after:
            log.warning("%s: killing KA after recording, before sending", CRASH_AFTER_RECORD_ENV)
            os.kill(os.getpid(), signal.SIGKILL)

    async def _send_unconfirmed(self, batch: list[Outgoing]) -> None:
        """Send ``batch`` (a receipt on its last SEND), then mark every unconfirmed one sent."""
        try:
            await _send_all(self._conn, self.queue, batch)
        except BrokerUnreachableError:
            await self._recover()
        confirmed = [o.message_id for o in self._unconfirmed if o.record is not None]
        self._unconfirmed.clear()
        await self._store.mark_sent(confirmed)

    async def _recover(self) -> None:
        """Find the broker again, resend every unconfirmed message, wait for the receipt."""
        await self._conn.disconnect()

        async def attempt(url: str) -> StompConnection:
            conn = StompConnection.from_url(url)
            try:
                await conn.connect()
                await _send_all(conn, self.queue, self._unconfirmed)
            except BrokerUnreachableError:
                await conn.disconnect()
                raise
            return conn

        conn = await reconnect(
            self._broker, attempt, who="KA", give_up=self._give_up, first_delay=0.0
        )
        assert conn is not None  # no stop event: reconnect returns or raises
        self._conn = conn
        self.resent += len(self._unconfirmed)
        log.warning("reconnected to %s; resent %d message(s)", conn.where, len(self._unconfirmed))


async def _send_all(conn: StompConnection, queue: str, items: list[Outgoing]) -> None:
    """SEND ``items`` in order, the last with a receipt; return once the broker confirmed."""
    if not items:
        return
    last = len(items) - 1
    await asyncio.gather(
        *(conn.send(queue, o.body, o.headers, receipt=i == last) for i, o in enumerate(items))
    )
