"""One certificate builder for the lab: the test CA's certificates and the kits' wrong ones.

:func:`build_certificate` makes an ECDSA P-256 key and an X.509 certificate
for it, self-signed or signed by an issuer, as a CA or a leaf, with the names,
subject alternative names, key usages, extended key usages and validity window
the caller asks for; :func:`certify` does the same for a public key someone
else holds (a supplier's, from its certificate signing request).  The test CA
(:mod:`simulator.lab.pki`, :mod:`simulator.lab.csr`) issues its CA, ICC and
supplier certificates with them; the conformance kit
(:mod:`simulator.kits.conformance_certs`) its rogue and foreign ones.

:func:`write_pair` writes a key (mode 0600) and its certificate (mode 0644),
each atomically (:func:`write_atomic`).  Nothing here prints or logs a key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from simulator.vocabulary.errors import ConfigError, PkiError

__all__ = [
    "BACKDATE",
    "Issuer",
    "aware",
    "build_certificate",
    "certify",
    "host_names",
    "key_usage",
    "name",
    "validity_window",
    "write_atomic",
    "write_pair",
]

#: Certificates start this long before "now", to tolerate clock skew.
BACKDATE = dt.timedelta(minutes=5)
#: Who signs a certificate: the issuer's certificate and private key.
Issuer: TypeAlias = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


def name(*attrs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    """An X.509 name of ``(oid, value)`` attributes, in order."""
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


def key_usage(
    *, digital_signature: bool = False, cert_sign: bool = False, content_commitment: bool = False
) -> x509.KeyUsage:
    """A KeyUsage with digitalSignature, keyCertSign + cRLSign (a CA's) and/or
    contentCommitment (non-repudiation: a signer of evidence)."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def aware(when: dt.datetime, what: str) -> dt.datetime:
    """``when`` in UTC; ConfigError naming ``what`` if it has no time zone."""
    if when.tzinfo is None:
        raise ConfigError(
            f"{what} {when.isoformat()} has no time zone", hint="pass an aware UTC time"
        )
    return when.astimezone(dt.UTC)


def validity_window(validity: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    """From :data:`BACKDATE` before now (whole seconds) to ``validity`` after now."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return now - BACKDATE, now + validity


def host_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """Subject alternative names for DNS names and IP addresses; ConfigError for anything else."""
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


def build_certificate(
    subject: x509.Name,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    issuer: Issuer | None = None,
    ca: bool = False,
    path_length: int | None = None,
    usage: x509.KeyUsage | None = None,
    ekus: Sequence[x509.ObjectIdentifier] = (),
    sans: Sequence[x509.GeneralName] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new P-256 key and a certificate for it, signed with SHA-256.

    ``issuer`` signs it (None: self-signed); the rest is as :func:`certify`.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certify(
        subject,
        key.public_key(),
        not_before=not_before,
        not_after=not_after,
        issuer=issuer if issuer is not None else (None, key),
        ca=ca,
        path_length=path_length,
        usage=usage,
        ekus=ekus,
        sans=sans,
    )
    return cert, key


def certify(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    issuer: Issuer | tuple[None, ec.EllipticCurvePrivateKey],
    ca: bool = False,
    path_length: int | None = None,
    usage: x509.KeyUsage | None = None,
    ekus: Sequence[x509.ObjectIdentifier] = (),
    sans: Sequence[x509.GeneralName] = (),
) -> x509.Certificate:
    """A certificate for ``public_key``, signed by ``issuer`` with SHA-256.

    An issuer of ``(None, key)`` self-signs with ``key``.  ``ca`` and
    ``path_length`` go in the critical BasicConstraints; ``usage`` (see
    :func:`key_usage`) is critical, ``ekus`` and ``sans`` are not, and each is
    left out when empty.  Every certificate carries its subject key identifier
    and the issuer's as its authority key identifier.
    """
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    issuer_cert, signing_key = issuer
    if issuer_cert is None:
        issuer_name, issuer_ski = subject, ski
    else:
        issuer_name = issuer_cert.subject
        try:
            issuer_ski = issuer_cert.extensions.get_extension_for_class(
                x509.SubjectKeyIdentifier
            ).value
        except x509.ExtensionNotFound:
            issuer_ski = x509.SubjectKeyIdentifier.from_public_key(signing_key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    builder = builder.add_extension(ski, critical=False).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False
    )
    return builder.sign(signing_key, hashes.SHA256())


def write_pair(
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
    write_atomic(key_path, key_pem, 0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
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
