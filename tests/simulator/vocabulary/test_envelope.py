"""Tests for vocabulary.envelope: the envelope model, its XML form and the addressee check."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from lxml import etree

from simulator.vocabulary.envelope import (
    ENV_NS,
    SBDH_NS,
    UBL_NAMESPACES,
    Envelope,
    check_addressee,
    from_xml,
    normalise_document,
    normalise_url,
    to_xml,
)
from simulator.vocabulary.errors import (
    AddresseeError,
    EnvelopeError,
    UnknownMessageTypeError,
    XmlDoctypeError,
)
from simulator.vocabulary.identifiers import AF_PEPPOL_ID
from simulator.vocabulary.messages import MessageMeta, MessageType
from simulator.vocabulary.rulesets import SHIPPED_RULES_DIR

#: The official schemas and examples shipped in the package.
VALIDATION = SHIPPED_RULES_DIR
EXAMPLES = {
    MessageType.INKOPSORDER: "Order_Example.xml",
    MessageType.SJALVFAKTURA: "SB-base-example.xml",
    MessageType.KREDIT: "SB-base-creditnote-correction.xml",
}
ORG = "5520000000"
FINGERPRINT = "0f" * 32
URL = "https://supplier.example:8443/b2b/inbox"
NS = {"sbd": SBDH_NS, "env": ENV_NS}


def example(message_type: MessageType) -> bytes:
    """The official OpenPeppol example document for ``message_type``."""
    return (VALIDATION / "examples" / EXAMPLES[message_type]).read_bytes()


def make_envelope(message_type: MessageType = MessageType.SJALVFAKTURA, **changes: Any) -> Envelope:
    """A valid envelope carrying the official example of ``message_type`` (normalised)."""
    fields: dict[str, Any] = {
        "envelope_id": "6f1c1d0e-8a43-4a53-9d4c-2b8e1c7e0a11",
        "message_id": "msg-1",
        "correlation_id": "corr-1",
        "message_type": message_type,
        "org_number": ORG,
        "receiver_cert_sha256": FINGERPRINT,
        "receiver_url": URL,
        "produced_at_ms": 1_767_225_600_123,
        "sequence": 7,
        "created_at_ms": 1_767_225_601_456,
        "document": normalise_document(example(message_type)),
    }
    fields.update(changes)
    return Envelope(**fields)


def scope_value(root: etree._Element, name: str) -> etree._Element:
    """The InstanceIdentifier element of the Scope named ``name``."""
    found = root.xpath(
        "//sbd:Scope[sbd:Type=$name]/sbd:InstanceIdentifier", namespaces=NS, name=name
    )
    assert isinstance(found, list)
    assert len(found) == 1
    el = found[0]
    assert isinstance(el, etree._Element)
    return el


@pytest.fixture(scope="session")
def sbdh_schema() -> etree.XMLSchema:
    """The official SBDH 1.3 XSD."""
    return etree.XMLSchema(etree.parse(VALIDATION / "sbdh" / "StandardBusinessDocumentHeader.xsd"))


class TestEnvelopeModel:
    """Envelope checks its fields when constructed."""

    def test_create_from_meta(self) -> None:
        """Envelope.create copies KA's metadata and normalises the fingerprint."""
        meta = MessageMeta.new(MessageType.KREDIT, ORG, 3, produced_at_ms=1000)
        env = Envelope.create(
            meta,
            b"<x/>",
            receiver_cert_sha256="AB:" * 31 + "AB",
            receiver_url=URL,
            created_at_ms=2000,
        )
        assert env.message_id == meta.message_id
        assert env.correlation_id == meta.correlation_id
        assert env.message_type is MessageType.KREDIT
        assert (env.sequence, env.produced_at_ms, env.created_at_ms) == (3, 1000, 2000)
        assert env.receiver_cert_sha256 == "ab" * 32
        assert len(env.envelope_id) == 36

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("envelope_id", ""),
            ("envelope_id", "has space"),
            ("message_id", "x" * 300),
            ("correlation_id", "line\nbreak"),
            ("message_type", "SJALVFAKTURA"),
            ("org_number", "5520000001"),
            ("org_number", "552000-0000"),
            ("receiver_cert_sha256", "AB" * 32),
            ("receiver_cert_sha256", "ab" * 31),
            ("receiver_url", "ftp://supplier.example/"),
            ("receiver_url", "supplier.example/b2b"),
            ("receiver_url", "https://supplier.example:99999/"),
            ("produced_at_ms", -1),
            ("produced_at_ms", 1.5),
            ("created_at_ms", True),
            ("sequence", -3),
            ("document", b""),
            ("document", "<Invoice/>"),
        ],
    )
    def test_refuses_bad_field(self, field: str, value: object) -> None:
        """Each malformed field is an EnvelopeError naming the field."""
        with pytest.raises(EnvelopeError) as info:
            make_envelope(**{field: value})  # type: ignore[arg-type]
        assert field.split("_", maxsplit=1)[0] in str(info.value)


