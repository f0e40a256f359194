"""``b2bsim evidence verify``: check an evidence pack's signature, chain and every hash.

The manifest's signature is a detached CMS SignedData (:mod:`simulator.kits.evidence`).
``cryptography`` makes it but has no public CMS verification, so the
SignedData is read with ``asn1crypto`` and checked with ``cryptography``:
the signed attributes' message digest is the SHA-256 of ``manifest.json``,
the signature over the DER of the signed attributes verifies with the
signer's public key, and the signer's certificate chains to the AF test CA
(``cryptography.x509.verification``, at the signing time) with the evidence
certificate's usages (id-kp-documentSigning, digitalSignature).  Then every
file of the zip against the manifest: changed, added or removed, each named.

:func:`verify_pack` returns the findings (empty: the pack holds), one line
each; a file that is not a pack (not a zip, truncated, without the manifest
or its signature) is an :class:`EvidenceUnreadableError`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import verification

from simulator.kits.evidence import KIND, MANIFEST, SIGNATURE
from simulator.lab.pki_evidence import DOCUMENT_SIGNING
from simulator.vocabulary.errors import EvidenceUnreadableError

__all__ = ["Verified", "verify_pack"]

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


@dataclass(frozen=True)
class Verified:
    """What a verification found: its findings (none: it holds) and the manifest."""

    findings: tuple[str, ...]
    manifest: dict[str, Any]
    files: int


def _unreadable(path: Path, what: str) -> EvidenceUnreadableError:
    return EvidenceUnreadableError(
        f"{path} is no evidence pack: {what}",
        hint="ask for the pack again as `b2bsim plan evidence` wrote it",
    )


def _read_zip(path: Path) -> tuple[dict[str, bytes], list[str]]:
    """Every member's bytes; and findings for members whose bytes the zip itself refuses."""
    members: dict[str, bytes] = {}
    broken: list[str] = []
    try:
        with zipfile.ZipFile(path) as pack:
            for info in pack.infolist():
                if info.is_dir():
                    continue
                try:
                    members[info.filename] = pack.read(info)
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    broken.append(f"changed: {info.filename} (its bytes do not decode: {exc})")
                    members[info.filename] = b""
    except FileNotFoundError:
        raise _unreadable(path, "no such file") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _unreadable(path, f"not a readable zip ({exc}); truncated?") from None
    return members, broken


def verify_pack(path: Path, ca_file: Path) -> Verified:
    """Check the pack at ``path`` against the AF test CA certificate ``ca_file``."""
    try:
        ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
    except (OSError, ValueError):
        raise EvidenceUnreadableError(
            f"{ca_file} is no readable PEM certificate",
            hint="pass the AF test CA's certificate with --ca (STATE/pki/ca.pem)",
        ) from None
    members, findings = _read_zip(path)
    for needed in (MANIFEST, SIGNATURE):
        if needed not in members:
            raise _unreadable(path, f"it has no {needed}")
    manifest_bytes = members.pop(MANIFEST)
    signature = members.pop(SIGNATURE)
    findings += _check_signature(manifest_bytes, signature, ca)
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        findings.append(f"changed: {MANIFEST} (it is not an evidence manifest)")
        return Verified(tuple(findings), {}, len(members))
    listed: dict[str, str] = manifest.get("files") or {}
    for name in sorted(set(listed) | set(members)):
        if name not in members:
            findings.append(f"removed: {name} (the manifest lists it; the pack lacks it)")
        elif name not in listed:
            findings.append(f"added: {name} (in the pack, not in the manifest)")
        elif hashlib.sha256(members[name]).hexdigest() != listed[name] and not any(
            f.startswith(f"changed: {name} ") for f in findings
        ):
            findings.append(f"changed: {name} (its SHA-256 is not the manifest's)")
    return Verified(tuple(findings), manifest, len(members))


