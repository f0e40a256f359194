"""The dead-letter queue: list, show and replay what the ICC could not deliver.

The ICC dead-letters a message by sending its body, KA's ``b2b-*`` headers and
three of its own (:data:`DLQ_CODE`, :data:`DLQ_REASON`, :data:`DLQ_AT`) to
``/queue/DLQ.<name>``; ActiveMQ itself puts messages there too when a consumer
NACKs one past the redelivery limit.  This module reads that queue.

How, and why (checked against ActiveMQ 5.17 over STOMP, see docs/dlq.md):

* **Listing never consumes.**  It uses ActiveMQ's queue browser: a SUBSCRIBE
  with ``browser: true``; the broker sends copies of the messages and then one
  MESSAGE with ``browser: end`` (a lone one when the queue is empty).
* **A browse shows at most 400 messages** (the broker's ``maxBrowsePageSize``),
  but a browse with a selector searches the whole queue.  So when a page comes
  back full, the listing splits the ``JMSTimestamp`` range in halves and
  browses each, until every window fits in a page.
* **Selectors cannot name ``b2b-*`` headers**: a selector identifier cannot
  contain ``-`` (``b2b-message-id = 'x'`` parses as a subtraction and matches
  nothing; quoting it is a syntax error).  So a replay finds the message by
  KA's message id in a browse first, then consumes it with a selector on the
  broker's own ``JMSMessageID``.
* **A replay duplicates rather than loses**: the copy is stored on KA's queue
  (SEND with a receipt) before the dead letter is acked off the DLQ.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simulator.lab.broker import parse_broker_url
from simulator.vocabulary.codes.dead_letters import BROKER_REDELIVERY_LIMIT
from simulator.vocabulary.errors import (
    BrokerUnreachableError,
    ConfigError,
    DeadLetterNotFoundError,
)
from simulator.vocabulary.messages import (
    DLQ_AT,
    DLQ_CODE,
    DLQ_REASON,
    KA_QUEUE,
    REPLAYED_AT,
    Header,
    dead_letter_queue,
    now_ms,
)
from simulator.vocabulary.stomp_io import Frame, StompConnection

__all__ = [
    "BROKER_DLQ_CODE",
    "BROWSE_PAGE_SIZE",
    "DLQ_AT",
    "DLQ_CODE",
    "DLQ_REASON",
    "REPLAYED_AT",
    "DeadLetter",
    "DeadLetterQueue",
    "dead_letter_queue",
]

#: The code shown for a message ActiveMQ dead-lettered itself (no b2b-dlq-code).
BROKER_DLQ_CODE = BROKER_REDELIVERY_LIMIT
#: ActiveMQ's default ``maxBrowsePageSize``: a browse shows at most this many.
BROWSE_PAGE_SIZE = 400

_DLQ_PREFIX = "b2b-dlq-"
_CARRIED = ("correlation-id", Header.GROUP.value)  # non-b2b headers a replay keeps
_IDS_PER_SELECTOR = 100  # ActiveMQ refuses STOMP header lines over 10 KB
_MAX_TIMESTAMP_MS = 1 << 43  # the year 2248: above every JMSTimestamp


def _check_queue(queue: str) -> None:
    if not queue.startswith("/queue/") or len(queue) == len("/queue/"):
        raise ConfigError(
            f"{queue!r} is not a queue name",
            hint=f"give the original queue as /queue/NAME (default {KA_QUEUE})",
        )
    if queue.startswith("/queue/DLQ."):
        raise ConfigError(
            f"{queue!r} is itself a dead-letter queue",
            hint=f"give the original queue, e.g. {queue.replace('/queue/DLQ.', '/queue/', 1)}",
        )


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message in a dead-letter queue, as read from the broker."""

    message_id: str  # KA's b2b-message-id ("" if the message had none)
    message_type: str
    org_number: str
    sequence: int | None
    code: str
    reason: str
    dead_lettered_at_ms: int | None
    body_bytes: int
    headers: Mapping[str, str] = field(repr=False)
    body: str = field(repr=False)
    broker_id: str = ""  # ActiveMQ's message-id (JMSMessageID)
    broker_timestamp_ms: int = 0  # ActiveMQ's timestamp (JMSTimestamp)

    @classmethod
    def from_frame(cls, frame: Frame) -> DeadLetter:
        """Read a dead letter from a MESSAGE frame of the DLQ; never fails."""
        h = frame.headers
        code = h.get(DLQ_CODE) or BROKER_DLQ_CODE
        reason = (
            h.get(DLQ_REASON)
            or h.get("dlqDeliveryFailureCause")
            or ("ActiveMQ dead-lettered it: a consumer refused it past the redelivery limit")
        )
        return cls(
            message_id=h.get(Header.MESSAGE_ID, ""),
            message_type=h.get(Header.MESSAGE_TYPE, ""),
            org_number=h.get(Header.ORG_NUMBER, ""),
            sequence=_int_or_none(h.get(Header.SEQUENCE)),
            code=code,
            reason=reason,
            dead_lettered_at_ms=_int_or_none(h.get(DLQ_AT)),
            body_bytes=len(frame.body.encode("utf-8")),
            headers=dict(h),
            body=frame.body,
            broker_id=h.get("message-id", ""),
            broker_timestamp_ms=_int_or_none(h.get("timestamp")) or 0,
        )

    @property
    def key(self) -> str:
        """The id to name this dead letter by: KA's message id, else the broker's."""
        return self.message_id or self.broker_id

    def matches(self, ident: str) -> bool:
        """Whether ``ident`` is this letter's KA message id or broker message id."""
        return ident in (self.message_id, self.broker_id) and bool(ident)

    def summary(self) -> dict[str, Any]:
        """The letter without headers and body, ready for JSON."""
        return {
            "message_id": self.message_id,
            "broker_id": self.broker_id,
            "message_type": self.message_type,
            "org_number": self.org_number,
            "sequence": self.sequence,
            "code": self.code,
            "reason": self.reason,
            "dead_lettered_at_ms": self.dead_lettered_at_ms,
            "body_bytes": self.body_bytes,
        }

    def replay_headers(self, replayed_at_ms: int) -> dict[str, str]:
        """KA's original headers for the replayed copy: no b2b-dlq-*, plus the replay time."""
        headers = {
            k: v
            for k, v in self.headers.items()
            if (k.startswith("b2b-") and not k.startswith(_DLQ_PREFIX)) or k in _CARRIED
        }
        # ActiveMQ does not echo JMSXGroupID (AMQ-7395): restore the group from the org number.
        if self.org_number and Header.GROUP not in headers:
            headers[Header.GROUP] = self.org_number
        headers[REPLAYED_AT] = str(replayed_at_ms)
        return headers


