"""The technical envelope (tekniskt kuvert): its model and its XML form.

An :class:`Envelope` carries one UBL business document together with what the
AF description says every envelope has: the addressee's organisation number,
the fingerprint of the addressee's AF-issued certificate, the addressee's
URL, the message type and the producer's timestamp.  Its XML form is an
``env:Envelope`` holding an SBDH ``StandardBusinessDocument`` (header, then the
UBL document as payload) followed by the XML signature (see
:mod:`simulator.vocabulary.signing`).  The format is described in ``docs/envelope.md``.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from lxml import etree

from simulator.vocabulary.errors import AddresseeError, EnvelopeError
from simulator.vocabulary.identifiers import (
    AF_PEPPOL_ID,
    is_valid_org_number,
    normalise_org_number,
    peppol_id,
)
from simulator.vocabulary.messages import MessageMeta, MessageType, now_ms
from simulator.vocabulary.ubl_names import ROOT_NAMESPACES
from simulator.vocabulary.xmlsafe import parse_xml

__all__ = [
    "DS_NS",
    "ENV_NS",
    "PARTNER_AUTHORITY",
    "SBDH_NS",
    "UBL_NAMESPACES",
    "Envelope",
    "Scope",
    "check_addressee",
    "format_timestamp",
    "from_xml",
    "normalise_document",
    "normalise_url",
    "parse_timestamp",
    "to_xml",
]

ENV_NS = "urn:b2bsim:envelope:1"
SBDH_NS = "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
#: The identifier scheme of Peppol participant ids (``0007:<org number>``).
PARTNER_AUTHORITY = "iso6523-actorid-upis"
HEADER_VERSION = "1.0"
UBL_VERSION = "2.1"
#: The UBL namespace of each message type's document root.
UBL_NAMESPACES: dict[MessageType, str] = {
    mt: ROOT_NAMESPACES[mt.document_root] for mt in MessageType
}


class Scope:
    """The SBDH BusinessScope ``Type`` names that carry the AF envelope fields."""

    MESSAGE_TYPE = "MESSAGE_TYPE"
    ORG_NUMBER = "ORG_NUMBER"
    RECEIVER_CERT_SHA256 = "RECEIVER_CERT_SHA256"
    RECEIVER_URL = "RECEIVER_URL"
    PRODUCED_AT = "PRODUCED_AT"
    SEQUENCE = "SEQUENCE"
    MESSAGE_ID = "MESSAGE_ID"
    CORRELATION_ID = "CORRELATION_ID"
    ALL = (
        MESSAGE_TYPE,
        ORG_NUMBER,
        RECEIVER_CERT_SHA256,
        RECEIVER_URL,
        PRODUCED_AT,
        SEQUENCE,
        MESSAGE_ID,
        CORRELATION_ID,
    )


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_DIGITS = re.compile(r"[0-9]{1,19}")
_BAD_ID_CHARS = re.compile(r"[\x00-\x20\x7f]")
_MAX_ID_LEN = 256
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Namespace declarations as C14N writes them (always double quotes, escaped values).
_NS_DECLARATION = re.compile(rb' xmlns(?::([^\s=]+))?="([^"]*)"')


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


_ENVELOPE = _q(ENV_NS, "Envelope")
_SBD = _q(SBDH_NS, "StandardBusinessDocument")
_SIGNATURE = _q(DS_NS, "Signature")
_HEADER_ORDER = ("HeaderVersion", "Sender", "Receiver", "DocumentIdentification", "BusinessScope")
_DOCID_ORDER = ("Standard", "TypeVersion", "InstanceIdentifier", "Type", "CreationDateAndTime")


@dataclass(frozen=True, slots=True)
class Envelope:
    """One technical envelope: the addressee, the message's metadata and the document.

    Constructing one checks every field; a bad value raises EnvelopeError.
    """

    envelope_id: str  # unique per envelope (uuid4 str); a replay keeps it
    message_id: str  # KA's message id
    correlation_id: str
    message_type: MessageType  # simulator.vocabulary.messages
    org_number: str  # the addressee's organisation number
    receiver_cert_sha256: str  # fingerprint of the addressee's AF-issued certificate
    receiver_url: str  # the addressee's current URL
    produced_at_ms: int  # KA's timestamp, UTC epoch ms: the supplier's sort key
    sequence: int  # KA's per-supplier sequence number
    created_at_ms: int  # when the ICC made the envelope
    document: bytes  # the UBL business document, UTF-8 XML

    def __post_init__(self) -> None:
        for name in ("envelope_id", "message_id", "correlation_id"):
            _check_id(name, getattr(self, name))
        if not isinstance(self.message_type, MessageType):
            raise EnvelopeError(
                f"message_type {self.message_type!r} is not a MessageType",
                hint="use MessageType.parse() on the text form",
            )
        if not isinstance(self.org_number, str) or not is_valid_org_number(self.org_number):
            raise EnvelopeError(
                f"org_number {self.org_number!r} is not a Swedish organisation number",
                hint="use 10 digits, no dash, whose last digit is the Luhn check digit",
            )
        if not isinstance(self.receiver_cert_sha256, str) or not _SHA256_HEX.fullmatch(
            self.receiver_cert_sha256
        ):
            raise EnvelopeError(
                f"receiver_cert_sha256 {self.receiver_cert_sha256!r} is not a SHA-256 fingerprint",
                hint="use 64 lower-case hex digits, no colons",
            )
        _check_url(self.receiver_url)
        for name in ("produced_at_ms", "created_at_ms"):
            _check_int(name, getattr(self, name), _MAX_MS)
        _check_int("sequence", self.sequence, 2**63 - 1)
        if not isinstance(self.document, bytes) or not self.document:
            raise EnvelopeError(
                "the envelope's document is empty or not bytes",
                hint="pass the UBL document as UTF-8 bytes",
            )

    @classmethod
    def create(
        cls,
        meta: MessageMeta,
        document: bytes,
        *,
        receiver_cert_sha256: str,
        receiver_url: str,
        created_at_ms: int | None = None,
        envelope_id: str | None = None,
    ) -> Envelope:
        """A new envelope for KA's message ``meta``, stamped now unless told otherwise."""
        return cls(
            envelope_id=envelope_id or str(uuid.uuid4()),
            message_id=meta.message_id,
            correlation_id=meta.correlation_id,
            message_type=meta.message_type,
            org_number=meta.org_number,
            receiver_cert_sha256=receiver_cert_sha256.lower().replace(":", ""),
            receiver_url=receiver_url,
            produced_at_ms=meta.produced_at_ms,
            sequence=meta.sequence,
            created_at_ms=created_at_ms if created_at_ms is not None else now_ms(),
            document=document,
        )


