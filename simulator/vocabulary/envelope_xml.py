"""The technical envelope's XML form: ``env:Envelope`` around an SBDH document.

The XML form of an :class:`~simulator.vocabulary.envelope_model.Envelope` is an
``env:Envelope`` holding an SBDH ``StandardBusinessDocument`` (header, then
the UBL document as payload) followed by the XML signature (see
:mod:`simulator.vocabulary.signing`).  :func:`to_xml` writes it;
:func:`from_xml` reads it back strictly, and :func:`parse_envelope` also
hands over the document as the parsed tree its canonical bytes were written
from.  The format is described in ``docs/envelope.md``.
"""

from __future__ import annotations

import copy
import re
import threading
from dataclasses import dataclass
from functools import lru_cache

from lxml import etree

from simulator.vocabulary.canonical import canonical_document
from simulator.vocabulary.envelope_model import Envelope
from simulator.vocabulary.errors import EnvelopeError
from simulator.vocabulary.identifiers import AF_PEPPOL_ID, peppol_id
from simulator.vocabulary.messages import MessageType
from simulator.vocabulary.timestamps import format_timestamp, parse_timestamp
from simulator.vocabulary.ubl_names import ROOT_NAMESPACES
from simulator.vocabulary.xmlsafe import parse_xml

__all__ = [
    "DS_NS",
    "ENV_NS",
    "PARTNER_AUTHORITY",
    "SBDH_NS",
    "UBL_NAMESPACES",
    "ParsedEnvelope",
    "Scope",
    "from_xml",
    "parse_envelope",
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


_DIGITS = re.compile(r"[0-9]{1,19}")


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


_ENVELOPE = _q(ENV_NS, "Envelope")
_SBD = _q(SBDH_NS, "StandardBusinessDocument")
_SIGNATURE = _q(DS_NS, "Signature")
_HEADER_ORDER = ("HeaderVersion", "Sender", "Receiver", "DocumentIdentification", "BusinessScope")
_DOCID_ORDER = ("Standard", "TypeVersion", "InstanceIdentifier", "Type", "CreationDateAndTime")


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
    """The unsigned XML form of ``envelope``: ``env:Envelope`` around an SBDH document.

    The part that depends only on the addressee and the message type (most of
    the header) is built once and copied; this message's own fields are set
    in the copy.
    """
    root = copy.deepcopy(
        _skeleton(
            envelope.message_type,
            envelope.org_number,
            envelope.receiver_cert_sha256,
            envelope.receiver_url,
        )
    )
    sbd = root[0]
    header = sbd[0]
    docid, scopes = header[3], header[4]
    docid[2].text = envelope.envelope_id
    docid[4].text = format_timestamp(envelope.created_at_ms)
    own = _OWN_SCOPES
    scopes[own[Scope.PRODUCED_AT]][1].text = format_timestamp(envelope.produced_at_ms)
    scopes[own[Scope.PRODUCED_AT]][2].text = str(envelope.produced_at_ms)
    scopes[own[Scope.SEQUENCE]][1].text = str(envelope.sequence)
    scopes[own[Scope.MESSAGE_ID]][1].text = envelope.message_id
    scopes[own[Scope.CORRELATION_ID]][1].text = envelope.correlation_id
    sbd.append(_payload(envelope))
    return root


#: The scopes each message fills in (by position in sbd:BusinessScope).
_OWN_SCOPES = {
    name: Scope.ALL.index(name)
    for name in (Scope.PRODUCED_AT, Scope.SEQUENCE, Scope.MESSAGE_ID, Scope.CORRELATION_ID)
}
_SKELETONS = threading.local()  # lxml trees are not shared between threads
_MAX_SKELETONS = 1024


def _skeleton(mt: MessageType, org_number: str, cert_sha256: str, url: str) -> etree._Element:
    """``env:Envelope`` and the header of the addressee's envelopes of type ``mt``, the
    message's own fields left empty for :func:`to_xml` to set in a copy."""
    cache: dict[tuple[str, ...], etree._Element] | None = getattr(_SKELETONS, "cache", None)
    if cache is None:
        cache = _SKELETONS.cache = {}
    key = (mt.value, org_number, cert_sha256, url)
    root = cache.get(key)
    if root is not None:
        return root
    root = etree.Element(_ENVELOPE, nsmap={"env": ENV_NS})
    sbd = etree.SubElement(root, _SBD, nsmap={"sbd": SBDH_NS})
    header = _sub(sbd, "StandardBusinessDocumentHeader")
    _sub(header, "HeaderVersion", HEADER_VERSION)
    _partner(header, "Sender", AF_PEPPOL_ID)
    _partner(header, "Receiver", peppol_id(org_number))
    docid = _sub(header, "DocumentIdentification")
    _sub(docid, "Standard", UBL_NAMESPACES[mt])
    _sub(docid, "TypeVersion", UBL_VERSION)
    _sub(docid, "InstanceIdentifier")
    _sub(docid, "Type", mt.document_root)
    _sub(docid, "CreationDateAndTime")
    scopes = _sub(header, "BusinessScope")
    fixed = {
        Scope.MESSAGE_TYPE: mt.value,
        Scope.ORG_NUMBER: org_number,
        Scope.RECEIVER_CERT_SHA256: cert_sha256,
        Scope.RECEIVER_URL: url,
    }
    for name in Scope.ALL:
        scope = _sub(scopes, "Scope")
        _sub(scope, "Type", name)
        _sub(scope, "InstanceIdentifier", fixed.get(name))
        if name == Scope.PRODUCED_AT:
            _sub(scope, "Identifier")
    if len(cache) >= _MAX_SKELETONS:
        cache.clear()
    cache[key] = root
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


_Header = tuple[str, str, str, tuple[str, ...], dict[str, tuple[str, str | None]]]


def _header(header: etree._Element) -> _Header:
    """HeaderVersion, the Sender's and Receiver's ids, the DocumentIdentification texts and
    the envelope fields, read strictly (any deviation is an EnvelopeError saying what)."""
    version, sender, receiver, docid, scope_el = _expect_children(header, _HEADER_ORDER)
    version_text = _text(version)
    if version_text != HEADER_VERSION:  # checked here too: the first fault is the one said
        raise EnvelopeError(f"HeaderVersion is {version_text!r}", hint=f"use {HEADER_VERSION!r}")
    sender_id = _partner_id(sender, "Sender")
    if sender_id != AF_PEPPOL_ID:
        return version_text, sender_id, "", (), {}  # refused by the caller
    receiver_id = _partner_id(receiver, "Receiver")
    ids = tuple(_text(el) for el in _expect_children(docid, _DOCID_ORDER))
    return version_text, sender_id, receiver_id, ids, _scopes(scope_el)


def _layout() -> tuple[list[str], list[int], dict[str, tuple[int, int | None]]]:
    """The header as to_xml writes it, element by element (``header.iter()``): the tags,
    the positions of the elements that hold text, and of each field's texts."""
    names = ["StandardBusinessDocumentHeader", "HeaderVersion"]
    names += ["Sender", "Identifier", "Receiver", "Identifier", "DocumentIdentification"]
    names += [*_DOCID_ORDER, "BusinessScope"]
    fields: dict[str, tuple[int, int | None]] = {}
    for name in Scope.ALL:
        at = len(names)
        names += ["Scope", "Type", "InstanceIdentifier"]
        if name == Scope.PRODUCED_AT:
            names.append("Identifier")
        fields[name] = (at + 2, at + 3 if name == Scope.PRODUCED_AT else None)
    parents = {"StandardBusinessDocumentHeader", "Sender", "Receiver"}
    parents |= {"DocumentIdentification", "BusinessScope", "Scope"}
    texts = [i for i, n in enumerate(names) if n not in parents]
    return [_q(SBDH_NS, n) for n in names], texts, fields


_LAYOUT_TAGS, _LAYOUT_TEXTS, _LAYOUT_FIELDS = _layout()
_LAYOUT_TYPES = [at - 1 for at, _ in _LAYOUT_FIELDS.values()]


def _quick_header(header: etree._Element) -> _Header | None:
    """:func:`_header` in one pass, for a header laid out exactly as to_xml writes it (no
    comments, the fields in their order, every text there); None: read it strictly."""
    els = list(header.iter())
    if [el.tag for el in els] != _LAYOUT_TAGS:
        return None
    texts = [el.text for el in els]
    if (
        not all(texts[i] for i in _LAYOUT_TEXTS)
        or [texts[i] for i in _LAYOUT_TYPES] != list(Scope.ALL)
        or els[3].get("Authority") != PARTNER_AUTHORITY
        or els[5].get("Authority") != PARTNER_AUTHORITY
    ):
        return None
    fields = {
        name: (str(texts[at]), None if more is None else str(texts[more]))
        for name, (at, more) in _LAYOUT_FIELDS.items()
    }
    ids = tuple(str(texts[i]) for i in range(7, 12))
    return str(texts[1]), str(texts[3]), str(texts[5]), ids, fields


def _whole(name: str, text: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise EnvelopeError(f"{name} {text!r} is not a whole number", hint="write digits only")
    return int(text)


@dataclass(frozen=True, slots=True)
class ParsedEnvelope:
    """An envelope read from XML, and its document as a parsed tree.

    ``document`` is the tree ``envelope.document`` (the canonical bytes) was
    written from, without comments: reading it gives what parsing those bytes
    would, so a reader of the document's content need not parse it again.
    """

    envelope: Envelope
    document: etree._Element


def from_xml(root: etree._Element) -> Envelope:
    """Read an ``env:Envelope`` element back into an :class:`Envelope`, strictly.

    A trailing ``ds:Signature`` is allowed and ignored here (checking it is
    :mod:`simulator.vocabulary.signing`'s job); anything else out of place is an
    EnvelopeError saying what.
    """
    return parse_envelope(root).envelope


def parse_envelope(root: etree._Element) -> ParsedEnvelope:
    """:func:`from_xml`, and the document's tree beside the envelope (no second parse)."""
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
    version, sender_id, receiver_id, docid, fields = _quick_header(header) or _header(header)
    if version != HEADER_VERSION:
        raise EnvelopeError(f"HeaderVersion is {version!r}", hint=f"use {HEADER_VERSION!r}")
    if sender_id != AF_PEPPOL_ID:
        raise EnvelopeError(
            f"the envelope's Sender is {sender_id!r}, not Arbetsförmedlingen",
            hint=f"AF sends every envelope as {AF_PEPPOL_ID}",
        )
    standard, type_version, instance, doc_type, created = docid
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
    document, tree = canonical_document(payload)
    envelope = Envelope(
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
        document=document,
    )
    return ParsedEnvelope(envelope, tree)
