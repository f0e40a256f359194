"""Conformance cases about who signed and how: signers, algorithms, wrapping, rotation, revocation.

:data:`SIGNATURE_CASES` send validly signed envelopes a receiver must still
refuse (a signer named like the ICC from another CA, a wrapped signature,
SHA-1); :data:`LIFECYCLE_CASES` rotate the ICC's signing certificate (a new
one from the AF CA must be accepted) and then revoke it on the AF CA's CRL
(it must be refused).  The revocation case publishes the CRL to the state
directory's ``pki/crl.pem``; when that is not the CRL the endpoint reads
(``ConformanceTarget.crl_reaches_target``), it is not graded.
"""

from __future__ import annotations

import datetime as dt

from simulator.kits.conformance_grading import Case, Verdict, expect_receipt, expect_refusal
from simulator.kits.conformance_kit import Kit
from simulator.lab.crl import crl_entries, write_crl
from simulator.lab.pki_store import load_ca
from simulator.vocabulary.certs import crl_path, load_certificate
from simulator.vocabulary.envelope import to_xml
from simulator.vocabulary.xmlsafe import parse_xml, serialize

__all__ = ["ECDSA_SHA1", "ECDSA_SHA256", "LIFECYCLE_CASES", "SHA1", "SIGNATURE_CASES"]

ECDSA_SHA1 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
_SIGNATURE = "the-signature"
_LIFECYCLE = "certificate-rotation-and-revocation"


async def _signer_foreign_ca(kit: Kit) -> Verdict:
    signer = kit.material.foreign_client
    raw = kit.sign_as(signer, kit.envelope(kit.order()))
    verdict = expect_refusal(
        await kit.post(raw), [403], "an envelope signed by a certificate from another CA", 403
    )
    return Verdict(verdict.passed, f"{verdict.reason} [signer: {signer.description}]")


async def _signature_wrapping(kit: Kit) -> Verdict:
    """A forged envelope that carries a genuine, ICC-signed envelope inside it."""
    genuine = parse_xml(kit.sign(kit.envelope(kit.order())))
    forged = to_xml(kit.envelope(kit.order()))
    forged.append(genuine)  # the genuine signature is now nested, not the root's last child
    raw = serialize(forged)
    return expect_refusal(
        await kit.post(raw),
        range(400, 500),
        "a forged envelope wrapped around a genuinely signed one",
        403,
    )


async def _sha1_signature(kit: Kit) -> Verdict:
    raw = kit.sign_with(kit.envelope(kit.order()), signature=ECDSA_SHA1, digest=SHA1)
    return expect_refusal(
        await kit.post(raw), range(400, 500), "an ECDSA-SHA1 signature over a SHA-1 digest", 403
    )


async def _sha1_digest(kit: Kit) -> Verdict:
    raw = kit.sign_with(kit.envelope(kit.order()), signature=ECDSA_SHA256, digest=SHA1)
    return expect_refusal(
        await kit.post(raw), range(400, 500), "a signature over a SHA-1 digest", 403
    )


async def _signer_rotated(kit: Kit) -> Verdict:
    rotated = kit.material.rotated_icc
    if rotated is None:
        return Verdict.not_graded(
            f"no AF test CA key in {kit.target.state.pki}: the kit cannot issue a new ICC "
            "certificate (run with the state directory that holds ca.key)"
        )
    envelope = kit.envelope(kit.order())
    verdict = expect_receipt(
        await kit.post(kit.sign_as(rotated, envelope)), "accepted", envelope.envelope_id
    )
    if not verdict.passed:
        return Verdict(False, f"{verdict.reason}: the endpoint refused the ICC's new certificate")
    return Verdict(True, f"{verdict.reason} [signer: {rotated.description}]")


