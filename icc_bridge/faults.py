"""Faults a scenario injects into the ICC's deliveries: duplicates and reordering.

The runner writes a JSON file (``icc-faults.json`` in the run directory) and
each ICC worker re-reads it when it changes::

    {"duplicate": 0.2, "reorder": 0.3}

- ``duplicate``: after a successful push, push the same envelope again with
  this probability (the supplier must answer ``duplicate`` and load it once);
- ``reorder``: deliver a supplier's next message before the current one with
  this probability (the supplier must restore KA's order from the sequence).

- ``hold_ack`` (``{"hold_ack": {"ORG": SECONDS}}``): after supplier ORG answered a
  push with a receipt, record an ``ack_held`` event and hold the broker ack up to
  SECONDS (until the key is gone): the kill point of ``{kill: icc, at: receipt}``,
  which kills the worker there, so that the broker redelivers a message the
  supplier already has, and another worker signs and re-sends it.

Kinds combine: ``b2bsim fault icc duplicate`` after ``fault icc reorder``
keeps the reorder probability (:func:`read_delivery_faults`, then
:func:`write_delivery_faults` with both); ``fault icc clear`` stops all.

These break the ICC's own guarantees on purpose, to prove that a supplier's
receiver copes, as the AF description asks of it.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

#: The kinds of ICC fault, each with its probability in the file.
FAULT_KINDS = ("duplicate", "reorder")


def _probabilities(text: str) -> dict[str, float]:
    """Every kind's probability in a faults file's text (0 for a kind it leaves out)."""
    raw = json.loads(text)
    return {k: float(raw.get(k, 0.0)) for k in FAULT_KINDS}


def _holds(text: str) -> dict[str, float]:
    """The ``hold_ack`` of a faults file's text: seconds per organisation number."""
    raw = json.loads(text).get("hold_ack") or {}
    return {str(org): float(seconds) for org, seconds in dict(raw).items()}


class DeliveryFaults:
    """Reads the faults file when it changes; answers "now?" for each fault."""

    def __init__(self, path: Path | None, *, seed: int = 0) -> None:
        self.path = path
        self._rng = random.Random(seed)  # noqa: S311 - a fault schedule, not security
        self._mtime: int | None = None
        self._p = dict.fromkeys(FAULT_KINDS, 0.0)
        self._hold: dict[str, float] = {}

    def _reload(self) -> None:
        if self.path is None:
            return
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            self._mtime, self._p, self._hold = None, dict.fromkeys(self._p, 0.0), {}
            return
        if mtime == self._mtime:
            return
        try:
            text = self.path.read_text(encoding="utf-8")
            p, hold = _probabilities(text), _holds(text)
        except (ValueError, TypeError, AttributeError) as exc:
            log.error("ignoring ICC faults file %s: %s", self.path, exc)
            return
        self._mtime, self._p, self._hold = mtime, p, hold
        log.info("ICC faults now %s, ack held for %s", p, hold)

    def hold_ack(self, org_number: str) -> float:
        """How long to hold the broker ack after ``org_number``'s receipt (0: not at all)."""
        self._reload()
        return self._hold.get(org_number, 0.0)

    def happens(self, kind: str) -> bool:
        self._reload()
        p = self._p[kind]
        return p > 0 and self._rng.random() < p


def read_delivery_faults(path: Path) -> dict[str, float]:
    """Every kind's probability in the faults file (all 0 if there is none).

    Raises ``ValueError`` if the file is not a faults file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return dict.fromkeys(FAULT_KINDS, 0.0)
    try:
        return _probabilities(text)
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not an ICC faults file: {exc}") from None


def write_delivery_faults(path: Path, *, duplicate: float = 0.0, reorder: float = 0.0) -> None:
    """Replace the ICC faults file atomically (what the runner calls)."""
    write_hold_ack(path, {}, duplicate=duplicate, reorder=reorder)


def write_hold_ack(
    path: Path, hold_ack: Mapping[str, float], *, duplicate: float = 0.0, reorder: float = 0.0
) -> None:
    """The same, holding the broker ack after these suppliers' receipts (seconds)."""
    tmp = path.with_suffix(".tmp")
    doc: dict[str, object] = {"duplicate": duplicate, "reorder": reorder}
    if hold_ack:
        doc["hold_ack"] = dict(hold_ack)
    tmp.write_text(json.dumps(doc) + "\n")
    os.replace(tmp, path)
