"""The cases of the conformance kit: what each sends, what it expects, and why.

Each :class:`~simulator.kits.conformance_grading.Case` has a stable id (used
by ``--case``, in JUnit and JSON), a title, what it checks, why it matters,
what to change when it fails and the section of docs/conformance.md with its
rule, and an async ``run(kit)`` that returns a
:class:`~simulator.kits.conformance_grading.Verdict`.  This module holds the
first plan's cases and :data:`CASES`, the whole plan in order; the deeper
cases are :mod:`simulator.kits.conformance_signature_cases` (signers,
algorithms, wrapping, rotation and revocation) and
:mod:`simulator.kits.conformance_delivery_cases` (redelivery, freshness,
hostile input, the month-end burst).  docs/conformance.md describes every
case for supplier developers; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from simulator.kits.conformance_delivery_cases import (
    FRESHNESS_CASES,
    HOSTILE_CASES,
    LOAD_CASES,
    REDELIVERY_CASES,
)
from simulator.kits.conformance_grading import (
    Case,
    Verdict,
    expect_receipt,
    expect_refusal,
    expect_tls_or,
    is_2xx,
)
from simulator.kits.conformance_kit import Kit
from simulator.kits.conformance_signature_cases import LIFECYCLE_CASES, SIGNATURE_CASES
from simulator.runs.attacks import HOSTILE_BODIES
from simulator.vocabulary.envelope import to_xml
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.messages import MessageType
from simulator.vocabulary.xmlsafe import serialize

__all__ = ["CASES", "Case", "Verdict", "select_cases"]

BILLION_LAUGHS = HOSTILE_BODIES["billion-laughs"]


# -- the cases -------------------------------------------------------------------


def _valid(message_type: MessageType) -> Callable[[Kit], Awaitable[Verdict]]:
    async def run(kit: Kit) -> Verdict:
        docs = {d.message_type: d for d in kit.chain()}
        envelope = kit.envelope(docs[message_type])
        return expect_receipt(await kit.post(kit.sign(envelope)), "accepted", envelope.envelope_id)

    return run


async def _duplicate(kit: Kit) -> Verdict:
    envelope = kit.envelope(kit.order())
    raw = kit.sign(envelope)
    first = await kit.post(raw)
    if not is_2xx(first):
        return Verdict(False, f"the first delivery was not accepted: {first.describe()}")
    second = await kit.post(raw)
    return expect_receipt(second, "duplicate", envelope.envelope_id)


async def _conflict(kit: Kit) -> Verdict:
    original = kit.envelope(kit.order())
    first = await kit.post(kit.sign(original))
    if not is_2xx(first):
        return Verdict(False, f"the first delivery was not accepted: {first.describe()}")
    changed = kit.envelope(kit.order(), envelope_id=original.envelope_id)
    second = await kit.post(kit.sign(changed))
    return expect_refusal(
        second, [409], "a second document under an envelope id it already stored", 409
    )


async def _out_of_order(kit: Kit) -> Verdict:
    order, invoice, _ = kit.chain()
    first_seq, second_seq = kit.next_sequence(), kit.next_sequence()
    later = kit.envelope(invoice, sequence=second_seq)
    earlier = kit.envelope(order, sequence=first_seq)
    reasons = []
    for label, envelope in (("later message first", later), ("earlier message second", earlier)):
        verdict = expect_receipt(
            await kit.post(kit.sign(envelope)), "accepted", envelope.envelope_id
        )
        if not verdict.passed:
            return Verdict(False, f"{label}: {verdict.reason}")
        reasons.append(verdict.reason)
    return Verdict(True, f"sequence {second_seq} then {first_seq}: " + ", ".join(reasons))


async def _tampered(kit: Kit) -> Verdict:
    doc = kit.order()
    raw = kit.sign(kit.envelope(doc))
    needle = doc.document_id.encode()
    at = raw.find(needle, raw.find(b"StandardBusinessDocumentHeader>"))
    if at < 0:  # pragma: no cover - the factory's ids are in the payload
        return Verdict(False, "could not run: the document id is not in the signed envelope")
    last = at + len(needle) - 1
    flipped = b"1" if raw[last : last + 1] != b"1" else b"2"
    tampered = raw[:last] + flipped + raw[last + 1 :]
    return expect_refusal(
        await kit.post(tampered), [403], "an envelope changed after it was signed", 403
    )


async def _unsigned(kit: Kit) -> Verdict:
    raw = serialize(to_xml(kit.envelope(kit.order())))
    return expect_refusal(await kit.post(raw), [403], "an unsigned envelope", 403)


async def _untrusted_signer(kit: Kit) -> Verdict:
    signer = kit.material.rogue_signer
    raw = kit.sign_as(signer, kit.envelope(kit.order()))
    verdict = expect_refusal(await kit.post(raw), [403], "an envelope not signed by the ICC", 403)
    return Verdict(verdict.passed, f"{verdict.reason} [signer: {signer.description}]")


def _misaddressed(field: str) -> Callable[[Kit], Awaitable[Verdict]]:
    async def run(kit: Kit) -> Verdict:
        doc = kit.order()
        if field == "org":
            envelope = kit.envelope(doc, org_number=kit.other_org_number())
        elif field == "cert":
            other = "0" * 63 + ("1" if kit.target_cert_sha256[-1] != "1" else "2")
            envelope = kit.envelope(doc, cert_sha256=other)
        else:
            envelope = kit.envelope(doc, url="https://another-supplier.example:8443/b2b/envelopes")
        raw = kit.sign(envelope)
        return expect_refusal(
            await kit.post(raw), range(400, 500), f"an envelope addressed to another {field}", 421
        )

    return run


async def _client_af_not_icc(kit: Kit) -> Verdict:
    client = kit.material.af_non_icc_client
    if client is None:
        return Verdict.not_graded(
            "could not run: no AF test CA key or supplier certificate in the state directory"
        )
    answer = await kit.post(kit.sign(kit.envelope(kit.order())), client=client)
    verdict = expect_tls_or(answer, [403], "a client that is not the ICC")
    return Verdict(verdict.passed, f"{verdict.reason} [client: {client.description}]")


async def _client_foreign_ca(kit: Kit) -> Verdict:
    client = kit.material.foreign_client
    answer = await kit.post(kit.sign(kit.envelope(kit.order())), client=client)
    if answer.status is None:
        return Verdict(True, f"refused in TLS ({answer.error})")
    return Verdict(
        False,
        f"expected a TLS refusal, got {answer.describe()}: the handshake accepted a client "
        "certificate from a CA other than AF's",
    )


async def _hostile_xml(kit: Kit) -> Verdict:
    answer = await kit.post(BILLION_LAUGHS)
    return expect_refusal(answer, range(400, 500), "a billion-laughs document", 400)


_RECEIPTS = "receipts"
_DUPLICATES = "duplicates-and-redeliveries"
_SIGNATURE = "the-signature"
_ADDRESSEE = "the-addressee"
_CONNECT = "who-may-connect"
_HOSTILE = "hostile-input"
_RECEIPT_FIX = (
    "store the envelope and answer 2xx with a JSON receipt "
    '{"status": "accepted", "envelope_id": …} (our API: 201)'
)

BASIC_CASES: tuple[Case, ...] = (
    Case(
        "valid-order",
        "A purchase order (INKOPSORDER) is accepted",
        "2xx and a JSON receipt with status 'accepted' for the envelope id",
        "every order KA sends must reach the supplier's system",
        _RECEIPT_FIX,
        _RECEIPTS,
        _valid(MessageType.INKOPSORDER),
    ),
    Case(
        "valid-self-invoice",
        "A self-billing invoice (SJALVFAKTURA) is accepted",
        "2xx and a JSON receipt with status 'accepted' for the envelope id",
        "AF pays on the self-billing invoices it issues for the supplier",
        _RECEIPT_FIX,
        _RECEIPTS,
        _valid(MessageType.SJALVFAKTURA),
    ),
    Case(
        "valid-credit",
        "A self-billing credit note (KREDIT) is accepted",
        "2xx and a JSON receipt with status 'accepted' for the envelope id",
        "credits change what AF owes; losing one breaks reconciliation",
        _RECEIPT_FIX,
        _RECEIPTS,
        _valid(MessageType.KREDIT),
    ),
)
DUPLICATE_CASES: tuple[Case, ...] = (
    Case(
        "duplicate",
        "The same envelope twice is a duplicate, not a second message",
        "the second delivery gets 2xx and a receipt with status 'duplicate'",
        "the ICC retries when an answer is lost: a retry must not book anything twice",
        "look the envelope id up before storing; a known id with the same document is "
        "answered 2xx 'duplicate' (our API: 200) and not loaded again",
        _DUPLICATES,
        _duplicate,
    ),
)
CONFLICT_CASES: tuple[Case, ...] = (
    Case(
        "conflict",
        "A known envelope id with another document is refused",
        "409 for a second, different document under an envelope id already stored",
        "an id reused for other content is an error on AF's side that must not go unnoticed",
        "compare the document of a known envelope id; another document is 409 "
        "(ENVELOPE_CONFLICT), never stored over the first",
        _DUPLICATES,
        _conflict,
    ),
    Case(
        "out-of-order",
        "Messages out of sequence are both accepted",
        "sequence n+1 before n: both get 2xx 'accepted'",
        "delivery may reorder messages; sorting by KA's timestamp is the supplier's job",
        "accept every authentic envelope whatever its SEQUENCE; order them after receipt "
        "by PRODUCED_AT and SEQUENCE",
        _RECEIPTS,
        _out_of_order,
    ),
)
FIRST_SIGNATURE_CASES: tuple[Case, ...] = (
    Case(
        "tampered",
        "An envelope changed after signing is refused",
        "403 when one byte of the payload was changed after the ICC signed it",
        "the signature is what proves the content is what AF sent",
        "verify the XML signature over the bytes received (digest and signature value) "
        "and answer 403 SIGNATURE_TAMPERED when it does not verify",
        _SIGNATURE,
        _tampered,
    ),
    Case(
        "unsigned",
        "An unsigned envelope is refused",
        "403 for an envelope without ds:Signature",
        "anyone who reaches the endpoint could otherwise inject orders and invoices",
        "require exactly one ds:Signature; answer 403 SIGNATURE_MISSING without one",
        _SIGNATURE,
        _unsigned,
    ),
    Case(
        "untrusted-signer",
        "An envelope signed by someone other than the ICC is refused",
        "403 for a valid XML signature whose certificate is not the ICC's",
        "a valid signature proves nothing unless it is the ICC's",
        "accept only a signing certificate named CN=ICC, organizationIdentifier "
        "NTRSE-2021002114, issued by the AF CA; else 403 SIGNER_UNTRUSTED",
        _SIGNATURE,
        _untrusted_signer,
    ),
)
_ADDRESSEE_FIX = (
    "compare ORG_NUMBER, RECEIVER_CERT_SHA256 and RECEIVER_URL with your own; "
    "any mismatch is 4xx (our API: 421 WRONG_ADDRESSEE)"
)
ADDRESSEE_CASES: tuple[Case, ...] = (
    Case(
        "misaddressed-org",
        "An envelope for another organisation number is refused",
        "4xx (our API: 421) when ORG_NUMBER is not the supplier's",
        "a supplier must never book another supplier's documents",
        _ADDRESSEE_FIX,
        _ADDRESSEE,
        _misaddressed("org"),
    ),
    Case(
        "misaddressed-cert",
        "An envelope for another certificate is refused",
        "4xx (our API: 421) when RECEIVER_CERT_SHA256 is not the endpoint's certificate",
        "it shows AF's registry holds a stale or wrong certificate for the supplier",
        _ADDRESSEE_FIX,
        _ADDRESSEE,
        _misaddressed("cert"),
    ),
    Case(
        "misaddressed-url",
        "An envelope for another URL is refused",
        "4xx (our API: 421) when RECEIVER_URL is not this endpoint's URL",
        "it shows AF's registry points at the wrong endpoint",
        _ADDRESSEE_FIX,
        _ADDRESSEE,
        _misaddressed("url"),
    ),
)
CLIENT_CASES: tuple[Case, ...] = (
    Case(
        "client-not-icc",
        "A client certificate from the AF CA that is not the ICC's is refused",
        "a TLS refusal or 403 for a correctly signed envelope sent with that certificate",
        "only the ICC delivers; other holders of AF certificates (suppliers) may not",
        "after the handshake, accept only the client certificate named like the ICC "
        "(CN=ICC, NTRSE-2021002114); else 403 CLIENT_NOT_ICC",
        _CONNECT,
        _client_af_not_icc,
    ),
    Case(
        "client-foreign-ca",
        "A client certificate from another CA is refused in TLS",
        "the TLS handshake fails (no HTTP answer)",
        "only certificates issued by AF may open a connection at all",
        "require a client certificate in TLS and trust only the AF CA for it",
        _CONNECT,
        _client_foreign_ca,
    ),
)
BILLION_LAUGHS_CASES: tuple[Case, ...] = (
    Case(
        "hostile-xml",
        "A billion-laughs document is refused, not expanded",
        "4xx, not 5xx, not accepted, for XML with nested entity definitions",
        "entity expansion can exhaust the endpoint's memory before any signature check",
        "parse with DTDs and entities off and refuse any DOCTYPE with 400 (XML_DOCTYPE)",
        _HOSTILE,
        _hostile_xml,
    ),
)

#: The whole plan, in the order it runs.
CASES: tuple[Case, ...] = (
    *BASIC_CASES,
    *DUPLICATE_CASES,
    *REDELIVERY_CASES,
    *CONFLICT_CASES,
    *FIRST_SIGNATURE_CASES,
    *SIGNATURE_CASES,
    *FRESHNESS_CASES,
    *ADDRESSEE_CASES,
    *CLIENT_CASES,
    *BILLION_LAUGHS_CASES,
    *HOSTILE_CASES,
    *LIFECYCLE_CASES,
    *LOAD_CASES,
)


def select_cases(ids: Iterable[str] | None) -> list[Case]:
    """The cases named by ``ids`` (in plan order), or all of them; ConfigError for unknown ids."""
    if ids is None:
        return list(CASES)
    wanted = list(ids)
    known = {c.id for c in CASES}
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise ConfigError(
            f"unknown conformance case(s): {', '.join(unknown)}",
            hint=f"the cases are {', '.join(c.id for c in CASES)}",
        )
    return [c for c in CASES if c.id in wanted]