def _check_signature(content: bytes, der: bytes, ca: x509.Certificate) -> list[str]:
    """Findings about the manifest's CMS signature (empty: it holds)."""
    try:
        info = cms.ContentInfo.load(der)
        if info["content_type"].native != "signed_data":
            return [f"signature: {SIGNATURE} is not a CMS SignedData"]
        signed = info["content"]
        signers = list(signed["signer_infos"])
        certs = [
            x509.load_der_x509_certificate(c.chosen.dump())
            for c in signed["certificates"] or []
            if c.name == "certificate"
        ]
    except (ValueError, TypeError, KeyError) as exc:
        return [f"signature: {SIGNATURE} cannot be read as CMS ({exc})"]
    if len(signers) != 1:
        return [f"signature: {SIGNATURE} has {len(signers)} signers, not one"]
    signer = signers[0]
    try:
        return _check_signer(content, signer, certs, ca)
    except (ValueError, TypeError, KeyError) as exc:
        return [f"signature: {SIGNATURE} is malformed ({exc})"]


def _check_signer(
    content: bytes, signer: Any, certs: list[x509.Certificate], ca: x509.Certificate
) -> list[str]:
    sid = signer["sid"]
    if sid.name != "issuer_and_serial_number":
        return ["signature: the signer is not named by issuer and serial number"]
    serial = sid.chosen["serial_number"].native
    cert = next((c for c in certs if c.serial_number == serial), None)
    if cert is None:
        return ["signature: the signer's certificate is not in manifest.p7s"]
    digest_name = signer["digest_algorithm"]["algorithm"].native
    algorithm = _HASHES.get(digest_name)
    if algorithm is None:
        return [f"signature: digest algorithm {digest_name} is not accepted"]
    attrs = signer["signed_attrs"]
    if not attrs:
        return ["signature: no signed attributes (the manifest's digest is not signed)"]
    values = {a["type"].native: a["values"] for a in attrs}
    digests = values.get("message_digest")
    h = hashes.Hash(algorithm)
    h.update(content)
    findings = []
    if digests is None or digests[0].native != h.finalize():
        findings.append(f"changed: {MANIFEST} (its digest is not the one signed)")
    signed_bytes = attrs.untag().dump()  # the SET OF, as signed (RFC 5652 §5.4)
    try:
        _verify_raw(cert, signer["signature"].native, signed_bytes, algorithm)
    except InvalidSignature:
        return [*findings, f"signature: {SIGNATURE} does not verify with its certificate"]
    when = values.get("signing_time")
    at = when[0].native if when is not None else dt.datetime.now(dt.UTC)
    chain = _check_chain(cert, [c for c in certs if c is not cert], ca, at)
    return findings + ([f"chain: {chain}"] if chain else [])


def _verify_raw(
    cert: x509.Certificate, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm
) -> None:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(algorithm))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    else:
        raise InvalidSignature


def _eku(_policy: Any, _cert: x509.Certificate, value: x509.ExtendedKeyUsage | None) -> None:
    if value is None or DOCUMENT_SIGNING not in value:
        raise ValueError("the signer's certificate is not an evidence certificate (EKU)")


def _usage(_policy: Any, _cert: x509.Certificate, value: x509.KeyUsage | None) -> None:
    if value is None or not value.digital_signature:
        raise ValueError("the signer's certificate may not sign (key usage)")


def _check_chain(
    cert: x509.Certificate, others: list[x509.Certificate], ca: x509.Certificate, at: dt.datetime
) -> str:
    """ "" if ``cert`` chains to ``ca`` as an evidence signer at ``at``, else why not."""
    crit = verification.Criticality.AGNOSTIC
    ee = (
        verification.ExtensionPolicy.permit_all()
        .require_present(x509.ExtendedKeyUsage, crit, _eku)
        .require_present(x509.KeyUsage, crit, _usage)
    )
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([ca]))
        .time(at)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(cert, others)
    except verification.VerificationError as exc:
        return f"the signer's certificate does not chain to the AF test CA given ({exc})"
    return ""
