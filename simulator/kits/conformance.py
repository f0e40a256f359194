"""The conformance kit: AF's supplier-facing test plan, run against a supplier's own endpoint.

``b2bsim conformance`` (simulator/commands/conformance.py) plays the ICC
towards the push endpoint a supplier builds: it checks first that the target
answers TLS with a certificate that chains to ``--target-ca`` (else
:class:`TargetUnreachableError` / :class:`TargetUntrustedError`, never graded
cases), then runs every case of :data:`simulator.kits.conformance_cases.CASES`
over mutual TLS, each with real, ICC-signed envelopes around real KA
documents, and grades each one.  docs/conformance.md is the guide for
supplier developers.

The public face: :class:`ConformanceTarget` (what to test, checked on
construction), :func:`run_conformance` (→ :class:`ConformanceReport`), and
the report's :meth:`~ConformanceReport.to_json` / :meth:`~ConformanceReport.to_junit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree

from ka_producer.documents import DocumentFactory, GeneratedDocument, Seller, seller_profile
from simulator.lab.pki import ICC_COMMON_NAME, load_certificate, load_private_key
from simulator.vocabulary.envelope import Envelope
from simulator.vocabulary.errors import (
    B2BSimError,
    ConfigError,
    TargetUnreachableError,
    TargetUntrustedError,
)
from simulator.vocabulary.identifiers import (
    AF_ORG_NUMBER,
    normalise_org_number,
    org_number_from_index,
    validate_org_number,
)
from simulator.vocabulary.messages import MessageMeta, now_ms
from simulator.vocabulary.signing import EnvelopeSigner
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import client_context, normalise_pin

__all__ = [
    "Answer",
    "CaseResult",
    "ConformanceReport",
    "ConformanceTarget",
    "Kit",
    "probe_target",
    "run_conformance",
]

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class ConformanceTarget:
    """What to test and with which keys; every value is checked on construction.

    ``client_cert``/``client_key`` are presented in TLS (the ICC's);
    ``signer_cert``/``signer_key`` sign the envelopes (the ICC's).  ``state``
    is the test PKI's directory: its CA key (if present) issues the wrong
    client certificates some cases need.
    """

    url: str
    target_ca: Path
    org_number: str
    client_cert: Path
    client_key: Path
    signer_cert: Path
    signer_key: Path
    state: StateDir
    cert_sha256: str | None = None  # pin; None: use whatever the target presents
    timeout: float = DEFAULT_TIMEOUT
    seed: int = 1
    case_ids: tuple[str, ...] | None = None  # None: every case

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            parts = parts._replace(netloc="")
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(
                f"target {self.url!r} is not an https URL",
                hint="give the supplier's push endpoint as the registry would hold it, "
                "e.g. https://supplier.example:8443/b2b/envelopes",
            )
        org = validate_org_number(normalise_org_number(self.org_number))
        object.__setattr__(self, "org_number", org)
        if self.cert_sha256 is not None:
            object.__setattr__(self, "cert_sha256", normalise_pin(self.cert_sha256))
        if not (self.timeout > 0):
            raise ConfigError(f"timeout {self.timeout!r} is not positive", hint="e.g. 10")
        if self.seed < 0:
            raise ConfigError(f"seed {self.seed} is negative", hint="use a seed of 0 or more")

    @property
    def host(self) -> str:
        host = urlsplit(self.url).hostname
        assert host is not None  # checked in __post_init__
        return host

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 443


@dataclass(frozen=True)
class Answer:
    """What one POST got back: an HTTP answer, or no answer at all (``error``)."""

    status: int | None
    content_type: str = ""
    text: str = ""
    error: str | None = None

    @property
    def json(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None."""
        try:
            data = json.loads(self.text)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    @property
    def receipt_status(self) -> str | None:
        """``status`` of a JSON receipt (``accepted``, ``duplicate``), or None."""
        body = self.json
        value = body.get("status") if body else None
        return value if isinstance(value, str) else None

    def describe(self) -> str:
        """One short phrase: ``HTTP 403 SIGNATURE_TAMPERED``, ``HTTP 201 accepted``, …."""
        if self.status is None:
            return f"no HTTP answer ({self.error})"
        body = self.json or {}
        label = body.get("code") if isinstance(body.get("code"), str) else None
        label = label or self.receipt_status
        return f"HTTP {self.status}" + (f" {label}" if label else "")


@dataclass(frozen=True)
class CaseResult:
    """One graded case."""

    case_id: str
    title: str
    checks: str
    why: str
    passed: bool
    reason: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.case_id,
            "title": self.title,
            "checks": self.checks,
            "why": self.why,
            "result": "pass" if self.passed else "fail",
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
        }


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

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results)

    def rerun_hint(self) -> str:
        return f"re-run with --seed {self.seed} for the same documents"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "b2bsim-conformance",
            "target": self.target,
            "org_number": self.org_number,
            "target_cert_sha256": self.target_cert_sha256,
            "seed": self.seed,
            "started_at": self.started_at,
            "passed": self.passed,
            "counts": {
                "total": len(self.results),
                "passed": len(self.results) - len(self.failures),
                "failed": len(self.failures),
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
            skipped="0",
            time=f"{self.seconds:.3f}",
            timestamp=self.started_at,
        )
        props = etree.SubElement(suite, "properties")
        for name, value in (
            ("target", self.target),
            ("org_number", self.org_number),
            ("target_cert_sha256", self.target_cert_sha256),
            ("seed", str(self.seed)),
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
            if r.passed:
                etree.SubElement(case, "system-out").text = r.reason
            else:
                failure = etree.SubElement(case, "failure", message=r.reason, type="conformance")
                failure.text = f"{r.reason}\n\nchecks: {r.checks}\nwhy: {r.why}"
        return bytes(
            etree.tostring(suites, xml_declaration=True, encoding="UTF-8", pretty_print=True)
        )


# -- the material the cases need ----------------------------------------------


@dataclass(frozen=True)
class Credential:
    """A certificate and its key on disk (in the kit's temporary directory or the PKI)."""

    cert: Path
    key: Path
    description: str


@dataclass(frozen=True)
class Material:
    """Wrong certificates for the refusal cases, made for this run."""

    af_non_icc_client: Credential | None  # from the AF CA, not the ICC; None: no CA key
    foreign_client: Credential  # from another CA, named like the ICC
    rogue_signer: Credential  # not the ICC's: AF CA non-ICC if possible, else the foreign one
    notes: tuple[str, ...] = ()


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)


