"""Faults a scenario injects into the reference supplier endpoint.

The runner writes a small JSON file (``faults.json`` in the run directory,
format below); the stub re-reads it whenever it changes, and an aiohttp
middleware applies the first active rule that matches a request.  Outages
(connection refused) are not made here: the runner stops the stub process.

```json
{"rules": [
  {"kind": "status", "status": 503, "org_number": null, "first": 5},
  {"kind": "status", "status": 429, "retry_after": 1, "until_ms": 1795706512744},
  {"kind": "delay", "seconds": 2.0, "probability": 0.3},
  {"kind": "reset", "probability": 0.1},
  {"kind": "disk-full", "until_ms": 1795706512744}
]}
```

- ``status``: answer ``status`` (a problem ``SIMULATED_FAULT``) without
  storing; ``retry_after`` adds that header.
- ``delay``: handle the request normally, then wait ``seconds`` before
  answering.  Longer than the ICC's timeout, it is a timeout after the
  envelope was stored: the ICC retries and the supplier sees a duplicate.
- ``reset``: close the connection without an answer.

Each rule may narrow itself to one ``org_number``, the ``first`` N matching
requests, a ``probability``, and a time window ``from_ms``/``until_ms``.

- ``disk-full``: not an answer but a state of the stub's database: while
  the rule is in the file (and within its window, the only thing it may
  narrow), the database may not grow, as on a full disk
  (:meth:`~supplier_stub.store.EnvelopeStore.refuse_growth`): a delivery that
  needs space fails in SQLite and is answered 500, nothing of it stored.
  The stub looks for it every ``WATCH_INTERVAL`` seconds and before each
  request; gone from the file, the disk is free again.  :func:`set_disk_full`
  adds or removes it, keeping the other rules.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from simulator.vocabulary.codes.refusals import SIMULATED_FAULT
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.messages import now_ms
from simulator.vocabulary.problems import PROBLEM_MEDIA_TYPE, problem

log = logging.getLogger(__name__)

DISK_FULL = "disk-full"
KINDS = ("status", "delay", "reset", DISK_FULL)
#: All a disk-full rule may say: it is the whole database's, not a request's.
_DISK_FULL_KEYS = frozenset({"kind", "from_ms", "until_ms"})
#: Seconds between looks at the faults file for a disk-full rule, requests or not.
WATCH_INTERVAL = 0.25


@dataclass
class FaultRule:
    kind: str
    org_number: str | None = None
    status: int = 503
    retry_after: float | None = None
    seconds: float = 0.0
    probability: float = 1.0
    first: int | None = None
    from_ms: int | None = None
    until_ms: int | None = None
    hits: int = field(default=0, compare=False)

    @classmethod
    def parse(cls, raw: Any, where: str) -> FaultRule:
        if not isinstance(raw, dict) or raw.get("kind") not in KINDS:
            raise ConfigError(f"{where}: a rule needs kind {' | '.join(KINDS)}", hint=__doc__)
        allowed = set(cls.__dataclass_fields__) - {"hits"}
        unknown = set(raw) - allowed
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}", hint=f"use {allowed}")
        if raw["kind"] == DISK_FULL and set(raw) - _DISK_FULL_KEYS:
            raise ConfigError(
                f"{where}: disk-full fills the stub's whole database: it takes no "
                f"{', '.join(sorted(set(raw) - _DISK_FULL_KEYS))}",
                hint="give disk-full only from_ms/until_ms",
            )
        rule = cls(**raw)
        if not 0 <= rule.probability <= 1 or not 100 <= rule.status <= 599:
            raise ConfigError(f"{where}: probability 0..1 and status 100..599", hint="fix the rule")
        return rule

    def in_window(self, now: int) -> bool:
        return (self.from_ms is None or now >= self.from_ms) and (
            self.until_ms is None or now < self.until_ms
        )

    def applies(self, org_number: str, now: int, rng: random.Random) -> bool:
        """Whether this rule answers a request (counted); a disk-full rule answers none."""
        if self.kind == DISK_FULL or self.org_number not in (None, org_number):
            return False
        if not self.in_window(now):
            return False
        if self.first is not None and self.hits >= self.first:
            return False
        if self.probability < 1 and rng.random() >= self.probability:
            return False
        self.hits += 1
        return True


class FaultInjector:
    """Reads the faults file when it changes; applies its rules to requests.

    ``disk_full(True | False)``: fills or frees the database's disk (the
    store's :meth:`~supplier_stub.store.EnvelopeStore.refuse_growth`), called
    when a disk-full rule comes or goes; run :meth:`watch` for that to happen
    while no request comes.
    """

    def __init__(
        self,
        path: Path,
        *,
        seed: int = 0,
        disk_full: Callable[[bool], Awaitable[None]] | None = None,
    ) -> None:
        self.path = path
        self._rng = random.Random(seed)  # noqa: S311 - a fault schedule, not security
        self._content: bytes | None = None  # compared, not the mtime: two writes in one tick
        self.rules: list[FaultRule] = []
        self._fill = disk_full
        self._full = False  # what disk_full was last told
        self._disk_lock = asyncio.Lock()

    def reload(self) -> None:
        """Re-read the file if it changed (a missing file means no faults)."""
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            self._content, self.rules = None, []
            return
        if content == self._content:
            return
        self._content = content  # a broken file is said once, its old rules kept
        try:
            raw = json.loads(content.decode("utf-8"))
            rules = [
                FaultRule.parse(r, f"{self.path}: rules[{i}]")
                for i, r in enumerate(raw.get("rules", []))
            ]
        except (ValueError, AttributeError, ConfigError) as exc:
            log.error("ignoring faults file %s: %s", self.path, exc)
            return
        # A rule that was there before keeps its count (``first: N`` must not start over
        # because another rule was added).
        for i, rule in enumerate(rules):
            if i < len(self.rules) and self.rules[i] == rule:
                rule.hits = self.rules[i].hits
        self.rules = rules
        log.info("faults: %d rule(s) active from %s", len(rules), self.path)

    def disk_full(self, *, reload: bool = True) -> bool:
        """Whether the file says the database's disk is full now (``reload``: read it first)."""
        if reload:
            self.reload()
        now = now_ms()
        return any(r.kind == DISK_FULL and r.in_window(now) for r in self.rules)

    async def apply_disk_full(self, *, reload: bool = True) -> None:
        """Fill or free the disk if the file's disk-full rule came or went."""
        if self._fill is None:
            return
        async with self._disk_lock:
            full = self.disk_full(reload=reload)
            if full != self._full:
                await self._fill(full)
                self._full = full
                log.warning(
                    "fault disk-full: the database's disk is %s", "full" if full else "free"
                )

    async def watch(self, interval: float = WATCH_INTERVAL) -> None:
        """Apply the disk-full rule as it comes and goes, until cancelled."""
        while True:
            try:
                await self.apply_disk_full()
            except Exception as exc:  # keep watching: the next look may work
                log.error("fault disk-full could not be applied: %s", exc)
            await asyncio.sleep(interval)

    def match(self, org_number: str, *, reload: bool = True) -> FaultRule | None:
        """The first rule that answers a request to ``org_number`` now (counted), if any."""
        if reload:
            self.reload()
        now = now_ms()
        return next((r for r in self.rules if r.applies(org_number, now, self._rng)), None)

    def middleware(self, org_of: Any) -> Middleware:
        """An aiohttp middleware; ``org_of(request)`` names the supplier addressed."""

        @web.middleware
        async def inject(request: web.Request, handler: Handler) -> web.StreamResponse:
            org = org_of(request)
            rule = None
            if org and request.method == "POST":
                self.reload()  # once per request: the file may have changed since the last look
                await self.apply_disk_full(reload=False)
                rule = self.match(org, reload=False)
            if rule is None:
                return await handler(request)
            log.info("fault %s for org=%s", rule.kind, org)
            if rule.kind == "reset":
                if request.transport is not None:
                    request.transport.close()
                raise asyncio.CancelledError  # aiohttp drops the request quietly
            if rule.kind == "delay":
                # Handle (and store) first, answer late: past the ICC's timeout this is
                # the classic "the supplier has it but the ICC does not know" case.
                # The shield keeps the store going when aiohttp cancels the handler
                # because the ICC hung up.
                response = await asyncio.shield(handler(request))
                await asyncio.sleep(rule.seconds)
                return response
            _, body = problem(SIMULATED_FAULT, f"a scenario made this answer {rule.status}")
            headers = {"Retry-After": f"{rule.retry_after:g}"} if rule.retry_after else {}
            return web.Response(
                status=rule.status, body=body, content_type=PROBLEM_MEDIA_TYPE, headers=headers
            )

        return inject


def write_faults(path: Path, rules: list[dict[str, Any]]) -> None:
    """Replace the faults file atomically (what the runner calls)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"rules": rules}, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_faults(path: Path) -> list[dict[str, Any]]:
    """The rules in the faults file at ``path`` (none if there is no file)."""
    try:
        rules = json.loads(path.read_text(encoding="utf-8")).get("rules", [])
    except FileNotFoundError:
        return []
    except (ValueError, AttributeError):
        raise ConfigError(
            f"{path} is not a faults file", hint="clear it: b2bsim fault supplier clear"
        ) from None
    return [r for r in rules if isinstance(r, dict)]


def set_disk_full(path: Path, full: bool, *, until_ms: int | None = None) -> None:
    """Fill (until ``until_ms``, if given) or free the disk of the stub reading ``path``.

    The other rules stay as they are; there is at most one disk-full rule.
    """
    rules = [r for r in read_faults(path) if r.get("kind") != DISK_FULL]
    if full:
        rule: dict[str, Any] = {"kind": DISK_FULL}
        if until_ms is not None:
            rule["until_ms"] = until_ms
        rules.append(rule)
    write_faults(path, rules)
