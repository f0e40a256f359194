"""The one hardened XML parser configuration used wherever the simulator parses XML.

Everything that reads XML from outside — envelopes, business documents,
receipts — goes through :func:`parse_xml`.  It refuses, with a specific
:class:`~simulator.vocabulary.errors.HostileXmlError` subclass, any DOCTYPE (so no
entities, no external DTD, no billion laughs), input larger than a byte
limit, nesting deeper than a depth limit, text that is not UTF-8, and
anything that is not well-formed.  It never touches the network.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

from lxml import etree

from simulator.vocabulary.errors import (
    XmlDoctypeError,
    XmlMalformedError,
    XmlNotUtf8Error,
    XmlTooDeepError,
    XmlTooLargeError,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "parse_xml",
    "serialize",
]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_DEPTH = 64


# The XML declaration must come first (after an optional UTF-8 byte order mark).
_DECLARATION = re.compile(
    rb"\A(?:\xef\xbb\xbf)?<\?xml\s[^>]*?\bencoding\s*=\s*([\"'])([^\"']*)\1",
)
_UTF8_NAMES = frozenset({"utf-8", "utf8"})
_LOCAL = threading.local()


def _parser(*, comments: bool = True) -> etree.XMLParser:
    """This thread's hardened parser (lxml parsers must not be shared across threads)."""
    name = "parser" if comments else "parser_without_comments"
    parser: etree.XMLParser | None = getattr(_LOCAL, name, None)
    if parser is None:
        parser = etree.XMLParser(
            encoding="utf-8",
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            attribute_defaults=False,
            huge_tree=False,
            remove_comments=not comments,
            remove_pis=False,
            collect_ids=False,
        )
        setattr(_LOCAL, name, parser)
    return parser


@lru_cache(maxsize=16)
def _deeper_than(max_depth: int) -> etree.XPath:
    """An XPath that is true when some element sits deeper than ``max_depth``."""
    return etree.XPath("boolean(" + "/*" * (max_depth + 1) + ")")


def _check_encoding(data: bytes) -> None:
    match = _DECLARATION.match(data[:512])
    if match is not None:
        declared = match.group(2).decode("ascii", "replace")
        if declared.lower() not in _UTF8_NAMES:
            raise XmlNotUtf8Error(
                f"the XML declares encoding {declared!r}",
                hint='send UTF-8 and declare encoding="UTF-8" (or nothing)',
            )
    if b"\x00" in data:
        raise XmlNotUtf8Error(
            "the XML contains NUL bytes (UTF-16 or UTF-32, or binary data)",
            hint="send UTF-8 text",
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise XmlNotUtf8Error(
            f"the XML is not valid UTF-8: byte {exc.start} is {data[exc.start : exc.start + 1]!r}",
            hint="send UTF-8 text",
        ) from None


def parse_xml(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    comments: bool = True,
) -> etree._Element:
    """Parse untrusted XML safely and return its root element.

    ``comments=False`` drops comments while parsing (the text around one
    becomes one text node), as a signature verifier wants: C14N without
    comments of the tree is then the tree itself.

    Raises a :class:`HostileXmlError` subclass (XML_TOO_LARGE, XML_NOT_UTF8,
    XML_DOCTYPE, XML_TOO_DEEP, XML_MALFORMED) instead of parsing anything a
    safe receiver should refuse.
    """
    if not isinstance(data, bytes):
        raise XmlMalformedError(
            f"XML must be given as bytes, not {type(data).__name__}",
            hint="pass the raw UTF-8 bytes as received",
        )
    if len(data) > max_bytes:
        raise XmlTooLargeError(
            f"the XML is {len(data)} bytes, more than the limit of {max_bytes}",
            hint="send smaller documents or raise the limit on purpose",
        )
    _check_encoding(data)
    try:
        root = etree.fromstring(data, parser=_parser(comments=comments))
    except etree.XMLSyntaxError as exc:
        if b"<!DOCTYPE" in data:
            raise XmlDoctypeError(
                "the XML has a DOCTYPE declaration",
                hint="send XML without a DOCTYPE: DTDs and entities are not accepted",
            ) from None
        if "depth" in str(exc).lower():
            raise XmlTooDeepError(
                f"the XML nests elements deeper than {max_depth} levels",
                hint=f"nest at most {max_depth} levels",
            ) from None
        raise XmlMalformedError(
            f"the XML is not well-formed: {exc}",
            hint="check the document with an XML parser before sending it",
        ) from None
    if root is None:  # only whitespace or comments
        raise XmlMalformedError("the XML has no root element", hint="send an XML document")
    if root.getroottree().docinfo.internalDTD is not None:
        raise XmlDoctypeError(
            "the XML has a DOCTYPE declaration",
            hint="send XML without a DOCTYPE: DTDs and entities are not accepted",
        )
    if _deeper_than(max_depth)(root):
        raise XmlTooDeepError(
            f"the XML nests elements deeper than {max_depth} levels",
            hint=f"nest at most {max_depth} levels",
        )
    return root


def serialize(el: etree._Element, *, declaration: bool = True) -> bytes:
    """``el`` as UTF-8 bytes, with an XML declaration unless told otherwise."""
    return etree.tostring(el, encoding="UTF-8", xml_declaration=declaration)
