"""The test PKI: AF's test CA, the ICC's certificate and one per supplier.

Every key is ECDSA P-256.  The CA also publishes a certificate revocation
list (``pki/crl.pem``, see :func:`crl_path`): :func:`revoke_certificate` adds
a certificate to it, :func:`rotate_supplier_cert` gives a supplier a new key
and certificate.  Files live where :class:`~simulator.vocabulary.state.StateDir`
says (``state.pki``); private keys are created with mode 0600 inside
directories of mode 0700 and are never printed or logged.  Certificates are
identified everywhere by the lower-case hex SHA-256 of their DER encoding.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from simulator.vocabulary.certs import (
    AF_ORG_NAME,
    CA_COMMON_NAME,
    ICC,
    ICC_COMMON_NAME,
    ORG_URI_PREFIX,
    CrlFile,
    cert_sha256,
    crl_path,
    is_icc_certificate,
    is_issued_by,
    load_certificate,
    load_crl,
    load_private_key,
    org_number_of,
    organisation_identifier,
    require_crl,
)
from simulator.vocabulary.errors import ConfigError, PkiError, RegistryError
from simulator.vocabulary.identifiers import (
    AF_ORG_NUMBER,
    normalise_org_number,
    org_number_from_index,
    validate_org_number,
)
from simulator.vocabulary.registry import Registry
from simulator.vocabulary.state import StateDir

__all__ = [
    "AF_ORG_NAME",
    "CA_COMMON_NAME",
    "CRL_VALIDITY",
    "DEFAULT_HOSTS",
    "ICC",
    "ICC_COMMON_NAME",
    "ORG_URI_PREFIX",
    "CertificateInfo",
    "CrlFile",
    "IssuedCert",
    "PkiSummary",
    "RevokedCert",
    "SupplierIdentity",
    "cert_sha256",
    "crl_path",
    "current_hosts",
    "init_pki",
    "is_icc_certificate",
    "is_issued_by",
    "issue_icc_cert",
    "issue_supplier_cert",
    "load_certificate",
    "load_crl",
    "load_private_key",
    "numbered_suppliers",
    "org_number_of",
    "organisation_identifier",
    "pki_summary",
    "previous_supplier_cert",
    "publish_crl",
    "require_crl",
    "require_pki",
    "revoke_certificate",
    "rotate_supplier_cert",
    "supplier_identity",
    "update_registry_cert",
]

DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1")
#: A CRL's nextUpdate is this long after it is published (every publication renews it).
CRL_VALIDITY = dt.timedelta(days=30)
#: Certificates start this long before "now", to tolerate clock skew.
_BACKDATE = dt.timedelta(minutes=5)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")
_INIT_HINT = "run `b2bsim pki init` (add --force to start over)"


@dataclass(frozen=True, slots=True)
class SupplierIdentity:
    """A supplier to issue a certificate for."""

    org_number: str
    name: str


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A certificate just written, and where its key is.  Holds no key material."""

    org_number: str
    cert_path: Path
    key_path: Path
    sha256: str
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True, slots=True)
class RevokedCert:
    """A certificate :func:`revoke_certificate` put on the CRL."""

    who: str  # an organisation number, or ICC
    serial: int
    sha256: str
    revoked_at: dt.datetime
    crl_path: Path
    already: bool  # True if it was on the CRL before this call


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
        raise PkiError(
            f"the test PKI has no certificate for supplier {org_number}", hint=_INIT_HINT
        )

    def _one(self, role: str) -> CertificateInfo:
        for info in self.certificates:
            if info.role == role:
                return info
        raise PkiError(f"the test PKI has no {role} certificate", hint=_INIT_HINT)


def numbered_suppliers(count: int) -> list[SupplierIdentity]:
    """``count`` test suppliers: index i gets ``org_number_from_index(i)``, "Leverantör i AB"."""
    if count < 0 or count > 1000:
        raise ConfigError(f"{count} suppliers is out of range", hint="use 0 to 1000")
    return [SupplierIdentity(org_number_from_index(i), f"Leverantör {i} AB") for i in range(count)]


def require_pki(state: StateDir, org_numbers: Iterable[str] = ()) -> None:
    """PkiError naming every missing file of the CA, the ICC and the given suppliers."""
    needed = [state.ca_cert, state.ca_key, state.icc_cert, state.icc_key]
    for org in org_numbers:
        needed += [state.supplier_cert(org), state.supplier_key(org)]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise PkiError(f"the test PKI is incomplete: missing {', '.join(missing)}", hint=_INIT_HINT)


