"""Opening signed technical envelopes: what a receiver checks before it reads one.

:class:`EnvelopeVerifier` parses with :mod:`simulator.vocabulary.xmlsafe`,
refuses anything but the one shape :class:`~simulator.vocabulary.signing.EnvelopeSigner`
makes (signature wrapping, extra references, SHA-1 and other non-SHA-2
algorithms), checks the signer against the AF CA, the CA's revocation list
and the caller's policy, builds the :class:`~simulator.vocabulary.envelope.Envelope`
only from the verified XML, and (with ``max_skew``) refuses an envelope made
too long ago or in the future.  Each refusal is one of the errors of
:mod:`simulator.vocabulary.signing`.

The ICC's exact shape is verified by :mod:`simulator.vocabulary.xmldsig`,
directly with lxml and cryptography (a fraction of signxml's cost: see
docs/performance.md); the other SHA-2 algorithms a verifier accepts go
through ``signxml``.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, SignXMLException
from signxml.exceptions import InvalidSignature as XmlInvalidSignature
from signxml.verifier import SignatureConfiguration, XMLVerifier

from simulator.vocabulary import xmldsig
from simulator.vocabulary.certs import CrlFile
from simulator.vocabulary.envelope_model import Envelope
from simulator.vocabulary.envelope_xml import DS_NS, ENV_NS, ParsedEnvelope, parse_envelope
from simulator.vocabulary.errors import (
    ConfigError,
    EnvelopeError,
    EnvelopeStaleError,
    SignatureError,
    SignatureMissingError,
    SignatureTamperedError,
    SignatureWrappingError,
    SignerRevokedError,
    UntrustedSignerError,
    WeakAlgorithmError,
)
from simulator.vocabulary.messages import clock_skew_ms
from simulator.vocabulary.signing import pem_certificate
from simulator.vocabulary.timestamps import format_timestamp
from simulator.vocabulary.xmlsafe import DEFAULT_MAX_BYTES, parse_xml

__all__ = [
    "ALLOWED_C14N",
    "ALLOWED_DIGESTS",
    "ALLOWED_SIGNATURE_METHODS",
    "EnvelopeVerifier",
]

#: SHA-2 signature methods a verifier accepts (the signer always uses ECDSA-SHA256).
ALLOWED_SIGNATURE_METHODS = frozenset(
    {
        SignatureMethod.ECDSA_SHA256,
        SignatureMethod.ECDSA_SHA384,
        SignatureMethod.ECDSA_SHA512,
        SignatureMethod.RSA_SHA256,
        SignatureMethod.RSA_SHA384,
        SignatureMethod.RSA_SHA512,
    }
)
#: SHA-2 digest algorithms a verifier accepts (the signer always uses SHA-256).
ALLOWED_DIGESTS = frozenset(
    {DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512}
)
#: Canonicalisation methods (without comments) allowed in SignedInfo and the Reference.
ALLOWED_C14N = frozenset(
    {
        CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        CanonicalizationMethod.CANONICAL_XML_1_0,
        CanonicalizationMethod.CANONICAL_XML_1_1,
    }
)
_CACHE_SIZE = 256
_C14N_URIS = frozenset(m.value for m in ALLOWED_C14N)
_SIG_URIS = frozenset(m.value for m in ALLOWED_SIGNATURE_METHODS)
_DIGEST_URIS = frozenset(m.value for m in ALLOWED_DIGESTS)
_NS = {"ds": DS_NS}
_SIGNATURE = f"{{{DS_NS}}}Signature"
_ENVELOPE = f"{{{ENV_NS}}}Envelope"


def _one(parent: etree._Element, path: str, what: str) -> etree._Element:
    found = parent.findall(path, _NS)
    if len(found) != 1:
        raise SignatureWrappingError(
            f"the signature has {len(found)} {what} elements, expected exactly one",
            hint='sign with one Reference URI="" over the whole envelope',
        )
    el: etree._Element = found[0]
    return el


def _algorithm(el: etree._Element, allowed: frozenset[str], what: str) -> str:
    alg = el.get("Algorithm") or ""
    if alg not in allowed:
        raise WeakAlgorithmError(
            f"the {what} algorithm {alg!r} is not accepted",
            hint="sign with ECDSA-SHA256 and a SHA-256 digest (no SHA-1)",
        )
    return alg


def _check_shape(root: etree._Element) -> etree._Element:
    """Refuse anything but one enveloped signature as the root's last child; return it."""
    if root.tag != _ENVELOPE:
        raise EnvelopeError(
            f"the root element is {root.tag}, not env:Envelope",
            hint="send a technical envelope as described in docs/envelope.md",
        )
    signatures = list(root.iter(_SIGNATURE))
    if not signatures:
        raise SignatureMissingError(
            "the envelope is not signed (no ds:Signature)",
            hint="the ICC signs every envelope; refuse unsigned ones",
        )
    if len(signatures) > 1:
        raise SignatureWrappingError(
            f"the envelope holds {len(signatures)} ds:Signature elements, expected one",
            hint="a second or nested signature is a signature-wrapping attempt",
        )
    signature = signatures[0]
    if signature.getparent() is not root or root[-1] is not signature:
        raise SignatureWrappingError(
            "the ds:Signature is not the last child of env:Envelope",
            hint="a moved signature is a signature-wrapping attempt",
        )
    if signature.find("ds:Object", _NS) is not None:
        raise SignatureWrappingError(
            "the ds:Signature holds a ds:Object",
            hint="content hidden in ds:Object is a signature-wrapping attempt",
        )
    signed_info = _one(signature, "ds:SignedInfo", "SignedInfo")
    c14n = _one(signed_info, "ds:CanonicalizationMethod", "CanonicalizationMethod")
    _algorithm(c14n, _C14N_URIS, "canonicalisation")
    _algorithm(_one(signed_info, "ds:SignatureMethod", "SignatureMethod"), _SIG_URIS, "signature")
    reference = _one(signed_info, "ds:Reference", "Reference")
    if reference.get("URI") != "":
        raise SignatureWrappingError(
            f'the signature\'s Reference URI is {reference.get("URI")!r}, not ""',
            hint='the signature must cover the whole envelope (URI="")',
        )
    transforms = [t.get("Algorithm") for t in reference.findall("ds:Transforms/ds:Transform", _NS)]
    if (
        len(transforms) != 2
        or transforms[0] != xmldsig.ENVELOPED
        or transforms[1] not in _C14N_URIS
    ):
        raise SignatureWrappingError(
            f"the Reference's transforms are {transforms}",
            hint="use exactly the enveloped-signature transform and then exclusive C14N",
        )
    _algorithm(_one(reference, "ds:DigestMethod", "DigestMethod"), _DIGEST_URIS, "digest")
    return signature


