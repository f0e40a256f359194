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
  {"kind": "reset", "probability": 0.1}
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
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
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

KINDS = ("status", "delay", "reset")


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
        rule = cls(**raw)
        if not 0 <= rule.probability <= 1 or not 100 <= rule.status <= 599:
            raise ConfigError(f"{where}: probability 0..1 and status 100..599", hint="fix the rule")
        return rule

    def applies(self, org_number: str, now: int, rng: random.Random) -> bool:
        if self.org_number not in (None, org_number):
            return False
        if (self.from_ms is not None and now < self.from_ms) or (
            self.until_ms is not None and now >= self.until_ms
        ):
            return False
        if self.first is not None and self.hits >= self.first:
            return False
        if self.probability < 1 and rng.random() >= self.probability:
            return False
        self.hits += 1
        return True


class FaultInjector:
    """Reads the faults file when it changes; applies its rules to requests."""

    def __init__(self, path: Path, *, seed: int = 0) -> None:
        self.path = path
        self._rng = random.Random(seed)  # noqa: S311 - a fault schedule, not security
        self._mtime: float | None = None
        self.rules: list[FaultRule] = []

    def reload(self) -> None:
        """Re-read the file if it changed (a missing file means no faults)."""
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            self._mtime, self.rules = None, []
            return
        if mtime == self._mtime:
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            rules = [
                FaultRule.parse(r, f"{self.path}: rules[{i}]")
                for i, r in enumerate(raw.get("rules", []))
            ]
        except (ValueError, ConfigError) as exc:
            log.error("ignoring faults file %s: %s", self.path, exc)
            return
        # A rule that was there before keeps its count (``first: N`` must not start over
        # because another rule was added).
        for i, rule in enumerate(rules):
            if i < len(self.rules) and self.rules[i] == rule:
                rule.hits = self.rules[i].hits
        self._mtime, self.rules = mtime, rules
        log.info("faults: %d rule(s) active from %s", len(rules), self.path)

    def match(self, org_number: str) -> FaultRule | None:
        self.reload()
        now = now_ms()
        return next((r for r in self.rules if r.applies(org_number, now, self._rng)), None)

    def middleware(self, org_of: Any) -> Middleware:
        """An aiohttp middleware; ``org_of(request)`` names the supplier addressed."""

        @web.middleware
        async def inject(request: web.Request, handler: Handler) -> web.StreamResponse:
            org = org_of(request)
            rule = self.match(org) if org and request.method == "POST" else None
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
