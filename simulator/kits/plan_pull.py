"""A pull supplier's plan: its puller, the pull kit's cases with what was served, its runs.

A pull plan (``plan init --mode pull``) names the puller, not an endpoint: the
certificate it presents (:func:`puller_of`: its file, checked as ``b2bsim run
--endpoint-mode pull`` checks it, or its SHA-256, or the supplier's
certificate of the state directory) and the fixed ``HOST:PORT`` it fetches
from (:func:`checked_listen`).  ``plan run`` plays the ICC's outbox there
twice over: the pull conformance kit's (:func:`run_pull_recorded`, through
:func:`simulator.kits.conformance_pull.run_pull_conformance` with a
:class:`RecordingPullKit`, which keeps every envelope a case served and what
the puller did with it) and each scenario run's, with the puller as
supplier 1 (:func:`pull_endpoint_of`, as ``b2bsim run --endpoint-mode pull
--pull-port PORT``).  A run's outbox is served on 127.0.0.1 only, so a plan
listening elsewhere runs its scenarios not at all (:func:`scenario_blocker`).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.kits.conformance import CaseResult, ConformanceReport
from simulator.kits.conformance_outbox import Item
from simulator.kits.conformance_pull import PullSetup, run_pull_conformance
from simulator.kits.conformance_pull_kit import PulledAnswer, PullKit, PullTarget, parse_listen
from simulator.runs.endpoint import ExternalEndpoint
from simulator.runs.plan_file import Plan
from simulator.runs.pull_endpoint import OUTBOX_HOST, pull_endpoint, puller_pin
from simulator.runs.stub_records import outbox_served
from simulator.vocabulary.errors import EndpointError, PlanError
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import normalise_pin

__all__ = [
    "PullRecorder",
    "RecordingPullKit",
    "checked_listen",
    "listen_text",
    "pull_endpoint_of",
    "puller_of",
    "run_pull_recorded",
    "scenario_blocker",
    "write_outbox",
    "write_served",
]


def checked_listen(value: str | None) -> tuple[str, int]:
    """``--listen HOST:PORT`` of a pull plan: (host, port), the port fixed (not 0)."""
    if value is None:
        raise PlanError(
            "--mode pull needs --listen HOST:PORT",
            hint="give the address the supplier's puller is configured to fetch from, "
            "e.g. --listen 127.0.0.1:9443",
        )
    host, port = parse_listen(value)  # ConfigError (exit 2) if it is not HOST:PORT
    if port == 0:
        raise PlanError(
            f"--listen {value!r} has no fixed port",
            hint="a puller is configured with one port beforehand: give it, e.g. "
            "--listen 127.0.0.1:9443",
        )
    return host, port


def listen_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def puller_of(
    state: StateDir, org_number: str, cert: Path | None, pin: str | None
) -> tuple[str, str]:
    """The puller's pin and what was checked (one line); EndpointError if it cannot be used."""
    if cert is not None:
        sha = puller_pin(state, org_number, cert, pin)
        return sha, f"the puller's certificate {cert} checked (AF test CA, {org_number}, valid)"
    if pin is not None:  # ConfigError (exit 2) if it is no SHA-256
        return normalise_pin(pin), "the puller's certificate pinned by its SHA-256"
    known = state.supplier_cert(org_number)
    if not known.is_file():
        raise EndpointError(
            f"no certificate of the puller of {org_number} is known",
            hint="pass --endpoint-cert FILE (the certificate it presents) or "
            "--endpoint-cert-sha256 HEX",
        )
    sha = puller_pin(state, org_number, known)
    return sha, f"the puller's certificate is the state directory's {known}"


def pull_endpoint_of(state: StateDir, plan: Plan) -> ExternalEndpoint:
    """The plan's puller as a scenario run's external supplier (not yet checked)."""
    _, port = checked_listen(plan.listen)
    cert = None if plan.puller_cert is None else plan.resolve(plan.puller_cert)
    return pull_endpoint(
        state,
        org_number=plan.org_number,
        cert=cert,
        cert_sha256_hex=plan.cert_sha256,
        pull_port=port,
        readback=plan.readback,
        ca=plan.ca_path,
    )


