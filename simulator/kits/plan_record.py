"""A plan's conformance cases, run with every envelope sent and answer received kept.

The conformance kit (:mod:`simulator.kits.conformance`) grades; the plan also
keeps what each case sent and got back, for the decision meeting's evidence.
Every POST of a case goes through :meth:`Kit.post`, so a :class:`RecordingKit`
that notes each body and answer before returning it sees everything a case
exchanges; :func:`run_recorded` runs the kit's own runner
(:func:`~simulator.kits.conformance.run_conformance`) with such a kit, and
returns the kit's report with each case's exchanges.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.kits.conformance import (
    Answer,
    CaseResult,
    ConformanceReport,
    ConformanceTarget,
    Kit,
    run_conformance,
)
from simulator.kits.conformance_certs import Credential

__all__ = ["Exchange", "RecordingKit", "run_recorded", "write_exchanges"]


@dataclass(frozen=True)
class Exchange:
    """One POST of a case: the body sent, and the answer (or none)."""

    body: bytes
    content_type: str
    client: str  # "icc", or the subject of the other client certificate presented
    answer: Answer
    at: str  # ISO time the POST was sent


@dataclass
class RecordingKit(Kit):
    """The conformance kit, keeping each case's exchanges in :attr:`exchanges`."""

    exchanges: dict[str, list[Exchange]] = field(default_factory=dict, init=False)
    _case: list[Exchange] = field(default_factory=list, init=False)

    def begin(self, case_id: str) -> None:
        self._case = self.exchanges.setdefault(case_id, [])

    @property
    def last_sequence(self) -> int:
        """The highest sequence the kit gave an envelope (KA's next runs number above)."""
        return self._sequence

    async def post(
        self,
        body: bytes,
        *,
        client: Credential | None = None,
        content_type: str = "application/xml",
    ) -> Answer:
        at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        answer = await super().post(body, client=client, content_type=content_type)
        who = "icc" if client is None else client.description
        self._case.append(Exchange(body, content_type, who, answer, at))
        return answer


async def run_recorded(
    target: ConformanceTarget,
    *,
    progress: Callable[[CaseResult], None] | None = None,
) -> tuple[ConformanceReport, dict[str, list[Exchange]], int]:
    """Probe the target, run and grade the cases; the report, each case's exchanges and
    the highest sequence the kit used.

    TargetUnreachableError / TargetUntrustedError (before any case) as the kit raises.
    """
    kits: list[RecordingKit] = []

    def make_kit(*args: Any) -> RecordingKit:
        kits.append(RecordingKit(*args))
        return kits[-1]

    report = await run_conformance(target, progress=progress, make_kit=make_kit)
    if not kits:
        return report, {}, 0
    return report, kits[0].exchanges, kits[0].last_sequence


def write_exchanges(folder: Path, exchanges: list[Exchange]) -> tuple[str, ...]:
    """``NNN-sent.xml`` (each body, byte for byte) and ``NNN-answer.json`` (its answer)."""
    folder.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    for n, ex in enumerate(exchanges, 1):
        sent = f"{n:03d}-sent.xml" if "xml" in ex.content_type else f"{n:03d}-sent.bin"
        (folder / sent).write_bytes(ex.body)
        answer = {
            "sent": sent,
            "at": ex.at,
            "content_type": ex.content_type,
            "client": ex.client,
            "status": ex.answer.status,
            "answer_content_type": ex.answer.content_type,
            "body": ex.answer.text,
            "error": ex.answer.error,
        }
        name = f"{n:03d}-answer.json"
        (folder / name).write_text(
            json.dumps(answer, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        files += [f"cases/{folder.name}/{sent}", f"cases/{folder.name}/{name}"]
    return tuple(files)
