"""The ICC bridge: from a KA message on the queue to a delivered envelope.

One message's way, top to bottom in this file:

1. :meth:`Bridge._consume` takes a MESSAGE frame (``ack: client-individual``)
   and reads KA's headers; a frame that cannot be read is dead-lettered.
2. It puts the frame in its supplier's *lane*: one queue and one task per
   organisation number, so a supplier's messages go out strictly in the order
   the broker gave them (ActiveMQ message groups keep that order across
   competing bridges) while different suppliers are delivered concurrently.
3. :meth:`Bridge._deliver` looks the supplier up in the registry, wraps the
   document in an envelope, signs it and pushes it; a retryable failure is
   retried in place (which keeps the lane's order), a refusal dead-letters it.
4. Only after a 2xx answer, or once the message is safely in the dead-letter
   queue, is the broker message acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from icc_bridge.delivery import Attempt, Outcome, PushClient
from icc_bridge.faults import DeliveryFaults
from icc_bridge.outbox import Outbox
from simulator.vocabulary.broker_source import GIVE_UP_AFTER, BrokerSource, reconnect
from simulator.vocabulary.broker_url import parse_broker_url
from simulator.vocabulary.codes.dead_letters import DELIVERY_GAVE_UP, DELIVERY_REFUSED
from simulator.vocabulary.envelope import Envelope
from simulator.vocabulary.errors import B2BSimError, ConfigError
from simulator.vocabulary.messages import (
    DLQ_AT,
    DLQ_CODE,
    DLQ_REASON,
    KA_QUEUE,
    MessageMeta,
    dead_letter_queue,
    now_ms,
)
from simulator.vocabulary.registry import DeliveryMode, Registry
from simulator.vocabulary.retry import RetryPolicy
from simulator.vocabulary.signing import EnvelopeSigner
from simulator.vocabulary.stomp_io import Frame, StompConnection
from simulator.vocabulary.tls import FileWatcher

log = logging.getLogger(__name__)

#: Envelope ids are derived from KA's message id, so a redelivered message gets
#: the same envelope id and the supplier can recognise the duplicate.
ENVELOPE_NAMESPACE = uuid.UUID("6f0d3c62-1f6e-4c43-9d1c-6b2b5e0a7a11")


#: Seconds between attempts to write a pull supplier's envelope to a failing outbox.
OUTBOX_RETRY = 1.0


@functools.lru_cache(maxsize=4096)  # asked when consumed and again when delivered
def envelope_id_for(message_id: str) -> str:
    """The envelope id of KA's message ``message_id`` (stable across redeliveries)."""
    return str(uuid.uuid5(ENVELOPE_NAMESPACE, message_id))


@dataclass
class BridgeConfig:
    """Everything the bridge needs, checked before it starts."""

    broker_url: str
    registry: Path
    ca_cert: Path
    icc_cert: Path
    icc_key: Path
    queue: str = KA_QUEUE
    events_log: Path | None = None
    prefetch: int = 200
    request_timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    faults: Path | None = None  # a scenario's delivery faults (icc_bridge/faults.py)
    crl: Path | None = None  # the AF test CA's CRL: a revoked supplier gets nothing
    outbox: Path | None = None  # where pull suppliers' envelopes wait (icc_bridge/outbox.py)
    server_ca: Path | None = None  # trust pushed-to servers issued by these CAs (default ca_cert)
    broker_file: Path | None = None  # follow the broker this broker.json names (on reconnect)
    broker_give_up: float = GIVE_UP_AFTER  # seconds to look for a lost broker, then stop


