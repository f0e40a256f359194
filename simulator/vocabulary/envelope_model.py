"""The technical envelope (tekniskt kuvert) as a value: :class:`Envelope` and its field rules.

An :class:`Envelope` carries one UBL business document together with what the
AF description says every envelope has: the addressee's organisation number,
the fingerprint of the addressee's AF-issued certificate, the addressee's
URL, the message type and the producer's timestamp.  Constructing one checks
every field.  Its XML form is :mod:`simulator.vocabulary.envelope_xml`'s; the
format is described in ``docs/envelope.md``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from simulator.vocabulary.errors import EnvelopeError
from simulator.vocabulary.identifiers import is_valid_org_number
from simulator.vocabulary.messages import MessageMeta, MessageType, now_ms

__all__ = ["DEFAULT_PORTS", "MAX_MS", "Envelope"]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_BAD_ID_CHARS = re.compile(r"[\x00-\x20\x7f]")
_MAX_ID_LEN = 256
#: The largest timestamp an envelope may carry: 9999-12-31T23:59:59.999Z.
MAX_MS = 253_402_300_799_999
#: The URL schemes an addressee's URL may have, with their default ports.
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Envelope:
    """One technical envelope: the addressee, the message's metadata and the document.

    Constructing one checks every field; a bad value raises EnvelopeError.
    """

    envelope_id: str  # the ICC derives it from message_id (docs/envelope.md); a replay keeps it
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
            _check_int(name, getattr(self, name), MAX_MS)
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
        or parts.scheme.lower() not in DEFAULT_PORTS
        or not parts.hostname
        or _BAD_ID_CHARS.search(value)
    ):
        raise EnvelopeError(
            f"receiver_url {value!r} is not an absolute http(s) URL",
            hint="use the supplier's endpoint URL, e.g. https://supplier.example:8443/b2b",
        )
