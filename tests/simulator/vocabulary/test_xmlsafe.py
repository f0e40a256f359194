"""Tests for simulator.vocabulary.xmlsafe: the one hardened XML parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from simulator.vocabulary.errors import (
    EnvelopeError,
    HostileXmlError,
    XmlDoctypeError,
    XmlMalformedError,
    XmlNotUtf8Error,
    XmlTooDeepError,
    XmlTooLargeError,
)
from simulator.vocabulary.xmlsafe import parse_xml, serialize

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""


def nested(depth: int) -> bytes:
    """A document whose elements nest ``depth`` levels deep."""
    return b"<a>" * depth + b"</a>" * depth


class TestParseXml:
    """parse_xml accepts ordinary UTF-8 XML and refuses everything hostile."""

    def test_parses_plain_utf8(self) -> None:
        """A well-formed UTF-8 document with a declaration, comments and non-ASCII text parses."""
        data = '<?xml version="1.0" encoding="UTF-8"?><!-- c --><a x="1"><b>åäö</b></a>'.encode()
        root = parse_xml(data)
        assert root.tag == "a"
        assert root.findtext("b") == "åäö"

    def test_accepts_utf8_bom_and_lower_case_name(self) -> None:
        """A UTF-8 byte order mark and encoding='utf-8' are accepted."""
        root = parse_xml(b"\xef\xbb\xbf<?xml version='1.0' encoding='utf-8'?><a/>")
        assert root.tag == "a"

    @pytest.mark.parametrize(
        "data",
        [
            pytest.param(b"<!DOCTYPE a><a/>", id="bare-doctype"),
            pytest.param(b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>', id="internal-entity"),
            pytest.param(
                b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
                id="external-entity",
            ),
            pytest.param(
                b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/evil.dtd"><a/>', id="external-dtd"
            ),
            pytest.param(
                b'<!DOCTYPE a [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><a/>',
                id="parameter-entity",
            ),
            pytest.param(BILLION_LAUGHS, id="billion-laughs"),
        ],
    )
    def test_refuses_any_doctype(self, data: bytes) -> None:
        """Any DOCTYPE — bare, entities, external DTD, billion laughs — is XML_DOCTYPE."""
        with pytest.raises(XmlDoctypeError) as info:
            parse_xml(data)
        assert info.value.code == "XML_DOCTYPE"

    def test_external_entity_is_never_read(self, tmp_path: Path) -> None:
        """An external entity's file content never reaches the caller."""
        secret = tmp_path / "secret.txt"
        secret.write_text("SECRET-4711")
        data = f'<!DOCTYPE a [<!ENTITY x SYSTEM "{secret.as_uri()}">]><a>&x;</a>'.encode()
        with pytest.raises(XmlDoctypeError) as info:
            parse_xml(data)
        assert "SECRET-4711" not in str(info.value)

    def test_refuses_too_large(self) -> None:
        """Input over max_bytes is XML_TOO_LARGE before any parsing."""
        with pytest.raises(XmlTooLargeError) as info:
            parse_xml(b"<a>" + b"x" * 2000 + b"</a>", max_bytes=1000)
        assert info.value.code == "XML_TOO_LARGE"

    def test_accepts_exactly_max_bytes(self) -> None:
        """Input of exactly max_bytes is accepted."""
        data = b"<a>" + b"x" * 93 + b"</a>"
        assert len(data) == 100
        assert parse_xml(data, max_bytes=100).tag == "a"

    def test_refuses_too_deep(self) -> None:
        """Nesting one level deeper than max_depth is XML_TOO_DEEP."""
        with pytest.raises(XmlTooDeepError) as info:
            parse_xml(nested(65), max_depth=64)
        assert info.value.code == "XML_TOO_DEEP"

    def test_accepts_exactly_max_depth(self) -> None:
        """Nesting exactly max_depth levels is accepted."""
        assert parse_xml(nested(10), max_depth=10).tag == "a"

    def test_refuses_deeper_than_libxml2_allows(self) -> None:
        """Nesting past libxml2's own limit is still XML_TOO_DEEP, not a parser error."""
        with pytest.raises(XmlTooDeepError):
            parse_xml(nested(400), max_depth=1000)

    @pytest.mark.parametrize(
        "data",
        [
            pytest.param(
                '<?xml version="1.0" encoding="ISO-8859-1"?><a>å</a>'.encode("latin-1"),
                id="declared-latin1",
            ),
            pytest.param(
                b'<?xml version="1.0" encoding="windows-1252"?><a>x</a>', id="declared-ascii-only"
            ),
            pytest.param(b"<a>\xe5</a>", id="invalid-utf8-byte"),
            pytest.param("<a>å</a>".encode("utf-16"), id="utf16-bom"),
            pytest.param("<a>å</a>".encode("utf-16-le"), id="utf16-no-bom"),
        ],
    )
    def test_refuses_non_utf8(self, data: bytes) -> None:
        """Another declared encoding or bytes that are not UTF-8 are XML_NOT_UTF8."""
        with pytest.raises(XmlNotUtf8Error) as info:
            parse_xml(data)
        assert info.value.code == "XML_NOT_UTF8"

    @pytest.mark.parametrize(
        "data",
        [
            pytest.param(b"", id="empty"),
            pytest.param(b"just some text", id="text"),
            pytest.param(b"<a><b></a>", id="mismatched"),
            pytest.param(b"<a>", id="unclosed"),
            pytest.param(b"<a>&undefined;</a>", id="undefined-entity"),
            pytest.param(b"<a/><b/>", id="two-roots"),
            pytest.param(b'{"json": true}', id="json"),
        ],
    )
    def test_refuses_malformed(self, data: bytes) -> None:
        """Anything not well-formed is XML_MALFORMED."""
        with pytest.raises(XmlMalformedError) as info:
            parse_xml(data)
        assert info.value.code == "XML_MALFORMED"

    def test_refuses_binary_garbage(self) -> None:
        """Random binary bytes are refused as hostile XML, never a traceback."""
        with pytest.raises(HostileXmlError):
            parse_xml(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

    def test_refuses_str(self) -> None:
        """A str instead of bytes is a clear error."""
        with pytest.raises(XmlMalformedError):
            parse_xml("<a/>")  # type: ignore[arg-type]

    def test_error_tree(self) -> None:
        """Every refusal is a HostileXmlError, an EnvelopeError and a ValueError."""
        for cls in (
            XmlDoctypeError,
            XmlTooLargeError,
            XmlTooDeepError,
            XmlNotUtf8Error,
            XmlMalformedError,
        ):
            assert issubclass(cls, HostileXmlError)
            assert issubclass(cls, EnvelopeError)
            assert issubclass(cls, ValueError)


class TestSerialize:
    """serialize writes UTF-8 with or without a declaration."""

    def test_round_trip(self) -> None:
        """serialize then parse_xml gives the same tree."""
        root = etree.fromstring("<a><b>åäö</b></a>".encode())
        data = serialize(root)
        assert data.startswith(b"<?xml")
        assert parse_xml(data).findtext("b") == "åäö"

    def test_without_declaration(self) -> None:
        """declaration=False leaves the XML declaration out."""
        assert serialize(etree.fromstring(b"<a/>"), declaration=False) == b"<a/>"


def test_parse_without_comments_joins_the_text_around_them() -> None:
    """comments=False drops comments and leaves one text node where they were."""
    root = parse_xml(b"<a>one<!-- x -->two<b/><!-- y --></a>", comments=False)
    assert root.text == "onetwo"
    assert len(root) == 1
    kept = parse_xml(b"<a>one<!-- x -->two</a>")
    assert kept.text == "one"
