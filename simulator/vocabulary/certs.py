"""Reading certificates, keys and CRLs, and what a certificate says.

What every component needs of the AF test PKI without the CA itself (that is
:mod:`simulator.lab.pki`): PEM readers that fail with a :class:`PkiError`
saying what to do, the SHA-256 fingerprint every pin and registry entry uses,
the organisation number a certificate is bound to, and the CA's CRL, re-read
when it changes.
"""

from __future__ import annotations

import functools
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from simulator.vocabulary.errors import PkiError
from simulator.vocabulary.identifiers import AF_ORG_NUMBER
from simulator.vocabulary.state import StateDir

__all__ = [
    "AF_ORG_NAME",
    "CA_COMMON_NAME",
    "ICC",
    "ICC_COMMON_NAME",
    "ORG_URI_PREFIX",
    "CrlFile",
    "cert_sha256",
    "crl_path",
    "is_icc_certificate",
    "is_issued_by",
    "load_certificate",
    "load_crl",
    "load_private_key",
    "org_number_of",
    "organisation_identifier",
    "require_crl",
]

CA_COMMON_NAME = "AF test CA"
ICC_COMMON_NAME = "ICC"
AF_ORG_NAME = "Arbetsförmedlingen (test)"
#: SAN URI that binds a certificate to an organisation number.
ORG_URI_PREFIX = "urn:b2bsim:org:"
#: What :func:`revoke_certificate` and the ``pki`` commands call the ICC's certificate.
ICC = "icc"
_INIT_HINT = "run `b2bsim pki init` (add --force to start over)"


def organisation_identifier(org_number: str) -> str:
    """The X.520 organizationIdentifier of a Swedish organisation: ``NTRSE-<org>``."""
    return f"NTRSE-{org_number}"


def _read_pem(path: Path, what: str) -> bytes:
    """The bytes of a PEM file; PkiError naming ``what`` if it is missing or unreadable."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise PkiError(f"no {what} at {path}", hint=_INIT_HINT) from None
    except OSError as exc:
        raise PkiError(f"cannot read {what} {path}: {exc.strerror}", hint=_INIT_HINT) from None


def load_certificate(path: Path) -> x509.Certificate:
    """Read one PEM certificate; PkiError if it is missing or not a certificate."""
    data = _read_pem(path, "certificate")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise PkiError(f"{path} is not a PEM certificate", hint=_INIT_HINT) from None


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Read one unencrypted PEM EC private key; PkiError if missing or not one."""
    data = _read_pem(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # The message of the underlying error could quote the file: do not repeat it.
        raise PkiError(f"{path} is not an unencrypted PEM private key", hint=_INIT_HINT) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path} is not an EC private key", hint=_INIT_HINT)
    return key


def cert_sha256(cert: x509.Certificate | Path) -> str:
    """Lower-case hex SHA-256 over the DER encoding of ``cert`` (or of the PEM file)."""
    if not isinstance(cert, x509.Certificate):
        cert = load_certificate(cert)
    return cert.fingerprint(hashes.SHA256()).hex()


def org_number_of(cert: x509.Certificate) -> str | None:
    """The organisation number a certificate is bound to.

    Read from the SAN URI ``urn:b2bsim:org:<org>``, else the subject's
    serialNumber; None if the certificate carries neither.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith(ORG_URI_PREFIX):
                return uri[len(ORG_URI_PREFIX) :]
    serials = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return str(serials[0].value) if serials else None


@functools.lru_cache(maxsize=256)  # asked per request of the same few certificates
def is_icc_certificate(cert: x509.Certificate) -> bool:
    """True if the subject names the ICC of AF (CN=ICC, organizationIdentifier of AF).

    This looks at names only; check the chain with :func:`is_issued_by` or TLS.
    """
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    org_ids = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)
    return [a.value for a in cns] == [ICC_COMMON_NAME] and [a.value for a in org_ids] == [
        organisation_identifier(AF_ORG_NUMBER)
    ]


def is_issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """True if ``ca`` signed ``cert`` (signature and issuer name; not validity dates)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def require_crl(state: StateDir) -> Path:
    """The CA's CRL file, which every receiver checks; PkiError if it was never published."""
    path = crl_path(state)
    if not path.is_file():
        raise PkiError(
            f"the test CA has published no CRL at {path}",
            hint="run `b2bsim pki crl` (or `b2bsim pki init`) to publish it",
        )
    return path


def crl_path(state: StateDir) -> Path:
    """The CA's certificate revocation list: ``pki/crl.pem``."""
    return state.pki / "crl.pem"


def load_crl(path: Path, ca: x509.Certificate | None = None) -> x509.CertificateRevocationList:
    """Read a PEM CRL; with ``ca``, also check that ``ca`` issued and signed it.

    PkiError if it is missing, not a CRL, or not the CA's.
    """
    data = _read_pem(path, "CRL")
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError:
        raise PkiError(f"{path} is not a PEM CRL", hint=_INIT_HINT) from None
    if ca is not None and not (
        crl.issuer == ca.subject and crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    ):
        raise PkiError(
            f"the CRL {path} is not signed by the CA {ca.subject.rfc4514_string()!r}",
            hint="re-publish it with `b2bsim pki init` (it keeps the CA)",
        )
    return crl


class CrlFile:
    """A CRL file that is re-read when it changes (size, mtime or inode).

    ``revoked(cert)`` costs one ``stat`` when nothing changed.  The CRL must
    be the CA's (signature checked); a missing or bad CRL raises PkiError, so
    a caller fails closed.
    """

    def __init__(self, path: Path, ca: x509.Certificate) -> None:
        self.path = Path(path)
        self._ca = ca
        self._stamp: tuple[int, int, int] | None = None
        self._serials: frozenset[int] = frozenset()

    def serials(self) -> frozenset[int]:
        """The serial numbers on the CRL now."""
        try:
            st = self.path.stat()
        except OSError:
            raise PkiError(f"no CRL at {self.path}", hint=_INIT_HINT) from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            crl = load_crl(self.path, self._ca)
            self._serials = frozenset(r.serial_number for r in crl)
            self._stamp = stamp
        return self._serials

    def revoked(self, cert: x509.Certificate) -> bool:
        """True if ``cert``'s serial number is on the CRL (the CA issues unique serials)."""
        return cert.serial_number in self.serials()
