"""The AF test CA certifies a supplier's own key, from its certificate signing request.

The supplier makes its key pair and a PKCS#10 CSR (e.g. with ``openssl req``);
its private key never leaves it.  :func:`read_csr` reads the CSR (PEM or
DER) and refuses one whose own signature does not verify (it proves no
possession of the key), a key the CA does not certify (RSA below 2048 bits,
EC curves other than P-256 and P-384, any other key type) and a signature
made with SHA-1 or another hash than SHA-256/384/512.  :func:`issue_from_csr`
then issues the supplier's certificate exactly as for the suppliers whose
keys the simulator makes (:func:`simulator.lab.pki.issue_supplier_cert`: the
CA sets subject and SAN from the organisation number; nothing of the CSR's
subject or extensions is copied), for the CSR's public key.

The certificate goes to the state (``pki/suppliers/ORG.pem``, so that
``pki show``, ``pki revoke`` and the registry know it) and, with ``out``, to a
file for the supplier.  A key of an earlier certificate of that supplier (made
by the simulator) is moved with its certificate to
:func:`~simulator.lab.pki.previous_supplier_cert`: the state then holds no
key of this supplier.  Renewing such a certificate takes a new CSR.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from simulator.lab.certbuilder import write_atomic
from simulator.lab.pki import (
    IssuedCert,
    SupplierIdentity,
    current_hosts,
    issue_supplier_cert,
    previous_supplier_cert,
    supplier_identity,
)
from simulator.vocabulary.errors import (
    ConfigError,
    CsrError,
    CsrHashError,
    CsrKeyError,
    CsrSignatureError,
    PkiError,
)
from simulator.vocabulary.identifiers import normalise_org_number, validate_org_number
from simulator.vocabulary.state import StateDir

__all__ = [
    "ACCEPTED_CURVES",
    "ACCEPTED_HASHES",
    "MIN_RSA_BITS",
    "CsrIssued",
    "check_csr",
    "describe_key",
    "is_issued_from_csr",
    "issue_from_csr",
    "read_csr",
]

#: The smallest RSA key the CA certifies.
MIN_RSA_BITS = 2048
#: The EC curves the CA certifies (TLS 1.2 and 1.3 peers all speak them).
ACCEPTED_CURVES: tuple[str, ...] = ("secp256r1", "secp384r1")
#: The hashes a CSR may be signed with.
ACCEPTED_HASHES: tuple[str, ...] = ("sha256", "sha384", "sha512")
_HASH_NAMES = {"sha1": "SHA-1", "md5": "MD5", "sha224": "SHA-224"}
_NEW_CSR = "make a new key and CSR, e.g. openssl req -new -newkey ec "
_NEW_CSR += "-pkeyopt ec_paramgen_curve:P-256 -nodes -keyout KEY -out FILE.csr -subj /CN=x"


@dataclass(frozen=True, slots=True)
class CsrIssued:
    """A certificate issued for a CSR's key.  Holds no key material."""

    issued: IssuedCert  # key_path is None: the key stays with the supplier
    name: str  # the supplier's name in the subject
    key: str  # what was certified, e.g. "EC P-256" or "RSA 3072"
    out: Path | None  # the supplier's copy, if asked for
    previous: Path | None  # where the certificate it replaces was kept, if there was one


