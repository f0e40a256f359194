"""Timestamps as the envelope writes them: ISO 8601 UTC with milliseconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from simulator.vocabulary.errors import EnvelopeError

__all__ = ["format_timestamp", "parse_timestamp"]

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_timestamp(ms: int) -> str:
    """UTC epoch milliseconds as ISO 8601 with milliseconds: ``2026-01-31T12:00:00.123Z``."""
    m = _EPOCH + timedelta(milliseconds=ms)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}."
        f"{ms % 1000:03d}Z"
    )


def parse_timestamp(text: str, *, field: str = "timestamp") -> int:
    """ISO 8601 UTC with milliseconds (as :func:`format_timestamp` writes it) → epoch ms."""
    if not _TIMESTAMP.fullmatch(text):
        raise EnvelopeError(
            f"{field} {text!r} is not an ISO 8601 UTC time with milliseconds",
            hint="write it as YYYY-MM-DDTHH:MM:SS.mmmZ",
        )
    try:  # the digits are checked above; datetime checks the ranges, as strptime would
        moment = datetime(
            int(text[0:4]),
            int(text[5:7]),
            int(text[8:10]),
            int(text[11:13]),
            int(text[14:16]),
            int(text[17:19]),
            tzinfo=UTC,
        )
    except ValueError:
        raise EnvelopeError(
            f"{field} {text!r} is not a real date and time", hint="check the date"
        ) from None
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + int(text[20:23])