async def _signer_revoked(kit: Kit) -> Verdict:
    rotated = kit.material.rotated_icc
    state = kit.target.state
    if rotated is None:
        return Verdict.not_graded(
            f"no AF test CA key in {state.pki}: the kit cannot issue or revoke an ICC "
            "certificate (run with the state directory that holds ca.key)"
        )
    if not kit.target.crl_reaches_target:
        return Verdict.not_graded(
            f"the kit cannot publish a CRL the endpoint reads: it runs on {kit.target.host}, "
            f"not this machine (give --publish-crl if it reads {crl_path(state)})"
        )
    ca_cert, ca_key = load_ca(state)
    entries = crl_entries(state, ca_cert)
    serial = load_certificate(rotated.cert).serial_number
    entries.setdefault(serial, dt.datetime.now(dt.UTC).replace(microsecond=0))
    write_crl(state, ca_cert, ca_key, entries)
    raw = kit.sign_as(rotated, kit.envelope(kit.order()))
    verdict = expect_refusal(
        await kit.post(raw), [403], "an envelope signed by a certificate on AF's CRL", 403
    )
    return Verdict(verdict.passed, f"{verdict.reason} [CRL published to {crl_path(state)}]")


SIGNATURE_CASES: tuple[Case, ...] = (
    Case(
        "signer-foreign-ca",
        "A valid signature by a certificate named like the ICC from another CA is refused",
        "403 for a signature whose certificate says CN=ICC, NTRSE-2021002114 but is issued "
        "by a CA that is not AF's",
        "anyone can make a certificate with the ICC's name; only AF's CA makes it the ICC",
        "check that the CA's key signed the signing certificate (not only its name), e.g. "
        "verify_directly_issued_by(AF CA); else 403 SIGNER_UNTRUSTED",
        _SIGNATURE,
        _signer_foreign_ca,
    ),
    Case(
        "signature-wrapping",
        "A forged envelope wrapped around a genuinely signed one is refused",
        "4xx (our API: 403 SIGNATURE_WRAPPING) when the only ds:Signature is inside a "
        "nested, genuine envelope rather than the root's last child",
        "a receiver that verifies one element and reads another loads the forger's document",
        "require exactly one ds:Signature, as the last child of env:Envelope, with one "
        'Reference URI=""; read the envelope only from what the signature covers',
        _SIGNATURE,
        _signature_wrapping,
    ),
    Case(
        "sha1-signature",
        "An ECDSA-SHA1 signature is refused",
        "4xx (our API: 403 SIGNATURE_WEAK_ALGORITHM) for a signature with ECDSA-SHA1 and a "
        "SHA-1 digest, made with the ICC's key",
        "SHA-1 collisions are practical; a SHA-1 signature proves little",
        "accept only SHA-2 signature methods (the ICC uses ECDSA-SHA256)",
        _SIGNATURE,
        _sha1_signature,
    ),
    Case(
        "sha1-digest",
        "A signature over a SHA-1 digest is refused",
        "4xx (our API: 403 SIGNATURE_WEAK_ALGORITHM) for ECDSA-SHA256 over a SHA-1 "
        "Reference digest, made with the ICC's key",
        "the digest is what binds the document to the signature; SHA-1 lets it be swapped",
        "accept only SHA-2 digest methods in the Reference (the ICC uses SHA-256)",
        _SIGNATURE,
        _sha1_digest,
    ),
)
LIFECYCLE_CASES: tuple[Case, ...] = (
    Case(
        "signer-rotated",
        "A new ICC signing certificate from the AF CA is accepted",
        "2xx 'accepted' for an envelope signed with a freshly issued ICC certificate "
        "(new key, new serial, same name, from the AF CA)",
        "AF rotates the ICC's certificate; a receiver pinned to the old one stops taking orders",
        "trust the AF CA and the ICC's name, not one certificate or key; never pin the "
        "ICC's signing certificate",
        _LIFECYCLE,
        _signer_rotated,
    ),
    Case(
        "signer-revoked",
        "An ICC signing certificate revoked on AF's CRL is refused",
        "403 (our API: SIGNER_REVOKED) for an envelope signed with the rotated certificate "
        "after the kit put it on the AF CA's CRL",
        "a revoked certificate may be in someone else's hands",
        "check the signer's serial against AF's CRL (STATE/pki/crl.pem) for every envelope "
        "and re-read the CRL when it changes",
        _LIFECYCLE,
        _signer_revoked,
    ),
)