def _signing_cert_der(signature: etree._Element) -> bytes:
    certs = signature.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _NS)
    if len(certs) != 1:
        raise UntrustedSignerError(
            f"the signature's KeyInfo holds {len(certs)} X509Certificate elements, expected one",
            hint="put the ICC's signing certificate, and only it, in KeyInfo/X509Data",
        )
    try:
        return base64.b64decode("".join((certs[0].text or "").split()), validate=True)
    except (ValueError, binascii.Error):
        raise UntrustedSignerError(
            "the signature's X509Certificate is not base64",
            hint="put the base64 DER of the ICC's signing certificate in KeyInfo",
        ) from None


class EnvelopeVerifier:
    """Opens signed envelopes: checks shape, algorithms, signer and signature, then reads them.

    ``max_skew`` (seconds): refuse with :class:`EnvelopeStaleError` an envelope
    whose ``created_at`` is more than this far from ``clock()``, either way.
    ``crl_path``: refuse with :class:`SignerRevokedError` a signer on that CRL
    (the file is re-read when it changes; a missing or foreign CRL is a PkiError,
    so the verifier fails closed).
    """

    def __init__(
        self,
        ca_cert_pem: bytes,
        *,
        accept_signer: Callable[[x509.Certificate], bool],
        clock: Callable[[], datetime] | None = None,
        max_skew: float | None = None,
        crl_path: Path | None = None,
    ) -> None:
        self._ca = pem_certificate(ca_cert_pem, "CA")
        self._accept_signer = accept_signer
        self._clock = clock or _skewed_now
        if max_skew is not None and not (math.isfinite(max_skew) and max_skew > 0):
            raise ConfigError(
                f"max_skew {max_skew!r} is not a positive number of seconds",
                hint="give the allowed clock difference in seconds, e.g. 600",
            )
        self.max_skew = max_skew
        self._crl = CrlFile(crl_path, self._ca) if crl_path is not None else None
        self._issued: dict[bytes, x509.Certificate] = {}
        self._config = SignatureConfiguration(
            location="./",
            expect_references=1,
            signature_methods=ALLOWED_SIGNATURE_METHODS,
            digest_algorithms=ALLOWED_DIGESTS,
        )

    def _issued_by_ca(self, der: bytes) -> x509.Certificate:
        """The certificate ``der`` if the CA issued it (cached: the ICC signs with one cert)."""
        cert = self._issued.get(der)
        if cert is not None:
            return cert
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise UntrustedSignerError(
                "the signature's X509Certificate is not a readable certificate",
                hint="put the base64 DER of the ICC's signing certificate in KeyInfo",
            ) from None
        try:
            cert.verify_directly_issued_by(self._ca)
        except (ValueError, TypeError, CryptoInvalidSignature):
            raise UntrustedSignerError(
                f"the signing certificate {cert.subject.rfc4514_string()!r} is not issued by "
                f"the AF CA {self._ca.subject.rfc4514_string()!r}",
                hint="only the ICC's certificate from the AF test CA may sign envelopes",
            ) from None
        if len(self._issued) >= _CACHE_SIZE:
            self._issued.clear()
        self._issued[der] = cert
        return cert

    def _check_signer(self, cert: x509.Certificate, now: datetime) -> None:
        for what, c in (("signing", cert), ("CA", self._ca)):
            if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
                raise UntrustedSignerError(
                    f"the {what} certificate {c.subject.rfc4514_string()!r} is not valid at "
                    f"{now.isoformat()} (valid {c.not_valid_before_utc.isoformat()} to "
                    f"{c.not_valid_after_utc.isoformat()})",
                    hint="renew the certificate (b2bsim pki) or check the clock",
                )
        if not self._accept_signer(cert):
            subject = cert.subject.rfc4514_string()
            raise UntrustedSignerError(
                f"the signing certificate {subject!r} is from the AF CA but not the ICC's",
                hint="only the ICC signs envelopes; a supplier or other certificate may not",
            )
        if self._crl is not None and self._crl.revoked(cert):
            subject = cert.subject.rfc4514_string()
            raise SignerRevokedError(
                f"the signing certificate {subject!r} (serial {cert.serial_number:x}) is revoked",
                hint="the ICC must sign with a certificate that is not on the AF CA's CRL",
            )

    def _check_fresh(self, envelope: Envelope, now: datetime) -> None:
        if self.max_skew is None:
            return
        skew = envelope.created_at_ms / 1000 - now.timestamp()
        if abs(skew) <= self.max_skew:
            return
        # Which side may be off, and by how much: the sender stamped created_at, the
        # receiver (here) compares it with its own clock.
        if skew > 0:
            when = "in the future"
            cause = "the sender's clock is ahead, or the receiver's behind"
        else:
            when = "ago"
            cause = (
                "a replayed or long-held envelope (the ICC must wrap the message again), "
                "or the sender's clock is behind, or the receiver's ahead"
            )
        receiver_now = format_timestamp(int(now.timestamp() * 1000))
        raise EnvelopeStaleError(
            f"the envelope {envelope.envelope_id} was created at "
            f"{format_timestamp(envelope.created_at_ms)}, {abs(skew):.0f} s {when} by the "
            f"receiver's clock (allowed skew {self.max_skew:g} s; the receiver's clock read "
            f"{receiver_now}): {cause}",
            hint="check NTP on both",
        )

    def open(self, data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Envelope:
        """Verify the signed envelope ``data`` and return the Envelope it carries."""
        return self.open_parsed(data, max_bytes=max_bytes).envelope

    def open_parsed(self, data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParsedEnvelope:
        """:meth:`open`, and the document's tree beside the envelope (read from the verified XML).

        A receiver that reads the document's content reads it from this tree:
        what was verified is what is used, and the document is parsed once.
        """
        # Without comments, the parsed tree is what C14N covers (nothing unsigned to read).
        root = parse_xml(data, max_bytes=max_bytes, comments=False)
        signature = _check_shape(root)
        cert = self._issued_by_ca(_signing_cert_der(signature))
        now = self._clock()
        self._check_signer(cert, now)
        public_key = cert.public_key()
        if isinstance(public_key, ec.EllipticCurvePublicKey) and xmldsig.is_direct_shape(
            signature, public_key
        ):
            signed_xml = self._verify_direct(root, signature, public_key)
        else:
            signed_xml = self._verify_signxml(root, cert, now)
        try:
            parsed = parse_envelope(signed_xml)
        except etree.LxmlError as exc:  # the signed XML cannot be canonicalised
            raise EnvelopeError(
                f"the envelope cannot be read: {exc}", hint="see docs/envelope.md"
            ) from None
        self._check_fresh(parsed.envelope, now)
        return parsed

    @staticmethod
    def _verify_direct(
        root: etree._Element, signature: etree._Element, public_key: ec.EllipticCurvePublicKey
    ) -> etree._Element:
        """The signed XML of the ICC's own shape, verified by vocabulary.xmldsig."""
        try:
            signed_info = xmldsig.verified_signed_info(signature, public_key)
        except etree.LxmlError as exc:  # e.g. a relative namespace URI (xmlns:p="0") in scope
            raise SignatureError(
                f"the signature is malformed: its SignedInfo cannot be canonicalised: {exc}",
                hint="sign with an XML-DSig enveloped signature as in docs/envelope.md",
            ) from None
        if signed_info is None:
            raise SignatureTamperedError(
                "the signature value does not verify over SignedInfo",
                hint="refuse it; the signature or its SignedInfo was changed",
            )
        digest = signed_info.findtext("ds:Reference/ds:DigestValue", default="", namespaces=_NS)
        try:
            payload = xmldsig.enveloped_c14n(root, signature)
        except etree.LxmlError as exc:  # e.g. a relative namespace URI (xmlns:p="0")
            raise SignatureError(
                f"the signature is malformed: the envelope cannot be canonicalised: {exc}",
                hint="sign with an XML-DSig enveloped signature as in docs/envelope.md",
            ) from None
        if not xmldsig.digest_matches(payload, digest):
            raise SignatureTamperedError(
                "the envelope was changed after it was signed (digest mismatch)",
                hint="refuse it; ask the ICC to resend",
            )
        # The tree, parsed without comments and now without its signature, holds
        # exactly what the digest covers: read the envelope from it.
        return root

    def _verify_signxml(
        self, root: etree._Element, cert: x509.Certificate, now: datetime
    ) -> etree._Element:
        """The signed XML of any other accepted shape, verified by signxml."""
        config = replace(self._config, verification_time=now)
        try:
            result = XMLVerifier().verify(root, x509_cert=cert, expect_config=config)
        except InvalidDigest:
            raise SignatureTamperedError(
                "the envelope was changed after it was signed (digest mismatch)",
                hint="refuse it; ask the ICC to resend",
            ) from None
        except XmlInvalidSignature as exc:
            raise SignatureTamperedError(
                f"the signature value does not verify: {exc}",
                hint="refuse it; the signature or its SignedInfo was changed",
            ) from None
        except InvalidCertificate as exc:
            raise UntrustedSignerError(
                f"the signing certificate is not acceptable: {exc}",
                hint="only the ICC's valid certificate may sign envelopes",
            ) from None
        except (InvalidInput, SignXMLException, etree.LxmlError, ValueError) as exc:
            # etree.LxmlError: e.g. C14NError on a relative namespace URI (xmlns:p="0").
            raise SignatureError(
                f"the signature is malformed: {exc}",
                hint="sign with an XML-DSig enveloped signature as in docs/envelope.md",
            ) from None
        if isinstance(result, list) or result.signed_xml is None:
            raise SignatureWrappingError(
                "the signature does not cover one XML element", hint="sign the whole envelope"
            )
        signed: etree._Element = result.signed_xml
        return signed


def _skewed_now() -> datetime:
    """Now, shifted by this process's injected clock skew (``$B2BSIM_CLOCK_SKEW_MS``)."""
    return datetime.now(UTC) + timedelta(milliseconds=clock_skew_ms())