class Bridge:
    """Consumes KA's queue and pushes signed envelopes to suppliers."""

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.registry = Registry.load(config.registry)
        self._registry_watch = FileWatcher([config.registry])
        self._registry_watch.changed()  # the registry just loaded is the current one
        self._signer = EnvelopeSigner(config.icc_key.read_bytes(), config.icc_cert.read_bytes())
        parse_broker_url(config.broker_url)  # a clear error now, not at connect
        self._broker = BrokerSource(config.broker_url, follow=config.broker_file)
        self._conn: StompConnection | None = None
        self._push = PushClient(
            ca_cert=config.server_ca or config.ca_cert,
            icc_cert=config.icc_cert,
            icc_key=config.icc_key,
            timeout=config.request_timeout,
            crl=config.crl,
        )
        self._dlq = dead_letter_queue(config.queue)
        self._faults = DeliveryFaults(config.faults)
        self._lanes: dict[str, asyncio.Queue[tuple[Frame, MessageMeta]]] = {}
        self._lane_tasks: set[asyncio.Task[None]] = set()
        self._events: IO[str] | None = None
        self._events_out: list[str] = []  # lines written together at the end of a loop turn
        self._outbox = Outbox(config.outbox) if config.outbox is not None else None
        if self._outbox is None and any(
            s.delivery_mode is DeliveryMode.PULL for s in self.registry
        ):
            raise ConfigError(
                f"{config.registry} has pull suppliers, but the ICC has no outbox",
                hint="pass --outbox FILE (and --pull-port P so that they can fetch)",
            )
        self.delivered = 0
        self.dead_lettered = 0

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Deliver until ``stop`` is set, reconnecting if the broker goes away.

        The first connection to a fixed address must succeed (a wrong address
        is an error at once).  A followed broker (``broker_file``, re-read
        before each attempt: simulator/vocabulary/broker_source.py) is waited
        for at the start too, and any lost broker is retried with backoff for
        ``broker_give_up`` seconds; then the bridge stops with
        :class:`BrokerUnreachableError`.  ``ready`` is set once the bridge
        consumes.
        """
        if self.config.events_log is not None:
            self._events = self.config.events_log.open("a", encoding="utf-8")
        await self._push.start()
        try:
            if self._outbox is not None:
                await self._outbox.open()
            conn: StompConnection | None
            if self._broker.follow is None:  # a fixed address: wrong is an error at once
                conn = await self._subscribe(self._broker.current())
            else:  # the state directory's broker may be (re)starting: wait for it
                conn = await reconnect(
                    self._broker,
                    self._subscribe,
                    who="the ICC",
                    give_up=self.config.broker_give_up,
                    stop=stop,
                    first_delay=0.0,
                )
            if ready is not None:
                ready.set()
            while conn is not None:
                await self._session(conn, stop)
                if stop.is_set():
                    return
                log.warning("broker connection lost; reconnecting")
                conn = await reconnect(
                    self._broker,
                    self._subscribe,
                    who="the ICC",
                    give_up=self.config.broker_give_up,
                    stop=stop,
                )
        finally:
            await self._push.close()
            if self._outbox is not None:
                await self._outbox.close()
            if self._events is not None:
                self._flush_events()
                self._events.close()

    async def _subscribe(self, url: str) -> StompConnection:
        conn = StompConnection.from_url(url)
        await conn.connect()
        await conn.subscribe(self.config.queue, prefetch=self.config.prefetch)
        log.info("icc bridge consuming %s at %s", self.config.queue, conn.where)
        return conn

    async def _session(self, conn: StompConnection, stop: asyncio.Event) -> None:
        """Consume one connection until ``stop`` or until the broker goes away."""
        self._conn = conn
        try:
            await self._consume(conn, stop)
        finally:
            # Frames still in lanes are unacked: the broker redelivers them.
            lanes = list(self._lane_tasks)
            for task in lanes:
                task.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
            self._lane_tasks.clear()
            self._lanes.clear()
            await conn.disconnect()

    async def _consume(self, conn: StompConnection, stop: asyncio.Event) -> None:
        frames = conn.frames
        stopping = asyncio.ensure_future(stop.wait())
        lost = asyncio.ensure_future(conn.disconnected.wait())
        try:
            while True:
                getter = asyncio.ensure_future(frames.get())
                done, _ = await asyncio.wait(
                    {getter, stopping, lost}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    return
                frame = getter.result()
                try:
                    meta = MessageMeta.from_headers(frame.headers)
                except B2BSimError as exc:
                    # Poison: no valid supplier to queue it behind. Never blocks others.
                    await self._dead_letter(frame, None, exc.code, str(exc))
                    continue
                self._event(
                    "consumed",
                    meta,
                    envelope_id_for(meta.message_id),
                    redelivered=frame.redelivered,
                )
                self._lane(meta.org_number).put_nowait((frame, meta))
        finally:
            stopping.cancel()
            lost.cancel()

    def _lane(self, org_number: str) -> asyncio.Queue[tuple[Frame, MessageMeta]]:
        lane = self._lanes.get(org_number)
        if lane is None:
            lane = self._lanes[org_number] = asyncio.Queue()
            task = asyncio.create_task(self._drain(lane), name=f"lane-{org_number}")
            self._lane_tasks.add(task)
        return lane

    async def _drain(self, lane: asyncio.Queue[tuple[Frame, MessageMeta]]) -> None:
        while True:
            frame, meta = await lane.get()
            if self._faults.happens("reorder"):  # fault injection: deliver the next one first
                with contextlib.suppress(TimeoutError):
                    later = await asyncio.wait_for(lane.get(), 0.2)
                    self._event("reordered", later[1], envelope_id_for(later[1].message_id))
                    await self._deliver(*later)
            await self._deliver(frame, meta)

    async def _deliver(self, frame: Frame, meta: MessageMeta) -> None:
        try:
            supplier = self._current_registry().lookup(meta.org_number)
        except B2BSimError as exc:
            await self._dead_letter(frame, meta, exc.code, str(exc))
            return
        try:
            envelope = Envelope.create(
                meta,
                frame.body.encode("utf-8"),
                receiver_cert_sha256=supplier.cert_sha256,
                receiver_url=supplier.url,
                envelope_id=envelope_id_for(meta.message_id),
            )
            signed = self._signer.sign(envelope)
        except B2BSimError as exc:  # e.g. the document is not XML
            await self._dead_letter(frame, meta, exc.code, str(exc))
            return
        if supplier.delivery_mode is DeliveryMode.PULL:
            await self._hold_for_pull(frame, meta, envelope.envelope_id, signed)
            return
        policy = supplier.retry or self.config.retry
        attempt: Attempt | None = None
        first = time.monotonic()
        for number in range(1, policy.max_attempts + 1):
            attempt = await self._push.push(supplier, signed)
            if attempt.outcome is not Outcome.RETRY:
                break
            log.info(
                "retry message_id=%s envelope_id=%s attempt=%d status=%s detail=%s",
                meta.message_id,
                envelope.envelope_id,
                number,
                attempt.status,
                attempt.detail,
            )
            self._event(
                "retry",
                meta,
                envelope.envelope_id,
                attempt=number,
                status=attempt.status,
                detail=attempt.detail,
            )
            if policy.gives_up(number, time.monotonic() - first):
                break
            await asyncio.sleep(policy.delay(number, attempt.retry_after))
        assert attempt is not None
        if attempt.outcome is Outcome.DELIVERED and self._faults.happens("duplicate"):
            again = await self._push.push(supplier, signed)  # fault injection
            self._event("duplicated", meta, envelope.envelope_id, **_answer(again))
        if attempt.outcome is Outcome.DELIVERED:
            await self._ack(frame)
            self.delivered += 1
            self._event("delivered", meta, envelope.envelope_id, **_answer(attempt))
            return
        code = DELIVERY_REFUSED if attempt.outcome is Outcome.REFUSED else DELIVERY_GAVE_UP
        await self._dead_letter(
            frame,
            meta,
            code,
            attempt.reason,
            envelope_id=envelope.envelope_id,
            status=attempt.status,
        )

    async def _hold_for_pull(
        self, frame: Frame, meta: MessageMeta, envelope_id: str, signed: bytes
    ) -> None:
        """A pull supplier's envelope: committed to the outbox first, then the broker ack.

        A crash in between means a redelivery, which the outbox ignores (same
        envelope id).  The ``delivered`` event comes when the supplier acks
        (icc_bridge/pull_api.py).
        """
        if self._outbox is None:
            await self._dead_letter(
                frame, meta, DELIVERY_REFUSED, "the supplier pulls, but the ICC has no outbox"
            )
            return
        while True:
            try:
                new = await self._outbox.put(
                    envelope_id=envelope_id,
                    org_number=meta.org_number,
                    message_id=meta.message_id,
                    message_type=meta.message_type.value,
                    sequence=meta.sequence,
                    envelope=signed,
                )
                break
            except (sqlite3.Error, OSError) as exc:  # the lane waits: order holds
                log.error("outbox write failed envelope_id=%s: %s; retrying", envelope_id, exc)
                await asyncio.sleep(OUTBOX_RETRY)
        await self._ack(frame)
        self._event("outboxed", meta, envelope_id, detail="held" if new else "already held")

    async def _dead_letter(
        self,
        frame: Frame,
        meta: MessageMeta | None,
        code: str,
        reason: str,
        *,
        envelope_id: str = "",
        status: int | None = None,
    ) -> None:
        """Move the message to the DLQ with its reason (stored first, then acked)."""
        headers = {
            k: v
            for k, v in frame.headers.items()
            if k.startswith("b2b-") or k in ("correlation-id", "JMSXGroupID")
        }
        headers.update({DLQ_CODE: code, DLQ_REASON: reason[:500], DLQ_AT: str(now_ms())})
        assert self._conn is not None
        await self._conn.send(self._dlq, frame.body, headers, receipt=True)
        await self._ack(frame)
        self.dead_lettered += 1
        log.warning(
            "dead-lettered message_id=%s code=%s reason=%s",
            frame.headers.get("b2b-message-id", "?"),
            code,
            reason,
        )
        self._event(
            "dead_lettered",
            meta,
            envelope_id,
            code=code,
            detail=reason,
            message_id=frame.headers.get("b2b-message-id", ""),
            **({} if status is None else {"status": status}),
        )

    def _current_registry(self) -> Registry:
        """The registry as its file says now: a rotated certificate or a moved URL
        applies from the next delivery (one stat per message when unchanged)."""
        if self._registry_watch.changed():
            try:
                self.registry = Registry.load(self.config.registry)
                log.info("registry reloaded from %s", self.config.registry)
            except B2BSimError as exc:
                log.error("keeping the old registry: %s", exc)
        return self.registry

    async def _ack(self, frame: Frame) -> None:
        assert self._conn is not None
        await self._conn.ack(frame)

    def _event(
        self, kind: str, meta: MessageMeta | None, envelope_id: str, **extra: object
    ) -> None:
        """Append one line to the ICC's events log (docs/files.md)."""
        if self._events is None:
            return
        record: dict[str, object] = {"event": kind, "at_ms": now_ms(), "envelope_id": envelope_id}
        if meta is not None:
            record.update(
                message_id=meta.message_id,
                message_type=meta.message_type.value,
                org_number=meta.org_number,
                sequence=meta.sequence,
            )
        record.update(extra)
        if not self._events_out:  # the lines of one turn of the loop go in one write
            asyncio.get_running_loop().call_soon(self._flush_events)
        self._events_out.append(json.dumps(record) + "\n")

    def _flush_events(self) -> None:
        if self._events is not None and self._events_out:
            self._events.write("".join(self._events_out))
            self._events.flush()
        self._events_out.clear()


def _answer(attempt: Attempt) -> dict[str, object]:
    """What an event records of a supplier's answer (docs/files.md)."""
    return {
        "status": attempt.status,
        "detail": attempt.detail,
        "receipt": attempt.receipt,
        "latency_ms": attempt.latency_ms,
    }
