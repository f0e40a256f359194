"""Tests of simulator.vocabulary.envelope_xml: parse_envelope hands over the document's tree.

The XML form itself (to_xml, from_xml) is tested in test_envelope.py.
"""

from __future__ import annotations

import dataclasses

import pytest
from lxml import etree

from simulator.vocabulary.canonical import normalise_document
from simulator.vocabulary.envelope_model import Envelope
from simulator.vocabulary.envelope_xml import from_xml, parse_envelope, to_xml
from simulator.vocabulary.errors import EnvelopeError
from simulator.vocabulary.messages import MessageMeta, MessageType
from simulator.vocabulary.xmlsafe import parse_xml, serialize

CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CREDIT = (
    b'<CreditNote xmlns="urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2" '
    b'xmlns:cbc="' + CBC.encode() + b'"><!-- a comment --><cbc:ID>K-<!-- x -->1</cbc:ID>'
    b"<cbc:Note>n</cbc:Note></CreditNote>"
)


def credit_envelope() -> Envelope:
    """A credit-note envelope whose document holds comments."""
    return Envelope.create(
        MessageMeta.new(MessageType.KREDIT, "5560000001", 3),
        CREDIT,
        receiver_cert_sha256="ab" * 32,
        receiver_url="https://127.0.0.1:9443/b2b/envelopes",
    )


class TestParseEnvelope:
    """parse_envelope: from_xml's envelope and the document's tree."""

    @pytest.mark.parametrize("comments", [True, False])
    def test_envelope_is_from_xmls(self, comments: bool) -> None:
        """The envelope equals from_xml's, parsed with or without comments."""
        data = serialize(to_xml(credit_envelope()))
        parsed = parse_envelope(parse_xml(data, comments=comments))
        assert parsed.envelope == from_xml(parse_xml(data, comments=comments))

    @pytest.mark.parametrize("comments", [True, False])
    def test_document_tree_is_the_documents(self, comments: bool) -> None:
        """The tree is the document (its root and text, comments gone), as its bytes parse."""
        data = serialize(to_xml(credit_envelope()))
        parsed = parse_envelope(parse_xml(data, comments=comments))
        tree = parsed.document
        assert tree.tag == "{urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2}CreditNote"
        assert tree.findtext("cbc:ID", namespaces={"cbc": CBC}) == "K-1"
        again = parse_xml(parsed.envelope.document)
        assert [(e.tag, e.text) for e in tree.iter()] == [(e.tag, e.text) for e in again.iter()]

    def test_document_tree_is_not_the_envelopes(self) -> None:
        """The tree is a copy: the envelope's tree keeps its payload."""
        root = parse_xml(serialize(to_xml(credit_envelope())))
        parsed = parse_envelope(root)
        assert parsed.document.getparent() is None
        assert len(list(root.iter(parsed.document.tag))) == 1


def _fields(env: Envelope) -> Envelope:
    """``env`` with its document in the canonical form it has after a trip through XML."""
    return dataclasses.replace(env, document=normalise_document(env.document))


class TestToXml:
    """to_xml copies the addressee's part of the header; each message's own fields are its."""

    def test_envelopes_to_one_addressee_keep_their_own_fields(self) -> None:
        """Two envelopes to the same supplier, written in turn, each read back as itself,
        and changing one's tree leaves the next one written alone."""
        first, second = credit_envelope(), credit_envelope()
        assert first.envelope_id != second.envelope_id
        a = to_xml(first)
        b = to_xml(second)
        assert from_xml(a) == _fields(first)
        assert from_xml(b) == _fields(second)
        a[0].remove(a[0][0])  # the header out of the first's tree
        assert from_xml(to_xml(first)) == _fields(first)

    def test_another_addressee_gets_its_own_header(self) -> None:
        """The same message to another URL and certificate: those are in its header."""
        env = credit_envelope()
        moved = Envelope.create(
            MessageMeta.new(MessageType.KREDIT, "5560000019", 3),
            CREDIT,
            receiver_cert_sha256="cd" * 32,
            receiver_url="https://127.0.0.1:9444/b2b/envelopes",
        )
        assert from_xml(to_xml(env)) == _fields(env)
        assert from_xml(to_xml(moved)) == _fields(moved)


class TestHeaderReading:
    """The header as to_xml writes it is read in one pass; any other layout strictly."""

    def test_quick_and_strict_read_the_same(self) -> None:
        """A comment in the header sends it the strict way: the same envelope comes out."""
        env = credit_envelope()
        quick = parse_xml(serialize(to_xml(env)))
        strict = parse_xml(serialize(to_xml(env)))
        strict[0][0].insert(0, etree.Comment("the strict way"))
        assert from_xml(quick) == from_xml(strict) == _fields(env)

    def test_the_first_fault_is_the_one_said(self) -> None:
        """A wrong HeaderVersion and a broken BusinessScope: the version is named."""
        root = to_xml(credit_envelope())
        header = root[0][0]
        header[0].text = "2.0"
        header[4].remove(header[4][0])
        with pytest.raises(EnvelopeError, match=r"HeaderVersion is '2\.0'"):
            from_xml(root)
