"""The pull API's acknowledgement body: ``{"up_to": C, "refused": [...]}`` (docs/pull.md).

:func:`parse_ack` checks what the body alone can tell (its shape, every
refused cursor at or below ``up_to``, none twice); the pull API then checks
each refused cursor against the outbox (the caller's, and served to it).  A
bad body is a one-line detail for ``400 ACK_INVALID`` saying which part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_REASON", "MAX_REFUSED", "Ack", "Refusal", "parse_ack"]

#: At most this many refused envelopes in one acknowledgement (a page's most).
MAX_REFUSED = 500
#: A refusal's reason is kept up to this many characters (the DLQ reason's limit).
MAX_REASON = 500
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_REFUSAL_KEYS = {"cursor", "envelope_id", "code", "reason"}


@dataclass(frozen=True, slots=True)
class Refusal:
    """An envelope the supplier fetched and refused for good, with its own code and reason."""

    cursor: int
    envelope_id: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Ack:
    up_to: int
    refused: tuple[Refusal, ...] = ()


def is_cursor(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18


def parse_ack(doc: object) -> Ack | str:
    """The acknowledgement, or the detail of why it is not one."""
    shape = 'send {"up_to": <cursor>, "refused": [...]} ("refused" is optional)'
    if not isinstance(doc, dict) or "up_to" not in doc or not set(doc) <= {"up_to", "refused"}:
        return shape
    up_to = doc["up_to"]
    if not is_cursor(up_to):
        return f"up_to {up_to!r} is not a cursor (a whole number, 0 or more)"
    items = doc.get("refused", [])
    if not isinstance(items, list):
        return '"refused" must be a list of {"cursor", "envelope_id", "code", "reason"}'
    if len(items) > MAX_REFUSED:
        return f'"refused" lists {len(items)} envelopes; at most {MAX_REFUSED} per acknowledgement'
    refused: list[Refusal] = []
    seen: set[int] = set()
    for i, item in enumerate(items):
        where = f"refused[{i}]"
        if not isinstance(item, dict) or set(item) != _REFUSAL_KEYS:
            return f'{where} must have exactly "cursor", "envelope_id", "code" and "reason"'
        cursor, envelope_id, code, reason = (
            item[k] for k in ("cursor", "envelope_id", "code", "reason")
        )
        if not is_cursor(cursor) or cursor == 0:
            return f"{where}.cursor {cursor!r} is not an envelope's cursor (1 or more)"
        if cursor > up_to:
            return (
                f"{where}.cursor {cursor} is above up_to {up_to}: refuse only what you acknowledge"
            )
        if cursor in seen:
            return f"{where}.cursor {cursor} is listed twice"
        if not isinstance(envelope_id, str) or not envelope_id:
            return f"{where}.envelope_id must be the envelope's id (a non-empty string)"
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            return f"{where}.code {str(code)[:70]!r} is not a code (upper case, digits and _)"
        if not isinstance(reason, str):
            return f"{where}.reason must be a string (free text)"
        seen.add(cursor)
        refused.append(Refusal(cursor, envelope_id, code, reason[:MAX_REASON]))
    return Ack(up_to, tuple(refused))
