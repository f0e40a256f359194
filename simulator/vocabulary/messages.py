"""The shared vocabulary of a message on its way from KA to the supplier.

KA publishes each business document as one STOMP message whose headers are
listed in :class:`Header`.  Every component reads them through
:func:`headers_for` and :meth:`MessageMeta.from_headers`, so the names live in
this one place.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from simulator.vocabulary.errors import ConfigError, EnvelopeError, UnknownMessageTypeError
from simulator.vocabulary.identifiers import is_valid_org_number

#: The queue KA publishes to and the ICC consumes from.
KA_QUEUE = "/queue/af.ka.outbound"

#: Headers the ICC adds to a message it dead-letters, and a replay adds.
DLQ_CODE = "b2b-dlq-code"
DLQ_REASON = "b2b-dlq-reason"
DLQ_AT = "b2b-dlq-at-ms"
REPLAYED_AT = "b2b-replayed-at-ms"


def dead_letter_queue(queue: str) -> str:
    """``/queue/x`` → ``/queue/DLQ.x``, ActiveMQ's own naming for dead letters."""
    return queue.replace("/queue/", "/queue/DLQ.", 1)


class MessageType(StrEnum):
    """The AF message types (meddelandetyp)."""

    INKOPSORDER = "INKOPSORDER"  # purchase order, UBL Order
    SJALVFAKTURA = "SJALVFAKTURA"  # self-billing invoice, UBL Invoice 389
    KREDIT = "KREDIT"  # self-billing credit note, UBL CreditNote 261

    @classmethod
    def parse(cls, value: str) -> MessageType:
        """The message type named by ``value``, or a clear error."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(m.value for m in cls)
            raise UnknownMessageTypeError(
                f"unknown message type {value!r}", hint=f"use one of {known}"
            ) from None

    @property
    def document_root(self) -> str:
        """The UBL root element name of this message type's document."""
        return _ROOTS[self]

    @property
    def short_name(self) -> str:
        """The name used on the command line and in file names."""
        return _SHORT[self]


_ROOTS = {
    MessageType.INKOPSORDER: "Order",
    MessageType.SJALVFAKTURA: "Invoice",
    MessageType.KREDIT: "CreditNote",
}
_SHORT = {
    MessageType.INKOPSORDER: "order",
    MessageType.SJALVFAKTURA: "invoice",
    MessageType.KREDIT: "credit",
}


class Header(StrEnum):
    """STOMP header names KA sets on every message."""

    MESSAGE_ID = "b2b-message-id"
    MESSAGE_TYPE = "b2b-message-type"
    ORG_NUMBER = "b2b-org-number"
    PRODUCED_AT = "b2b-produced-at-ms"  # producer's timestamp, UTC epoch ms
    SEQUENCE = "b2b-sequence"  # per supplier, from 1
    CORRELATION_ID = "b2b-correlation-id"
    # ActiveMQ keeps per-group order across competing consumers; it does not
    # echo JMSXGroupID back over STOMP, so ORG_NUMBER carries the key too.
    GROUP = "JMSXGroupID"


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """What KA says about one message, carried in STOMP headers."""

    message_id: str
    message_type: MessageType
    org_number: str
    produced_at_ms: int
    sequence: int
    correlation_id: str

    @classmethod
    def new(
        cls,
        message_type: MessageType,
        org_number: str,
        sequence: int,
        *,
        correlation_id: str | None = None,
        produced_at_ms: int | None = None,
        message_id: str | None = None,
    ) -> MessageMeta:
        """A fresh message's metadata, stamped now unless told otherwise."""
        return cls(
            message_id=message_id or str(uuid.uuid4()),
            message_type=message_type,
            org_number=org_number,
            produced_at_ms=produced_at_ms if produced_at_ms is not None else now_ms(),
            sequence=sequence,
            correlation_id=correlation_id or str(uuid.uuid4()),
        )

    def headers(self) -> dict[str, str]:
        """The STOMP headers that carry this metadata."""
        return {
            Header.MESSAGE_ID: self.message_id,
            Header.MESSAGE_TYPE: self.message_type.value,
            Header.ORG_NUMBER: self.org_number,
            Header.PRODUCED_AT: str(self.produced_at_ms),
            Header.SEQUENCE: str(self.sequence),
            Header.CORRELATION_ID: self.correlation_id,
            Header.GROUP: self.org_number,
        }

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> MessageMeta:
        """Read the metadata back; a missing or bad header is an EnvelopeError."""
        try:
            meta = cls(
                message_id=_required(headers, Header.MESSAGE_ID),
                message_type=MessageType.parse(_required(headers, Header.MESSAGE_TYPE)),
                org_number=_required(headers, Header.ORG_NUMBER),
                produced_at_ms=int(_required(headers, Header.PRODUCED_AT)),
                sequence=int(_required(headers, Header.SEQUENCE)),
                correlation_id=_required(headers, Header.CORRELATION_ID),
            )
        except ValueError as exc:
            if isinstance(exc, EnvelopeError):
                raise
            raise EnvelopeError(
                f"a KA message header is not a number: {exc}",
                hint=f"{Header.PRODUCED_AT} and {Header.SEQUENCE} must be integers",
            ) from None
        if not is_valid_org_number(meta.org_number):
            raise EnvelopeError(
                f"{Header.ORG_NUMBER} {meta.org_number!r} is not a Swedish organisation number",
                hint="KA must address each message to 10 digits with a Luhn check digit",
            )
        return meta


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise EnvelopeError(
            f"the KA message has no {name} header",
            hint="KA sets every b2b-* header; see docs/messages.md",
        )
    return value


#: Shift this process's clock by this many milliseconds (a component with a skewed
#: clock: ``b2bsim soak`` starts one so, docs/reliability.md).  Read once per process.
CLOCK_SKEW_ENV = "B2BSIM_CLOCK_SKEW_MS"


@functools.cache
def clock_skew_ms() -> int:
    """This process's injected clock skew in ms (``$B2BSIM_CLOCK_SKEW_MS``; 0 unset)."""
    raw = os.environ.get(CLOCK_SKEW_ENV, "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"${CLOCK_SKEW_ENV} is {raw!r}, not a whole number of milliseconds",
            hint="set it to e.g. 60000 or -60000, or unset it",
        ) from None


def now_ms() -> int:
    """The current UTC time as epoch milliseconds (shifted by an injected clock skew)."""
    return time.time_ns() // 1_000_000 + clock_skew_ms()