def pki_summary(state: StateDir) -> PkiSummary:
    """Describe the PKI on disk (PkiError if the CA or the ICC is missing)."""
    require_pki(state)
    infos = [
        _info("ca", load_certificate(state.ca_cert), state.ca_cert, created=False),
        _info("icc", load_certificate(state.icc_cert), state.icc_cert, created=False),
    ]
    suppliers_dir = state.supplier_cert("0").parent
    for path in sorted(suppliers_dir.glob("*.pem")):
        infos.append(_info("supplier", load_certificate(path), path, created=False))
    return PkiSummary(root=state.pki, certificates=tuple(infos))


# --- issuing ------------------------------------------------------------------


def init_pki(
    state: StateDir,
    suppliers: Sequence[SupplierIdentity],
    *,
    validity_days: int = 365,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    force: bool = False,
) -> PkiSummary:
    """Create the CA, the ICC's certificate and one per supplier, as needed.

    An existing CA is reused unless ``force`` (so re-running adds suppliers
    without invalidating the others); existing ICC and supplier certificates
    are kept unless ``force`` or the CA is new.
    """
    for supplier in suppliers:
        _check_supplier(supplier)
    orgs = [s.org_number for s in suppliers]
    if len(set(orgs)) != len(orgs):
        raise ConfigError("a supplier is listed twice", hint="give each organisation number once")
    _check_validity_days(validity_days)
    sans = _host_names(hosts)
    _make_dirs(state)

    have_ca = state.ca_cert.exists() or state.ca_key.exists()
    if have_ca and not force:
        ca_cert, ca_key = _load_ca(state)
        new_ca = False
    else:
        ca_cert, ca_key = _create_ca(state, validity_days)
        new_ca = True
    infos = [_info("ca", ca_cert, state.ca_cert, created=new_ca)]

    icc_current = _current_leaf(state.icc_cert, state.icc_key, ca_cert)
    if icc_current is None or new_ca or force:
        start, end = _window(validity_days)
        icc_cert = _issue_icc(state, ca_cert, ca_key, sans, start=start, end=end)
        infos.append(_info("icc", icc_cert, state.icc_cert, created=True))
    else:
        infos.append(_info("icc", icc_current, state.icc_cert, created=False))

    for supplier in suppliers:
        path = state.supplier_cert(supplier.org_number)
        current = _current_leaf(path, state.supplier_key(supplier.org_number), ca_cert)
        if current is None or new_ca or force:
            start, end = _window(validity_days)
            issued = _issue_supplier(
                state, supplier, ca_cert=ca_cert, ca_key=ca_key, sans=sans, start=start, end=end
            )
            current = load_certificate(issued.cert_path)
            infos.append(_info("supplier", current, path, created=True))
        else:
            infos.append(_info("supplier", current, path, created=False))
    # A new CA starts with an empty CRL; a kept CA re-publishes its CRL (renewing nextUpdate).
    _write_crl(state, ca_cert, ca_key, {} if new_ca else _crl_entries(state, ca_cert))
    return PkiSummary(root=state.pki, certificates=tuple(infos))


