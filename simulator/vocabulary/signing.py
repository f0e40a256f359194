"""Signing technical envelopes with XML Signature, and the ways a signature is refused.

The ICC signs every envelope with :class:`EnvelopeSigner`: an enveloped
signature (``Reference URI=""``) over the whole ``env:Envelope``, ECDSA P-256
with SHA-256, exclusive canonicalisation, the signing certificate in
``KeyInfo``.  A receiver opens it with
:class:`~simulator.vocabulary.verifier.EnvelopeVerifier`, which refuses
anything else with one of the errors defined here (each with its stable code).

The ICC's exact shape is signed by :mod:`simulator.vocabulary.xmldsig`,
directly with lxml and cryptography (a fraction of signxml's cost: see
docs/performance.md).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from lxml import etree

from simulator.vocabulary import xmldsig
from simulator.vocabulary.envelope_model import Envelope
from simulator.vocabulary.envelope_xml import to_xml
from simulator.vocabulary.errors import PkiError
from simulator.vocabulary.xmlsafe import serialize

__all__ = [
    "EnvelopeSigner",
    "pem_certificate",
]


def pem_certificate(pem: bytes, what: str) -> x509.Certificate:
    """The PEM certificate ``pem``; PkiError naming it as the ``what`` certificate."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError):
        raise PkiError(
            f"the {what} certificate is not a PEM X.509 certificate",
            hint="pass the PEM file's bytes (-----BEGIN CERTIFICATE-----)",
        ) from None


class EnvelopeSigner:
    """Signs envelopes as the ICC: ECDSA P-256 / SHA-256, enveloped, exclusive C14N."""

    def __init__(self, key_pem: bytes, cert_pem: bytes) -> None:
        try:
            key = load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            # Never echo the key material: it may be a private key in the wrong format.
            raise PkiError(
                "the signing key is not an unencrypted PEM private key",
                hint="pass the ICC's PEM private key file's bytes",
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise PkiError(
                "the signing key is not an ECDSA P-256 key",
                hint="issue the ICC's signing certificate with an EC P-256 key",
            )
        cert = pem_certificate(cert_pem, "signing")
        if cert.public_key() != key.public_key():
            raise PkiError(
                "the signing key does not belong to the signing certificate",
                hint="pass the ICC's key and certificate from the same pair",
            )
        self._key = key
        #: The signing certificate, as KeyInfo carries it.
        self.certificate = cert
        self._cert_der = cert.public_bytes(Encoding.DER)

    def sign_element(self, envelope: Envelope) -> etree._Element:
        """The signed ``env:Envelope`` element for ``envelope``."""
        root = to_xml(envelope)
        xmldsig.sign_enveloped(root, self._key, self._cert_der)
        return root

    def sign(self, envelope: Envelope) -> bytes:
        """The signed envelope as UTF-8 XML bytes with an XML declaration."""
        return serialize(self.sign_element(envelope))
