"""The conformance kit's wrong certificates, made for each run.

:func:`make_material` issues into a private temporary directory a foreign CA
and a client certificate from it named like the ICC, and (with the AF test
CA's key) a client certificate from the AF CA that is not the ICC's and a
new ICC signing certificate (the rotation and revocation cases); the
refusal cases of :mod:`simulator.kits.conformance_cases` present or sign with
them.  They are built by :mod:`simulator.lab.certbuilder`, as the test CA's
own certificates are.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from simulator.lab.certbuilder import (
    Issuer,
    build_certificate,
    key_usage,
    name,
    validity_window,
    write_pair,
)
from simulator.lab.pki import (
    AF_ORG_NAME,
    ICC_COMMON_NAME,
    ORG_URI_PREFIX,
    load_certificate,
    load_private_key,
)
from simulator.vocabulary.identifiers import AF_ORG_NUMBER
from simulator.vocabulary.state import StateDir

__all__ = ["Credential", "Material", "make_material"]

#: How long this run's wrong certificates are valid.
_VALIDITY = dt.timedelta(days=1)


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
    rotated_icc: Credential | None = None  # a new ICC signing certificate; None: no CA key
    af_ca: Issuer | None = None  # the AF test CA (certificate, key) if its key is in the state
    notes: tuple[str, ...] = ()


def _issue(
    out: Path,
    stem: str,
    subject: x509.Name,
    *,
    issuer: Issuer | None,
    ca: bool = False,
    signer: bool = False,
) -> tuple[Issuer, Credential]:
    """A certificate for ``subject`` signed by ``issuer`` (None: self-signed), in ``out``.

    A CA may sign certificates and CRLs; a ``signer`` is made as the test CA
    makes the ICC's (digital signature, its organisation URI); anything else is
    a TLS client certificate.
    """
    start, end = validity_window(_VALIDITY)
    usage = key_usage(digital_signature=True, cert_sign=True) if ca else None
    sans: list[x509.GeneralName] = []
    if signer:
        usage = key_usage(digital_signature=True)
        sans = [x509.UniformResourceIdentifier(ORG_URI_PREFIX + AF_ORG_NUMBER)]
    cert, key = build_certificate(
        subject,
        not_before=start,
        not_after=end,
        issuer=issuer,
        ca=ca,
        usage=usage,
        ekus=() if ca else (ExtendedKeyUsageOID.CLIENT_AUTH,),
        sans=sans,
    )
    cert_path, key_path = out / f"{stem}.pem", out / f"{stem}.key"
    write_pair(cert_path, cert, key_path, key)
    return (cert, key), Credential(cert_path, key_path, "")


def _icc_like_name(cn: str) -> x509.Name:
    return name(
        (NameOID.COMMON_NAME, cn),
        (NameOID.ORGANIZATION_IDENTIFIER, f"NTRSE-{AF_ORG_NUMBER}"),
    )


def make_material(state: StateDir, out: Path) -> Material:
    """Issue this run's wrong certificates into ``out`` (a private temporary directory)."""
    foreign_ca, _ = _issue(
        out, "foreign-ca", name((NameOID.COMMON_NAME, "Not AF CA")), issuer=None, ca=True
    )
    _, foreign = _issue(out, "foreign-icc", _icc_like_name(ICC_COMMON_NAME), issuer=foreign_ca)
    foreign = Credential(foreign.cert, foreign.key, "named like the ICC, from another CA")
    notes: list[str] = []
    af_client: Credential | None = None
    rotated: Credential | None = None
    ca: Issuer | None = None
    if state.ca_cert.is_file() and state.ca_key.is_file():
        ca = (load_certificate(state.ca_cert), load_private_key(state.ca_key))
        _, made = _issue(out, "af-not-icc", _icc_like_name("Not the ICC"), issuer=ca)
        af_client = Credential(made.cert, made.key, "from the AF test CA, not the ICC's")
        icc_name = name(
            (NameOID.COMMON_NAME, ICC_COMMON_NAME),
            (NameOID.ORGANIZATION_NAME, AF_ORG_NAME),
            (NameOID.ORGANIZATION_IDENTIFIER, f"NTRSE-{AF_ORG_NUMBER}"),
        )
        _, made = _issue(out, "icc-rotated", icc_name, issuer=ca, signer=True)
        rotated = Credential(made.cert, made.key, "a new ICC certificate from the AF test CA")
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
        rotated_icc=rotated,
        af_ca=ca,
        notes=tuple(notes),
    )
