"""What KA publishes in a run: document chains and batches, in a stable order.

The order of publication is the producer's order: round by round, supplier by
supplier, and within a chain order → invoice → credit (sharing one
correlation id).  The same seed gives the same documents in the same order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from ka_producer.documents import DocumentFactory, GeneratedDocument, Seller, seller_profile
from ka_producer.producer import Producer
from simulator.vocabulary.broker_source import GIVE_UP_AFTER
from simulator.vocabulary.messages import KA_QUEUE

#: Namespace of the message and correlation ids KA derives from document ids.
ID_NAMESPACE = uuid.UUID("0b7f6f55-4a8e-4d0e-a8f5-3c1d2f1b9e42")


class Pacer:
    """Spaces publications at ``rate`` per second (0: no pacing)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()

    async def wait(self) -> None:
        if not self._interval:
            return
        self._next += self._interval
        delay = self._next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


def documents_for(
    factory: DocumentFactory, seller: Seller, *, doc_type: str | None
) -> list[GeneratedDocument]:
    """A full chain (``doc_type`` None), or one document of ``doc_type`` with its
    unpublished predecessors generated only to refer to."""
    if doc_type is None:
        return list(factory.chain(seller))
    order = factory.order(seller)
    if doc_type == "order":
        return [order]
    invoice = factory.invoice(seller, order)
    return [invoice] if doc_type == "invoice" else [factory.credit(seller, invoice)]


async def publish_round(
    producer: Producer,
    factory: DocumentFactory,
    sellers: Sequence[Seller],
    *,
    doc_type: str | None = None,
    pacer: Pacer | None = None,
    id_salt: str = "",
) -> int:
    """Publish one chain (or one ``doc_type`` document) per seller; returns the count.

    ``id_salt`` goes into every message and correlation id: a run against an
    endpoint that remembers earlier runs gives its messages ids of their own.
    A document whose message KA has already recorded (before a restart, with the
    same seed) is skipped at once, without waiting for the pacer.
    """
    published = 0
    for seller in sellers:
        docs = documents_for(factory, seller, doc_type=doc_type)
        # Ids follow from the documents, so the same seed gives the same ids.
        correlation_id = str(uuid.uuid5(ID_NAMESPACE, f"chain:{id_salt}{docs[0].document_id}"))
        for doc in docs:
            message_id = str(uuid.uuid5(ID_NAMESPACE, f"message:{id_salt}{doc.document_id}"))
            if producer.has_recorded(message_id):
                continue  # published before KA restarted: not again, and not paced
            if pacer is not None:
                await pacer.wait()
            await producer.publish(
                doc.message_type,
                seller.org_number,
                doc.xml,
                document_id=doc.document_id,
                correlation_id=correlation_id,
                message_id=message_id,
            )
            published += 1
    return published


async def produce_chains(
    broker_url: str,
    suppliers: Sequence[tuple[str, str]],
    *,
    queue: str = KA_QUEUE,
    seed: int = 1,
    chains: int = 1,
    rate: float = 0.0,
    produced_log: Path | None = None,
    outbox: Path | None = None,
    broker_file: Path | None = None,
    give_up: float = GIVE_UP_AFTER,
    stop: asyncio.Event | None = None,
    on_connected: Callable[[], None] | None = None,
) -> int:
    """Publish ``chains`` chains per supplier (0: until ``stop``); returns the count.

    ``on_connected`` is called once the broker has accepted the connection,
    before the first publication.  ``outbox``, ``broker_file`` and
    ``give_up`` are the :class:`Producer`'s.
    """
    factory = DocumentFactory(seed)
    sellers = [seller_profile(org, name) for org, name in suppliers]
    pacer = Pacer(rate)
    total = 0
    async with Producer(
        broker_url,
        queue=queue,
        produced_log=produced_log,
        outbox=outbox,
        broker_file=broker_file,
        give_up=give_up,
    ) as producer:
        if on_connected is not None:
            on_connected()
        done = 0
        while (chains == 0 or done < chains) and not (stop and stop.is_set()):
            total += await publish_round(producer, factory, sellers, pacer=pacer)
            done += 1
    return total
