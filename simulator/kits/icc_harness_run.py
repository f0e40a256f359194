"""``b2bsim conformance --icc``: run every ICC case and report, as the supplier kit does.

:func:`run_icc_conformance` starts the harness (simulator/kits/icc_harness.py)
on the target's address, connects to the broker, runs the cases of
simulator/kits/icc_harness_cases.py one after the other and returns a
:class:`~simulator.kits.conformance.ConformanceReport` (JSON and JUnit as for
the supplier kit).  :func:`registry_entry` is what the ICC under test must
have in its registry for the supplier, printed before the first case.
"""

from __future__ import annotations

import datetime as dt
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simulator.kits.conformance import CaseResult, ConformanceReport, graded
from simulator.kits.icc_harness import IccHarness
from simulator.kits.icc_harness_cases import select_icc_cases
from simulator.kits.icc_harness_trial import IccTarget, Trial, wrong_certificate
from simulator.vocabulary.certs import cert_sha256
from simulator.vocabulary.stomp_io import StompConnection

__all__ = ["registry_entry", "run_icc_conformance"]


def registry_entry(target: IccTarget) -> dict[str, Any]:
    """The registry entry the ICC under test needs for the harness's supplier."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    return {
        "org_number": target.org_number,
        "url": f"https://{host}:{target.port}/b2b/envelopes",
        "cert_sha256": cert_sha256(target.cert),
    }


async def run_icc_conformance(
    target: IccTarget,
    *,
    progress: Callable[[CaseResult], None] | None = None,
    listening: Callable[[], None] | None = None,
) -> ConformanceReport:
    """Listen, then run and grade every case (or ``target.case_ids``) against the ICC."""
    cases = select_icc_cases(target.case_ids)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    pin = cert_sha256(target.cert)
    results: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="b2bsim-icc-") as tmp:
        wrong_cert, wrong_key, note = wrong_certificate(target.state, target.cert, Path(tmp))
        harness = IccHarness(
            host=target.host,
            port=target.port,
            cert=target.cert,
            key=target.key,
            ca=target.state.ca_cert,
            wrong_cert=(wrong_cert, wrong_key),
        )
        conn = StompConnection.from_url(target.broker_url)
        await conn.connect()  # BrokerUnreachableError: nothing to grade
        try:
            await harness.start()
            if listening is not None:
                listening()
            trial = Trial(target, harness, conn, pin, cert_sha256(wrong_cert))
            if note:
                trial.notes.append(note)
            for case in cases:
                result = await graded(case, functools.partial(case.run, trial))
                results.append(result)
                if progress is not None:
                    progress(result)
        finally:
            await harness.stop()
            await conn.disconnect()
    return ConformanceReport(
        target=harness.url,
        org_number=target.org_number,
        target_cert_sha256=pin,
        seed=target.seed,
        started_at=started,
        results=tuple(results),
        notes=tuple(trial.notes),
    )