class TestToXml:
    """to_xml writes the SBDH-based envelope."""

    @pytest.mark.parametrize("message_type", list(MessageType))
    def test_sbd_is_valid_against_sbdh_xsd(
        self, message_type: MessageType, sbdh_schema: etree.XMLSchema
    ) -> None:
        """The inner StandardBusinessDocument validates against the official SBDH XSD."""
        root = to_xml(make_envelope(message_type))
        (sbd,) = root
        doc = etree.ElementTree(copy.deepcopy(sbd))
        assert sbdh_schema.validate(doc), sbdh_schema.error_log

    def test_header_fields(self) -> None:
        """Sender is AF, Receiver is 0007:<org>, DocumentIdentification names the UBL type."""
        env = make_envelope(MessageType.INKOPSORDER)
        root = to_xml(env)
        assert root.tag == f"{{{ENV_NS}}}Envelope"
        hdr = "sbd:StandardBusinessDocument/sbd:StandardBusinessDocumentHeader"
        assert root.findtext(f"{hdr}/sbd:HeaderVersion", namespaces=NS) == "1.0"
        sender = root.find(f"{hdr}/sbd:Sender/sbd:Identifier", namespaces=NS)
        assert sender is not None
        assert sender.text == AF_PEPPOL_ID
        assert sender.get("Authority") == "iso6523-actorid-upis"
        assert root.findtext(f"{hdr}/sbd:Receiver/sbd:Identifier", namespaces=NS) == f"0007:{ORG}"
        docid = f"{hdr}/sbd:DocumentIdentification"
        assert (
            root.findtext(f"{docid}/sbd:Standard", namespaces=NS)
            == UBL_NAMESPACES[MessageType.INKOPSORDER]
        )
        assert root.findtext(f"{docid}/sbd:Type", namespaces=NS) == "Order"
        assert root.findtext(f"{docid}/sbd:TypeVersion", namespaces=NS) == "2.1"
        assert root.findtext(f"{docid}/sbd:InstanceIdentifier", namespaces=NS) == env.envelope_id
        assert (
            root.findtext(f"{docid}/sbd:CreationDateAndTime", namespaces=NS)
            == "2026-01-01T00:00:01.456Z"
        )

    def test_scopes_carry_af_fields(self) -> None:
        """Each AF field is a BusinessScope; PRODUCED_AT keeps the exact epoch ms too."""
        root = to_xml(make_envelope())
        assert scope_value(root, "MESSAGE_TYPE").text == "SJALVFAKTURA"
        assert scope_value(root, "ORG_NUMBER").text == ORG
        assert scope_value(root, "RECEIVER_CERT_SHA256").text == FINGERPRINT
        assert scope_value(root, "RECEIVER_URL").text == URL
        assert scope_value(root, "PRODUCED_AT").text == "2026-01-01T00:00:00.123Z"
        assert scope_value(root, "SEQUENCE").text == "7"
        assert scope_value(root, "MESSAGE_ID").text == "msg-1"
        assert scope_value(root, "CORRELATION_ID").text == "corr-1"
        ms = root.xpath("//sbd:Scope[sbd:Type='PRODUCED_AT']/sbd:Identifier/text()", namespaces=NS)
        assert ms == ["1767225600123"]

    def test_payload_is_the_document(self) -> None:
        """The UBL document is the second child of the StandardBusinessDocument."""
        root = to_xml(make_envelope(MessageType.KREDIT))
        payload = root[0][1]
        assert payload.tag == f"{{{UBL_NAMESPACES[MessageType.KREDIT]}}}CreditNote"

    def test_refuses_document_of_other_type(self) -> None:
        """An Invoice in an INKOPSORDER envelope is an EnvelopeError."""
        env = make_envelope(MessageType.INKOPSORDER, document=example(MessageType.SJALVFAKTURA))
        with pytest.raises(EnvelopeError, match="must carry a UBL Order"):
            to_xml(env)

    def test_refuses_hostile_document(self) -> None:
        """A document with a DOCTYPE is refused by the hardened parser."""
        env = make_envelope(document=b'<!DOCTYPE a [<!ENTITY x "y">]><Invoice>&x;</Invoice>')
        with pytest.raises(XmlDoctypeError):
            to_xml(env)


