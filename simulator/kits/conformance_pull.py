"""The pull conformance kit: AF's test plan, run against a supplier's own puller.

``b2bsim conformance --mode pull --listen HOST:PORT`` plays the ICC's outbox
(docs/pull.md) for the puller of the organisation number under test: it
listens over mutual TLS with the ICC's certificate of the state directory
(:mod:`simulator.kits.conformance_outbox`), says where and with what the
puller must connect (:meth:`PullSetup.lines`), waits at most ``timeout`` for
its first request, then runs every case of
:data:`simulator.kits.conformance_pull_cases.PULL_CASES` and grades each from
the outbox's side.  A case the puller never got to (it did not connect, or
stopped fetching) is failed "not exercised", never passed.  The report is the
push kit's :class:`~simulator.kits.conformance.ConformanceReport`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
from cryptography import x509

from simulator.kits.conformance import CaseResult, ConformanceReport
from simulator.kits.conformance_certs import make_material
from simulator.kits.conformance_grading import Case, Verdict
from simulator.kits.conformance_kit import ConformanceTarget, is_loopback
from simulator.kits.conformance_outbox import ACK_PATH, KitOutbox
from simulator.kits.conformance_pull_cases import REFUSING, select_pull_cases
from simulator.kits.conformance_pull_kit import PullKit, PullTarget
from simulator.runs.endpoint import check_readback, last_position
from simulator.vocabulary.certs import cert_sha256, load_certificate
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.state import StateDir

__all__ = ["PullSetup", "run_pull_conformance"]


@dataclass(frozen=True)
class PullSetup:
    """Where the kit listens and what the puller must be configured with."""

    url: str
    org_number: str
    ca: Path
    icc_sha256: str
    icc_names: tuple[str, ...]
    client_cert: Path
    client_sha256: str
    timeout: float

    def lines(self) -> list[str]:
        base = self.url.rsplit("/b2b/", 1)[0]
        host = base.split("//", 1)[1].rsplit(":", 1)[0].strip("[]")
        lines = [
            f"the kit plays the ICC's outbox at {self.url} (acknowledgements: {base}{ACK_PATH})",
            "configure the puller with:",
            f"  outbox URL        {self.url}  (also the envelopes' RECEIVER_URL)",
            f"  trust             the AF test CA {self.ca}",
            f"  pin the ICC       SHA-256 {self.icc_sha256}",
            f"  present           the certificate of organisation {self.org_number}: "
            f"{self.client_cert} (SHA-256 {self.client_sha256})",
        ]
        if self.icc_names and host not in self.icc_names:
            lines.append(
                f"warning: the ICC certificate names {', '.join(self.icc_names)}, not {host}: "
                "a puller that checks the host name (it should) cannot connect; listen on one "
                "of those names"
            )
        lines.append(f"waiting up to {self.timeout:g} s for the puller's first request …")
        return lines


def _names(cert_path: Path) -> tuple[str, ...]:
    cert = load_certificate(cert_path)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    names: list[str] = list(sans.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    return tuple(names)


def _setup(target: PullTarget, url: str) -> PullSetup:
    state: StateDir = target.state
    return PullSetup(
        url=url,
        org_number=target.org_number,
        ca=state.ca_cert,
        icc_sha256=cert_sha256(state.icc_cert),
        icc_names=_names(state.icc_cert),
        client_cert=state.supplier_cert(target.org_number),
        client_sha256=target.puller_pin,
        timeout=target.timeout,
    )


def _kit_target(target: PullTarget, url: str) -> ConformanceTarget:
    """The push kit's target for the same run: the envelopes' addressee is the outbox URL."""
    state = target.state
    host = url.split("//", 1)[1].rsplit(":", 1)[0].strip("[]")
    loopback = is_loopback(host)
    return ConformanceTarget(
        url=url,
        target_ca=state.ca_cert,
        org_number=target.org_number,
        client_cert=state.icc_cert,
        client_key=state.icc_key,
        signer_cert=state.icc_cert,
        signer_key=state.icc_key,
        state=state,
        cert_sha256=target.puller_pin,
        timeout=target.timeout,
        seed=target.seed,
        burst=target.burst,
        publish_crl=target.publish_crl if target.publish_crl is not None else loopback,
    )


async def run_pull_conformance(
    target: PullTarget,
    *,
    listening: Callable[[PullSetup], None] | None = None,
    progress: Callable[[CaseResult], None] | None = None,
    kit_factory: Callable[..., PullKit] = PullKit,
) -> ConformanceReport:
    """Listen, wait for the puller, run and grade every pull case (or ``target.case_ids``).

    ``kit_factory`` makes the kit from :class:`PullKit`'s arguments (a subclass of it that
    records, as ``b2bsim plan run`` does: :mod:`simulator.kits.plan_pull`)."""
    cases = select_pull_cases(target.case_ids)
    readback = target.readback_endpoint()
    if readback is not None:
        await asyncio.to_thread(check_readback, target.state, readback)
        after = await asyncio.to_thread(last_position, target.state, readback)
        readback = replace(readback, readback_after=after)
    state = target.state
    outbox = KitOutbox(
        target.host,
        target.port,
        target.org_number,
        target.puller_pin,
        state.icc_cert,
        state.icc_key,
        state.ca_cert,
    )
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    url = await outbox.start()
    results: list[CaseResult] = []
    try:
        if listening is not None:
            listening(_setup(target, url))
        connected = await outbox.wait(lambda: bool(outbox.requests), target.timeout)
        kit_target = _kit_target(target, url)
        with tempfile.TemporaryDirectory(prefix="b2bsim-conformance-") as tmp:
            material = make_material(state, Path(tmp))
            async with aiohttp.ClientSession() as session:
                kit = kit_factory(
                    kit_target,
                    target.puller_pin,
                    material,
                    session,
                    outbox=outbox,
                    wait=target.timeout,
                    readback=readback,
                )
                for case in cases:
                    result = await _run_case(case, kit, connected=connected)
                    results.append(result)
                    if progress is not None:
                        progress(result)
        notes = material.notes
    finally:
        await outbox.stop()
    return ConformanceReport(
        target=url,
        org_number=target.org_number,
        target_cert_sha256=target.puller_pin,
        seed=target.seed,
        started_at=started,
        results=tuple(results),
        notes=notes,
        mode="pull",
    )


def _absent(kit: PullKit, *, connected: bool) -> str | None:
    """Why the case cannot happen now (the puller is not there), or None."""
    outbox, wait = kit.outbox, kit.wait
    strangers = f"; the kit refused {'; '.join(outbox.strangers)}" if outbox.strangers else ""
    if not connected:
        return f"not exercised: no puller fetched from {outbox.url} within {wait:g} s{strangers}"
    last = outbox.last_request()
    if last is None or time.monotonic() - last > wait:
        return f"not exercised: the puller stopped fetching (no request for {wait:g} s){strangers}"
    return None


async def _run_case(case: Case, kit: PullKit, *, connected: bool) -> CaseResult:
    begin = time.monotonic()
    kit.expects_refusal = case.id in REFUSING
    absent = _absent(kit, connected=connected)
    if absent is not None:
        verdict = Verdict(False, absent)
    else:
        try:
            verdict = await case.run(kit)
        except B2BSimError as exc:  # the kit's side failed (e.g. the read-back): nothing graded
            verdict = Verdict.not_graded(f"could not run: {exc}")
    reason = verdict.reason
    if case.id in REFUSING and not verdict.passed:  # said of a push endpoint by the case
        reason = reason.replace(
            ": the endpoint took ", ": the puller accepted what it must refuse, "
        )
    return CaseResult.of(case, verdict, time.monotonic() - begin, reason=reason)
