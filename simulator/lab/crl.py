"""Revocation in the test PKI: the CA's certificate revocation list.

The CA publishes its CRL at ``pki/crl.pem`` (see
:func:`~simulator.vocabulary.certs.crl_path`; reading and checking a CRL is
:mod:`simulator.vocabulary.certs`' job).  :func:`revoke_certificate` puts the
ICC's or a supplier's current certificate on it, :func:`publish_crl` re-signs
it with a new nextUpdate; :func:`write_crl` is what
:func:`~simulator.lab.pki.init_pki` publishes with.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from simulator.lab.certbuilder import BACKDATE, aware, write_atomic
from simulator.lab.pki_store import load_ca
from simulator.vocabulary.certs import (
    ICC,
    cert_sha256,
    crl_path,
    is_issued_by,
    load_certificate,
    load_crl,
)
from simulator.vocabulary.errors import PkiError
from simulator.vocabulary.identifiers import normalise_org_number, validate_org_number
from simulator.vocabulary.state import StateDir

__all__ = [
    "CRL_VALIDITY",
    "RevokedCert",
    "crl_entries",
    "publish_crl",
    "revoke_certificate",
    "write_crl",
]

#: A CRL's nextUpdate is this long after it is published (every publication renews it).
CRL_VALIDITY = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class RevokedCert:
    """A certificate :func:`revoke_certificate` put on the CRL."""

    who: str  # an organisation number, or ICC
    serial: int
    sha256: str
    revoked_at: dt.datetime
    crl_path: Path
    already: bool  # True if it was on the CRL before this call


def publish_crl(state: StateDir) -> Path:
    """Re-sign the CA's CRL with its current entries and a new nextUpdate; returns its path."""
    ca_cert, ca_key = load_ca(state)
    write_crl(state, ca_cert, ca_key, crl_entries(state, ca_cert))
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
    when = aware(at, "at") if at is not None else dt.datetime.now(dt.UTC)
    ca_cert, ca_key = load_ca(state)
    cert = load_certificate(path)
    if not is_issued_by(cert, ca_cert):
        raise PkiError(
            f"the certificate {path} was not issued by the current test CA",
            hint="re-issue it (b2bsim pki issue) before revoking it",
        )
    entries = crl_entries(state, ca_cert)
    already = cert.serial_number in entries
    if not already:
        entries[cert.serial_number] = when.replace(microsecond=0)
    write_crl(state, ca_cert, ca_key, entries)
    return RevokedCert(
        who=name,
        serial=cert.serial_number,
        sha256=cert_sha256(cert),
        revoked_at=entries[cert.serial_number],
        crl_path=crl_path(state),
        already=already,
    )


def crl_entries(state: StateDir, ca_cert: x509.Certificate) -> dict[int, dt.datetime]:
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


def write_crl(
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
        .last_update(now - BACKDATE)
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
    write_atomic(crl_path(state), crl.public_bytes(serialization.Encoding.PEM), 0o644)