def _check_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise EnvelopeError(f"{name} is empty", hint=f"give every envelope a {name}")
    if len(value) > _MAX_ID_LEN or _BAD_ID_CHARS.search(value):
        raise EnvelopeError(
            f"{name} {value[:80]!r} is not a usable identifier",
            hint=f"use at most {_MAX_ID_LEN} printable characters without spaces",
        )


def _check_int(name: str, value: object, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise EnvelopeError(
            f"{name} {value!r} is not a whole number from 0 to {maximum}",
            hint=f"set {name} to a non-negative integer",
        )


def _check_url(value: object) -> None:
    if not isinstance(value, str):
        raise EnvelopeError(f"receiver_url {value!r} is not a string", hint="use an https URL")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme.lower() not in _DEFAULT_PORTS
        or not parts.hostname
        or _BAD_ID_CHARS.search(value)
    ):
        raise EnvelopeError(
            f"receiver_url {value!r} is not an absolute http(s) URL",
            hint="use the supplier's endpoint URL, e.g. https://supplier.example:8443/b2b",
        )


# -- timestamps ---------------------------------------------------------------


def format_timestamp(ms: int) -> str:
    """UTC epoch milliseconds as ISO 8601 with milliseconds: ``2026-01-31T12:00:00.123Z``."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_timestamp(text: str, *, field: str = "timestamp") -> int:
    """ISO 8601 UTC with milliseconds (as :func:`format_timestamp` writes it) → epoch ms."""
    if not _TIMESTAMP.fullmatch(text):
        raise EnvelopeError(
            f"{field} {text!r} is not an ISO 8601 UTC time with milliseconds",
            hint="write it as YYYY-MM-DDTHH:MM:SS.mmmZ",
        )
    try:
        moment = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise EnvelopeError(
            f"{field} {text!r} is not a real date and time", hint="check the date"
        ) from None
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + int(text[20:23])


# -- XML form -----------------------------------------------------------------


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, _q(SBDH_NS, name))
    if text is not None:
        el.text = text
    return el


def _partner(parent: etree._Element, role: str, participant: str) -> None:
    ident = _sub(_sub(parent, role), "Identifier", participant)
    ident.set("Authority", PARTNER_AUTHORITY)


def _payload(envelope: Envelope) -> etree._Element:
    doc = parse_xml(envelope.document)
    expected = _q(UBL_NAMESPACES[envelope.message_type], envelope.message_type.document_root)
    if doc.tag != expected:
        raise EnvelopeError(
            f"a {envelope.message_type} envelope must carry a UBL "
            f"{envelope.message_type.document_root}, not {doc.tag}",
            hint=f"the document root must be {expected}",
        )
    return doc


def to_xml(envelope: Envelope) -> etree._Element:
    """The unsigned XML form of ``envelope``: ``env:Envelope`` around an SBDH document."""
    mt = envelope.message_type
    root = etree.Element(_ENVELOPE, nsmap={"env": ENV_NS})
    sbd = etree.SubElement(root, _SBD, nsmap={"sbd": SBDH_NS})
    header = _sub(sbd, "StandardBusinessDocumentHeader")
    _sub(header, "HeaderVersion", HEADER_VERSION)
    _partner(header, "Sender", AF_PEPPOL_ID)
    _partner(header, "Receiver", peppol_id(envelope.org_number))
    docid = _sub(header, "DocumentIdentification")
    _sub(docid, "Standard", UBL_NAMESPACES[mt])
    _sub(docid, "TypeVersion", UBL_VERSION)
    _sub(docid, "InstanceIdentifier", envelope.envelope_id)
    _sub(docid, "Type", mt.document_root)
    _sub(docid, "CreationDateAndTime", format_timestamp(envelope.created_at_ms))
    scopes = _sub(header, "BusinessScope")
    values = {
        Scope.MESSAGE_TYPE: (mt.value, None),
        Scope.ORG_NUMBER: (envelope.org_number, None),
        Scope.RECEIVER_CERT_SHA256: (envelope.receiver_cert_sha256, None),
        Scope.RECEIVER_URL: (envelope.receiver_url, None),
        Scope.PRODUCED_AT: (
            format_timestamp(envelope.produced_at_ms),
            str(envelope.produced_at_ms),
        ),
        Scope.SEQUENCE: (str(envelope.sequence), None),
        Scope.MESSAGE_ID: (envelope.message_id, None),
        Scope.CORRELATION_ID: (envelope.correlation_id, None),
    }
    for name in Scope.ALL:
        instance, identifier = values[name]
        scope = _sub(scopes, "Scope")
        _sub(scope, "Type", name)
        _sub(scope, "InstanceIdentifier", instance)
        if identifier is not None:
            _sub(scope, "Identifier", identifier)
    sbd.append(_payload(envelope))
    return root


def _elements(el: etree._Element) -> list[etree._Element]:
    """The element children of ``el`` (comments and processing instructions left out)."""
    return [child for child in el if isinstance(child.tag, str)]


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else str(el.tag)


@lru_cache(maxsize=32)
def _sbdh_tags(names: tuple[str, ...]) -> list[str]:
    return [_q(SBDH_NS, name) for name in names]


def _expect_children(el: etree._Element, names: tuple[str, ...]) -> list[etree._Element]:
    children = list(el)
    if [c.tag for c in children] == _sbdh_tags(names):  # the usual case, checked at C speed
        return children
    children = _elements(el)
    got = tuple(_local(c) for c in children)
    if got != names or any(etree.QName(c).namespace != SBDH_NS for c in children):
        raise EnvelopeError(
            f"sbd:{_local(el)} must hold exactly {', '.join(names)} in that order (SBDH "
            f"namespace), found {', '.join(got) or 'nothing'}",
            hint="see docs/envelope.md for the envelope layout",
        )
    return children


def _text(el: etree._Element) -> str:
    if len(el) and _elements(el):
        raise EnvelopeError(
            f"sbd:{_local(el)} must hold text, not elements", hint="see docs/envelope.md"
        )
    text = el.text or ""
    if not text:
        raise EnvelopeError(f"sbd:{_local(el)} is empty", hint="see docs/envelope.md")
    return text


def _partner_id(el: etree._Element, role: str) -> str:
    (ident,) = _expect_children(el, ("Identifier",))
    if ident.get("Authority") != PARTNER_AUTHORITY:
        raise EnvelopeError(
            f"the {role} identifier's Authority is {ident.get('Authority')!r}",
            hint=f"use Authority={PARTNER_AUTHORITY!r}",
        )
    return _text(ident)


def _scopes(el: etree._Element) -> dict[str, tuple[str, str | None]]:
    found: dict[str, tuple[str, str | None]] = {}
    for scope in _elements(el):
        if scope.tag != _q(SBDH_NS, "Scope"):
            raise EnvelopeError(
                f"sbd:BusinessScope holds {scope.tag}, not only sbd:Scope",
                hint="see docs/envelope.md",
            )
        parts = _elements(scope)
        names = ("Type", "InstanceIdentifier", "Identifier")[: max(2, min(len(parts), 3))]
        parts = _expect_children(scope, names)
        name = _text(parts[0])
        if name not in Scope.ALL:
            raise EnvelopeError(
                f"unknown envelope field (Scope Type) {name!r}",
                hint=f"the fields are {', '.join(Scope.ALL)}",
            )
        if name in found:
            raise EnvelopeError(
                f"the envelope field {name} appears more than once", hint="give each field once"
            )
        found[name] = (_text(parts[1]), _text(parts[2]) if len(parts) == 3 else None)
    missing = [name for name in Scope.ALL if name not in found]
    if missing:
        raise EnvelopeError(
            f"the envelope lacks the field(s) {', '.join(missing)}",
            hint="every envelope carries all fields in docs/envelope.md",
        )
    return found


def _whole(name: str, text: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise EnvelopeError(f"{name} {text!r} is not a whole number", hint="write digits only")
    return int(text)


def from_xml(root: etree._Element) -> Envelope:
    """Read an ``env:Envelope`` element back into an :class:`Envelope`, strictly.

    A trailing ``ds:Signature`` is allowed and ignored here (checking it is
    :mod:`simulator.vocabulary.signing`'s job); anything else out of place is an
    EnvelopeError saying what.
    """
    if root.tag != _ENVELOPE:
        raise EnvelopeError(
            f"the root element is {root.tag}, not {{{ENV_NS}}}Envelope",
            hint="send a technical envelope as described in docs/envelope.md",
        )
    children = _elements(root)
    if children and children[-1].tag == _SIGNATURE:
        children = children[:-1]
    if len(children) != 1 or children[0].tag != _SBD:
        raise EnvelopeError(
            "env:Envelope must hold exactly one sbd:StandardBusinessDocument "
            "(and then its ds:Signature)",
            hint="see docs/envelope.md for the envelope layout",
        )
    parts = _elements(children[0])
    if len(parts) != 2 or parts[0].tag != _q(SBDH_NS, "StandardBusinessDocumentHeader"):
        raise EnvelopeError(
            "sbd:StandardBusinessDocument must hold the header and then exactly one document",
            hint="see docs/envelope.md for the envelope layout",
        )
    header, payload = parts
    version, sender, receiver, docid, scope_el = _expect_children(header, _HEADER_ORDER)
    if _text(version) != HEADER_VERSION:
        raise EnvelopeError(f"HeaderVersion is {version.text!r}", hint=f"use {HEADER_VERSION!r}")
    if (sender_id := _partner_id(sender, "Sender")) != AF_PEPPOL_ID:
        raise EnvelopeError(
            f"the envelope's Sender is {sender_id!r}, not Arbetsförmedlingen",
            hint=f"AF sends every envelope as {AF_PEPPOL_ID}",
        )
    receiver_id = _partner_id(receiver, "Receiver")
    standard, type_version, instance, doc_type, created = (
        _text(el) for el in _expect_children(docid, _DOCID_ORDER)
    )
    fields = _scopes(scope_el)
    message_type = MessageType.parse(fields[Scope.MESSAGE_TYPE][0])
    org_number = fields[Scope.ORG_NUMBER][0]
    if receiver_id != peppol_id(org_number):
        raise EnvelopeError(
            f"the Receiver {receiver_id!r} does not match ORG_NUMBER {org_number!r}",
            hint="the Receiver identifier is 0007:<ORG_NUMBER>",
        )
    ns = UBL_NAMESPACES[message_type]
    root_name = message_type.document_root
    if (standard, type_version, doc_type) != (ns, UBL_VERSION, root_name):
        raise EnvelopeError(
            f"DocumentIdentification says {standard} {type_version} {doc_type} for a "
            f"{message_type} envelope",
            hint=f"a {message_type} envelope has Standard {ns}, TypeVersion {UBL_VERSION}, "
            f"Type {root_name}",
        )
    if payload.tag != _q(ns, root_name):
        raise EnvelopeError(
            f"a {message_type} envelope must carry a UBL {root_name}, not {payload.tag}",
            hint=f"the payload root must be {{{ns}}}{root_name}",
        )
    produced_iso, produced_ms_text = fields[Scope.PRODUCED_AT]
    produced_at_ms = parse_timestamp(produced_iso, field="PRODUCED_AT")
    if produced_ms_text is not None and _whole("PRODUCED_AT", produced_ms_text) != produced_at_ms:
        raise EnvelopeError(
            f"PRODUCED_AT says {produced_iso} but its epoch ms is {produced_ms_text}",
            hint="the Identifier is the same instant in epoch milliseconds",
        )
    return Envelope(
        envelope_id=instance,
        message_id=fields[Scope.MESSAGE_ID][0],
        correlation_id=fields[Scope.CORRELATION_ID][0],
        message_type=message_type,
        org_number=org_number,
        receiver_cert_sha256=fields[Scope.RECEIVER_CERT_SHA256][0],
        receiver_url=fields[Scope.RECEIVER_URL][0],
        produced_at_ms=produced_at_ms,
        sequence=_whole("SEQUENCE", fields[Scope.SEQUENCE][0]),
        created_at_ms=parse_timestamp(created, field="CreationDateAndTime"),
        document=_canonical(payload),
    )


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


def _canonical(el: etree._Element) -> bytes:
    """``el`` as a standalone document in one canonical form.

    The form: the namespaces the document uses declared on its root (where no
    prefix is bound two ways), no comments, written as C14N 1.0.  The quick way
    copies the element, drops unused declarations and moves the rest up; when
    a prefix is bound two ways (never in UBL), the declarations stay where
    exclusive C14N puts them (where they are used), which is the reference
    way and costs a re-parse.
    """
    doc = copy.deepcopy(el)  # a document of its own, with the declarations it needs
    doc.tail = None
    etree.cleanup_namespaces(doc)
    top, clashed = _declarations(etree.tostring(doc))
    if clashed:
        exc = etree.tostring(el, method="c14n", exclusive=True, with_comments=False)
        top, _ = _declarations(exc)
        doc = parse_xml(exc, max_bytes=len(exc), max_depth=1_000)  # depth was checked on input
    # lxml-stubs type top_nsmap as Mapping[str, str]; lxml accepts None for the default namespace.
    etree.cleanup_namespaces(doc, top_nsmap=top)  # type: ignore[arg-type]
    return etree.tostring(doc, method="c14n", with_comments=False)


def normalise_document(data: bytes) -> bytes:
    """The form a document has after a trip through an envelope: exclusive C14N, no comments.

    An envelope read back carries its document in this form; compare
    documents with ``normalise_document(a) == normalise_document(b)``.
    """
    return _canonical(parse_xml(data))


# -- addressee ----------------------------------------------------------------


def normalise_url(url: str) -> str:
    """``url`` with scheme and host lower-case, no default port and no trailing slash."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def _fingerprint(value: str) -> str:
    return value.strip().lower().replace(":", "")


def check_addressee(env: Envelope, *, org_number: str, cert_sha256: str, url: str | None) -> None:
    """Raise AddresseeError unless ``env`` is addressed to this organisation, certificate and URL.

    ``url=None`` skips the URL check (an envelope fetched rather than pushed).
    """
    if env.org_number != normalise_org_number(org_number):
        raise AddresseeError(
            f"the envelope is addressed to organisation number {env.org_number}, not {org_number}",
            hint="the ICC looked up the wrong supplier, or this endpoint has the wrong identity",
        )
    if _fingerprint(env.receiver_cert_sha256) != _fingerprint(cert_sha256):
        raise AddresseeError(
            f"the envelope is addressed to certificate sha256 {env.receiver_cert_sha256}, "
            f"not {_fingerprint(cert_sha256)}",
            hint="the supplier's AF-issued certificate was renewed or the registry is stale",
        )
    if url is not None and normalise_url(env.receiver_url) != normalise_url(url):
        raise AddresseeError(
            f"the envelope is addressed to URL {env.receiver_url}, not {url}",
            hint="update the supplier registry with the supplier's current URL",
        )
