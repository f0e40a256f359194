"""Where a component finds its broker, and how long it looks for a lost one.

A component is given a broker in one of two ways (docs/messages.md, "When
the broker goes away"):

* a fixed URL (``--broker`` or ``$B2BSIM_BROKER``): a broker elsewhere, whose
  address does not change;
* the state directory's own broker: the component *follows* it, reading the
  documented ``broker/broker.json`` (``{"url": …}``, written by
  ``b2bsim broker start``) again before each attempt to reconnect, so a broker
  that came back on another port is found.

Either way a lost broker is retried with backoff for a bounded time
(:data:`GIVE_UP_AFTER` by default); then :func:`reconnect` raises one
:class:`BrokerUnreachableError` naming every address it tried and what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from simulator.vocabulary.broker_url import broker_addresses
from simulator.vocabulary.errors import B2BSimError, BrokerUnreachableError

__all__ = [
    "GIVE_UP_AFTER",
    "RETRY_INITIAL",
    "RETRY_MAX",
    "BrokerSource",
    "read_broker_file",
    "reconnect",
    "wait_for_broker_file",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a component keeps trying to reach a lost broker before it gives up.
GIVE_UP_AFTER = 120.0
#: Backoff between attempts, in seconds: doubles from RETRY_INITIAL up to RETRY_MAX.
RETRY_INITIAL = 0.5
RETRY_MAX = 5.0


@dataclass
class BrokerSource:
    """The broker of a component: ``url``, or the one ``follow`` (a broker.json) names now.

    ``url`` is where to start; with ``follow`` set, :meth:`current` re-reads
    that file and returns its URL whenever it names a valid one.
    """

    url: str
    follow: Path | None = None
    tried: list[str] = field(default_factory=list)

    def current(self) -> str:
        """The URL to try now (and remember it among those tried)."""
        if self.follow is not None:
            found = read_broker_file(self.follow)
            if found is not None and found != self.url:
                log.warning("the broker moved: %s (was %s), from %s", found, self.url, self.follow)
                self.url = found
        if self.url not in self.tried:
            self.tried.append(self.url)
        return self.url

    def describe(self) -> str:
        """Where the URL comes from, for messages."""
        if self.follow is not None:
            return f"the state directory's broker ({self.follow})"
        return "the fixed --broker URL"

    def give_up_hint(self) -> str:
        """What to do when no broker answers."""
        if self.follow is not None:
            return (
                "start the broker (`b2bsim broker start`; it writes its url to "
                f"{self.follow}), then start this component again"
            )
        return (
            "start the broker at that address, or, if it moved, start this component again "
            "with its new --broker URL (or without --broker, to follow the state directory's "
            "broker)"
        )


def read_broker_file(path: Path) -> str | None:
    """The ``url`` a broker.json names, or None if it is missing, unreadable or invalid."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        url = str(data["url"])
        broker_addresses(url)
    except (OSError, ValueError, KeyError, TypeError, B2BSimError):
        return None
    return url


def wait_for_broker_file(path: Path, give_up: float = GIVE_UP_AFTER) -> str:
    """The URL ``path`` names, waiting up to ``give_up`` s for it to name one (a broker
    that is being started writes it once it answers)."""
    deadline = time.monotonic() + give_up
    while (url := read_broker_file(path)) is None:
        if time.monotonic() >= deadline:
            raise BrokerUnreachableError(
                f"{path} named no broker for {give_up:g} s (missing, unreadable or without a url)",
                hint="start the broker (`b2bsim broker start`), or pass --broker stomp://HOST:PORT",
            )
        time.sleep(0.5)
    return url


async def reconnect(
    source: BrokerSource,
    attempt: Callable[[str], Awaitable[T]],
    *,
    who: str,
    give_up: float = GIVE_UP_AFTER,
    stop: asyncio.Event | None = None,
    first_delay: float = RETRY_INITIAL,
) -> T | None:
    """``attempt(url)`` until it succeeds, backing off; None if ``stop`` is set first.

    Each attempt asks ``source`` for its current URL.  After ``give_up``
    seconds without success raises :class:`BrokerUnreachableError` (one line:
    who gave up, after how long, every address tried, what to do).
    """
    deadline = time.monotonic() + give_up
    delay = first_delay
    attempts = 0
    while True:
        if delay > 0:
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        if stop is not None and stop.is_set():
            return None
        url = source.current()
        attempts += 1
        try:
            return await attempt(url)
        except BrokerUnreachableError:
            if time.monotonic() >= deadline:
                raise BrokerUnreachableError(
                    f"{who} gave up after {give_up:g} s: no STOMP broker answered "
                    f"{attempts} attempt(s) at {', '.join(source.tried)} "
                    f"(from {source.describe()})",
                    hint=source.give_up_hint(),
                ) from None
            delay = max(RETRY_INITIAL, min(delay * 2, RETRY_MAX))
            left = max(0.0, deadline - time.monotonic())
            log.warning(
                "no broker at %s; %s tries again in %.1f s (gives up in %.0f s)",
                url,
                who,
                min(delay, left),
                left,
            )
            delay = min(delay, max(left, 0.05))