def _mutate_scope(name: str, value: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        scope_value(root, name).text = value

    return mutate


def _drop_scope(name: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        scope = scope_value(root, name).getparent()
        assert scope is not None
        parent = scope.getparent()
        assert parent is not None
        parent.remove(scope)

    return mutate


def _duplicate_scope(name: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        scope = scope_value(root, name).getparent()
        assert scope is not None
        scope.addnext(copy.deepcopy(scope))

    return mutate


def _set_text(path: str, value: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        el = root.find(path, namespaces=NS)
        assert el is not None
        el.text = value

    return mutate


def _append_child(root: etree._Element) -> None:
    etree.SubElement(root, f"{{{ENV_NS}}}Extra")


def _swap_payload(root: etree._Element) -> None:
    sbd = root[0]
    sbd.remove(sbd[1])
    sbd.append(etree.fromstring(example(MessageType.INKOPSORDER)))


_HDR = "sbd:StandardBusinessDocument/sbd:StandardBusinessDocumentHeader"


class TestFromXml:
    """from_xml reads the envelope back, strictly."""

    @pytest.mark.parametrize("message_type", list(MessageType))
    def test_round_trip(self, message_type: MessageType) -> None:
        """from_xml(to_xml(env)) == env for every message type."""
        env = make_envelope(message_type)
        assert from_xml(to_xml(env)) == env

    def test_document_is_normalised(self) -> None:
        """A document read back equals normalise_document of the one put in."""
        raw = example(MessageType.SJALVFAKTURA)
        env = make_envelope(document=raw)
        out = from_xml(to_xml(env))
        assert out.document == normalise_document(raw)
        assert out.document != raw

    def test_normalised_form_declares_namespaces_once(self) -> None:
        """The normalised document declares each namespace once, on its root, and is stable."""
        out = from_xml(to_xml(make_envelope())).document
        assert out.count(b"xmlns:cbc=") == 1
        assert out.startswith(b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:')
        assert normalise_document(out) == out

    def test_normalise_keeps_clashing_prefixes_local(self) -> None:
        """A prefix bound to two namespaces stays declared where it is used."""
        data = b'<r xmlns="u:r"><a xmlns:p="u:1"><p:x/></a><b xmlns:p="u:2"><p:y/></b></r>'
        out = normalise_document(data)
        root = etree.fromstring(out)
        assert [el.tag for el in root.iter()] == ["{u:r}r", "{u:r}a", "{u:1}x", "{u:r}b", "{u:2}y"]
        assert normalise_document(out) == out

    def test_normalise_drops_comments_and_unused_namespaces(self) -> None:
        """Comments and namespace declarations nothing uses are not part of the normal form."""
        out = normalise_document(b'<r xmlns:unused="u:u"><!-- c --><a>t</a></r>')
        assert out == b"<r><a>t</a></r>"

    def test_ignores_trailing_signature(self) -> None:
        """A ds:Signature after the StandardBusinessDocument is left to signing.py."""
        root = to_xml(make_envelope())
        etree.SubElement(root, "{http://www.w3.org/2000/09/xmldsig#}Signature")
        assert from_xml(root) == make_envelope()

    @pytest.mark.parametrize(
        ("mutate", "message"),
        [
            (_drop_scope("SEQUENCE"), "lacks the field"),
            (_duplicate_scope("MESSAGE_ID"), "more than once"),
            (_mutate_scope("SEQUENCE", "seven"), "not a whole number"),
            (_mutate_scope("SEQUENCE", "-1"), "not a whole number"),
            (_mutate_scope("PRODUCED_AT", "2026-01-01T00:00:00.124Z"), "epoch ms"),
            (_mutate_scope("PRODUCED_AT", "yesterday"), "ISO 8601"),
            (_mutate_scope("ORG_NUMBER", "5520000018"), "does not match ORG_NUMBER"),
            (_mutate_scope("RECEIVER_URL", "not a url"), "receiver_url"),
            (_mutate_scope("MESSAGE_TYPE", "INKOPSORDER"), "DocumentIdentification"),
            (_set_text(f"{_HDR}/sbd:Sender/sbd:Identifier", "0007:5520000000"), "Sender"),
            (_set_text(f"{_HDR}/sbd:HeaderVersion", "2.0"), "HeaderVersion"),
            (
                _set_text(f"{_HDR}/sbd:DocumentIdentification/sbd:CreationDateAndTime", "now"),
                "CreationDateAndTime",
            ),
            (_append_child, "exactly one sbd:StandardBusinessDocument"),
            (_swap_payload, "must carry a UBL Invoice"),
        ],
    )
    def test_refuses_malformed(
        self, mutate: Callable[[etree._Element], None], message: str
    ) -> None:
        """Each structural or typing fault is an EnvelopeError saying what."""
        root = to_xml(make_envelope())
        mutate(root)
        with pytest.raises(EnvelopeError, match=message):
            from_xml(root)

    def test_refuses_unknown_scope(self) -> None:
        """A BusinessScope Type that is not an envelope field is refused."""
        root = to_xml(make_envelope())
        scope_value(root, "SEQUENCE").getparent()[0].text = "PRIORITY"  # type: ignore[index]
        with pytest.raises(EnvelopeError, match="unknown envelope field"):
            from_xml(root)

    def test_refuses_unknown_message_type(self) -> None:
        """An unknown MESSAGE_TYPE is UnknownMessageTypeError."""
        root = to_xml(make_envelope())
        scope_value(root, "MESSAGE_TYPE").text = "FAKTURA"
        with pytest.raises(UnknownMessageTypeError):
            from_xml(root)

    def test_refuses_other_root(self) -> None:
        """A root that is not env:Envelope is refused."""
        root = to_xml(make_envelope())
        with pytest.raises(EnvelopeError, match=r"not \{urn:b2bsim:envelope:1\}Envelope"):
            from_xml(root[0])


class TestNormaliseUrl:
    """normalise_url makes equivalent URLs equal."""

    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("HTTPS://Supplier.Example/b2b/", "https://supplier.example/b2b"),
            ("https://supplier.example:443/b2b", "https://supplier.example/b2b"),
            ("http://supplier.example:80/", "http://supplier.example"),
            ("https://[::1]:8443/x", "https://[::1]:8443/x/"),
        ],
    )
    def test_equivalent(self, a: str, b: str) -> None:
        """Case of scheme and host, default ports and a trailing slash do not matter."""
        assert normalise_url(a) == normalise_url(b)

    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("https://supplier.example/b2b", "http://supplier.example/b2b"),
            ("https://supplier.example:8443/b2b", "https://supplier.example/b2b"),
            ("https://supplier.example/B2B", "https://supplier.example/b2b"),
            ("https://supplier.example/b2b?x=1", "https://supplier.example/b2b"),
        ],
    )
    def test_different(self, a: str, b: str) -> None:
        """Scheme, port, path case and query do matter."""
        assert normalise_url(a) != normalise_url(b)


class TestCheckAddressee:
    """check_addressee names the field that does not match."""

    def test_matches(self) -> None:
        """The right org number, fingerprint (any case, colons) and URL (normalised) pass."""
        fingerprint = ":".join(["0F"] * 32)
        check_addressee(
            make_envelope(),
            org_number="552000-0000",
            cert_sha256=fingerprint,
            url="HTTPS://SUPPLIER.example:8443/b2b/inbox/",
        )

    def test_url_none_skips_url(self) -> None:
        """url=None checks only organisation number and certificate."""
        check_addressee(make_envelope(), org_number=ORG, cert_sha256=FINGERPRINT, url=None)

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"org_number": "5520000018"}, "organisation number"),
            ({"cert_sha256": "1f" * 32}, "certificate"),
            ({"url": "https://other.example:8443/b2b/inbox"}, "URL"),
        ],
    )
    def test_mismatch(self, changes: dict[str, str], field: str) -> None:
        """A wrong org number, certificate or URL is an AddresseeError naming that field."""
        expected = {"org_number": ORG, "cert_sha256": FINGERPRINT, "url": URL} | changes
        with pytest.raises(AddresseeError, match=f"addressed to {field}") as info:
            check_addressee(make_envelope(), **expected)
        assert info.value.code == "WRONG_ADDRESSEE"

    def test_dataclass_is_frozen(self) -> None:
        """An Envelope cannot be changed after it is made."""
        env = make_envelope()
        with pytest.raises(dataclasses.FrozenInstanceError):
            env.sequence = 8  # type: ignore[misc]