def read_csr(path: Path) -> x509.CertificateSigningRequest:
    """The CSR at ``path`` (PEM or DER), checked; a CsrError subclass saying what is wrong."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CsrError(f"no CSR at {path}", hint="give the file the supplier made") from None
    except OSError as exc:
        raise CsrError(f"cannot read {path}: {exc.strerror}", hint="check the path") from None
    try:
        if b"-----BEGIN" in data:
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError:
        raise CsrError(
            f"{path} is not a certificate signing request (PKCS#10, PEM or DER)", hint=_NEW_CSR
        ) from None
    check_csr(csr, str(path))
    return csr


def check_csr(csr: x509.CertificateSigningRequest, where: str) -> str:
    """Refuse what the CA must not certify; returns the key's description (e.g. "EC P-256").

    The hash is checked first: OpenSSL 3 does not verify a SHA-1 signature at all.
    """
    key = describe_key(csr.public_key(), where)
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm:
        algorithm = None
    if algorithm is None or algorithm.name not in ACCEPTED_HASHES:
        if algorithm is None:
            used = f"algorithm {csr.signature_algorithm_oid.dotted_string}"
        else:
            used = _HASH_NAMES.get(algorithm.name, algorithm.name.upper())
        raise CsrHashError(
            f"{where}: the CSR is signed with {used}; the CA accepts SHA-256, SHA-384 or SHA-512",
            hint="make the CSR again with -sha256 (openssl req's default)",
        )
    try:
        valid = csr.is_signature_valid
    except (UnsupportedAlgorithm, ValueError, TypeError):
        valid = False
    if not valid:
        raise CsrSignatureError(
            f"{where}: the CSR's own signature does not verify, so it proves no key possession",
            hint="make a new CSR with the supplier's private key and do not edit it afterwards",
        )
    return key


def describe_key(public_key: object, where: str) -> str:
    """``"EC P-256"``, ``"RSA 3072"``…; CsrKeyError for a key the CA does not certify."""
    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.key_size
        if bits < MIN_RSA_BITS:
            raise CsrKeyError(
                f"{where}: an RSA key of {bits} bits; the CA certifies RSA of {MIN_RSA_BITS} "
                "bits or more",
                hint="make a new key and CSR: RSA 3072, or EC P-256",
            )
        return f"RSA {bits}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = public_key.curve.name
        if curve not in ACCEPTED_CURVES:
            raise CsrKeyError(
                f"{where}: an EC key on curve {curve}; the CA certifies P-256 and P-384 only",
                hint=_NEW_CSR,
            )
        return f"EC P-{public_key.curve.key_size}"
    kind = type(public_key).__name__.removeprefix("_").removesuffix("PublicKey")
    raise CsrKeyError(
        f"{where}: a key of type {kind}; the CA certifies EC (P-256, P-384) and RSA (2048+ bits)",
        hint=_NEW_CSR,
    )


def is_issued_from_csr(state: StateDir, org_number: str) -> bool:
    """True if the state holds this supplier's certificate but not its key (the supplier has it)."""
    return state.supplier_cert(org_number).is_file() and not state.supplier_key(org_number).exists()


def issue_from_csr(
    state: StateDir,
    csr_path: Path,
    org_number: str,
    *,
    name: str | None = None,
    validity_days: int = 365,
    hosts: Sequence[str] | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    out: Path | None = None,
) -> CsrIssued:
    """Certify the key of the CSR at ``csr_path`` for supplier ``org_number``.

    ``name`` defaults to the name in the supplier's current certificate (else
    "Leverantör ORG AB"), ``hosts`` to its host names (else localhost and
    127.0.0.1).  Every check runs before anything is written.  The registry
    is not touched: see :func:`simulator.vocabulary.registry.register_supplier`.
    """
    org = validate_org_number(normalise_org_number(org_number))
    csr = read_csr(csr_path)
    key = describe_key(csr.public_key(), str(csr_path))
    if name is not None and not name.strip():
        raise ConfigError("--name is empty", hint="give the supplier's name, or leave it out")
    identity = SupplierIdentity(org, name.strip()) if name else supplier_identity(state, org)
    cert_path = state.supplier_cert(org)
    chosen = tuple(hosts) if hosts else current_hosts(cert_path)
    if out is not None and out.resolve() == cert_path.resolve():
        raise ConfigError(f"--out {out} is the state's own copy", hint="write elsewhere")
    previous = _keep_previous(state, org)
    issued = issue_supplier_cert(
        state,
        identity,
        validity_days=validity_days,
        hosts=chosen,
        not_before=not_before,
        not_after=not_after,
        public_key=csr.public_key(),
    )
    if out is not None:
        write_atomic(out, issued.cert_path.read_bytes(), 0o644)
    return CsrIssued(issued=issued, name=identity.name, key=key, out=out, previous=previous)


def _keep_previous(state: StateDir, org: str) -> Path | None:
    """Copy the supplier's current certificate (and a key the state made) to previous/."""
    cert_path, key_path = state.supplier_cert(org), state.supplier_key(org)
    if not cert_path.is_file():
        return None
    old_cert, old_key = previous_supplier_cert(state, org)
    try:
        old_cert.parent.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise PkiError(
            f"cannot create {old_cert.parent}: {exc.strerror}",
            hint="check the state directory's permissions",
        ) from None
    if key_path.is_file():
        write_atomic(old_key, key_path.read_bytes(), 0o600)
    else:
        old_key.unlink(missing_ok=True)  # a key of an older pair does not belong to this one
    write_atomic(old_cert, cert_path.read_bytes(), 0o644)
    return old_cert
