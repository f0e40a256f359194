"""Tests for simulator.vocabulary.signing: signing envelopes and opening them safely."""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.signer import XMLSigner
from signxml.verifier import XMLVerifier

from simulator.vocabulary.envelope import (
    DS_NS,
    ENV_NS,
    SBDH_NS,
    Envelope,
    normalise_document,
    to_xml,
)
from simulator.vocabulary.errors import (
    ConfigError,
    EnvelopeError,
    EnvelopeStaleError,
    HostileXmlError,
    PkiError,
    SignatureError,
    SignatureMissingError,
    SignatureTamperedError,
    SignatureWrappingError,
    SignerRevokedError,
    UntrustedSignerError,
    WeakAlgorithmError,
    XmlDoctypeError,
    XmlTooLargeError,
)
from simulator.vocabulary.messages import MessageType
from simulator.vocabulary.problems import PROBLEMS, code_for
from simulator.vocabulary.rulesets import SHIPPED_RULES_DIR
from simulator.vocabulary.signing import EnvelopeSigner
from simulator.vocabulary.verifier import EnvelopeVerifier
from simulator.vocabulary.xmlsafe import serialize

#: The official schemas and examples shipped in the package.
VALIDATION = SHIPPED_RULES_DIR
EXAMPLES = {
    MessageType.INKOPSORDER: "Order_Example.xml",
    MessageType.SJALVFAKTURA: "SB-base-example.xml",
    MessageType.KREDIT: "SB-base-creditnote-correction.xml",
}
ICC_CN = "AF ICC test signer"
NS = {"ds": DS_NS, "sbd": SBDH_NS, "env": ENV_NS}
NOW = dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Issued:
    """A key pair and its certificate, both as PEM."""

    key_pem: bytes
    cert_pem: bytes
    cert: x509.Certificate