def _issue(
    out: Path,
    name: str,
    subject: x509.Name,
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    ca: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Credential]:
    """A P-256 certificate for ``subject`` signed by ``issuer`` (None: self-signed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    cert = builder.sign(issuer_key, hashes.SHA256())
    cert_path, key_path = out / f"{name}.pem", out / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert, key, Credential(cert_path, key_path, "")


def _icc_like_name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, f"NTRSE-{AF_ORG_NUMBER}"),
        ]
    )


def make_material(state: StateDir, out: Path) -> Material:
    """Issue this run's wrong certificates into ``out`` (a private temporary directory)."""
    foreign_ca = _issue(
        out,
        "foreign-ca",
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Not AF CA")]),
        issuer=None,
        ca=True,
    )
    _, _, foreign = _issue(
        out, "foreign-icc", _icc_like_name(ICC_COMMON_NAME), issuer=(foreign_ca[0], foreign_ca[1])
    )
    foreign = Credential(foreign.cert, foreign.key, "named like the ICC, from another CA")
    notes: list[str] = []
    af_client: Credential | None = None
    if state.ca_cert.is_file() and state.ca_key.is_file():
        ca = (load_certificate(state.ca_cert), load_private_key(state.ca_key))
        _, _, made = _issue(out, "af-not-icc", _icc_like_name("Not the ICC"), issuer=ca)
        af_client = Credential(made.cert, made.key, "from the AF test CA, not the ICC's")
    else:
        for cert in sorted(state.supplier_cert("0").parent.glob("*.pem")):
            key = cert.with_suffix(".key")
            if key.is_file():
                af_client = Credential(cert, key, f"supplier certificate {cert.stem}")
                break
        else:
            notes.append(
                f"no AF test CA key or supplier certificate in {state.pki}: "
                "the AF-CA wrong-client case cannot run"
            )
    if af_client is None:
        notes.append("the non-ICC signer is a certificate from another CA")
    return Material(
        af_non_icc_client=af_client,
        foreign_client=foreign,
        rogue_signer=af_client or foreign,
        notes=tuple(notes),
    )


# -- the kit: envelopes and requests -------------------------------------------