def scenario_blocker(plan: Plan) -> str | None:
    """Why the plan's scenarios cannot run with its puller, or None."""
    host, port = checked_listen(plan.listen)
    if host == OUTBOX_HOST:
        return None
    return (
        f"a scenario run serves its outbox at https://{OUTBOX_HOST}:{port}/b2b/outbox only, "
        f"and the plan's puller fetches from {host}: plan init --listen {OUTBOX_HOST}:{port}"
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclass
class PullRecorder:
    """Each case's envelopes in the kit's outbox: added, served, acknowledged or refused."""

    current: list[tuple[Item, str]] = field(default_factory=list)  # (item, when added)
    answers: dict[int, str] = field(default_factory=dict)  # cursor -> what the kit concluded
    cases: dict[str, list[tuple[bytes, dict[str, Any]]]] = field(default_factory=dict)

    def close(self, case_id: str) -> None:
        """The case is over: what each of its envelopes went through, as it stands now."""
        self.cases[case_id] = [(item.body, self._outcome(item, at)) for item, at in self.current]
        self.current = []

    def _outcome(self, item: Item, at: str) -> dict[str, Any]:
        def after(moment: float | None) -> float | None:
            return None if moment is None else round((moment - item.added_at) * 1000, 1)

        refusal = item.refusal
        refused = None if refusal is None else {"code": refusal.code, "reason": refusal.reason}
        return {
            "at": at,
            "cursor": item.cursor,
            "envelope_id": item.envelope_id,
            "message_type": item.message_type,
            "served": item.served,
            "served_after_ms": after(item.served_at),
            "acknowledged": item.settled and refusal is None,
            "refused": refused,
            "settled_after_ms": after(item.acked_at),
            "answer": self.answers.get(item.cursor, ""),
        }


@dataclass
class RecordingPullKit(PullKit):
    """The pull kit, noting each envelope it serves and what it made of the puller's answer."""

    recorder: PullRecorder = field(kw_only=True)

    def add(self, body: bytes) -> Item:
        item = super().add(body)
        self.recorder.current.append((item, _now()))
        return item

    async def settle(self, item: Item, *, wait: float | None = None) -> PulledAnswer:
        answer = await super().settle(item, wait=wait)
        self.recorder.answers[item.cursor] = answer.describe()
        return answer


async def run_pull_recorded(
    target: PullTarget,
    *,
    listening: Callable[[PullSetup], None] | None = None,
    progress: Callable[[CaseResult], None] | None = None,
) -> tuple[ConformanceReport, dict[str, list[tuple[bytes, dict[str, Any]]]]]:
    """The pull kit's run of ``target``; its report and each case's envelopes served."""
    recorder = PullRecorder()

    def done(result: CaseResult) -> None:
        recorder.close(result.case_id)
        if progress is not None:
            progress(result)

    report = await run_pull_conformance(
        target,
        listening=listening,
        progress=done,
        kit_factory=functools.partial(RecordingPullKit, recorder=recorder),
    )
    return report, recorder.cases


def write_served(folder: Path, served: Sequence[tuple[bytes, dict[str, Any]]]) -> list[str]:
    """``NNN-served.xml`` (the envelope, byte for byte) and ``NNN-outcome.json`` each."""
    folder.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    for n, (body, outcome) in enumerate(served, 1):
        name = f"{n:03d}-served.xml"
        (folder / name).write_bytes(body)
        doc = {"served_file": name, **outcome}
        outcome_name = f"{n:03d}-outcome.json"
        (folder / outcome_name).write_text(
            json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        files += [f"cases/{folder.name}/{name}", f"cases/{folder.name}/{outcome_name}"]
    return files


def write_outbox(run_dir: Path, folder: Path, org_number: str) -> list[str]:
    """What a scenario run's ICC put in its outbox for the puller: ``NNN-served.xml`` each
    (byte for byte) and ``served.jsonl`` (cursor, ids, type, times, SHA-256, file)."""
    rows = outbox_served(run_dir, org_number)
    if not rows:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    index: list[str] = []
    files: list[str] = []
    for n, (cursor, envelope_id, message_id, kind, created, served, acked, body) in enumerate(
        rows, 1
    ):
        name = f"{n:03d}-served.xml"
        data = bytes(body)
        (folder / name).write_bytes(data)
        record = {
            "cursor": cursor,
            "envelope_id": envelope_id,
            "message_id": message_id,
            "message_type": kind,
            "created_at_ms": created,
            "served_at_ms": served,
            "acked_at_ms": acked,
            "sha256": hashlib.sha256(data).hexdigest(),
            "file": name,
        }
        index.append(json.dumps(record))
        files.append(f"cases/{folder.name}/{name}")
    if index:
        (folder / "served.jsonl").write_text("\n".join(index) + "\n", encoding="utf-8")
        files.append(f"cases/{folder.name}/served.jsonl")
    return files
