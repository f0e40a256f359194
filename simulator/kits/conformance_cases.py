"""The cases of the conformance kit: what each sends, what it expects, and why.

Each :class:`Case` has a stable id (used by ``--case``, in JUnit and JSON), a
title, what it checks and why it matters, and an async ``run(kit)`` that
returns a :class:`Verdict`.  docs/conformance.md describes every case for
supplier developers; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from simulator.kits.conformance_kit import Answer, Kit
from simulator.runs.attacks import HOSTILE_BODIES
from simulator.vocabulary.envelope import to_xml
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.messages import MessageType
from simulator.vocabulary.xmlsafe import serialize

__all__ = ["CASES", "Case", "Verdict", "select_cases"]

BILLION_LAUGHS = HOSTILE_BODIES["billion-laughs"]


@dataclass(frozen=True)
class Verdict:
    """A case's grade and the reason, in one line."""

    passed: bool
    reason: str


@dataclass(frozen=True)
class Case:
    """One case of the test plan."""

    id: str
    title: str
    checks: str
    why: str
    run: Callable[[Kit], Awaitable[Verdict]]


# -- grading ------------------------------------------------------------------


def _is_2xx(answer: Answer) -> bool:
    return answer.status is not None and 200 <= answer.status < 300


def expect_receipt(answer: Answer, status: str, envelope_id: str) -> Verdict:
    """A 2xx JSON receipt with ``status`` for ``envelope_id``."""
    got = answer.describe()
    if not _is_2xx(answer):
        return Verdict(False, f"expected 2xx with a receipt '{status}', got {got}")
    body = answer.json
    if body is None:
        return Verdict(False, f"got {got}, but the body is not a JSON receipt object")
    if body.get("status") != status:
        return Verdict(False, f"expected receipt status {status!r}, got {body.get('status')!r}")
    if "envelope_id" in body and body["envelope_id"] != envelope_id:
        return Verdict(
            False, f"the receipt names envelope {body['envelope_id']!r}, not {envelope_id!r}"
        )
    return Verdict(True, got)


def expect_refusal(answer: Answer, statuses: Iterable[int], what: str, ours: int) -> Verdict:
    """An HTTP refusal with one of ``statuses``; ``what`` says what was refused."""
    allowed = sorted(set(statuses))
    got = answer.describe()
    if answer.status in allowed:
        note = "" if answer.status == ours else f" (our API answers {ours})"
        return Verdict(True, got + note)
    want = f"{allowed[0]}" if len(allowed) == 1 else f"{allowed[0]}-{allowed[-1]}"
    if _is_2xx(answer):
        return Verdict(False, f"expected {want}, got {got}: the endpoint took {what}")
    return Verdict(False, f"expected {want}, got {got}")


def expect_tls_or(answer: Answer, statuses: Iterable[int], what: str) -> Verdict:
    """Refused in TLS (no HTTP answer), or with one of ``statuses``."""
    if answer.status is None:
        return Verdict(True, f"refused in TLS ({answer.error})")
    allowed = set(statuses)
    if answer.status in allowed:
        return Verdict(True, answer.describe())
    return Verdict(
        False,
        f"expected a TLS refusal or {'/'.join(map(str, sorted(allowed)))}, "
        f"got {answer.describe()}: the endpoint let in {what}",
    )


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
    if not _is_2xx(first):
        return Verdict(False, f"the first delivery was not accepted: {first.describe()}")
    second = await kit.post(raw)
    return expect_receipt(second, "duplicate", envelope.envelope_id)


async def _conflict(kit: Kit) -> Verdict:
    original = kit.envelope(kit.order())
    first = await kit.post(kit.sign(original))
    if not _is_2xx(first):
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
        return Verdict(False, "could not run: no AF test CA key or supplier certificate")
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


CASES: tuple[Case, ...] = (
    Case(
        "valid-order",
        "A purchase order (INKOPSORDER) is accepted",
        "2xx and a JSON receipt with status 'accepted' for the envelope id",
        "every order KA sends must reach the supplier's system",
        _valid(MessageType.INKOPSORDER),
    ),
    Case(
        "valid-self-invoice",
        "A self-billing invoice (SJALVFAKTURA) is accepted",
        "2xx and a JSON receipt with status 'accepted' for the envelope id",
        "AF pays on the self-billing invoices it issues for the supplier",
        _valid(MessageType.SJALVFAKTURA),
    ),
    Case(
        "valid-credit",
        "A self-billing credit note (KREDIT) is accepted",
        "2xx and a JSON receipt with status 'accepted' for the envelope id",
        "credits change what AF owes; losing one breaks reconciliation",
        _valid(MessageType.KREDIT),
    ),
    Case(
        "duplicate",
        "The same envelope twice is a duplicate, not a second message",
        "the second delivery gets 2xx and a receipt with status 'duplicate'",
        "the ICC retries when an answer is lost: a retry must not book anything twice",
        _duplicate,
    ),
    Case(
        "conflict",
        "A known envelope id with another document is refused",
        "409 for a second, different document under an envelope id already stored",
        "an id reused for other content is an error on AF's side that must not go unnoticed",
        _conflict,
    ),
    Case(
        "out-of-order",
        "Messages out of sequence are both accepted",
        "sequence n+1 before n: both get 2xx 'accepted'",
        "delivery may reorder messages; sorting by KA's timestamp is the supplier's job",
        _out_of_order,
    ),
    Case(
        "tampered",
        "An envelope changed after signing is refused",
        "403 when one byte of the payload was changed after the ICC signed it",
        "the signature is what proves the content is what AF sent",
        _tampered,
    ),
    Case(
        "unsigned",
        "An unsigned envelope is refused",
        "403 for an envelope without ds:Signature",
        "anyone who reaches the endpoint could otherwise inject orders and invoices",
        _unsigned,
    ),
    Case(
        "untrusted-signer",
        "An envelope signed by someone other than the ICC is refused",
        "403 for a valid XML signature whose certificate is not the ICC's",
        "a valid signature proves nothing unless it is the ICC's",
        _untrusted_signer,
    ),
    Case(
        "misaddressed-org",
        "An envelope for another organisation number is refused",
        "4xx (our API: 421) when ORG_NUMBER is not the supplier's",
        "a supplier must never book another supplier's documents",
        _misaddressed("org"),
    ),
    Case(
        "misaddressed-cert",
        "An envelope for another certificate is refused",
        "4xx (our API: 421) when RECEIVER_CERT_SHA256 is not the endpoint's certificate",
        "it shows AF's registry holds a stale or wrong certificate for the supplier",
        _misaddressed("cert"),
    ),
    Case(
        "misaddressed-url",
        "An envelope for another URL is refused",
        "4xx (our API: 421) when RECEIVER_URL is not this endpoint's URL",
        "it shows AF's registry points at the wrong endpoint",
        _misaddressed("url"),
    ),
    Case(
        "client-not-icc",
        "A client certificate from the AF CA that is not the ICC's is refused",
        "a TLS refusal or 403 for a correctly signed envelope sent with that certificate",
        "only the ICC delivers; other holders of AF certificates (suppliers) may not",
        _client_af_not_icc,
    ),
    Case(
        "client-foreign-ca",
        "A client certificate from another CA is refused in TLS",
        "the TLS handshake fails (no HTTP answer)",
        "only certificates issued by AF may open a connection at all",
        _client_foreign_ca,
    ),
    Case(
        "hostile-xml",
        "A billion-laughs document is refused, not expanded",
        "4xx, not 5xx, not accepted, for XML with nested entity definitions",
        "entity expansion can exhaust the endpoint's memory before any signature check",
        _hostile_xml,
    ),
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
