"""Tests of simulator.vocabulary.canonical: the canonical form of an envelope's document."""

from __future__ import annotations

import pytest
from lxml import etree

from simulator.vocabulary.canonical import canonical_document, normalise_document
from simulator.vocabulary.errors import EnvelopeError
from simulator.vocabulary.xmlsafe import parse_xml


class TestCanonicalDocument:
    """normalise_document: one canonical form, or a clear refusal."""

    def test_namespaces_move_to_the_root_and_comments_go(self) -> None:
        """Declarations end up on the root, unused ones and comments are dropped."""
        doc = (
            b'<r xmlns="urn:d" xmlns:u="urn:unused"><!-- c --><a xmlns:p="urn:p">'
            b"<p:b>t</p:b></a></r>"
        )
        assert normalise_document(doc) == (
            b'<r xmlns="urn:d" xmlns:p="urn:p"><a><p:b>t</p:b></a></r>'
        )

    def test_prefix_bound_two_ways_stays_where_it_is_used(self) -> None:
        """A prefix with two URIs cannot move up: each declaration stays where it is used."""
        doc = b'<r xmlns:p="urn:1"><p:a/><x><p:b xmlns:p="urn:2"/></x></r>'
        assert normalise_document(doc) == (
            b'<r><p:a xmlns:p="urn:1"></p:a><x><p:b xmlns:p="urn:2"></p:b></x></r>'
        )

    def test_ampersand_in_a_namespace_uri_is_refused(self) -> None:
        """C14N would write the '&' raw: refused with an EnvelopeError, not bad XML."""
        with pytest.raises(EnvelopeError, match="namespace URI"):
            normalise_document(b'<x:r xmlns:x="urn:a&amp;b"/>')


class TestCanonicalTree:
    """canonical_document: the bytes and the tree they were written from."""

    DOCS = (
        b'<r xmlns="urn:d" xmlns:u="urn:unused"><!-- c --><a xmlns:p="urn:p">'
        b"<p:b>t<!-- x -->u</p:b></a></r>",
        b'<r xmlns:p="urn:1"><p:a/><x><p:b xmlns:p="urn:2">v</p:b></x></r>',
        b"<r><?pi data?><a>1<!-- c -->2<?p?>3</a></r>",
    )

    @pytest.mark.parametrize("doc", DOCS)
    def test_bytes_are_normalise_document(self, doc: bytes) -> None:
        """The bytes are normalise_document's, for the quick and the re-parse way."""
        data, _ = canonical_document(parse_xml(doc))
        assert data == normalise_document(doc)

    @pytest.mark.parametrize("doc", DOCS)
    def test_tree_reads_as_the_bytes_parsed(self, doc: bytes) -> None:
        """Every element's text and tail in the tree equal those of the bytes parsed again."""
        data, tree = canonical_document(parse_xml(doc))
        again = parse_xml(data)
        assert [(e.tag, e.text, e.tail) for e in tree.iter()] == [
            (e.tag, e.text, e.tail) for e in again.iter()
        ]
        assert not tree.xpath("//comment()")

    def test_input_is_not_changed(self) -> None:
        """The element given keeps its comments and its place in its own tree."""
        outer = parse_xml(b"<o><r><!-- c --><a>t</a></r>tail</o>")
        el = outer[0]
        _, tree = canonical_document(el)
        assert tree is not el
        assert el.getparent() is outer
        assert isinstance(el[0], etree._Comment)
        assert el.tail == "tail"
        assert tree.tail is None

    def test_tree_is_a_document_of_its_own(self) -> None:
        """The tree is its document's root: a path from the root finds its children."""
        outer = parse_xml(b'<o xmlns:c="urn:c"><r><c:ID>K-1</c:ID></r></o>')
        _, tree = canonical_document(outer[0])
        assert tree.getparent() is None
        assert tree.getroottree().getroot() is tree
        assert tree.findtext("c:ID", namespaces={"c": "urn:c"}) == "K-1"
        assert isinstance(tree, etree._Element)


class TestQuickWay:
    """Without comments the form is written at once when every declaration is on the root;
    it must be byte for byte what the reference way (taken when there are comments) writes."""

    DOCS = (
        # declarations on the root only: written at once
        b'<r xmlns="urn:d" xmlns:p="urn:p" xmlns:u="urn:unused"><a><p:b>t</p:b></a></r>',
        # a declaration further down: the reference way
        b'<r xmlns="urn:d"><a xmlns:p="urn:p"><p:b>t</p:b></a></r>',
        # text that looks like a declaration, a repeated declaration, a PI
        b'<r xmlns:p="urn:p"><p:a> xmlns:q="urn:q" </p:a></r>',
        b'<r xmlns:p="urn:p"><p:a xmlns:p="urn:p">t</p:a><?pi x?></r>',
        b'<r xmlns:p="urn:p" p:at="v &quot;1&quot;"><x:a xmlns:x="urn:x"/></r>',
    )

    @pytest.mark.parametrize("doc", DOCS)
    def test_same_bytes_as_the_reference_way(self, doc: bytes) -> None:
        """A comment added to the root sends the same document the reference way."""
        quick, quick_tree = canonical_document(parse_xml(doc))
        with_comment = parse_xml(doc)
        with_comment.insert(0, etree.Comment("c"))
        reference, _ = canonical_document(with_comment)
        assert quick == reference
        assert [(e.tag, e.text, e.tail) for e in quick_tree.iter()] == [
            (e.tag, e.text, e.tail) for e in parse_xml(quick).iter()
        ]
