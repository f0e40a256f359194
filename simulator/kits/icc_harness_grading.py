"""How an ICC under test is graded: the checks over the envelopes the harness received.

The cases of ``b2bsim conformance --icc`` are in
simulator/kits/icc_harness_cases.py; the checks here look at every envelope
the harness received:
:func:`grade_signatures` (the signature's shape and algorithms, with the
reference supplier's own verifier) and :func:`grade_fields` (the AF fields
of docs/envelope.md against what KA published); :func:`same_envelope_id` and
:func:`gaps` serve the retry cases.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from simulator.kits.conformance_grading import Verdict
from simulator.kits.icc_harness import Seen
from simulator.vocabulary.canonical import normalise_document
from simulator.vocabulary.certs import is_icc_certificate
from simulator.vocabulary.envelope_model import Envelope
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.messages import MessageMeta
from simulator.vocabulary.verifier import EnvelopeVerifier

__all__ = [
    "MAX_SKEW",
    "Published",
    "gaps",
    "grade_fields",
    "grade_signatures",
    "same_envelope_id",
]

#: How far an envelope's created_at may be from the harness's clock (seconds).
MAX_SKEW = 900.0


@dataclass(frozen=True)
class Published:
    """One message the harness put on KA's queue."""

    meta: MessageMeta
    document: bytes


def same_envelope_id(attempts: Sequence[Seen]) -> str | None:
    """Why the attempts do not all carry one envelope id, or None if they do."""
    ids = Counter(a.envelope_id for a in attempts)
    if len(ids) <= 1:
        return None
    listed = ", ".join(f"{i or '(unreadable)'} ×{n}" for i, n in ids.items())
    return f"the attempts carry different envelope ids ({listed})"


def gaps(attempts: Sequence[Seen]) -> list[float]:
    """Seconds from each answer (or reset) to the next attempt."""
    out: list[float] = []
    for before, after in itertools.pairwise(attempts):
        answered = before.answered_at if before.answered_at is not None else before.at
        out.append(after.at - answered)
    return out


def grade_signatures(seen: Sequence[Seen], ca_pem: bytes) -> Verdict:
    """Every envelope received verifies as the reference supplier verifies one."""
    envelopes = [s for s in seen if s.size]
    if not envelopes:
        return Verdict.not_graded("no envelope arrived, so no signature could be checked")
    verifier = EnvelopeVerifier(ca_pem, accept_signer=is_icc_certificate, max_skew=MAX_SKEW)
    bad: list[str] = []
    for s in envelopes:
        try:
            verifier.open(s.body)
        except B2BSimError as exc:
            bad.append(f"{s.message_id or 'an unreadable envelope'}: {exc}")
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return Verdict(False, f"{len(bad)} of {len(envelopes)} envelope(s) refused: {bad[0]}{more}")
    return Verdict(
        True,
        f"all {len(envelopes)} envelope(s) verified: one enveloped XML signature over the "
        "whole envelope, SHA-2 algorithms, signed by the ICC's certificate from the AF CA",
    )


def grade_fields(
    seen: Sequence[Seen],
    published: dict[str, Published],
    *,
    ca_pem: bytes,
    url: str,
    cert_sha256: str,
) -> Verdict:
    """Every envelope's AF fields (docs/envelope.md) say what KA published, to whom."""
    verifier = EnvelopeVerifier(ca_pem, accept_signer=is_icc_certificate)
    read: list[tuple[Seen, Envelope]] = []
    for s in seen:
        if not s.size:
            continue
        try:
            read.append((s, verifier.open(s.body)))
        except B2BSimError:
            continue  # graded by the signature case
    if not read:
        return Verdict.not_graded("no envelope that verifies arrived, so no field was checked")
    wrong: list[str] = []
    ids: dict[str, str] = {}
    for _, env in read:
        wrong += _field_errors(env, published.get(env.message_id), url, cert_sha256)
        first = ids.setdefault(env.envelope_id, env.message_id)
        if first != env.message_id:
            wrong.append(
                f"messages {first} and {env.message_id} share envelope id {env.envelope_id}"
            )
    if wrong:
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        return Verdict(False, f"{wrong[0]}{more}")
    return Verdict(
        True,
        f"{len(read)} envelope(s): MESSAGE_TYPE, ORG_NUMBER, RECEIVER_CERT_SHA256, "
        "RECEIVER_URL, PRODUCED_AT, SEQUENCE, MESSAGE_ID, CORRELATION_ID and the document "
        "as KA published them, one envelope id per message",
    )


def _field_errors(env: Envelope, pub: Published | None, url: str, cert_sha256: str) -> list[str]:
    if pub is None:
        return [f"an envelope carries MESSAGE_ID {env.message_id!r}, which KA never published"]
    meta, where = pub.meta, f"message {env.message_id}"
    expected: list[tuple[str, object, object]] = [
        ("MESSAGE_TYPE", env.message_type, meta.message_type),
        ("ORG_NUMBER", env.org_number, meta.org_number),
        ("PRODUCED_AT", env.produced_at_ms, meta.produced_at_ms),
        ("SEQUENCE", env.sequence, meta.sequence),
        ("CORRELATION_ID", env.correlation_id, meta.correlation_id),
        ("RECEIVER_URL", env.receiver_url, url),
        ("RECEIVER_CERT_SHA256", env.receiver_cert_sha256, cert_sha256),
    ]
    errors = [
        f"{where}: {name} is {got!r}, not {want!r}" for name, got, want in expected if got != want
    ]
    if env.document != normalise_document(pub.document):
        errors.append(f"{where}: the document is not the one KA published")
    return errors
