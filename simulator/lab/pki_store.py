"""The test PKI on disk: its directories, the CA's key pair, and what the PKI holds.

:func:`create_ca` makes AF's test CA and :func:`load_ca` reads it back (the
issuing in :mod:`simulator.lab.pki` and the revocation list in
:mod:`simulator.lab.crl` both sign with it); :func:`pki_summary` lists every
certificate (paths and fingerprints, never keys) and :func:`require_pki`
names the files that are missing.  Files live where
:class:`~simulator.vocabulary.state.StateDir` says (``state.pki``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from simulator.lab.certbuilder import (
    build_certificate,
    key_usage,
    name,
    validity_window,
    write_pair,
)
from simulator.vocabulary.certs import (
    AF_ORG_NAME,
    CA_COMMON_NAME,
    cert_sha256,
    load_certificate,
    load_private_key,
    org_number_of,
)
from simulator.vocabulary.errors import PkiError
from simulator.vocabulary.state import StateDir

__all__ = [
    "DEFAULT_HOSTS",
    "INIT_HINT",
    "CertificateInfo",
    "PkiSummary",
    "cert_info",
    "create_ca",
    "current_hosts",
    "load_ca",
    "make_dirs",
    "pki_summary",
    "previous_supplier_cert",
    "require_pki",
]

#: The hosts of a certificate's SAN when nothing else is asked for.
DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1")
INIT_HINT = "run `b2bsim pki init` (add --force to start over)"


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """One certificate of the PKI as ``pki init`` / ``pki show`` report it."""

    role: str  # "ca", "icc" or "supplier"
    subject: str
    org_number: str | None
    path: Path
    sha256: str
    not_after: dt.datetime
    created: bool  # True if this run wrote it, False if it was already there


@dataclass(frozen=True, slots=True)
class PkiSummary:
    """Every certificate of the PKI: paths and fingerprints, never keys."""

    root: Path
    certificates: tuple[CertificateInfo, ...]

    @property
    def ca(self) -> CertificateInfo:
        return self._one("ca")

    @property
    def icc(self) -> CertificateInfo:
        return self._one("icc")

    @property
    def suppliers(self) -> tuple[CertificateInfo, ...]:
        return tuple(c for c in self.certificates if c.role == "supplier")

    def supplier(self, org_number: str) -> CertificateInfo:
        """The certificate of one supplier, or PkiError."""
        for info in self.suppliers:
            if info.org_number == org_number:
                return info
        raise PkiError(f"the test PKI has no certificate for supplier {org_number}", hint=INIT_HINT)

    def _one(self, role: str) -> CertificateInfo:
        for info in self.certificates:
            if info.role == role:
                return info
        raise PkiError(f"the test PKI has no {role} certificate", hint=INIT_HINT)


def require_pki(state: StateDir, org_numbers: Iterable[str] = ()) -> None:
    """PkiError naming every missing file of the CA, the ICC and the given suppliers."""
    needed = [state.ca_cert, state.ca_key, state.icc_cert, state.icc_key]
    for org in org_numbers:
        needed += [state.supplier_cert(org), state.supplier_key(org)]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise PkiError(f"the test PKI is incomplete: missing {', '.join(missing)}", hint=INIT_HINT)


def pki_summary(state: StateDir) -> PkiSummary:
    """Describe the PKI on disk (PkiError if the CA or the ICC is missing)."""
    require_pki(state)
    infos = [
        cert_info("ca", load_certificate(state.ca_cert), state.ca_cert, created=False),
        cert_info("icc", load_certificate(state.icc_cert), state.icc_cert, created=False),
    ]
    suppliers_dir = state.supplier_cert("0").parent
    for path in sorted(suppliers_dir.glob("*.pem")):
        infos.append(cert_info("supplier", load_certificate(path), path, created=False))
    return PkiSummary(root=state.pki, certificates=tuple(infos))


def cert_info(role: str, cert: x509.Certificate, path: Path, *, created: bool) -> CertificateInfo:
    """How :class:`PkiSummary` lists ``cert``, found at ``path``."""
    return CertificateInfo(
        role=role,
        subject=cert.subject.rfc4514_string(),
        org_number=org_number_of(cert),
        path=path,
        sha256=cert_sha256(cert),
        not_after=cert.not_valid_after_utc,
        created=created,
    )


def make_dirs(state: StateDir) -> None:
    """The state directory, and the PKI's directories with mode 0700."""
    state.ensure()
    for d in (state.pki, state.supplier_cert("0").parent):
        d.mkdir(mode=0o700, exist_ok=True)


def load_ca(state: StateDir) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA's certificate and key; PkiError if either is missing or they do not match."""
    require_files = [p for p in (state.ca_cert, state.ca_key) if not p.is_file()]
    if require_files:
        raise PkiError(
            f"the test CA is incomplete: missing {', '.join(map(str, require_files))}",
            hint=INIT_HINT,
        )
    cert = load_certificate(state.ca_cert)
    key = load_private_key(state.ca_key)
    if cert.public_key() != key.public_key():
        raise PkiError(
            f"{state.ca_key} does not belong to {state.ca_cert}",
            hint="run `b2bsim pki init --force` to make a new CA",
        )
    return cert, key


def create_ca(
    state: StateDir, validity_days: int
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new self-signed test CA (may sign certificates, not CAs), written to the state."""
    start, end = validity_window(dt.timedelta(days=validity_days))
    cert, key = build_certificate(
        name(
            (NameOID.COMMON_NAME, CA_COMMON_NAME),
            (NameOID.ORGANIZATION_NAME, AF_ORG_NAME),
            (NameOID.COUNTRY_NAME, "SE"),
        ),
        not_before=start,
        not_after=end,
        ca=True,
        path_length=0,
        usage=key_usage(cert_sign=True),
    )
    write_pair(state.ca_cert, cert, state.ca_key, key)
    return cert, key


def current_hosts(cert_path: Path) -> tuple[str, ...]:
    """The DNS names and IP addresses in the SAN of the certificate at ``cert_path``.

    :data:`DEFAULT_HOSTS` if there is no such certificate or it names no host.
    """
    if not cert_path.is_file():
        return DEFAULT_HOSTS
    try:
        san = load_certificate(cert_path).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        return DEFAULT_HOSTS
    hosts = [*san.value.get_values_for_type(x509.DNSName)]
    hosts += [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)]
    return tuple(hosts) or DEFAULT_HOSTS


def previous_supplier_cert(state: StateDir, org_number: str) -> tuple[Path, Path]:
    """Where a supplier's previous certificate and key are kept (rotation, renewal)."""
    previous = state.supplier_cert(org_number).parent / "previous"
    return previous / f"{org_number}.pem", previous / f"{org_number}.key"