class DeadLetterQueue:
    """The dead letters of one queue on one broker; use as ``async with``."""

    def __init__(self, broker_url: str, queue: str = KA_QUEUE, *, timeout: float = 10.0) -> None:
        _check_queue(queue)
        host, port = parse_broker_url(broker_url)
        self.queue = queue
        self.dlq = dead_letter_queue(queue)
        self.timeout = timeout
        self._conn = StompConnection(host, port)

    async def __aenter__(self) -> DeadLetterQueue:
        await self._conn.connect(self.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._conn.disconnect()

    # --- reading ------------------------------------------------------------
    async def letters(self) -> list[DeadLetter]:
        """Every dead letter, in queue order (oldest first), without consuming any."""
        page = await self._browse(None)
        if len(page) >= BROWSE_PAGE_SIZE:  # maybe more than one browse shows
            page = await self._browse_range(0, _MAX_TIMESTAMP_MS, page)
        unique = {letter.broker_id: letter for letter in page}
        return list(unique.values())

    async def get(self, ident: str) -> list[DeadLetter]:
        """The dead letters named ``ident`` (usually one), or DeadLetterNotFoundError."""
        found = [d for d in await self.letters() if d.matches(ident)]
        if not found:
            raise self._not_found(ident)
        return found

    async def _browse_range(
        self, lo: int, hi: int, page: list[DeadLetter] | None = None
    ) -> list[DeadLetter]:
        """Letters with ``lo <= JMSTimestamp < hi``, splitting the range while a page is full.

        The split point is the newest timestamp of the full page: in a queue
        filled in time order that leaves a first part that fits in one page, so
        listing costs about two browses per page; out of order it still
        terminates, because each part is strictly smaller than the range.
        """
        if page is None:
            page = await self._browse(f"JMSTimestamp >= {lo} AND JMSTimestamp < {hi}")
        if len(page) < BROWSE_PAGE_SIZE or hi - lo <= 1:
            return page  # a full single millisecond cannot be split: its first page is all
        mid = max(d.broker_timestamp_ms for d in page)
        if not lo < mid < hi:
            mid = lo + 1 if mid <= lo else (lo + hi) // 2
        return await self._browse_range(lo, mid) + await self._browse_range(mid, hi)

    async def _browse(self, selector: str | None) -> list[DeadLetter]:
        sub_id = await self._conn.browse(self.dlq, selector)
        letters: list[DeadLetter] = []
        try:
            while True:
                frame = await self._next_frame(sub_id, self.timeout)
                if frame.headers.get("browser") == "end":
                    return letters
                letters.append(DeadLetter.from_frame(frame))
        except TimeoutError:
            raise BrokerUnreachableError(
                f"the broker did not finish browsing {self.dlq} within {self.timeout:g} s",
                hint="check the broker (b2bsim broker status) and try again",
            ) from None
        finally:
            await self._conn.unsubscribe(sub_id)

    # --- replaying ----------------------------------------------------------
    async def replay(self, ident: str) -> list[DeadLetter]:
        """Put the dead letter(s) named ``ident`` back on the queue; what was moved."""
        moved = await self._move(await self.get(ident))
        if not moved:  # taken by someone else between the browse and the consume
            raise self._not_found(ident)
        return moved

    async def replay_all(self) -> list[DeadLetter]:
        """Put every dead letter present now back on the queue; what was moved."""
        return await self._move(await self.letters())

    async def _move(self, letters: Sequence[DeadLetter]) -> list[DeadLetter]:
        moved: list[DeadLetter] = []
        for chunk in _chunks(letters, _IDS_PER_SELECTOR):
            moved += await self._move_chunk(chunk)
        return moved

    async def _move_chunk(self, chunk: Sequence[DeadLetter]) -> list[DeadLetter]:
        """Consume these letters by JMSMessageID; store every copy, then ack the letters.

        Only the last SEND carries a receipt: the broker handles one
        connection's frames in order, so its receipt confirms the copies before
        it too.  A crash before the acks leaves both copies: a duplicate, which
        the supplier recognises by envelope id, never a loss.
        """
        wanted = {d.broker_id for d in chunk}
        ids = ", ".join(_literal(i) for i in sorted(wanted))
        sub_id = await self._conn.subscribe(
            self.dlq, prefetch=len(wanted), selector=f"JMSMessageID IN ({ids})"
        )
        frames: list[Frame] = []
        try:
            while len(frames) < len(wanted):
                try:
                    frames.append(await self._next_frame(sub_id, self.timeout))
                except TimeoutError:
                    break  # the rest were consumed by someone else meanwhile
            letters = [DeadLetter.from_frame(f) for f in frames]
            replayed_at = now_ms()
            for i, (frame, letter) in enumerate(zip(frames, letters, strict=True)):
                await self._conn.send(
                    self.queue,
                    frame.body,
                    letter.replay_headers(replayed_at),
                    receipt=i == len(frames) - 1,
                    timeout=self.timeout,
                )
            for frame in frames:
                await self._conn.ack(frame)
            await self._conn.flush(self.timeout)  # every ack handled before we report
        finally:
            await self._conn.unsubscribe(sub_id)
        return letters

    # --- plumbing -----------------------------------------------------------
    async def _next_frame(self, sub_id: str, timeout: float) -> Frame:
        """The next frame of subscription ``sub_id``; others (stale) are dropped."""
        frames, lost = self._conn.frames, self._conn.disconnected
        async with asyncio.timeout(timeout):
            while True:
                getter = asyncio.ensure_future(frames.get())
                waiter = asyncio.ensure_future(lost.wait())
                try:
                    await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    if not getter.done():
                        getter.cancel()
                if not getter.done() or getter.cancelled():
                    raise BrokerUnreachableError(
                        "the broker closed the connection while reading the dead-letter queue",
                        hint="check the broker (b2bsim broker status) and try again",
                    )
                frame = getter.result()
                if frame.headers.get("subscription") == sub_id:
                    return frame

    def _not_found(self, ident: str) -> DeadLetterNotFoundError:
        return DeadLetterNotFoundError(
            f"no dead letter with id {ident!r} in {self.dlq}",
            hint="see the ids with `b2bsim dlq list` (a replayed message is no longer there)",
        )


def _literal(text: str) -> str:
    """``text`` as a selector string literal."""
    return "'" + text.replace("'", "''") + "'"


def _chunks(items: Sequence[DeadLetter], size: int) -> Iterable[Sequence[DeadLetter]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