@dataclass(frozen=True)
class Pki:
    """A test CA, the ICC's signing pair, another leaf, a rogue CA's leaf, an expired leaf."""

    ca: Issued
    icc: Issued
    other: Issued
    rogue: Issued
    expired: Issued


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Arbetsförmedlingen test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _issue(
    cn: str,
    *,
    issuer: tuple[ec.EllipticCurvePrivateKey, x509.Name] | None = None,
    ca: bool = False,
    not_after: dt.datetime | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, Issued]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_key, issuer_name = issuer or (key, _name(cn))
    usage = x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=2))
        .not_valid_after(not_after or NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key, Issued(key_pem, cert.public_bytes(serialization.Encoding.PEM), cert)


@pytest.fixture(scope="session")
def pki() -> Pki:
    """Certificates made fresh for this test session (ECDSA P-256)."""
    ca_key, ca = _issue("AF test CA", ca=True)
    rogue_key, rogue_ca = _issue("AF test CA", ca=True)  # same name, other key
    _, icc = _issue(ICC_CN, issuer=(ca_key, ca.cert.subject))
    _, other = _issue("supplier 5520000000", issuer=(ca_key, ca.cert.subject))
    _, rogue = _issue(ICC_CN, issuer=(rogue_key, rogue_ca.cert.subject))
    _, expired = _issue(
        ICC_CN, issuer=(ca_key, ca.cert.subject), not_after=NOW - dt.timedelta(days=1)
    )
    return Pki(ca=ca, icc=icc, other=other, rogue=rogue, expired=expired)


def is_icc(cert: x509.Certificate) -> bool:
    """The test stand-in for pki.is_icc_certificate: the ICC's common name."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return [n.value for n in names] == [ICC_CN]


def make_envelope(message_type: MessageType = MessageType.SJALVFAKTURA) -> Envelope:
    """A valid envelope carrying the official example of ``message_type`` (normalised)."""
    doc = (VALIDATION / "examples" / EXAMPLES[message_type]).read_bytes()
    return Envelope(
        envelope_id="6f1c1d0e-8a43-4a53-9d4c-2b8e1c7e0a11",
        message_id="msg-1",
        correlation_id="corr-1",
        message_type=message_type,
        org_number="5520000000",
        receiver_cert_sha256="0f" * 32,
        receiver_url="https://supplier.example:8443/b2b/inbox",
        produced_at_ms=1_767_225_600_123,
        sequence=7,
        created_at_ms=1_767_225_601_456,
        document=normalise_document(doc),
    )


@pytest.fixture(scope="session")
def signer(pki: Pki) -> EnvelopeSigner:
    """The ICC's signer."""
    return EnvelopeSigner(pki.icc.key_pem, pki.icc.cert_pem)


@pytest.fixture(scope="session")
def verifier(pki: Pki) -> EnvelopeVerifier:
    """A supplier's verifier trusting the test CA and only the ICC's certificate."""
    return EnvelopeVerifier(pki.ca.cert_pem, accept_signer=is_icc)


@pytest.fixture(scope="session")
def signed(signer: EnvelopeSigner) -> bytes:
    """One signed self-billing invoice envelope."""
    return signer.sign(make_envelope())


def one(root: etree._Element, path: str) -> etree._Element:
    """The one element at ``path`` (an XPath using the NS prefixes)."""
    found = root.xpath(path, namespaces=NS)
    assert isinstance(found, list)
    assert len(found) == 1
    el = found[0]
    assert isinstance(el, etree._Element)
    return el


def texts(root: etree._Element, path: str) -> list[str]:
    """The strings (text or attribute values) an XPath selects."""
    found = root.xpath(path, namespaces=NS)
    assert isinstance(found, list)
    return [str(item) for item in found]


def edit(data: bytes, change: Callable[[etree._Element], Any]) -> bytes:
    """``data`` parsed, changed by ``change`` and serialised again."""
    root = etree.fromstring(data)
    change(root)
    return serialize(root)


def sign_with(pki_pair: Issued, envelope: Envelope, **signer_args: Any) -> bytes:
    """Sign ``envelope`` with signxml directly, bypassing EnvelopeSigner's fixed choices."""

    class AnyAlgorithmSigner(XMLSigner):
        def check_deprecated_methods(self) -> None:
            """Allow SHA-1, as an attacker's or an old system's signer would."""

    signer = AnyAlgorithmSigner(**signer_args)
    root = signer.sign(to_xml(envelope), key=pki_pair.key_pem, cert=pki_pair.cert_pem.decode())
    return serialize(root)


class TestEnvelopeSigner:
    """EnvelopeSigner makes one enveloped ECDSA-SHA256 signature with the certificate."""

    def test_signed_shape(self, signed: bytes, pki: Pki) -> None:
        """The signature is the last child and uses ECDSA-SHA256, SHA-256 and exclusive C14N."""
        assert signed.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
        root = etree.fromstring(signed)
        signature = root[-1]
        assert signature.tag == f"{{{DS_NS}}}Signature"
        alg = {
            "c14n": "ds:SignedInfo/ds:CanonicalizationMethod/@Algorithm",
            "sig": "ds:SignedInfo/ds:SignatureMethod/@Algorithm",
            "digest": "ds:SignedInfo/ds:Reference/ds:DigestMethod/@Algorithm",
            "uri": "ds:SignedInfo/ds:Reference/@URI",
        }
        got = {k: texts(signature, v) for k, v in alg.items()}
        assert got == {
            "c14n": [CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0.value],
            "sig": [SignatureMethod.ECDSA_SHA256.value],
            "digest": [DigestAlgorithm.SHA256.value],
            "uri": [""],
        }
        certs = texts(signature, "ds:KeyInfo/ds:X509Data/ds:X509Certificate/text()")
        assert len(certs) == 1
        assert x509.load_der_x509_certificate(base64.b64decode(certs[0])) == pki.icc.cert

    def test_refuses_unreadable_key_without_echoing_it(self, pki: Pki) -> None:
        """A key that is not PEM is a PkiError whose message does not contain the key."""
        key = pki.icc.key_pem.replace(b"PRIVATE KEY", b"PRIVATE KEX")
        with pytest.raises(PkiError) as info:
            EnvelopeSigner(key, pki.icc.cert_pem)
        body = pki.icc.key_pem.splitlines()[1].decode()
        assert body not in str(info.value)

    def test_refuses_rsa_key(self, pki: Pki) -> None:
        """An RSA key is refused: the ICC signs with ECDSA P-256."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with pytest.raises(PkiError, match="P-256"):
            EnvelopeSigner(pem, pki.icc.cert_pem)

    def test_refuses_key_of_other_certificate(self, pki: Pki) -> None:
        """A key and a certificate that are not a pair are refused."""
        with pytest.raises(PkiError, match="does not belong"):
            EnvelopeSigner(pki.icc.key_pem, pki.other.cert_pem)

    def test_refuses_bad_certificate(self, pki: Pki) -> None:
        """A certificate that is not PEM is a PkiError."""
        with pytest.raises(PkiError, match="certificate"):
            EnvelopeSigner(pki.icc.key_pem, b"not a certificate")


class TestOpenRoundTrip:
    """open(sign(env)) gives env back, built from the verified XML."""

    @pytest.mark.parametrize("message_type", list(MessageType))
    def test_round_trip(
        self, message_type: MessageType, signer: EnvelopeSigner, verifier: EnvelopeVerifier
    ) -> None:
        """Signing then opening gives the same Envelope for every message type."""
        env = make_envelope(message_type)
        assert verifier.open(signer.sign(env)) == env

    def test_unsigned_comment_does_not_reach_caller(
        self, signed: bytes, verifier: EnvelopeVerifier
    ) -> None:
        """A comment inserted after signing (not covered by C14N) is not in the opened document."""
        data = signed.replace(b"<cbc:ID>Snippet1</cbc:ID>", b"<cbc:ID>Snip<!--x-->pet1</cbc:ID>")
        assert data != signed
        env = verifier.open(data)
        assert b"<cbc:ID>Snippet1</cbc:ID>" in env.document
        assert b"<!--" not in env.document

    def test_error_codes(self) -> None:
        """Each refusal has its own stable code and is a SignatureError."""
        classes = [
            SignatureMissingError,
            SignatureTamperedError,
            WeakAlgorithmError,
            SignatureWrappingError,
            UntrustedSignerError,
            SignerRevokedError,
        ]
        assert all(issubclass(c, SignatureError) for c in classes)
        assert len({c.code for c in classes}) == len(classes)


_CBC = {"cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"}


class TestOpenParsed:
    """open_parsed: open's envelope and the document's tree, read from the verified XML."""

    def test_same_envelope_as_open(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """The envelope is the one open returns."""
        assert verifier.open_parsed(signed).envelope == verifier.open(signed)

    def test_tree_is_the_verified_document(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """The tree writes the envelope's document bytes; an unsigned comment is not in it."""
        data = signed.replace(b"<cbc:ID>Snippet1</cbc:ID>", b"<cbc:ID>Snip<!--x-->pet1</cbc:ID>")
        parsed = verifier.open_parsed(data)
        assert parsed.document.findtext("cbc:ID", namespaces=_CBC) == "Snippet1"
        assert not parsed.document.xpath("//comment()")
        c14n = etree.tostring(parsed.document, method="c14n", with_comments=False)
        assert c14n == parsed.envelope.document

    def test_refuses_as_open_does(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """A document changed after signing is refused: no tree is handed over."""
        data = signed.replace(b"<cbc:ID>Snippet1</cbc:ID>", b"<cbc:ID>Snippet2</cbc:ID>")
        assert data != signed
        with pytest.raises(SignatureTamperedError):
            verifier.open_parsed(data)


def _tamper_scope(name: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        el = one(root, f"//sbd:Scope[sbd:Type='{name}']/sbd:InstanceIdentifier")
        text = el.text or ""
        el.text = "5520000018" if name == "ORG_NUMBER" else text[:-1] + "9"

    return change


def _tamper_path(path: str, value: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        el = one(root, path)
        el.text = value

    return change


_HDR = "/env:Envelope/sbd:StandardBusinessDocument/sbd:StandardBusinessDocumentHeader"


class TestOpenTampered:
    """Any change after signing is SignatureTamperedError."""

    @pytest.mark.parametrize(
        "change",
        [
            pytest.param(_tamper_scope(name), id=name)
            for name in (
                "MESSAGE_TYPE",
                "ORG_NUMBER",
                "RECEIVER_CERT_SHA256",
                "RECEIVER_URL",
                "PRODUCED_AT",
                "SEQUENCE",
                "MESSAGE_ID",
                "CORRELATION_ID",
            )
        ]
        + [
            pytest.param(
                _tamper_path(f"{_HDR}/sbd:Receiver/sbd:Identifier", "0007:5520000018"),
                id="Receiver",
            ),
            pytest.param(
                _tamper_path(f"{_HDR}/sbd:DocumentIdentification/sbd:InstanceIdentifier", "x"),
                id="envelope-id",
            ),
            pytest.param(
                _tamper_path(
                    f"{_HDR}/sbd:DocumentIdentification/sbd:CreationDateAndTime",
                    "2026-01-01T00:00:01.457Z",
                ),
                id="created-at",
            ),
            pytest.param(
                _tamper_path("//sbd:Scope[sbd:Type='PRODUCED_AT']/sbd:Identifier", "0"),
                id="produced-at-ms",
            ),
        ],
    )
    def test_header_field(
        self, change: Callable[[etree._Element], None], signed: bytes, verifier: EnvelopeVerifier
    ) -> None:
        """Changing any header field breaks the digest."""
        with pytest.raises(SignatureTamperedError, match="changed after it was signed"):
            verifier.open(edit(signed, change))

    def test_one_payload_byte(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """Changing one byte of the UBL payload breaks the digest."""
        data = signed.replace(b"<cbc:ID>Snippet1</cbc:ID>", b"<cbc:ID>Snippet2</cbc:ID>")
        assert len(data) == len(signed)
        assert data != signed
        with pytest.raises(SignatureTamperedError):
            verifier.open(data)

    def test_signature_value(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """A changed SignatureValue does not verify."""

        def change(root: etree._Element) -> None:
            el = one(root, "//ds:SignatureValue")
            text = el.text or ""
            el.text = ("B" if text[0] == "A" else "A") + text[1:]

        with pytest.raises(SignatureTamperedError, match="signature value"):
            verifier.open(edit(signed, change))

    def test_signed_info(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """A changed DigestValue (SignedInfo) does not verify."""

        def change(root: etree._Element) -> None:
            el = one(root, "//ds:DigestValue")
            text = el.text or ""
            el.text = ("B" if text[0] == "A" else "A") + text[1:]

        with pytest.raises(SignatureTamperedError):
            verifier.open(edit(signed, change))


class TestOpenAlgorithms:
    """Only SHA-2 algorithms are accepted."""

    def test_sha1_signature(self, pki: Pki, verifier: EnvelopeVerifier) -> None:
        """An ECDSA-SHA1 signature with a SHA-1 digest is refused."""
        data = sign_with(
            pki.icc,
            make_envelope(),
            signature_algorithm=SignatureMethod.ECDSA_SHA1,
            digest_algorithm=DigestAlgorithm.SHA1,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        with pytest.raises(WeakAlgorithmError, match="signature algorithm"):
            verifier.open(data)

    def test_sha1_digest(self, pki: Pki, verifier: EnvelopeVerifier) -> None:
        """An ECDSA-SHA256 signature over a SHA-1 digest is refused."""
        data = sign_with(
            pki.icc,
            make_envelope(),
            signature_algorithm=SignatureMethod.ECDSA_SHA256,
            digest_algorithm=DigestAlgorithm.SHA1,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        with pytest.raises(WeakAlgorithmError, match="digest algorithm"):
            verifier.open(data)

    def test_sha3_is_not_sha2(self, pki: Pki, verifier: EnvelopeVerifier) -> None:
        """A non-SHA-2 algorithm (SHA3-256) is refused too."""
        data = sign_with(
            pki.icc,
            make_envelope(),
            signature_algorithm=SignatureMethod.ECDSA_SHA3_256,
            digest_algorithm=DigestAlgorithm.SHA3_256,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        with pytest.raises(WeakAlgorithmError):
            verifier.open(data)

    def test_sha384_is_accepted(self, pki: Pki, verifier: EnvelopeVerifier) -> None:
        """Another SHA-2 choice from another signer still opens."""
        env = make_envelope()
        data = sign_with(
            pki.icc,
            env,
            signature_algorithm=SignatureMethod.ECDSA_SHA384,
            digest_algorithm=DigestAlgorithm.SHA384,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        assert verifier.open(data) == env


def _signature(root: etree._Element) -> etree._Element:
    return one(root, "//ds:Signature")


class TestOpenWrapping:
    """Signature wrapping and extra references are refused."""

    def test_unsigned(self, verifier: EnvelopeVerifier) -> None:
        """An envelope without a signature is SignatureMissingError."""
        with pytest.raises(SignatureMissingError):
            verifier.open(serialize(to_xml(make_envelope())))

    def test_second_reference(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """A second Reference in SignedInfo is refused."""

        def change(root: etree._Element) -> None:
            ref = one(root, "//ds:Reference")
            extra = copy.deepcopy(ref)
            extra.set("URI", "#payload")
            ref.addnext(extra)

        with pytest.raises(SignatureWrappingError, match="2 Reference"):
            verifier.open(edit(signed, change))

    def test_reference_to_fragment(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """A Reference that points at a fragment instead of the whole envelope is refused."""

        def change(root: etree._Element) -> None:
            ref = one(root, "//ds:Reference")
            ref.set("URI", "#payload")

        with pytest.raises(SignatureWrappingError, match="URI"):
            verifier.open(edit(signed, change))

    def test_extra_transform(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """A transform beyond enveloped-signature + C14N (here XPath) is refused."""

        def change(root: etree._Element) -> None:
            transforms = one(root, "//ds:Transforms")
            xpath = etree.SubElement(transforms, f"{{{DS_NS}}}Transform")
            xpath.set("Algorithm", "http://www.w3.org/TR/1999/REC-xpath-19991116")

        with pytest.raises(SignatureWrappingError, match="transforms"):
            verifier.open(edit(signed, change))

    def test_genuine_envelope_nested_in_forgery(
        self, signed: bytes, verifier: EnvelopeVerifier
    ) -> None:
        """A forged envelope that carries the genuine signed one inside it is refused."""
        forged = to_xml(make_envelope(MessageType.KREDIT))
        forged[0][0].append(etree.fromstring(signed))
        with pytest.raises(SignatureWrappingError, match="last child"):
            verifier.open(serialize(forged))

    def test_genuine_content_hidden_in_object(
        self, signed: bytes, verifier: EnvelopeVerifier
    ) -> None:
        """The classic wrapping: forged content on top, the signed original in ds:Object."""
        genuine = etree.fromstring(signed)
        signature = _signature(genuine)
        genuine.remove(signature)
        obj = etree.SubElement(signature, f"{{{DS_NS}}}Object")
        obj.append(genuine)
        forged = to_xml(make_envelope(MessageType.KREDIT))
        forged.append(signature)
        with pytest.raises(SignatureWrappingError, match="ds:Object"):
            verifier.open(serialize(forged))

    def test_genuine_signature_moved_to_forgery(
        self, signed: bytes, verifier: EnvelopeVerifier
    ) -> None:
        """A genuine signature moved onto a forged envelope does not verify."""
        forged = to_xml(make_envelope(MessageType.KREDIT))
        forged.append(_signature(etree.fromstring(signed)))
        with pytest.raises(SignatureTamperedError):
            verifier.open(serialize(forged))

    def test_signature_not_last(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """A signature placed before the StandardBusinessDocument is refused."""

        def change(root: etree._Element) -> None:
            root.insert(0, _signature(root))

        with pytest.raises(SignatureWrappingError, match="last child"):
            verifier.open(edit(signed, change))

    def test_two_signatures(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """Two ds:Signature elements are refused."""

        def change(root: etree._Element) -> None:
            root.insert(0, copy.deepcopy(_signature(root)))

        with pytest.raises(SignatureWrappingError, match="2 ds:Signature"):
            verifier.open(edit(signed, change))

    def test_other_root(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """A document whose root is not env:Envelope is refused as malformed (400, not 403)."""
        wrapper = etree.Element("Wrapper")
        wrapper.append(etree.fromstring(signed))
        with pytest.raises(EnvelopeError, match="not env:Envelope") as err:
            verifier.open(serialize(wrapper))
        assert not isinstance(err.value, SignatureError)
        with pytest.raises(EnvelopeError, match="not env:Envelope"):
            verifier.open(serialize(wrapper))


class TestOpenSigner:
    """Only the ICC's valid certificate from the CA may sign."""

    def test_signer_from_other_ca(self, pki: Pki, verifier: EnvelopeVerifier) -> None:
        """A certificate with the ICC's name from a rogue CA is refused."""
        data = EnvelopeSigner(pki.rogue.key_pem, pki.rogue.cert_pem).sign(make_envelope())
        with pytest.raises(UntrustedSignerError, match="not issued by the AF CA"):
            verifier.open(data)

    def test_signer_rejected_by_policy(self, pki: Pki, verifier: EnvelopeVerifier) -> None:
        """A certificate from the CA that accept_signer rejects is refused."""
        data = EnvelopeSigner(pki.other.key_pem, pki.other.cert_pem).sign(make_envelope())
        with pytest.raises(UntrustedSignerError, match="not the ICC's"):
            verifier.open(data)

    def test_expired_signer(self, pki: Pki, verifier: EnvelopeVerifier) -> None:
        """An expired ICC certificate is refused."""
        data = EnvelopeSigner(pki.expired.key_pem, pki.expired.cert_pem).sign(make_envelope())
        with pytest.raises(UntrustedSignerError, match="not valid at"):
            verifier.open(data)

    def test_clock_before_validity(self, pki: Pki, signed: bytes) -> None:
        """With a clock before the certificate's start, the signer is refused."""
        early = EnvelopeVerifier(
            pki.ca.cert_pem,
            accept_signer=is_icc,
            clock=lambda: NOW - dt.timedelta(days=10),
        )
        with pytest.raises(UntrustedSignerError, match="not valid at"):
            early.open(signed)

    def test_certificate_swapped_in_key_info(self, pki: Pki, signed: bytes) -> None:
        """Replacing KeyInfo's certificate with another trusted ICC one fails verification."""
        # The "expired" pair has the right CA and name but another key; pick a clock
        # at which both certificates are valid so that only the key differs.
        der = pki.expired.cert.public_bytes(serialization.Encoding.DER)
        verifier = EnvelopeVerifier(
            pki.ca.cert_pem,
            accept_signer=is_icc,
            clock=lambda: NOW - dt.timedelta(days=1, hours=12),
        )

        def change(root: etree._Element) -> None:
            el = one(root, "//ds:X509Certificate")
            el.text = base64.b64encode(der).decode()

        with pytest.raises(SignatureTamperedError):
            verifier.open(edit(signed, change))

    def test_missing_certificate(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """A signature without its certificate is refused."""

        def change(root: etree._Element) -> None:
            key_info = one(root, "//ds:KeyInfo")
            parent = key_info.getparent()
            assert parent is not None
            parent.remove(key_info)

        with pytest.raises(UntrustedSignerError, match="0 X509Certificate"):
            verifier.open(edit(signed, change))

    def test_garbage_certificate(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """A KeyInfo certificate that is not DER is refused."""

        def change(root: etree._Element) -> None:
            el = one(root, "//ds:X509Certificate")
            el.text = "AAAA"

        with pytest.raises(UntrustedSignerError, match="readable"):
            verifier.open(edit(signed, change))

    def test_bad_ca(self) -> None:
        """A CA that is not a PEM certificate is a PkiError."""
        with pytest.raises(PkiError):
            EnvelopeVerifier(b"nope", accept_signer=is_icc)


class TestOpenHostile:
    """open parses with the hardened parser."""

    def test_doctype(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """A DOCTYPE in front of a signed envelope is refused before any signature work."""
        body = signed.split(b"?>", 1)[1]
        data = b'<!DOCTYPE env:Envelope [<!ENTITY x "y">]>' + body
        with pytest.raises(XmlDoctypeError):
            verifier.open(data)

    def test_max_bytes(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """open honours max_bytes."""
        with pytest.raises(XmlTooLargeError):
            verifier.open(signed, max_bytes=len(signed) - 1)

    def test_garbage(self, verifier: EnvelopeVerifier) -> None:
        """Bytes that are not XML are refused with a clear error."""
        with pytest.raises(HostileXmlError):
            verifier.open(b"\x00\x01garbage")

    def test_relative_namespace_uri(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """A namespace URI that C14N cannot handle is a SignatureError, not an lxml error.

        Found by tests/simulator/test_fuzz_envelope.py.
        """
        data = signed.replace(f'xmlns:sbd="{SBDH_NS}"'.encode(), b'xmlns:sbd="0"', 1)
        assert data != signed
        with pytest.raises(SignatureError, match="malformed"):
            verifier.open(data)

    @pytest.mark.parametrize("where", [b"<env:Envelope ", b"<ds:Signature ", b"<ds:SignedInfo"])
    def test_relative_namespace_uri_in_scope_of_the_signature(
        self, where: bytes, signed: bytes, verifier: EnvelopeVerifier
    ) -> None:
        """An unused relative namespace URI over SignedInfo is a SignatureError too."""
        data = signed.replace(where, where.rstrip() + b' xmlns:q="0" ', 1)
        assert data != signed
        with pytest.raises(SignatureError, match="malformed"):
            verifier.open(data)


def _write_crl(
    path: Path, pki: Pki, revoked: list[x509.Certificate], ca: Issued | None = None
) -> Path:
    """Write a CRL signed by ``ca`` (the test CA) that revokes ``revoked``."""
    issuer = ca or pki.ca
    key = serialization.load_pem_private_key(issuer.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(NOW - dt.timedelta(days=1))
        .next_update(NOW + dt.timedelta(days=1))
    )
    for cert in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
        builder = builder.add_revoked_certificate(entry.revocation_date(NOW).build())
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    tmp.replace(path)
    return path


def _fresh_envelope(created: dt.datetime) -> Envelope:
    """make_envelope() created at ``created``."""
    return dataclasses.replace(make_envelope(), created_at_ms=int(created.timestamp() * 1000))


class TestOpenFreshness:
    """max_skew refuses envelopes created too long ago or in the future (ENVELOPE_STALE)."""

    @pytest.mark.parametrize(
        ("offset_s", "fresh"),
        [(0, True), (599, True), (-599, True), (601, False), (-601, False), (86_400, False)],
    )
    def test_window(self, offset_s: int, fresh: bool, pki: Pki, signer: EnvelopeSigner) -> None:
        """Within ±max_skew of the clock is accepted; outside, either way, is refused."""
        created = NOW.replace(microsecond=0)
        env = _fresh_envelope(created)
        verifier = EnvelopeVerifier(
            pki.ca.cert_pem,
            accept_signer=is_icc,
            clock=lambda: created + dt.timedelta(seconds=offset_s),
            max_skew=600,
        )
        data = signer.sign(env)
        if fresh:
            assert verifier.open(data) == env
            return
        with pytest.raises(EnvelopeStaleError, match="allowed skew 600 s") as caught:
            verifier.open(data)
        assert caught.value.code == "ENVELOPE_STALE"
        assert code_for(caught.value) == "ENVELOPE_STALE"
        assert PROBLEMS["ENVELOPE_STALE"].status == 422
        assert ("in the future" in str(caught.value)) == (offset_s < 0)

    @pytest.mark.parametrize(
        ("offset_s", "says"),
        [
            (
                -312,
                (
                    "312 s in the future by the receiver's clock (allowed skew 300 s; ",
                    "): the sender's clock is ahead, or the receiver's behind",
                ),
            ),
            (
                1_000,
                (
                    "1000 s ago by the receiver's clock (allowed skew 300 s; ",
                    "): a replayed or long-held envelope (the ICC must wrap the message "
                    "again), or the sender's clock is behind, or the receiver's ahead",
                ),
            ),
        ],
    )
    def test_refusal_says_which_clock_and_by_how_much(
        self, offset_s: int, says: tuple[str, str], pki: Pki, signer: EnvelopeSigner
    ) -> None:
        """The refusal names the envelope, both times, how far apart, the allowed skew,
        which side's clock may be off, and what to check."""
        created = NOW.replace(microsecond=0)
        now = created + dt.timedelta(seconds=offset_s)
        env = _fresh_envelope(created)
        verifier = EnvelopeVerifier(
            pki.ca.cert_pem, accept_signer=is_icc, clock=lambda: now, max_skew=300
        )
        with pytest.raises(EnvelopeStaleError) as caught:
            verifier.open(signer.sign(env))
        text = str(caught.value)
        for part in says:
            assert part in text
        assert text.endswith("check NTP on both")
        assert env.envelope_id in text
        assert created.strftime("%Y-%m-%dT%H:%M:%S") in text
        assert now.strftime("%Y-%m-%dT%H:%M:%S") in text
        assert "\n" not in text

    def test_without_max_skew_old_envelopes_open(
        self, signed: bytes, verifier: EnvelopeVerifier
    ) -> None:
        """With no max_skew (the default) an envelope from months ago still opens."""
        assert verifier.open(signed).created_at_ms == make_envelope().created_at_ms

    def test_tampering_is_reported_before_staleness(self, pki: Pki, signed: bytes) -> None:
        """A stale and tampered envelope is SIGNATURE_TAMPERED: time is read only once verified."""
        verifier = EnvelopeVerifier(pki.ca.cert_pem, accept_signer=is_icc, max_skew=1)
        data = signed.replace(b"<cbc:ID>Snippet1</cbc:ID>", b"<cbc:ID>Snippet2</cbc:ID>")
        with pytest.raises(SignatureTamperedError):
            verifier.open(data)

    def test_an_injected_clock_skew_moves_the_window(
        self, pki: Pki, signer: EnvelopeSigner, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A receiver whose clock is skewed ($B2BSIM_CLOCK_SKEW_MS) past max_skew refuses
        an envelope made now; unskewed, the same envelope opens."""
        from simulator.vocabulary import messages

        data = signer.sign(_fresh_envelope(dt.datetime.now(dt.UTC)))
        monkeypatch.setenv(messages.CLOCK_SKEW_ENV, str(700_000))
        messages.clock_skew_ms.cache_clear()
        try:
            skewed = EnvelopeVerifier(pki.ca.cert_pem, accept_signer=is_icc, max_skew=600)
            with pytest.raises(EnvelopeStaleError, match="ago"):
                skewed.open(data)
        finally:
            monkeypatch.delenv(messages.CLOCK_SKEW_ENV)
            messages.clock_skew_ms.cache_clear()
        true = EnvelopeVerifier(pki.ca.cert_pem, accept_signer=is_icc, max_skew=600)
        assert true.open(data).created_at_ms > 0

    @pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
    def test_bad_max_skew(self, pki: Pki, bad: float) -> None:
        """A max_skew that is not a positive finite number is a ConfigError."""
        with pytest.raises(ConfigError, match="max_skew"):
            EnvelopeVerifier(pki.ca.cert_pem, accept_signer=is_icc, max_skew=bad)


class TestOpenRevokedSigner:
    """crl_path refuses a signer on the CA's CRL (SIGNER_REVOKED), re-reading it on change."""

    def test_revoked_signer_is_refused(self, pki: Pki, signed: bytes, tmp_path: Path) -> None:
        """An ICC signature whose certificate is on the CRL is refused."""
        crl = _write_crl(tmp_path / "crl.pem", pki, [pki.icc.cert])
        verifier = EnvelopeVerifier(pki.ca.cert_pem, accept_signer=is_icc, crl_path=crl)
        with pytest.raises(SignerRevokedError, match="revoked") as caught:
            verifier.open(signed)
        assert isinstance(caught.value, UntrustedSignerError)
        assert code_for(caught.value) == "SIGNER_REVOKED"
        assert PROBLEMS["SIGNER_REVOKED"].status == 403

    def test_revocation_after_start_takes_effect(
        self, pki: Pki, signed: bytes, tmp_path: Path
    ) -> None:
        """A CRL replaced after the verifier was made is read again on the next open."""
        crl = _write_crl(tmp_path / "crl.pem", pki, [pki.other.cert])
        verifier = EnvelopeVerifier(pki.ca.cert_pem, accept_signer=is_icc, crl_path=crl)
        assert verifier.open(signed) == make_envelope()
        _write_crl(crl, pki, [pki.other.cert, pki.icc.cert])
        with pytest.raises(SignerRevokedError):
            verifier.open(signed)

    def test_missing_or_foreign_crl_fails_closed(
        self, pki: Pki, signed: bytes, tmp_path: Path
    ) -> None:
        """No CRL file, or one another CA signed, refuses every envelope with PkiError."""
        missing = EnvelopeVerifier(
            pki.ca.cert_pem, accept_signer=is_icc, crl_path=tmp_path / "none.pem"
        )
        with pytest.raises(PkiError, match="no CRL"):
            missing.open(signed)
        rogue_ca_key, rogue_ca = _issue("AF test CA", ca=True)
        del rogue_ca_key
        foreign = _write_crl(tmp_path / "rogue.pem", pki, [], ca=rogue_ca)
        verifier = EnvelopeVerifier(pki.ca.cert_pem, accept_signer=is_icc, crl_path=foreign)
        with pytest.raises(PkiError, match="not signed by the CA"):
            verifier.open(signed)


class TestDirectPathAgreesWithSignxml:
    """The ICC's shape is made and checked by vocabulary.xmldsig; signxml agrees both ways."""

    @pytest.fixture
    def signxml_calls(self, monkeypatch: pytest.MonkeyPatch) -> list[int]:
        """Counts the verifications that go through signxml."""
        calls: list[int] = []
        original = XMLVerifier.verify

        def counting(self: XMLVerifier, *args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(XMLVerifier, "verify", counting)
        return calls

    @pytest.mark.parametrize("message_type", list(MessageType))
    def test_signxml_verifies_our_signature(
        self, message_type: MessageType, pki: Pki, signer: EnvelopeSigner
    ) -> None:
        """signxml verifies what EnvelopeSigner signs and returns the same signed XML."""
        env = make_envelope(message_type)
        data = signer.sign(env)
        result = XMLVerifier().verify(data, x509_cert=pki.icc.cert, expect_references=1)
        assert not isinstance(result, list)
        root = etree.fromstring(data)
        root.remove(root[-1])
        assert result.signed_data == etree.tostring(root, method="c14n", exclusive=True)

    @pytest.mark.parametrize(
        ("c14n", "through_signxml"),
        [
            # The ICC's shape, made by signxml, opens on the direct path...
            (CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0, []),
            # ...and inclusive C14N (allowed, not the ICC's) is verified by signxml.
            (CanonicalizationMethod.CANONICAL_XML_1_0, [1]),
        ],
    )
    def test_signxml_signatures_open_on_the_right_path(
        self,
        c14n: CanonicalizationMethod,
        through_signxml: list[int],
        pki: Pki,
        verifier: EnvelopeVerifier,
        signxml_calls: list[int],
    ) -> None:
        """What signxml signs opens; only shapes other than the ICC's go through signxml."""
        env = make_envelope()
        data = sign_with(
            pki.icc,
            env,
            signature_algorithm=SignatureMethod.ECDSA_SHA256,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=c14n,
        )
        assert verifier.open(data) == env
        assert signxml_calls == through_signxml

    def test_parameters_on_a_transform_go_through_signxml(
        self, signed: bytes, verifier: EnvelopeVerifier, signxml_calls: list[int]
    ) -> None:
        """An InclusiveNamespaces parameter leaves the direct path (and breaks the signature)."""

        def change(root: etree._Element) -> None:
            transform = one(root, "//ds:Transform[2]")
            etree.SubElement(
                transform,
                "{http://www.w3.org/2001/10/xml-exc-c14n#}InclusiveNamespaces",
                PrefixList="cbc",
            )

        with pytest.raises(SignatureTamperedError):
            verifier.open(edit(signed, change))
        assert signxml_calls == [1]

    def test_short_signature_value(self, signed: bytes, verifier: EnvelopeVerifier) -> None:
        """A SignatureValue that is not r‖s for P-256 (64 bytes) does not verify."""

        def change(root: etree._Element) -> None:
            el = one(root, "//ds:SignatureValue")
            el.text = base64.b64encode(base64.b64decode(el.text or "")[:63]).decode()

        with pytest.raises(SignatureTamperedError, match="does not verify"):
            verifier.open(edit(signed, change))

    def test_comment_in_digest_value_is_not_read(
        self, signed: bytes, verifier: EnvelopeVerifier
    ) -> None:
        """The digest is read from the verified SignedInfo, where C14N has dropped comments."""

        def change(root: etree._Element) -> None:
            el = one(root, "//ds:DigestValue")
            text = el.text or ""
            el.text = text[:5]
            comment = etree.Comment("x")
            comment.tail = text[5:]
            el.append(comment)

        env = verifier.open(edit(signed, change))
        assert env == make_envelope()

    def test_whitespace_after_signature_is_tampering(
        self, signed: bytes, verifier: EnvelopeVerifier
    ) -> None:
        """Text after the signature is kept by the enveloped transform, so the digest changes."""
        end = b"</ds:Signature></env:Envelope>"
        data = signed.replace(end, b"</ds:Signature>\n</env:Envelope>")
        assert data != signed
        with pytest.raises(SignatureTamperedError, match="digest"):
            verifier.open(data)

    def test_comment_inside_a_signed_field_is_dropped_not_cut(
        self, signed: bytes, verifier: EnvelopeVerifier
    ) -> None:
        """A comment added inside a header field leaves the field's whole text to read."""
        data = signed.replace(b">msg-1<", b">msg<!-- added -->-1<")
        assert data != signed
        assert verifier.open(data).message_id == "msg-1"
