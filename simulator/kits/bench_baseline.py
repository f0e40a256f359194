"""The bench's baseline: the bare broker round trip over STOMP, nothing else.

One connection sends every message persistent, asking for a receipt every
:data:`ka_producer.producer.RECEIPT_EVERY` messages and waiting for it, as KA
does; a second connection consumes with ``ack: client-individual`` and acks
each message as it arrives.  Both use stomp.py directly, on its own threads,
so what is measured is the broker and the STOMP client library, not any of
the chain's code.  Each message carries the time it was sent (a monotonic
clock of this process), so the latency is send → consumed.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import stomp
import stomp.exception

from ka_producer import RECEIPT_EVERY
from simulator.kits.bench_procs import LatencySummary, cpu_seconds, summarise
from simulator.lab.broker import parse_broker_url
from simulator.vocabulary.errors import BaselineTimeoutError, BrokerUnreachableError

__all__ = ["SENT_HEADER", "BaselineResult", "Payload", "run_baseline"]

#: Header with the sender's monotonic clock in ns (both ends are this process).
SENT_HEADER = "b2bsim-bench-sent-ns"
#: The consumer's prefetch: the ICC's default (``b2bsim serve icc --prefetch``).
PREFETCH = 200

#: One message to send: its body and its KA headers.
Payload = tuple[str, dict[str, str]]


@dataclass
class BaselineResult:
    """What the bare broker round trip measured."""

    messages: int
    seconds: float  # first send → last message consumed
    latency_ms: LatencySummary
    cpu_seconds: float  # this process (sender and consumer) during the measurement
    broker_cpu_seconds: float | None
    queue: str

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        per_1000 = 1000 / self.messages
        return {
            "messages": self.messages,
            "seconds": round(self.seconds, 3),
            "msgs_per_s": round(self.msgs_per_s, 1),
            "latency_ms": {"end_to_end": self.latency_ms.to_json()},
            "cpu_s_per_1000": {
                "bench (sender + consumer)": round(self.cpu_seconds * per_1000, 3),
                **(
                    {"broker": round(self.broker_cpu_seconds * per_1000, 3)}
                    if self.broker_cpu_seconds is not None
                    else {}
                ),
            },
            "queue": self.queue,
        }


@dataclass
class _Receipts(stomp.ConnectionListener):  # type: ignore[misc]
    """The sender's listener: receipts wake the waiting sender."""

    waiting: dict[str, threading.Event] = field(default_factory=dict)
    error: str | None = None

    def on_receipt(self, frame: Any) -> None:
        event = self.waiting.pop(frame.headers.get("receipt-id", ""), None)
        if event is not None:
            event.set()

    def on_error(self, frame: Any) -> None:
        self.error = f"{frame.headers.get('message', '')} {frame.body or ''}".strip()


class _Consumer(stomp.ConnectionListener):  # type: ignore[misc]
    """The consumer's listener: record the latency, ack, count (on stomp.py's thread)."""

    def __init__(self, conn: stomp.Connection12, expected: int) -> None:
        self.conn, self.expected = conn, expected
        self.latencies_ns: list[int] = []
        self.last_ns = 0
        self.done = threading.Event()
        self.error: str | None = None

    def on_message(self, frame: Any) -> None:
        now = time.monotonic_ns()
        sent = frame.headers.get(SENT_HEADER)
        self.conn.ack(frame.headers["ack"])
        if sent is None:
            return
        self.latencies_ns.append(now - int(sent))
        self.last_ns = now
        if len(self.latencies_ns) >= self.expected:
            self.done.set()

    def on_error(self, frame: Any) -> None:
        self.error = f"{frame.headers.get('message', '')} {frame.body or ''}".strip()


def _connect(host: str, port: int, listener: stomp.ConnectionListener) -> stomp.Connection12:
    conn = stomp.Connection12(
        [(host, port)],
        heartbeats=(10_000, 10_000),
        auto_content_length=False,  # a TextMessage, as KA sends
        reconnect_attempts_max=1,
        heart_beat_receive_scale=2.5,
    )
    conn.set_listener("bench", listener)
    try:
        conn.connect(wait=True, headers={"client-id": f"b2bsim-bench-{uuid.uuid4().hex[:8]}"})
    except (stomp.exception.ConnectFailedException, OSError) as exc:
        raise BrokerUnreachableError(
            f"no STOMP broker answers at {host}:{port} ({type(exc).__name__})",
            hint="start one with `b2bsim broker start` or pass --broker stomp://HOST:PORT",
        ) from None
    return conn