def issue_supplier_cert(
    state: StateDir,
    supplier: SupplierIdentity,
    *,
    validity_days: int = 365,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> IssuedCert:
    """Issue (or replace) one supplier's server certificate from the existing CA.

    ``not_before``/``not_after`` (timezone-aware) override ``validity_days``,
    e.g. to script an expired certificate.
    """
    _check_supplier(supplier)
    _check_validity_days(validity_days)
    sans = _host_names(hosts)
    start, end = _scripted_window(validity_days, not_before, not_after)
    _make_dirs(state)
    ca_cert, ca_key = _load_ca(state)
    return _issue_supplier(
        state, supplier, ca_cert=ca_cert, ca_key=ca_key, sans=sans, start=start, end=end
    )


def issue_icc_cert(
    state: StateDir,
    *,
    validity_days: int = 365,
    hosts: Sequence[str] | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> IssuedCert:
    """Issue (or replace) the ICC's certificate from the existing CA.

    ``hosts`` defaults to the host names of the current ICC certificate (else
    :data:`DEFAULT_HOSTS`); ``not_before``/``not_after`` script e.g. an expired one.
    """
    _check_validity_days(validity_days)
    sans = _host_names(hosts if hosts is not None else current_hosts(state.icc_cert))
    start, end = _scripted_window(validity_days, not_before, not_after)
    _make_dirs(state)
    ca_cert, ca_key = _load_ca(state)
    cert = _issue_icc(state, ca_cert, ca_key, sans, start=start, end=end)
    return IssuedCert(
        org_number=AF_ORG_NUMBER,
        cert_path=state.icc_cert,
        key_path=state.icc_key,
        sha256=cert_sha256(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def supplier_identity(state: StateDir, org_number: str) -> SupplierIdentity:
    """The supplier ``org_number`` with the name in its current certificate (or a default)."""
    org = validate_org_number(normalise_org_number(org_number))
    path = state.supplier_cert(org)
    if path.is_file():
        names = load_certificate(path).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if names and str(names[0].value).strip():
            return SupplierIdentity(org, str(names[0].value))
    return SupplierIdentity(org, f"Leverantör {org} AB")


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
    """Where :func:`rotate_supplier_cert` keeps a supplier's previous certificate and key."""
    previous = state.supplier_cert(org_number).parent / "previous"
    return previous / f"{org_number}.pem", previous / f"{org_number}.key"


def rotate_supplier_cert(
    state: StateDir,
    supplier: SupplierIdentity | str,
    *,
    validity_days: int = 365,
    hosts: Sequence[str] | None = None,
) -> IssuedCert:
    """Give a supplier a new key and certificate from the same CA.

    The previous pair is kept at :func:`previous_supplier_cert` and stays valid
    (it is not revoked: call :func:`revoke_certificate` before rotating for
    that).  ``hosts`` defaults to the host names of the current certificate.
    The registry is not touched: see :func:`update_registry_cert`.
    """
    identity = supplier_identity(state, supplier) if isinstance(supplier, str) else supplier
    _check_supplier(identity)
    org = identity.org_number
    cert_path, key_path = state.supplier_cert(org), state.supplier_key(org)
    if not (cert_path.is_file() and key_path.is_file()):
        raise PkiError(
            f"supplier {org} has no certificate to rotate",
            hint=f"issue one first: `b2bsim pki init --org-number {org}`",
        )
    old_cert, old_key = previous_supplier_cert(state, org)
    old_cert.parent.mkdir(mode=0o700, exist_ok=True)
    _write_atomic(old_key, key_path.read_bytes(), 0o600)
    _write_atomic(old_cert, cert_path.read_bytes(), 0o644)
    return issue_supplier_cert(
        state,
        identity,
        validity_days=validity_days,
        hosts=hosts if hosts is not None else current_hosts(cert_path),
    )


def update_registry_cert(registry_path: Path, org_number: str, sha256: str) -> bool:
    """Set ``cert_sha256`` of one supplier in a registry file, atomically.

    Returns False (and writes nothing) if there is no registry file or it
    does not list the supplier; RegistryError if the file is malformed.
    """
    if not registry_path.is_file():
        return False
    registry = Registry.load(registry_path)
    if org_number not in registry:
        return False
    entries = [
        replace(e, cert_sha256=sha256) if e.org_number == org_number else e for e in registry
    ]
    try:
        Registry(entries).save(registry_path)
    except OSError as exc:
        raise RegistryError(
            f"cannot write {registry_path}: {exc.strerror}",
            hint="check the state directory's permissions",
        ) from None
    return True


# --- revocation ---------------------------------------------------------------


def publish_crl(state: StateDir) -> Path:
    """Re-sign the CA's CRL with its current entries and a new nextUpdate; returns its path."""
    ca_cert, ca_key = _load_ca(state)
    _write_crl(state, ca_cert, ca_key, _crl_entries(state, ca_cert))
    return crl_path(state)


def revoke_certificate(state: StateDir, who: str, *, at: dt.datetime | None = None) -> RevokedCert:
    """Put the current certificate of a supplier (org number) or of the ICC (``"icc"``) on the CRL.

    The CRL is re-published at once.  Revoking a certificate twice is harmless.
    """
    if who.strip().lower() == ICC:
        name, path = ICC, state.icc_cert
    else:
        name = validate_org_number(normalise_org_number(who))
        path = state.supplier_cert(name)
    when = _aware(at, "at") if at is not None else dt.datetime.now(dt.UTC)
    ca_cert, ca_key = _load_ca(state)
    cert = load_certificate(path)
    if not is_issued_by(cert, ca_cert):
        raise PkiError(
            f"the certificate {path} was not issued by the current test CA",
            hint="re-issue it (b2bsim pki issue) before revoking it",
        )
    entries = _crl_entries(state, ca_cert)
    already = cert.serial_number in entries
    if not already:
        entries[cert.serial_number] = when.replace(microsecond=0)
    _write_crl(state, ca_cert, ca_key, entries)
    return RevokedCert(
        who=name,
        serial=cert.serial_number,
        sha256=cert_sha256(cert),
        revoked_at=entries[cert.serial_number],
        crl_path=crl_path(state),
        already=already,
    )


# --- internals ----------------------------------------------------------------


def _check_supplier(supplier: SupplierIdentity) -> None:
    validate_org_number(supplier.org_number)
    if not supplier.name.strip():
        raise ConfigError(
            f"supplier {supplier.org_number} has an empty name", hint="give every supplier a name"
        )


def _check_validity_days(days: int) -> None:
    if days < 1 or days > 36500:
        raise ConfigError(f"validity of {days} days is out of range", hint="use 1 to 36500 days")


def _aware(when: dt.datetime, name: str) -> dt.datetime:
    if when.tzinfo is None:
        raise ConfigError(
            f"{name} {when.isoformat()} has no time zone", hint="pass an aware UTC time"
        )
    return when.astimezone(dt.UTC)


def _scripted_window(
    validity_days: int, not_before: dt.datetime | None, not_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    start, end = _window(validity_days)
    start = _aware(not_before, "not_before") if not_before is not None else start
    end = _aware(not_after, "not_after") if not_after is not None else end
    if end <= start:
        raise ConfigError(
            f"not_after {end.isoformat()} is not after not_before {start.isoformat()}",
            hint="give a validity window that ends after it starts",
        )
    return start, end


def _window(validity_days: int) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return now - _BACKDATE, now + dt.timedelta(days=validity_days)


def _host_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    if isinstance(hosts, str):  # a lone string would become one host per character
        hosts = (hosts,)
    names: list[x509.GeneralName] = []
    for raw in hosts:
        host = raw.strip()
        if not host:
            raise ConfigError("an empty host name", hint="give DNS names or IP addresses")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not _DNS_NAME.fullmatch(host):
                raise ConfigError(
                    f"{host!r} is neither a DNS name nor an IP address",
                    hint="use e.g. localhost or 127.0.0.1 (the xn-- form for non-ASCII names)",
                ) from None
            names.append(x509.DNSName(host))
    return names


def _make_dirs(state: StateDir) -> None:
    state.ensure()
    for d in (state.pki, state.supplier_cert("0").parent):
        d.mkdir(mode=0o700, exist_ok=True)


def _load_ca(state: StateDir) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    require_files = [p for p in (state.ca_cert, state.ca_key) if not p.is_file()]
    if require_files:
        raise PkiError(
            f"the test CA is incomplete: missing {', '.join(map(str, require_files))}",
            hint=_INIT_HINT,
        )
    cert = load_certificate(state.ca_cert)
    key = load_private_key(state.ca_key)
    if cert.public_key() != key.public_key():
        raise PkiError(
            f"{state.ca_key} does not belong to {state.ca_cert}",
            hint="run `b2bsim pki init --force` to make a new CA",
        )
    return cert, key


def _current_leaf(cert_path: Path, key_path: Path, ca: x509.Certificate) -> x509.Certificate | None:
    """The certificate at ``cert_path`` if it and its key are there and ``ca`` issued it."""
    if not (cert_path.is_file() and key_path.is_file()):
        return None
    try:
        cert = load_certificate(cert_path)
    except PkiError:
        return None
    return cert if is_issued_by(cert, ca) else None


def _info(role: str, cert: x509.Certificate, path: Path, *, created: bool) -> CertificateInfo:
    return CertificateInfo(
        role=role,
        subject=cert.subject.rfc4514_string(),
        org_number=org_number_of(cert),
        path=path,
        sha256=cert_sha256(cert),
        not_after=cert.not_valid_after_utc,
        created=created,
    )


def _name(*attrs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


def _create_ca(
    state: StateDir, validity_days: int
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(
        (NameOID.COMMON_NAME, CA_COMMON_NAME),
        (NameOID.ORGANIZATION_NAME, AF_ORG_NAME),
        (NameOID.COUNTRY_NAME, "SE"),
    )
    start, end = _window(validity_days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    _write_pair(state.ca_cert, cert, state.ca_key, key)
    return cert, key


def _leaf(
    subject: x509.Name,
    *,
    sans: list[x509.GeneralName],
    ekus: list[x509.ObjectIdentifier],
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    start: dt.datetime,
    end: dt.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _issue_icc(
    state: StateDir,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    sans: list[x509.GeneralName],
    *,
    start: dt.datetime,
    end: dt.datetime,
) -> x509.Certificate:
    subject = _name(
        (NameOID.COMMON_NAME, ICC_COMMON_NAME),
        (NameOID.ORGANIZATION_NAME, AF_ORG_NAME),
        (NameOID.ORGANIZATION_IDENTIFIER, organisation_identifier(AF_ORG_NUMBER)),
    )
    cert, key = _leaf(
        subject,
        sans=[x509.UniformResourceIdentifier(ORG_URI_PREFIX + AF_ORG_NUMBER), *sans],
        ekus=[ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
        ca_cert=ca_cert,
        ca_key=ca_key,
        start=start,
        end=end,
    )
    _write_pair(state.icc_cert, cert, state.icc_key, key)
    return cert


def _issue_supplier(
    state: StateDir,
    supplier: SupplierIdentity,
    *,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    sans: list[x509.GeneralName],
    start: dt.datetime,
    end: dt.datetime,
) -> IssuedCert:
    org = supplier.org_number
    try:
        subject = _name(
            (NameOID.COMMON_NAME, supplier.name),
            (NameOID.ORGANIZATION_NAME, supplier.name),
            (NameOID.SERIAL_NUMBER, org),
            (NameOID.ORGANIZATION_IDENTIFIER, organisation_identifier(org)),
        )
    except ValueError as exc:  # e.g. a name longer than the 64 characters X.520 allows
        raise ConfigError(
            f"cannot issue a certificate for supplier {org}: {exc}",
            hint="use a supplier name of 1 to 64 characters",
        ) from None
    cert, key = _leaf(
        subject,
        sans=[x509.UniformResourceIdentifier(ORG_URI_PREFIX + org), *sans],
        # clientAuth too: a supplier is a TLS client when it pulls from the ICC.
        ekus=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        ca_cert=ca_cert,
        ca_key=ca_key,
        start=start,
        end=end,
    )
    cert_path, key_path = state.supplier_cert(org), state.supplier_key(org)
    _write_pair(cert_path, cert, key_path, key)
    return IssuedCert(
        org_number=org,
        cert_path=cert_path,
        key_path=key_path,
        sha256=cert_sha256(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def _crl_entries(state: StateDir, ca_cert: x509.Certificate) -> dict[int, dt.datetime]:
    """Serial → revocation time on the current CRL; empty if there is none or not the CA's."""
    path = crl_path(state)
    if not path.is_file():
        return {}
    try:
        crl = load_crl(path, ca_cert)
    except PkiError:
        return {}  # a CRL of an earlier CA: its entries mean nothing for this one
    return {r.serial_number: r.revocation_date_utc for r in crl}


def _crl_number(state: StateDir) -> int:
    try:
        crl = load_crl(crl_path(state))
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except (PkiError, x509.ExtensionNotFound):
        return 0


def _write_crl(
    state: StateDir,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    entries: dict[int, dt.datetime],
) -> None:
    """Sign and write the CRL (mode 0644, atomically) with ``entries`` and a fresh window."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - _BACKDATE)
        .next_update(now + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(_crl_number(state) + 1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    )
    for serial, when in sorted(entries.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    _write_atomic(crl_path(state), crl.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_pair(
    cert_path: Path,
    cert: x509.Certificate,
    key_path: Path,
    key: ec.EllipticCurvePrivateKey,
) -> None:
    """Write key (0600) and certificate (0644), each atomically, key first."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomic(key_path, key_pem, 0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a new file created with ``mode``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise PkiError(
            f"cannot write {path}: {exc.strerror}", hint="check the state directory's permissions"
        ) from None
