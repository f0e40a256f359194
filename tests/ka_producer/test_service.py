"""Tests of ka_producer.service: what a restarted KA publishes again, and how fast."""

from __future__ import annotations

from typing import Any, cast

from ka_producer import Pacer, Producer, publish_round
from ka_producer.documents import DocumentFactory, seller_profile
from simulator.vocabulary.identifiers import org_number_from_index


class _Recording:
    """Stands in for a Producer that recorded some message ids before a restart."""

    def __init__(self, recorded: set[str]) -> None:
        self.recorded = recorded
        self.published: list[str] = []

    def has_recorded(self, message_id: str) -> bool:
        return message_id in self.recorded

    async def publish(self, *args: Any, message_id: str, **kwargs: Any) -> None:
        self.published.append(message_id)


class _CountingPacer(Pacer):
    def __init__(self) -> None:
        super().__init__(0)
        self.waits = 0

    async def wait(self) -> None:
        self.waits += 1


async def test_documents_recorded_before_are_skipped_without_pacing() -> None:
    """The same seed after a restart: the messages recorded before are not published
    again, and only the others wait for the pacer."""
    sellers = [seller_profile(org_number_from_index(1), "A AB")]
    first = _Recording(set())
    await publish_round(cast(Producer, first), DocumentFactory(7), sellers)
    assert len(first.published) == 3

    again = _Recording(set(first.published[:2]))
    pacer = _CountingPacer()
    published = await publish_round(cast(Producer, again), DocumentFactory(7), sellers, pacer=pacer)
    assert again.published == first.published[2:]
    assert published == 1
    assert pacer.waits == 1
