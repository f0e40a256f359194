"""The lines the ICC appends to its events log and its sent log (docs/files.md)."""

from __future__ import annotations

import hashlib
import json

from icc_bridge.delivery import Attempt
from simulator.vocabulary.messages import MessageMeta, now_ms

__all__ = ["answer_fields", "event_line", "sent_line"]


def event_line(kind: str, meta: MessageMeta | None, envelope_id: str, **extra: object) -> str:
    """One line of the events log: the event, when, the envelope and KA's message."""
    record: dict[str, object] = {"event": kind, "at_ms": now_ms(), "envelope_id": envelope_id}
    if meta is not None:
        record.update(
            message_id=meta.message_id,
            message_type=meta.message_type.value,
            org_number=meta.org_number,
            sequence=meta.sequence,
        )
    record.update(extra)
    return json.dumps(record) + "\n"


def sent_line(meta: MessageMeta, envelope_id: str, signed: bytes) -> str:
    """One line of the sent log: the envelope about to be pushed, as sent."""
    record = {
        "at_ms": now_ms(),
        "envelope_id": envelope_id,
        "message_id": meta.message_id,
        "org_number": meta.org_number,
        "sha256": hashlib.sha256(signed).hexdigest(),
        "envelope": signed.decode("utf-8"),
    }
    return json.dumps(record) + "\n"


def answer_fields(attempt: Attempt) -> dict[str, object]:
    """What an event records of a supplier's answer (docs/files.md)."""
    return {
        "status": attempt.status,
        "detail": attempt.detail,
        "receipt": attempt.receipt,
        "latency_ms": attempt.latency_ms,
    }
