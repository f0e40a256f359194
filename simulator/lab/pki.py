"""The test PKI: AF's test CA, the ICC's certificate and one per supplier.

Issuing and rotation (:func:`init_pki`, :func:`issue_supplier_cert`,
:func:`issue_icc_cert`, :func:`rotate_supplier_cert`), and the PKI's public
face: it re-exports the CA's files and summary (:mod:`simulator.lab.pki_store`),
revocation (:mod:`simulator.lab.crl`) and certificate reading
(:mod:`simulator.vocabulary.certs`).  Certificates are made by
:mod:`simulator.lab.certbuilder`.  Every key is ECDSA P-256.  Files live where
:class:`~simulator.vocabulary.state.StateDir` says (``state.pki``); private
keys are created with mode 0600 inside directories of mode 0700 and are
never printed or logged.  Certificates are identified everywhere by the
lower-case hex SHA-256 of their DER encoding.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from simulator.lab.certbuilder import (
    Issuer,
    aware,
    certify,
    host_names,
    key_usage,
    name,
    validity_window,
    write_atomic,
    write_pair,
)
from simulator.lab.crl import (
    CRL_VALIDITY,
    RevokedCert,
    crl_entries,
    publish_crl,
    revoke_certificate,
    write_crl,
)
from simulator.lab.pki_store import (
    DEFAULT_HOSTS,
    CertificateInfo,
    PkiSummary,
    cert_info,
    create_ca,
    current_hosts,
    load_ca,
    make_dirs,
    pki_summary,
    previous_supplier_cert,
    require_pki,
)
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
from simulator.vocabulary.errors import ConfigError, PkiError
from simulator.vocabulary.identifiers import (
    AF_ORG_NUMBER,
    normalise_org_number,
    org_number_from_index,
    validate_org_number,
)
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
]


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
    key_path: Path | None  # None: issued from a CSR, the key stays with its holder
    sha256: str
    not_before: dt.datetime
    not_after: dt.datetime


def numbered_suppliers(count: int) -> list[SupplierIdentity]:
    """``count`` test suppliers: index i gets ``org_number_from_index(i)``, "Leverantör i AB"."""
    if count < 0 or count > 1000:
        raise ConfigError(f"{count} suppliers is out of range", hint="use 0 to 1000")
    return [SupplierIdentity(org_number_from_index(i), f"Leverantör {i} AB") for i in range(count)]


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
    sans = host_names(hosts)
    make_dirs(state)

    have_ca = state.ca_cert.exists() or state.ca_key.exists()
    if have_ca and not force:
        ca_cert, ca_key = load_ca(state)
        new_ca = False
    else:
        ca_cert, ca_key = create_ca(state, validity_days)
        new_ca = True
    infos = [cert_info("ca", ca_cert, state.ca_cert, created=new_ca)]

    icc_current = _current_leaf(state.icc_cert, state.icc_key, ca_cert)
    if icc_current is None or new_ca or force:
        start, end = _window(validity_days)
        issued = _issue_icc(state, (ca_cert, ca_key), sans, start=start, end=end)
        icc_cert = load_certificate(issued.cert_path)
        infos.append(cert_info("icc", icc_cert, state.icc_cert, created=True))
    else:
        infos.append(cert_info("icc", icc_current, state.icc_cert, created=False))

    for supplier in suppliers:
        path = state.supplier_cert(supplier.org_number)
        current = _current_leaf(path, None, ca_cert)  # its key may be the supplier's own
        if current is None or new_ca or force:
            start, end = _window(validity_days)
            issued = _issue_supplier(state, supplier, (ca_cert, ca_key), sans, start=start, end=end)
            current = load_certificate(issued.cert_path)
            infos.append(cert_info("supplier", current, path, created=True))
        else:
            infos.append(cert_info("supplier", current, path, created=False))
    # A new CA starts with an empty CRL; a kept CA re-publishes its CRL (renewing nextUpdate).
    write_crl(state, ca_cert, ca_key, {} if new_ca else crl_entries(state, ca_cert))
    return PkiSummary(root=state.pki, certificates=tuple(infos))


def issue_supplier_cert(
    state: StateDir,
    supplier: SupplierIdentity,
    *,
    validity_days: int = 365,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    public_key: CertificatePublicKeyTypes | None = None,
) -> IssuedCert:
    """Issue (or replace) one supplier's server certificate from the existing CA.

    ``not_before``/``not_after`` (timezone-aware) override ``validity_days``,
    e.g. to script an expired certificate.  ``public_key`` (the supplier's own,
    from its CSR: :mod:`simulator.lab.csr`) is certified instead of a new key.
    """
    _check_supplier(supplier)
    _check_validity_days(validity_days)
    sans = host_names(hosts)
    start, end = _scripted_window(validity_days, not_before, not_after)
    make_dirs(state)
    ca = load_ca(state)
    return _issue_supplier(state, supplier, ca, sans, start=start, end=end, public_key=public_key)


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
    sans = host_names(hosts if hosts is not None else current_hosts(state.icc_cert))
    start, end = _scripted_window(validity_days, not_before, not_after)
    make_dirs(state)
    return _issue_icc(state, load_ca(state), sans, start=start, end=end)


def supplier_identity(state: StateDir, org_number: str) -> SupplierIdentity:
    """The supplier ``org_number`` with the name in its current certificate (or a default)."""
    org = validate_org_number(normalise_org_number(org_number))
    path = state.supplier_cert(org)
    if path.is_file():
        names = load_certificate(path).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if names and str(names[0].value).strip():
            return SupplierIdentity(org, str(names[0].value))
    return SupplierIdentity(org, f"Leverantör {org} AB")


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
    The registry is not touched: see
    :func:`simulator.vocabulary.registry.update_registry_cert`.
    """
    identity = supplier_identity(state, supplier) if isinstance(supplier, str) else supplier
    _check_supplier(identity)
    org = identity.org_number
    cert_path, key_path = state.supplier_cert(org), state.supplier_key(org)
    if cert_path.is_file() and not key_path.is_file():  # AF does not hold the key
        raise PkiError(
            f"supplier {org}'s certificate was issued from its CSR: renewing it needs a new CSR",
            hint=f"`b2bsim pki issue --csr NEW.csr --org-number {org}` with the supplier's CSR",
        )
    if not cert_path.is_file():
        raise PkiError(
            f"supplier {org} has no certificate to rotate",
            hint=f"issue one first: `b2bsim pki init --org-number {org}`",
        )
    old_cert, old_key = previous_supplier_cert(state, org)
    old_cert.parent.mkdir(mode=0o700, exist_ok=True)
    write_atomic(old_key, key_path.read_bytes(), 0o600)
    write_atomic(old_cert, cert_path.read_bytes(), 0o644)
    return issue_supplier_cert(
        state,
        identity,
        validity_days=validity_days,
        hosts=hosts if hosts is not None else current_hosts(cert_path),
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


def _scripted_window(
    validity_days: int, not_before: dt.datetime | None, not_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    start, end = _window(validity_days)
    start = aware(not_before, "not_before") if not_before is not None else start
    end = aware(not_after, "not_after") if not_after is not None else end
    if end <= start:
        raise ConfigError(
            f"not_after {end.isoformat()} is not after not_before {start.isoformat()}",
            hint="give a validity window that ends after it starts",
        )
    return start, end


def _window(validity_days: int) -> tuple[dt.datetime, dt.datetime]:
    return validity_window(dt.timedelta(days=validity_days))


def _current_leaf(
    cert_path: Path, key_path: Path | None, ca: x509.Certificate
) -> x509.Certificate | None:
    """The certificate at ``cert_path`` if ``ca`` issued it and its key is at ``key_path``."""
    if not (cert_path.is_file() and (key_path is None or key_path.is_file())):
        return None
    try:
        cert = load_certificate(cert_path)
    except PkiError:
        return None
    return cert if is_issued_by(cert, ca) else None


def _issue_icc(
    state: StateDir,
    ca: Issuer,
    sans: list[x509.GeneralName],
    *,
    start: dt.datetime,
    end: dt.datetime,
) -> IssuedCert:
    subject = name(
        (NameOID.COMMON_NAME, ICC_COMMON_NAME),
        (NameOID.ORGANIZATION_NAME, AF_ORG_NAME),
        (NameOID.ORGANIZATION_IDENTIFIER, organisation_identifier(AF_ORG_NUMBER)),
    )
    ekus = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    paths = (state.icc_cert, state.icc_key)
    return _issue_leaf(
        subject, AF_ORG_NUMBER, ca, sans, ekus=ekus, paths=paths, start=start, end=end
    )


def _issue_supplier(
    state: StateDir,
    supplier: SupplierIdentity,
    ca: Issuer,
    sans: list[x509.GeneralName],
    *,
    start: dt.datetime,
    end: dt.datetime,
    public_key: CertificatePublicKeyTypes | None = None,
) -> IssuedCert:
    org = supplier.org_number
    try:
        subject = name(
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
    # clientAuth too: a supplier is a TLS client when it pulls from the ICC.
    ekus = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    paths = (state.supplier_cert(org), state.supplier_key(org))
    return _issue_leaf(
        subject, org, ca, sans, ekus=ekus, paths=paths, start=start, end=end, public_key=public_key
    )


def _issue_leaf(
    subject: x509.Name,
    org: str,
    ca: Issuer,
    sans: list[x509.GeneralName],
    *,
    ekus: list[x509.ObjectIdentifier],
    paths: tuple[Path, Path],
    start: dt.datetime,
    end: dt.datetime,
    public_key: CertificatePublicKeyTypes | None = None,
) -> IssuedCert:
    """A signing leaf of the CA for ``org`` (its URI first in the SAN), written to ``paths``.

    Of a new key, or of ``public_key``: only the certificate is written, an old key removed.
    """
    key = None
    if public_key is None:
        key = ec.generate_private_key(ec.SECP256R1())
        public_key = key.public_key()
    cert = certify(
        subject,
        public_key,
        not_before=start,
        not_after=end,
        issuer=ca,
        usage=key_usage(digital_signature=True),
        ekus=ekus,
        sans=[x509.UniformResourceIdentifier(ORG_URI_PREFIX + org), *sans],
    )
    cert_path, key_path = paths
    if key is not None:
        write_pair(cert_path, cert, key_path, key)
    else:
        write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        key_path.unlink(missing_ok=True)
    return IssuedCert(
        org_number=org,
        cert_path=cert_path,
        key_path=key_path if key is not None else None,
        sha256=cert_sha256(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )
