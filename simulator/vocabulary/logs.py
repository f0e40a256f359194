"""Structured logs: one JSON object per line on stderr.

Components log events with the message and envelope ids in the text, so a
message can be followed across KA, the ICC and the supplier with grep.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class JsonLineFormatter(logging.Formatter):
    """``{"at": ..., "level": ..., "logger": ..., "msg": ...}`` per record."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class _DropConnectAttempts(logging.Filter):
    """Drops stomp.py's per-attempt "could not connect to host" warning.

    Whoever connects says it once, with what to do (a
    :class:`~simulator.vocabulary.errors.BrokerUnreachableError`, or a retry
    warning of its own); the library's line would only repeat it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("could not connect to host")


_DROP_CONNECT_ATTEMPTS = _DropConnectAttempts()


def configure(*, verbose: bool, structured: bool) -> None:
    """Log to stderr: JSON lines for long-lived components, plain text otherwise."""
    handler = logging.StreamHandler(sys.stderr)
    if structured:
        handler.setFormatter(JsonLineFormatter())
        level = logging.DEBUG if verbose else logging.INFO
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        level = logging.DEBUG if verbose else logging.WARNING
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("stomp", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("stomp.py").addFilter(_DROP_CONNECT_ATTEMPTS)
