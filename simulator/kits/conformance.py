"""The conformance kit: AF's supplier-facing test plan, run against a supplier's own endpoint.

``b2bsim conformance`` (simulator/commands/conformance.py) plays the ICC
towards the push endpoint a supplier builds: it checks first that the target
answers TLS with a certificate that chains to ``--target-ca`` (else
:class:`TargetUnreachableError` / :class:`TargetUntrustedError`, never graded
cases), then runs every case of :data:`simulator.kits.conformance_cases.CASES`
over mutual TLS, each with real, ICC-signed envelopes around real KA
documents, and grades each one passed, failed or not graded (with the
reason; only "passed" counts as passed).  docs/conformance.md is the guide for
supplier developers.

The public face: :class:`ConformanceTarget` (what to test, checked on
construction), :func:`run_conformance` (→ :class:`ConformanceReport`), and
the report's :meth:`~ConformanceReport.to_json` / :meth:`~ConformanceReport.to_junit`.
This module is the runner and the report; what a case works with (the
target, :class:`Answer`, :class:`Kit`) is :mod:`simulator.kits.conformance_kit`,
the wrong certificates the refusal cases use :mod:`simulator.kits.conformance_certs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import json
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from lxml import etree

from simulator.kits.conformance_cases import select_cases
from simulator.kits.conformance_certs import Material, make_material
from simulator.kits.conformance_grading import Grade, Verdict
from simulator.kits.conformance_kit import DEFAULT_TIMEOUT, Answer, ConformanceTarget, Kit
from simulator.vocabulary.errors import (
    B2BSimError,
    ConfigError,
    TargetUnreachableError,
    TargetUntrustedError,
)
from simulator.vocabulary.tls import client_context

__all__ = [
    "DEFAULT_TIMEOUT",
    "Answer",
    "CaseResult",
    "ConformanceReport",
    "ConformanceTarget",
    "Grade",
    "Kit",
    "probe_target",
    "run_conformance",
    "write_reports",
]


class CaseLike(Protocol):
    """What a result needs of a case (the supplier kit's, the pull kit's, the ICC harness's)."""

    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def checks(self) -> str: ...
    @property
    def why(self) -> str: ...
    @property
    def fix(self) -> str: ...
    @property
    def docs(self) -> str: ...


@dataclass(frozen=True)
class CaseResult:
    """One graded case: passed, failed, or not graded (never counted as passed)."""

    case_id: str
    title: str
    checks: str
    why: str
    passed: bool
    reason: str
    seconds: float
    graded: bool = True
    fix: str = ""  # what to change when it failed
    docs: str = ""  # the rule's section: docs/conformance.md#anchor
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(
        cls, case: CaseLike, verdict: Verdict, seconds: float, *, reason: str | None = None
    ) -> CaseResult:
        """The result of ``case`` graded ``verdict`` in ``seconds`` (``reason``: reworded)."""
        return cls(
            case.id,
            case.title,
            case.checks,
            case.why,
            verdict.passed,
            verdict.reason if reason is None else reason,
            seconds,
            graded=verdict.graded,
            fix=case.fix,
            docs=case.docs,
            metrics=dict(verdict.metrics),
        )

    @property
    def grade(self) -> Grade:
        if not self.graded:
            return Grade.NOT_GRADED
        return Grade.PASSED if self.passed else Grade.FAILED

    @property
    def advice(self) -> str:
        """What to change and where the rule is, for a failed case ("" otherwise)."""
        if self.grade is not Grade.FAILED:
            return ""
        return f"fix: {self.fix}; see {self.docs}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.case_id,
            "title": self.title,
            "checks": self.checks,
            "why": self.why,
            "result": self.grade.value,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "fix": self.fix,
            "docs": self.docs,
        }
        if self.metrics:
            data["metrics"] = dict(self.metrics)
        return data


@dataclass(frozen=True)
class ConformanceReport:
    """Every case's result, and what was tested."""

    target: str
    org_number: str
    target_cert_sha256: str
    seed: int
    started_at: str
    results: tuple[CaseResult, ...]
    notes: tuple[str, ...] = ()
    mode: str = "push"  # push: an endpoint was tested; pull: a puller

    @property
    def passed(self) -> bool:
        """True only if every case passed: a case not graded is not a pass."""
        return all(r.grade is Grade.PASSED for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if r.grade is Grade.FAILED]

    @property
    def not_graded(self) -> list[CaseResult]:
        return [r for r in self.results if r.grade is Grade.NOT_GRADED]

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results)

    def rerun_hint(self) -> str:
        return f"re-run with --seed {self.seed} for the same documents"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "b2bsim-conformance",
            "mode": self.mode,
            "target": self.target,
            "org_number": self.org_number,
            "target_cert_sha256": self.target_cert_sha256,
            "seed": self.seed,
            "started_at": self.started_at,
            "passed": self.passed,
            "counts": {
                "total": len(self.results),
                "passed": len(self.results) - len(self.failures) - len(self.not_graded),
                "failed": len(self.failures),
                "not_graded": len(self.not_graded),
            },
            "notes": list(self.notes),
            "cases": [r.to_json() for r in self.results],
        }

    def to_junit(self) -> bytes:
        """A JUnit XML document: one testcase per case, a failure element per failed case."""
        suites = etree.Element("testsuites")
        suite = etree.SubElement(
            suites,
            "testsuite",
            name="b2bsim.conformance",
            tests=str(len(self.results)),
            failures=str(len(self.failures)),
            errors="0",
            skipped=str(len(self.not_graded)),
            time=f"{self.seconds:.3f}",
            timestamp=self.started_at,
        )
        props = etree.SubElement(suite, "properties")
        for name, value in (
            ("target", self.target),
            ("org_number", self.org_number),
            ("target_cert_sha256", self.target_cert_sha256),
            ("seed", str(self.seed)),
            ("mode", self.mode),
        ):
            etree.SubElement(props, "property", name=name, value=value)
        for r in self.results:
            case = etree.SubElement(
                suite,
                "testcase",
                classname="b2bsim.conformance",
                name=f"{r.case_id}: {r.title}",
                time=f"{r.seconds:.3f}",
            )
            if r.grade is Grade.PASSED:
                etree.SubElement(case, "system-out").text = r.reason
            elif r.grade is Grade.NOT_GRADED:
                etree.SubElement(case, "skipped", message=f"not graded: {r.reason}")
            else:
                failure = etree.SubElement(case, "failure", message=r.reason, type="conformance")
                failure.text = (
                    f"{r.reason}\n\nchecks: {r.checks}\nwhy: {r.why}\nfix: {r.fix}\nrule: {r.docs}"
                )
        return bytes(
            etree.tostring(suites, xml_declaration=True, encoding="UTF-8", pretty_print=True)
        )