@dataclass
class Kit:
    """What a case uses: documents, envelopes, signers and a mutual-TLS POST to the target."""

    target: ConformanceTarget
    target_cert_sha256: str
    material: Material
    session: aiohttp.ClientSession
    factory: DocumentFactory = field(init=False)
    seller: Seller = field(init=False)
    _sequence: int = field(default=0, init=False)
    _base_ms: int = field(default=0, init=False)
    _signer: EnvelopeSigner = field(init=False)
    _icc_ctx: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        t = self.target
        self.factory = DocumentFactory(t.seed)
        self.seller = seller_profile(t.org_number, f"Leverantör {t.org_number} AB")
        self._signer = EnvelopeSigner(t.signer_key.read_bytes(), t.signer_cert.read_bytes())
        self._icc_ctx = self.context(t.client_cert, t.client_key)
        self._base_ms = now_ms()

    def context(self, cert: Path, key: Path) -> ssl.SSLContext:
        """A client context presenting ``cert``, trusting --target-ca, pinned to the target."""
        return client_context(cert, key, self.target.target_ca, pin_sha256=self.target_cert_sha256)

    def order(self) -> GeneratedDocument:
        """A fresh purchase order for the target's organisation."""
        return self.factory.order(self.seller)

    def chain(self) -> tuple[GeneratedDocument, GeneratedDocument, GeneratedDocument]:
        """A fresh order, its self-billing invoice and a credit note of it."""
        return self.factory.chain(self.seller)

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def envelope(
        self,
        doc: GeneratedDocument,
        *,
        sequence: int | None = None,
        org_number: str | None = None,
        cert_sha256: str | None = None,
        url: str | None = None,
        envelope_id: str | None = None,
    ) -> Envelope:
        """An envelope as the ICC makes it for ``doc``, addressed to the target unless told."""
        seq = sequence if sequence is not None else self.next_sequence()
        meta = MessageMeta.new(
            doc.message_type,
            org_number or self.target.org_number,
            seq,
            produced_at_ms=self._base_ms + seq,  # KA's clock runs with its sequence
        )
        return Envelope.create(
            meta,
            doc.xml,
            receiver_cert_sha256=cert_sha256 or self.target_cert_sha256,
            receiver_url=url or self.target.url,
            envelope_id=envelope_id,
        )

    def sign(self, envelope: Envelope) -> bytes:
        """``envelope`` signed as the ICC."""
        return self._signer.sign(envelope)

    def sign_as(self, credential: Credential, envelope: Envelope) -> bytes:
        """``envelope`` signed with ``credential`` (someone who is not the ICC)."""
        signer = EnvelopeSigner(credential.key.read_bytes(), credential.cert.read_bytes())
        return signer.sign(envelope)

    def other_org_number(self) -> str:
        """A valid organisation number that is not the target's."""
        for i in range(1000, 1010):
            org = org_number_from_index(i, prefix="55")
            if org != self.target.org_number:
                return org
        raise AssertionError("unreachable")  # pragma: no cover

    async def post(
        self,
        body: bytes,
        *,
        client: Credential | None = None,
        content_type: str = "application/xml",
    ) -> Answer:
        """POST ``body`` to the target as the ICC (or presenting ``client``)."""
        ctx = self._icc_ctx if client is None else self.context(client.cert, client.key)
        try:
            async with self.session.post(
                self.target.url, data=body, headers={"Content-Type": content_type}, ssl=ctx
            ) as resp:
                text = await resp.text(errors="replace")
                return Answer(resp.status, resp.content_type, text[:4000])
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Answer(None, error=_short_error(exc))


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


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


async def run_conformance(
    target: ConformanceTarget,
    *,
    progress: Callable[[CaseResult], None] | None = None,
) -> ConformanceReport:
    """Probe the target, then run and grade every case (or ``target.case_ids``)."""
    from simulator.kits.conformance_cases import select_cases  # the cases build on this module

    cases = select_cases(target.case_ids)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    sha = await probe_target(target)
    results: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="b2bsim-conformance-") as tmp:
        material = make_material(target.state, Path(tmp))
        timeout = aiohttp.ClientTimeout(total=target.timeout)
        connector = aiohttp.TCPConnector(force_close=True)  # each case on its own connection
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            kit = Kit(target, sha, material, session)
            for case in cases:
                begin = time.monotonic()
                try:
                    verdict = await case.run(kit)
                    passed, reason = verdict.passed, verdict.reason
                except B2BSimError as exc:
                    passed, reason = False, f"could not run: {exc}"
                result = CaseResult(
                    case.id,
                    case.title,
                    case.checks,
                    case.why,
                    passed,
                    reason,
                    time.monotonic() - begin,
                )
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
