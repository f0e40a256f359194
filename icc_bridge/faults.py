"""Faults a scenario injects into the ICC's deliveries: duplicates and reordering.

The runner writes a JSON file (``icc-faults.json`` in the run directory) and
each ICC worker re-reads it when it changes::

    {"duplicate": 0.2, "reorder": 0.3}

- ``duplicate``: after a successful push, push the same envelope again with
  this probability (the supplier must answer ``duplicate`` and load it once);
- ``reorder``: deliver a supplier's next message before the current one with
  this probability (the supplier must restore KA's order from the sequence).

These break the ICC's own guarantees on purpose, to prove that a supplier's
receiver copes, as the AF description asks of it.
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path

log = logging.getLogger(__name__)


class DeliveryFaults:
    """Reads the faults file when it changes; answers "now?" for each fault."""

    def __init__(self, path: Path | None, *, seed: int = 0) -> None:
        self.path = path
        self._rng = random.Random(seed)  # noqa: S311 - a fault schedule, not security
        self._mtime: int | None = None
        self._p = {"duplicate": 0.0, "reorder": 0.0}

    def _reload(self) -> None:
        if self.path is None:
            return
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            self._mtime, self._p = None, dict.fromkeys(self._p, 0.0)
            return
        if mtime == self._mtime:
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            p = {k: float(raw.get(k, 0.0)) for k in self._p}
        except (ValueError, TypeError, AttributeError) as exc:
            log.error("ignoring ICC faults file %s: %s", self.path, exc)
            return
        self._mtime, self._p = mtime, p
        log.info("ICC faults now %s", p)

    def happens(self, kind: str) -> bool:
        self._reload()
        p = self._p[kind]
        return p > 0 and self._rng.random() < p


def write_delivery_faults(path: Path, *, duplicate: float = 0.0, reorder: float = 0.0) -> None:
    """Replace the ICC faults file atomically (what the runner calls)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"duplicate": duplicate, "reorder": reorder}) + "\n")
    os.replace(tmp, path)
