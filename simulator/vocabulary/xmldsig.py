"""The ICC's one XML-Signature shape, made and checked directly with lxml and cryptography.

The ICC signs every envelope the same way: one enveloped signature
(``Reference URI=""``, the enveloped-signature transform then exclusive C14N),
exclusive C14N of ``SignedInfo``, SHA-256, ECDSA P-256.  ``signxml`` handles
any XML signature, and pays for it: it serialises and re-parses the whole
document several times, so it took 2.4 ms of CPU to sign and about 3 ms to
verify a 14 kB envelope, half of the ICC's and the supplier stub's work per
message (docs/performance.md).  This module does that one shape with the
same building blocks signxml uses (lxml's C14N, cryptography's SHA-256 and
ECDSA) in about 0.2 ms each way.

:mod:`simulator.vocabulary.signing` uses it for the ICC's shape only, after its own
strict shape checks, and hands every other accepted shape (inclusive C14N,
RSA, SHA-384/512) to signxml.  The tests check both directions against
signxml: what this module signs, signxml verifies, and what signxml signs
in this shape, this module verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from lxml import etree

from simulator.vocabulary.envelope_xml import DS_NS
from simulator.vocabulary.xmlsafe import parse_xml

__all__ = [
    "ECDSA_SHA256",
    "ENVELOPED",
    "EXC_C14N",
    "SHA256",
    "enveloped_c14n",
    "is_direct_shape",
    "sign_enveloped",
    "verified_signed_info",
]

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_P256_BYTES = 32
_NS = {"ds": DS_NS}


def _ds(name: str) -> str:
    return f"{{{DS_NS}}}{name}"


def _c14n(el: etree._Element) -> bytes:
    """Exclusive C14N 1.0 without comments of ``el`` and its subtree."""
    return etree.tostring(el, method="c14n", exclusive=True, with_comments=False)


def _sub(parent: etree._Element, name: str, algorithm: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, _ds(name))
    if algorithm is not None:
        el.set("Algorithm", algorithm)
    return el


def sign_enveloped(
    root: etree._Element, key: ec.EllipticCurvePrivateKey, cert_der: bytes
) -> etree._Element:
    """Append to ``root`` an enveloped ECDSA-SHA256 signature over it; return the signature.

    ``root`` must not hold a signature yet: the digest is taken over it as it
    is, which is what the enveloped-signature transform gives back to a verifier.
    """
    digest = hashlib.sha256(_c14n(root)).digest()
    signature = etree.SubElement(root, _ds("Signature"), nsmap={"ds": DS_NS})
    signed_info = _sub(signature, "SignedInfo")
    _sub(signed_info, "CanonicalizationMethod", EXC_C14N)
    _sub(signed_info, "SignatureMethod", ECDSA_SHA256)
    reference = _sub(signed_info, "Reference")
    reference.set("URI", "")
    transforms = _sub(reference, "Transforms")
    _sub(transforms, "Transform", ENVELOPED)
    _sub(transforms, "Transform", EXC_C14N)
    _sub(reference, "DigestMethod", SHA256)
    _sub(reference, "DigestValue").text = base64.b64encode(digest).decode("ascii")
    der = key.sign(_c14n(signed_info), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")
    _sub(signature, "SignatureValue").text = base64.b64encode(raw).decode("ascii")
    x509_data = _sub(_sub(signature, "KeyInfo"), "X509Data")
    _sub(x509_data, "X509Certificate").text = base64.b64encode(cert_der).decode("ascii")
    return signature


def _algorithm_only(el: etree._Element | None, algorithm: str) -> bool:
    """``el`` names ``algorithm`` and holds no parameters (e.g. no InclusiveNamespaces)."""
    return el is not None and el.get("Algorithm") == algorithm and len(el) == 0


def is_direct_shape(signature: etree._Element, public_key: object) -> bool:
    """Whether ``signature`` is the ICC's shape with a P-256 key, which this module verifies.

    The caller has already refused anything but one ``Reference URI=""`` with
    the enveloped transform and one canonicalisation; this checks the exact
    algorithms and that none of them carries parameters.
    """
    if not (
        isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1"
    ):
        return False
    signed_info = signature.find("ds:SignedInfo", _NS)
    if signed_info is None:
        return False
    transforms = signed_info.findall("ds:Reference/ds:Transforms/ds:Transform", _NS)
    return (
        _algorithm_only(signed_info.find("ds:CanonicalizationMethod", _NS), EXC_C14N)
        and _algorithm_only(signed_info.find("ds:SignatureMethod", _NS), ECDSA_SHA256)
        and _algorithm_only(signed_info.find("ds:Reference/ds:DigestMethod", _NS), SHA256)
        and len(transforms) == 2
        and _algorithm_only(transforms[0], ENVELOPED)
        and _algorithm_only(transforms[1], EXC_C14N)
    )


def verified_signed_info(
    signature: etree._Element, public_key: ec.EllipticCurvePublicKey
) -> etree._Element | None:
    """The signed ``SignedInfo`` as verified (parsed from its C14N form), or None.

    None when the ``SignatureValue`` is not base64 of r‖s for P-256 or does not
    verify over the exclusive C14N of ``SignedInfo``.  Read the reference from
    the returned element, not from the input: only what was signed counts.
    Raises ``etree.LxmlError`` if ``SignedInfo`` cannot be canonicalised (e.g.
    a relative namespace URI in scope).
    """
    signed_info = signature.find("ds:SignedInfo", _NS)
    value = signature.find("ds:SignatureValue", _NS)
    if signed_info is None or value is None:
        return None
    try:
        text = "".join(str(part) for part in value.itertext(with_tail=False))
        raw = base64.b64decode(text.encode(), validate=False)
    except ValueError:
        return None
    if len(raw) != 2 * _P256_BYTES:
        return None
    der = encode_dss_signature(
        int.from_bytes(raw[:_P256_BYTES], "big"), int.from_bytes(raw[_P256_BYTES:], "big")
    )
    signed = _c14n(signed_info)
    try:
        public_key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return None
    return parse_xml(signed, max_bytes=len(signed) + 1)


def enveloped_c14n(root: etree._Element, signature: etree._Element) -> bytes:
    """What the reference covers: ``root`` without ``signature`` (its tail kept), exclusive C14N.

    ``signature`` is removed from ``root`` for good (as signxml's enveloped
    transform does to its copy).  Read the envelope from ``root`` afterwards
    only if it was parsed without comments (then it holds exactly what these
    bytes say, up to namespace declarations nothing uses); otherwise re-parse
    the bytes returned.
    """
    parent = signature.getparent()
    if parent is not None:
        tail = signature.tail
        previous = signature.getprevious()
        parent.remove(signature)
        if tail:
            if previous is not None:
                previous.tail = (previous.tail or "") + tail
            else:
                parent.text = (parent.text or "") + tail
    return _c14n(root)


def digest_matches(payload: bytes, digest_value: str) -> bool:
    """Whether ``digest_value`` (base64) is the SHA-256 of ``payload``, in constant time."""
    try:
        expected = base64.b64decode(digest_value, validate=False)
    except ValueError:
        return False
    return hmac.compare_digest(expected, hashlib.sha256(payload).digest())
