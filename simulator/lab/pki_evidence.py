"""The AF test CA's evidence certificate: the key that signs evidence packs.

``b2bsim plan evidence`` signs a pack's manifest with a key of its own,
certified by the AF test CA of the state directory: ``STATE/pki/evidence.pem``
and ``evidence.key``, made on first use by the one certificate builder
(:mod:`simulator.lab.certbuilder`).  It is kept apart from the ICC's and the
suppliers' certificates by its usages: keyUsage digitalSignature and
contentCommitment (critical), extended key usage id-kp-documentSigning
(RFC 9336) only, so it is no TLS client nor server; and its subject says what
it is for.  The key is mode 0600 and never printed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from simulator.lab.certbuilder import build_certificate, key_usage, name, write_pair
from simulator.lab.pki_store import load_ca, make_dirs
from simulator.vocabulary.certs import (
    AF_ORG_NAME,
    ORG_URI_PREFIX,
    is_issued_by,
    load_certificate,
    load_private_key,
    organisation_identifier,
)
from simulator.vocabulary.errors import PkiError
from simulator.vocabulary.identifiers import AF_ORG_NUMBER
from simulator.vocabulary.state import StateDir

__all__ = [
    "DOCUMENT_SIGNING",
    "EVIDENCE_COMMON_NAME",
    "EvidenceSigner",
    "evidence_paths",
    "evidence_signer",
]

#: id-kp-documentSigning (RFC 9336): the one extended key usage of the evidence certificate.
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
EVIDENCE_COMMON_NAME = "AF test evidence signer"
#: The evidence certificate's life (it outlives a test plan; the CA's own end caps it).
EVIDENCE_VALIDITY = dt.timedelta(days=3 * 365)


@dataclass(frozen=True)
class EvidenceSigner:
    """The evidence certificate, its key, and the CA that certified it."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    cert_path: Path


def evidence_paths(state: StateDir) -> tuple[Path, Path]:
    """Where the evidence certificate and its key live: ``STATE/pki/evidence.{pem,key}``."""
    return state.pki / "evidence.pem", state.pki / "evidence.key"


def evidence_signer(state: StateDir) -> EvidenceSigner:
    """The state's evidence signer, made (certified by the AF test CA) on first use.

    PkiError if the state has no test CA.  A certificate that the current CA
    did not issue, or that has expired, is replaced.
    """
    ca_cert, ca_key = load_ca(state)
    cert_path, key_path = evidence_paths(state)
    if cert_path.is_file() and key_path.is_file():
        cert = load_certificate(cert_path)
        key = load_private_key(key_path)
        fresh = cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        if is_issued_by(cert, ca_cert) and fresh and cert.public_key() == key.public_key():
            return EvidenceSigner(cert, key, ca_cert, cert_path)
    make_dirs(state)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    end = min(now + EVIDENCE_VALIDITY, ca_cert.not_valid_after_utc)
    if end <= now:
        raise PkiError(
            "the AF test CA has expired: it cannot certify an evidence key",
            hint="run `b2bsim pki init --force` to make a new CA",
        )
    cert, key = build_certificate(
        name(
            (NameOID.COMMON_NAME, EVIDENCE_COMMON_NAME),
            (NameOID.ORGANIZATION_NAME, AF_ORG_NAME),
            (NameOID.ORGANIZATION_IDENTIFIER, organisation_identifier(AF_ORG_NUMBER)),
        ),
        not_before=max(now - dt.timedelta(minutes=5), ca_cert.not_valid_before_utc),
        not_after=end,
        issuer=(ca_cert, ca_key),
        usage=key_usage(digital_signature=True, content_commitment=True),
        ekus=[DOCUMENT_SIGNING],
        sans=[x509.UniformResourceIdentifier(ORG_URI_PREFIX + AF_ORG_NUMBER)],
    )
    write_pair(cert_path, cert, key_path, key)
    return EvidenceSigner(cert, key, ca_cert, cert_path)
