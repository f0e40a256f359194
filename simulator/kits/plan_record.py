"""A plan's conformance cases, run with every envelope sent and answer received kept.

The conformance kit (:mod:`simulator.kits.conformance`) grades; the plan also
keeps what each case sent and got back, for the decision meeting's evidence.
Every POST of a case goes through :meth:`Kit.post`, so a :class:`RecordingKit`
that notes each body and answer before returning it sees everything a case
exchanges; :func:`run_recorded` is the kit's own runner loop
(:func:`~simulator.kits.conformance.run_conformance`: probe, material, one
connection per case) with such a kit, and returns the kit's report with each
case's exchanges.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from simulator.kits.conformance import (
    Answer,
    CaseResult,
    ConformanceReport,
    ConformanceTarget,
    Kit,
    probe_target,
)
from simulator.kits.conformance_cases import select_cases
from simulator.kits.conformance_certs import Credential, make_material
from simulator.kits.conformance_grading import Verdict
from simulator.vocabulary.errors import B2BSimError

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

    exchanges: list[Exchange] = field(default_factory=list, init=False)

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
        self.exchanges.append(Exchange(body, content_type, who, answer, at))
        return answer


async def run_recorded(
    target: ConformanceTarget,
    *,
    progress: Callable[[CaseResult], None] | None = None,
) -> tuple[ConformanceReport, dict[str, list[Exchange]]]:
    """Probe the target, run and grade the cases; the report and each case's exchanges.

    TargetUnreachableError / TargetUntrustedError (before any case) as the kit raises.
    """
    cases = select_cases(target.case_ids)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    sha = await probe_target(target)
    results: list[CaseResult] = []
    exchanges: dict[str, list[Exchange]] = {}
    with tempfile.TemporaryDirectory(prefix="b2bsim-plan-") as tmp:
        material = make_material(target.state, Path(tmp))
        timeout = aiohttp.ClientTimeout(total=target.timeout)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            kit = RecordingKit(target, sha, material, session)
            for case in cases:
                kit.exchanges = []
                begin = time.monotonic()
                try:
                    verdict = await case.run(kit)
                except B2BSimError as exc:
                    verdict = Verdict.not_graded(f"could not run: {exc}")
                result = CaseResult(
                    case.id,
                    case.title,
                    case.checks,
                    case.why,
                    verdict.passed,
                    verdict.reason,
                    time.monotonic() - begin,
                    graded=verdict.graded,
                    fix=case.fix,
                    docs=case.docs,
                    metrics=dict(verdict.metrics),
                )
                results.append(result)
                exchanges[case.id] = kit.exchanges
                if progress is not None:
                    progress(result)
    report = ConformanceReport(
        target=target.url,
        org_number=target.org_number,
        target_cert_sha256=sha,
        seed=target.seed,
        started_at=started,
        results=tuple(results),
        notes=material.notes,
    )
    return report, exchanges


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
