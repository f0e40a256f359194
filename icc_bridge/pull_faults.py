"""Faults of the ICC's pull API, on purpose, to grade a supplier's puller (docs/pull.md).

``b2bsim serve icc --pull-faults FILE`` reads a JSON file once at start::

    {"org_numbers": ["5560000001"], "drop_acks": 1, "busy_seconds": 2, "retry_after": 2}

- ``drop_acks``: the first N acknowledgements of each of these suppliers that
  would acknowledge something are **lost**: the pull API reads them, applies
  nothing and closes the connection without an answer.  A correct puller
  fetches the same envelopes again and acknowledges them again.
- ``busy_seconds``: after the first lost acknowledgement (or, with
  ``drop_acks`` 0, the first applied one), the supplier's requests are
  answered ``503`` with ``Retry-After: <retry_after>`` for this long, counted
  from the first of them.  A correct puller waits that long before it asks
  again.

What happened is in the pull API's request log (``--pull-log``), which
:mod:`simulator.runs.pull_grading` grades.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.messages import now_ms

__all__ = ["PullFaultPlan", "PullFaults"]


@dataclass(frozen=True)
class PullFaultPlan:
    org_numbers: frozenset[str] = frozenset()
    drop_acks: int = 0
    busy_seconds: float = 0.0
    retry_after: int = 2

    @classmethod
    def load(cls, path: Path) -> PullFaultPlan:
        """The plan in ``path``; ConfigError if it is not one."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            plan = cls(
                org_numbers=frozenset(str(o) for o in doc.get("org_numbers", [])),
                drop_acks=int(doc.get("drop_acks", 0)),
                busy_seconds=float(doc.get("busy_seconds", 0)),
                retry_after=int(doc.get("retry_after", 2)),
            )
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"cannot read the pull faults file {path}: {exc}",
                hint='write {"org_numbers": [...], "drop_acks": N, "busy_seconds": S}',
            ) from None
        if plan.drop_acks < 0 or plan.busy_seconds < 0 or plan.retry_after < 1:
            raise ConfigError(
                f"the pull faults file {path} has a negative count or time",
                hint="drop_acks and busy_seconds are 0 or more, retry_after 1 or more",
            )
        return plan

    def as_json(self) -> dict[str, object]:
        return {
            "org_numbers": sorted(self.org_numbers),
            "drop_acks": self.drop_acks,
            "busy_seconds": self.busy_seconds,
            "retry_after": self.retry_after,
        }


@dataclass
class PullFaults:
    """What the plan makes the pull API do now, per supplier (one process's memory)."""

    plan: PullFaultPlan = field(default_factory=PullFaultPlan)
    _dropped: dict[str, int] = field(default_factory=dict)  # per supplier
    _armed: set[str] = field(default_factory=set)  # busy from their next request
    _busy_until: dict[str, int] = field(default_factory=dict)

    def drop_ack(self, org_number: str, pending: list[int]) -> bool:
        """Lose this acknowledgement (it would acknowledge ``pending``)?"""
        if org_number not in self.plan.org_numbers or not pending:
            return False
        if self._dropped.get(org_number, 0) >= self.plan.drop_acks:
            return False
        self._dropped[org_number] = self._dropped.get(org_number, 0) + 1
        self._arm(org_number)
        return True

    def applied(self, org_number: str) -> None:
        """An acknowledgement was applied (arms the busy window if no ack is to be lost)."""
        if org_number in self.plan.org_numbers and self.plan.drop_acks == 0:
            self._arm(org_number)

    def _arm(self, org_number: str) -> None:
        if self.plan.busy_seconds > 0 and org_number not in self._busy_until:
            self._armed.add(org_number)

    def busy(self, org_number: str) -> int | None:
        """Retry-After seconds if this request of the supplier is to be answered 503."""
        now = now_ms()
        if org_number in self._armed:
            self._armed.discard(org_number)
            self._busy_until[org_number] = now + int(self.plan.busy_seconds * 1000)
        until = self._busy_until.get(org_number)
        return self.plan.retry_after if until is not None and now < until else None
