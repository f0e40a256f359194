"""Problem details (RFC 9457) with the simulator's stable error codes.

Every refusal a receiver makes is one of these codes, with one HTTP status.
The same code appears in the answer, in the logs and in reports;
``docs/openapi.yaml`` lists them.  A problem never carries a stack trace, a
file path or key material: only the code, a title and a short detail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from simulator.vocabulary.errors import B2BSimError

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "urn:b2bsim:problem:"


@dataclass(frozen=True, slots=True)
class ProblemType:
    code: str
    status: int
    title: str


#: code → (HTTP status, title).  Stable: add, never rename.
PROBLEMS: dict[str, ProblemType] = {
    p.code: p
    for p in (
        ProblemType("ENVELOPE_MALFORMED", 400, "The envelope is not a valid B2B envelope"),
        ProblemType("XML_FORBIDDEN", 400, "The XML uses a construct a safe receiver refuses"),
        ProblemType("XML_DOCTYPE", 400, "The XML has a DOCTYPE (DTDs and entities are refused)"),
        ProblemType("XML_TOO_LARGE", 413, "The XML is larger than allowed"),
        ProblemType("XML_TOO_DEEP", 400, "The XML is nested deeper than allowed"),
        ProblemType("XML_NOT_UTF8", 400, "The body is not UTF-8 text"),
        ProblemType("XML_MALFORMED", 400, "The body is not well-formed XML"),
        ProblemType("SIGNATURE_INVALID", 403, "The envelope signature does not verify"),
        ProblemType("SIGNATURE_MISSING", 403, "The envelope is not signed"),
        ProblemType("SIGNATURE_TAMPERED", 403, "The envelope was changed after it was signed"),
        ProblemType("SIGNATURE_WRAPPING", 403, "The signature does not cover exactly the envelope"),
        ProblemType("SIGNATURE_WEAK_ALGORITHM", 403, "The signature uses a refused algorithm"),
        ProblemType("SIGNER_UNTRUSTED", 403, "The envelope is not signed by the ICC"),
        ProblemType("CLIENT_NOT_ICC", 403, "The client certificate is not an ICC certificate"),
        ProblemType("CLIENT_REVOKED", 403, "The client certificate is revoked"),
        ProblemType("WRONG_ADDRESSEE", 421, "The envelope is addressed to another receiver"),
        ProblemType("UNKNOWN_MESSAGE_TYPE", 422, "The message type is not an AF message type"),
        ProblemType("DOCUMENT_INVALID", 422, "The business document fails the XSD or a rule"),
        ProblemType("ENVELOPE_CONFLICT", 409, "This envelope id was received with other content"),
        ProblemType("BODY_TOO_LARGE", 413, "The request body is larger than allowed"),
        ProblemType("UNSUPPORTED_MEDIA_TYPE", 415, "The body must be application/xml"),
        ProblemType("NOT_FOUND", 404, "No such resource"),
        ProblemType("METHOD_NOT_ALLOWED", 405, "This method is not allowed here"),
        ProblemType("INTERNAL", 500, "The receiver failed; the envelope was not stored"),
        ProblemType("SIMULATED_FAULT", 503, "A scenario injected this failure"),
        ProblemType("ENVELOPE_STALE", 422, "The envelope's creation time is outside the window"),
        ProblemType("SIGNER_REVOKED", 403, "The envelope's signing certificate is revoked"),
        ProblemType("REQUEST_TIMEOUT", 408, "The request was not received in time"),
        ProblemType("CLIENT_NOT_SUPPLIER", 403, "The client certificate is not a pull supplier's"),
        ProblemType("CURSOR_INVALID", 400, "The cursor is not one this outbox issued to you"),
        ProblemType("PAGE_LIMIT_INVALID", 400, "The page limit is not a whole number in range"),
        ProblemType("ACK_INVALID", 400, "The acknowledgement is not valid JSON {up_to: cursor}"),
    )
}


def code_for(exc: B2BSimError) -> str:
    """The problem code of ``exc``: its own, or its nearest ancestor's that is listed."""
    for cls in type(exc).__mro__:
        code = getattr(cls, "code", None)
        if isinstance(code, str) and code in PROBLEMS:
            return code
    return "INTERNAL"


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
