"""The canonical form of a business document carried in an envelope.

An envelope read back carries its document in one canonical form (the
namespaces it uses declared on its root, no comments, C14N 1.0), so that the
same document has the same bytes (and digest) however the envelope was
written; :func:`canonical_document` also returns the tree those bytes were
written from, so that a reader need not parse them again.
"""

from __future__ import annotations

import copy
import re

from lxml import etree

from simulator.vocabulary.errors import EnvelopeError
from simulator.vocabulary.xmlsafe import parse_xml

__all__ = ["canonical_document", "normalise_document"]

# Namespace declarations as C14N writes them (always double quotes, escaped values).
_NS_DECLARATION = re.compile(rb' xmlns(?::([^\s=]+))?="([^"]*)"')


def _declarations(xml: bytes) -> tuple[dict[str | None, str], bool]:
    """The namespace declarations in serialised ``xml`` as one map, and whether a prefix clashes.

    A prefix bound to two URIs (a clash) is left out of the map.
    """
    top: dict[str | None, str] = {}
    clashes: set[str | None] = set()
    for raw_prefix, raw_uri in set(_NS_DECLARATION.findall(xml)):
        prefix = raw_prefix.decode() or None
        uri = raw_uri.decode()
        if "&" in uri:
            # An escaped character ("&", a quote, a tab or line break): C14N writes it
            # unescaped in a namespace URI, so the canonical form would not be XML.
            raise EnvelopeError(
                f"the document declares the namespace URI {uri!r}, with a character "
                "canonical XML cannot write there",
                hint="use namespace URIs without '&', quotes, tabs or line breaks, as UBL does",
            )
        if top.setdefault(prefix, uri) != uri:
            clashes.add(prefix)
    for prefix in clashes:
        del top[prefix]
    return top, bool(clashes)


def _only_on_root(c14n: bytes, root: etree._Element) -> bool:
    """Whether the declarations in ``c14n`` (``root`` written as C14N) are exactly the root's.

    Then the reference way below (declarations found in the serialised tree,
    moved to the root) writes the same bytes.  Anything else (a declaration
    further down, an undeclared default namespace, a URI with a character
    C14N escapes or writes raw, declaration-like text) says no: the reference
    way decides.
    """
    found = _NS_DECLARATION.findall(c14n)
    if len(found) != len(root.nsmap):
        return False
    own = sorted(((p or "").encode(), uri.encode()) for p, uri in root.nsmap.items())
    return sorted(found) == own and not any(b"&" in uri for _, uri in found)


def canonical_document(el: etree._Element) -> tuple[bytes, etree._Element]:
    """``el`` as a standalone document in one canonical form, and the tree written.

    The tree is a copy (``el`` is not changed) without comments: reading it
    gives what parsing the bytes would.  The form: the namespaces the document
    uses declared on its root (where no prefix is bound two ways), no
    comments, written as C14N 1.0.  The quick way copies the element, drops
    unused declarations and moves the rest up; when a prefix is bound two
    ways (never in UBL), the declarations stay where exclusive C14N puts them
    (where they are used), which is the reference way and costs a re-parse.
    """
    doc = copy.deepcopy(el)  # a document of its own, with the declarations it needs
    doc.tail = None
    etree.cleanup_namespaces(doc)
    if next(doc.iter(etree.Comment), None) is None:
        # The usual case (a UBL document, an envelope parsed without comments): if every
        # declaration C14N writes is on the root already, moving them up changes nothing.
        quick = etree.tostring(doc, method="c14n", with_comments=False)
        if _only_on_root(quick, doc):
            return quick, doc
    top, clashed = _declarations(etree.tostring(doc))
    if clashed:
        exc = etree.tostring(el, method="c14n", exclusive=True, with_comments=False)
        top, _ = _declarations(exc)
        doc = parse_xml(exc, max_bytes=len(exc), max_depth=1_000)  # depth was checked on input
    # lxml-stubs type top_nsmap as Mapping[str, str]; lxml accepts None for the default namespace.
    etree.cleanup_namespaces(doc, top_nsmap=top)  # type: ignore[arg-type]
    etree.strip_tags(doc, etree.Comment)  # C14N leaves them out; the tree, too (text joined)
    return etree.tostring(doc, method="c14n", with_comments=False), doc


def normalise_document(data: bytes) -> bytes:
    """The form a document has after a trip through an envelope: exclusive C14N, no comments.

    An envelope read back carries its document in this form; compare
    documents with ``normalise_document(a) == normalise_document(b)``.
    """
    return canonical_document(parse_xml(data))[0]