def _send_all(
    conn: stomp.Connection12,
    receipts: _Receipts,
    queue: str,
    *,
    payloads: Sequence[Payload],
    count: int,
    timeout: float,
) -> None:
    """Send ``count`` messages, cycling ``payloads``; wait for a receipt every RECEIPT_EVERY."""
    ids = itertools.count(1)
    for i in range(count):
        body, headers = payloads[i % len(payloads)]
        all_headers = {**headers, "persistent": "true", SENT_HEADER: str(time.monotonic_ns())}
        confirm = (i + 1) % RECEIPT_EVERY == 0 or i == count - 1
        event = None
        if confirm:
            receipt_id = f"r{next(ids)}"
            event = receipts.waiting[receipt_id] = threading.Event()
            all_headers["receipt"] = receipt_id
        conn.send(queue, body, headers=all_headers)
        if event is not None and not event.wait(timeout):
            raise BrokerUnreachableError(
                f"the broker did not confirm a baseline message within {timeout:g} s",
                hint="check the broker (b2bsim broker status)"
                + (f"; it said: {receipts.error}" if receipts.error else ""),
            )


def run_baseline(
    broker_url: str,
    payloads: Sequence[Payload],
    count: int,
    *,
    broker_pid: int | None = None,
    warmup: int = 0,
    timeout: float = 600.0,
) -> BaselineResult:
    """Send ``count`` messages (cycling ``payloads``) through a queue of their own and
    consume them on a second connection; ``warmup`` messages go first, unmeasured."""
    host, port = parse_broker_url(broker_url)
    queue = f"/queue/b2bsim.bench.baseline-{uuid.uuid4().hex[:12]}"
    receipts = _Receipts()
    sender = _connect(host, port, receipts)
    receiver: stomp.Connection12 | None = None
    try:
        if warmup:
            receiver = _connect(host, port, stomp.ConnectionListener())
            consumer = _Consumer(receiver, warmup)
            receiver.set_listener("bench", consumer)
            receiver.subscribe(
                queue,
                "w",
                ack="client-individual",
                headers={"activemq.prefetchSize": str(PREFETCH)},
            )
            _send_all(sender, receipts, queue, payloads=payloads, count=warmup, timeout=timeout)
            if not consumer.done.wait(timeout):
                raise BaselineTimeoutError(f"the warm-up did not come back within {timeout:g} s")
            receiver.unsubscribe("w")
            receiver.disconnect()
        receiver = _connect(host, port, stomp.ConnectionListener())
        consumer = _Consumer(receiver, count)
        receiver.set_listener("bench", consumer)
        receiver.subscribe(
            queue, "m", ack="client-individual", headers={"activemq.prefetchSize": str(PREFETCH)}
        )
        cpu0 = time.process_time()
        broker0 = cpu_seconds(broker_pid) if broker_pid else None
        first = time.monotonic_ns()
        _send_all(sender, receipts, queue, payloads=payloads, count=count, timeout=timeout)
        if not consumer.done.wait(timeout):
            raise BaselineTimeoutError(
                f"the broker handed back {len(consumer.latencies_ns)} of {count} baseline "
                f"messages within {timeout:g} s",
                hint="check the broker's log (STATE/broker/broker.log)",
            )
        seconds = (consumer.last_ns - first) / 1e9
        cpu = time.process_time() - cpu0
        broker1 = cpu_seconds(broker_pid) if broker_pid else None
    finally:
        for conn in (sender, receiver):
            if conn is not None and conn.is_connected():
                with contextlib.suppress(stomp.exception.StompException, OSError):
                    conn.disconnect()
    return BaselineResult(
        messages=count,
        seconds=seconds,
        latency_ms=summarise(ns / 1e6 for ns in consumer.latencies_ns),
        cpu_seconds=cpu,
        broker_cpu_seconds=(broker1 - broker0)
        if broker0 is not None and broker1 is not None
        else None,
        queue=queue,
    )
