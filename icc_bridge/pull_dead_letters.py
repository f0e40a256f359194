"""A pulled envelope the supplier refused, as the dead letter the ICC writes for it.

The outbox holds the signed envelope, not KA's message; the dead letter is
KA's message again (the document as the body, KA's headers) so that
``b2bsim dlq replay`` sends it through the chain as any other, with the
code ``PULL_REFUSED`` and the supplier's own code and reason as the reason
(``SIGNATURE_INVALID: …``), as a push refusal keeps the supplier's answer.
"""

from __future__ import annotations

from icc_bridge.outbox import OutboxRow
from icc_bridge.pull_ack import Refusal
from simulator.vocabulary.codes.dead_letters import PULL_REFUSED
from simulator.vocabulary.envelope import from_xml
from simulator.vocabulary.messages import DLQ_AT, DLQ_CODE, DLQ_REASON, MessageMeta, now_ms
from simulator.vocabulary.xmlsafe import parse_xml

__all__ = ["pulled_dead_letter", "refusal_reason"]


def refusal_reason(refusal: Refusal) -> str:
    """The dead letter's reason: the supplier's code and its reason."""
    text = refusal.reason.strip()
    return f"{refusal.code}: {text}" if text else refusal.code


def pulled_dead_letter(row: OutboxRow, refusal: Refusal) -> tuple[MessageMeta, str, dict[str, str]]:
    """KA's metadata, document and the dead letter's headers, for a refused outbox row."""
    envelope = from_xml(parse_xml(row.envelope))
    meta = MessageMeta(
        message_id=envelope.message_id,
        message_type=envelope.message_type,
        org_number=envelope.org_number,
        produced_at_ms=envelope.produced_at_ms,
        sequence=envelope.sequence,
        correlation_id=envelope.correlation_id,
    )
    headers = {
        **meta.headers(),
        DLQ_CODE: PULL_REFUSED,
        DLQ_REASON: refusal_reason(refusal)[:500],
        DLQ_AT: str(now_ms()),
    }
    return meta, envelope.document.decode("utf-8"), headers