# -- running ------------------------------------------------------------------


async def probe_target(target: ConformanceTarget) -> str:
    """TLS to the target as the ICC; the SHA-256 of its certificate.

    TargetUnreachableError if nothing answers TLS there, TargetUntrustedError
    if its certificate does not chain to --target-ca, name the host, or match
    the pin.
    """
    ctx = client_context(target.client_cert, target.client_key, target.target_ca)
    where = f"{target.host}:{target.port}"
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port, ssl=ctx),
            timeout=target.timeout,
        )
    except ssl.SSLCertVerificationError as exc:
        raise TargetUntrustedError(
            f"the target {target.url} presents an untrusted certificate "
            f"({exc.verify_message or exc.reason})",
            hint=f"pass the CA that issued the endpoint's certificate with --target-ca, "
            f"and make sure the certificate names the host {target.host}",
        ) from None
    except ssl.SSLError as exc:
        raise TargetUnreachableError(
            f"the target {where} does not complete a TLS handshake ({exc.reason or exc})",
            hint="check that the URL names the endpoint's HTTPS port",
        ) from None
    except TimeoutError:
        raise TargetUnreachableError(
            f"the target {where} did not answer within {target.timeout:g} s",
            hint="check the URL, that the endpoint runs, and any firewall between",
        ) from None
    except OSError as exc:
        raise TargetUnreachableError(
            f"cannot reach the target {where}: {exc.strerror or exc}",
            hint="check the URL and that the endpoint is running",
        ) from None
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    presented = hashlib.sha256(der).hexdigest() if der else ""
    if target.cert_sha256 is not None and presented != target.cert_sha256:
        raise TargetUntrustedError(
            f"the target {target.url} presents an untrusted certificate: its SHA-256 "
            f"{presented or '(none)'} is not the --target-cert-sha256 {target.cert_sha256}",
            hint="check the URL, or give the fingerprint of the endpoint's current certificate",
        )
    return presented


async def graded(case: CaseLike, run: Callable[[], Awaitable[Verdict]]) -> CaseResult:
    """Run one case and grade it; a failure on the kit's (or harness's) own side is
    **not graded**, never passed or failed."""
    begin = time.monotonic()
    try:
        verdict = await run()
    except B2BSimError as exc:
        verdict = Verdict.not_graded(f"could not run: {exc}")
    return CaseResult.of(case, verdict, time.monotonic() - begin)


async def run_conformance(
    target: ConformanceTarget,
    *,
    progress: Callable[[CaseResult], None] | None = None,
    make_kit: Callable[[ConformanceTarget, str, Material, aiohttp.ClientSession], Kit] = Kit,
) -> ConformanceReport:
    """Probe the target, then run and grade every case (or ``target.case_ids``).

    ``make_kit``: e.g. a :class:`Kit` that also keeps what the cases exchange (the
    plan's recorder); it is told each case's id before the case runs (:meth:`Kit.begin`).
    """
    cases = select_cases(target.case_ids)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    sha = await probe_target(target)
    results: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="b2bsim-conformance-") as tmp:
        material = make_material(target.state, Path(tmp))
        timeout = aiohttp.ClientTimeout(total=target.timeout)
        connector = aiohttp.TCPConnector(force_close=True)  # each case on its own connection
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            kit = make_kit(target, sha, material, session)
            for case in cases:
                kit.begin(case.id)
                result = await graded(case, functools.partial(case.run, kit))
                results.append(result)
                if progress is not None:
                    progress(result)
    return ConformanceReport(
        target=target.url,
        org_number=target.org_number,
        target_cert_sha256=sha,
        seed=target.seed,
        started_at=started,
        results=tuple(results),
        notes=material.notes,
    )


def write_reports(report: ConformanceReport, *, junit: Path | None, json_file: Path | None) -> None:
    """Write the JUnit and/or JSON files (parent directories created)."""
    outputs: Sequence[tuple[Path | None, bytes]] = (
        (junit, report.to_junit() if junit else b""),
        (json_file, (json.dumps(report.to_json(), indent=2) + "\n").encode()),
    )
    for path, data in outputs:
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            raise ConfigError(
                f"cannot write {path}: {exc.strerror}", hint="choose a writable path"
            ) from None
