"""Problem details (RFC 9457) with the simulator's stable error codes.

Every refusal a receiver makes is one of these codes, with one HTTP status:
the refusals of :mod:`simulator.vocabulary.codes.refusals`.  The same code
appears in the answer, in the logs and in reports; ``docs/openapi.yaml`` lists
them.  A problem never carries a stack trace, a file path or key material: only
the code, a title and a short detail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from simulator.vocabulary.codes.refusals import INTERNAL, REFUSALS
from simulator.vocabulary.errors import B2BSimError

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "urn:b2bsim:problem:"


@dataclass(frozen=True, slots=True)
class ProblemType:
    code: str
    status: int
    title: str


#: code → (HTTP status, title): the refusals of the catalogue (simulator.vocabulary.codes).
PROBLEMS: dict[str, ProblemType] = {
    code: ProblemType(code, entry.status, entry.problem_title)
    for code, entry in REFUSALS.items()
    if entry.status is not None
}


def code_for(exc: B2BSimError) -> str:
    """The problem code of ``exc``: its own, or its nearest ancestor's that is listed."""
    for cls in type(exc).__mro__:
        code = getattr(cls, "code", None)
        if isinstance(code, str) and code in PROBLEMS:
            return code
    return INTERNAL


def problem(code: str, detail: str, **extra: Any) -> tuple[int, bytes]:
    """The HTTP status and JSON body of the problem ``code`` (must be listed)."""
    kind = PROBLEMS[code]
    body = {
        "type": PROBLEM_BASE + kind.code,
        "title": kind.title,
        "status": kind.status,
        "code": kind.code,
        "detail": detail,
        **extra,
    }
    return kind.status, json.dumps(body).encode("utf-8")
