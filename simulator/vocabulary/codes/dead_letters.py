"""The dead-letter codes the ICC and the broker give (the ``b2b-dlq-code`` header, docs/dlq.md).

``DELIVERY_GAVE_UP`` and ``DELIVERY_REFUSED`` have causes: the reason text the
ICC writes (``b2b-dlq-reason``, the last attempt's detail from
icc_bridge/delivery.py, ``HTTP <status>: …`` when the supplier answered) tells
which one, and each has its own advice (:func:`simulator.views.explain.explain_dead_letter`).

Besides these, the ICC dead-letters a message with the code of the error that stopped
it (``UNKNOWN_SUPPLIER``, ``ENVELOPE_MALFORMED``, ``XML_…``): those are in
:mod:`simulator.vocabulary.codes.errors` and :mod:`simulator.vocabulary.codes.refusals`.
"""

from __future__ import annotations

from typing import Final

from simulator.vocabulary.codes.model import Cause, CodeEntry, Kind, table

DELIVERY_REFUSED: Final = "DELIVERY_REFUSED"
DELIVERY_GAVE_UP: Final = "DELIVERY_GAVE_UP"
BROKER_REDELIVERY_LIMIT: Final = "BROKER_REDELIVERY_LIMIT"
PULL_REFUSED: Final = "PULL_REFUSED"

_REPLAY = "then replay the dead letters with b2bsim dlq replay --all."
_NO_RETRY = "Raising icc.retry does not help: every attempt meets the same certificate."

#: The causes of DELIVERY_GAVE_UP, told by the last attempt's detail, most specific first.
GAVE_UP_CAUSES: tuple[Cause, ...] = (
    Cause(
        "cert-expired",
        r"certificate has expired",
        "The supplier's server certificate has expired",
        "The ICC checks the supplier's certificate in the TLS handshake; it was past its "
        "notAfter date, so nothing was sent, and every retry failed the same way.",
        "Have the supplier renew its certificate and register the new fingerprint (cert_sha256) "
        f"in the registry (in the simulator b2bsim pki issue ORG does both), {_REPLAY} "
        f"{_NO_RETRY}",
    ),
    Cause(
        "cert-revoked",
        r"certificate revoked",
        "The supplier's server certificate is revoked (on the AF test CA's CRL)",
        "The ICC checks the CA's CRL in the TLS handshake; the supplier's certificate is on it, "
        "so nothing was sent, and every retry failed the same way.",
        "Give the supplier a new certificate from the CA and register its fingerprint "
        "(cert_sha256) in the registry (in the simulator b2bsim pki issue ORG does both), "
        f"{_REPLAY} {_NO_RETRY}",
    ),
    Cause(
        "cert-pin-mismatch",
        r"does not match the pinned|pin mismatch",
        "The supplier's endpoint presented another certificate than the registered one",
        "The ICC pins each supplier's registered certificate (cert_sha256); the server at the "
        "registered URL showed another one, so not one byte was sent: it may not be the "
        "supplier at all.",
        "Check that the registry's url points at this supplier; if the supplier renewed its "
        f"certificate, register the new fingerprint (cert_sha256), {_REPLAY} {_NO_RETRY}",
    ),
    Cause(
        "cert-untrusted",
        r"certificate verify failed",
        "The supplier's server certificate failed the ICC's check",
        "It does not chain to the AF test CA, or is not valid for the URL's host, so the TLS "
        "handshake was refused before anything was sent.",
        "Have the supplier present a certificate issued by the AF test CA for the host of its "
        f"registered url, {_REPLAY} {_NO_RETRY}",
    ),
    Cause(
        "icc-cert-refused",
        r"alert (certificate revoked|unknown ca|bad certificate|certificate unknown|"
        r"certificate expired|handshake failure)|Server ?disconnected|Connection reset",
        "The supplier hung up on the ICC, at or just after the TLS handshake",
        "A supplier closes the connection when it does not accept the ICC's client certificate "
        "(revoked, expired, or not the ICC's), or when it crashes in the middle of a request.",
        "Check the ICC's certificate (b2bsim pki show; a revoked or expired one needs a new one: "
        "b2bsim pki issue icc) and the supplier's log for a refused handshake or a crash, "
        + _REPLAY,
    ),
    Cause(
        "timeout",
        r"timed out|TimeoutError",
        "The supplier did not answer within the ICC's request timeout",
        "Each POST got no complete answer in time, on every attempt; the supplier may still "
        "have stored some of them (a replay is answered 'duplicate').",
        "Make the supplier answer sooner (store the envelope, answer, then do the slow work), or "
        f"raise icc.request_timeout (and icc.retry if it is slow only for a while), {_REPLAY}",
    ),
    Cause(
        "unreachable",
        r"Cannot connect|Connect call failed|Connection refused|ClientConnectorError|"
        r"Name or service not known|No route to host",
        "The supplier's endpoint could not be reached",
        "Nothing listened at the registered URL (the endpoint was down, or the URL is wrong) "
        "for as long as the retry policy tried.",
        "Bring the supplier's endpoint back (or correct its url in the registry), "
        f"{_REPLAY} A planned outage longer than the policy needs a larger icc.retry "
        "(max_attempts, max_age).",
    ),
    Cause(
        "rate-limited",
        r"^HTTP 429\b",
        "The supplier kept answering 429 Too Many Requests",
        "The supplier asked the ICC to slow down, and went on doing so past the retry policy's "
        "attempts or age; the ICC honours Retry-After.",
        "Have the supplier accept the rate KA produces at, or give the ICC more time: a larger "
        f"icc.retry (max_attempts, max_age); {_REPLAY}",
    ),
    Cause(
        "server-error",
        r"^HTTP (5\d\d|408)\b",
        "The supplier kept answering with a server error (5xx) or 408",
        "The supplier's endpoint was up but failing, on every attempt the retry policy allowed.",
        "Read the supplier's log for the error behind the answer and fix it, "
        f"{_REPLAY} If it was failing only for a while, a larger icc.retry rides it out.",
    ),
)

#: The causes of DELIVERY_REFUSED besides a problem code in the answer (explained by that
#: code's own entry), most specific first.
REFUSED_CAUSES: tuple[Cause, ...] = (
    Cause(
        "no-outbox",
        r"no outbox",
        "The supplier is registered for pull delivery, but the ICC has no outbox",
        "A pull supplier fetches its envelopes from the ICC's outbox; without one the ICC "
        "cannot hold them for it.",
        f"Start the ICC with --outbox FILE and --pull-port P, {_REPLAY}",
    ),
    Cause(
        "wrong-url",
        r"^HTTP (404|405)\b",
        "The supplier's URL is not its envelope endpoint",
        "The server at the registered URL answered 404 Not Found or 405 Method Not Allowed: "
        "the path in the registry is wrong, or the endpoint moved.",
        f"Correct the supplier's url in the registry, {_REPLAY}",
    ),
    Cause(
        "access-refused",
        r"^HTTP (401|403)\b",
        "The supplier refused the ICC access",
        "The supplier did not accept the ICC as its caller (its client certificate, or an "
        "access rule of the endpoint).",
        "Check the ICC's client certificate (b2bsim pki show) and the supplier's access rules, "
        + _REPLAY,
    ),
    Cause(
        "too-large",
        r"^HTTP (413|415)\b",
        "The supplier refused the envelope's size or media type",
        "413: the envelope is larger than the supplier accepts; 415: it does not take "
        "application/xml.",
        f"Align the supplier's limits with docs/supplier.md, {_REPLAY}",
    ),
)

#: code → its entry.  Stable: add, never rename.
DEAD_LETTERS: dict[str, CodeEntry] = table(
    CodeEntry(
        DELIVERY_REFUSED,
        Kind.DEAD_LETTER,
        title="The supplier refused the envelope",
        meaning=(
            "The supplier answered with a 4xx (other than 408/429), or presented a TLS "
            "certificate other than the pinned one. Retrying cannot help, so the ICC "
            "dead-lettered it at once."
        ),
        fix=(
            "Read the dead letter's reason (the supplier's problem code and detail), fix the "
            "supplier or the registry, then replay it with b2bsim dlq replay."
        ),
        sv=(
            "Leverantören avvisade kuvertet med ett svar som inte går över (4xx): ett nytt försök "
            "hjälper inte."
        ),
        causes=REFUSED_CAUSES,
    ),
    CodeEntry(
        DELIVERY_GAVE_UP,
        Kind.DEAD_LETTER,
        title="The ICC gave up delivering after its retries",
        meaning=(
            "Connection errors, timeouts, 408, 429 or 5xx answers went on past the retry policy's "
            "attempts or age, so the message went to the dead-letter queue."
        ),
        fix=(
            "Bring the supplier back, then replay with b2bsim dlq replay --all; a long outage may "
            "need a larger icc.retry (max_attempts, max_age) in the scenario."
        ),
        sv="ICC försökte tills återförsöken tog slut, utan att få ett kvitto.",
        causes=GAVE_UP_CAUSES,
    ),
    CodeEntry(
        PULL_REFUSED,
        Kind.DEAD_LETTER,
        title="The pull supplier fetched the envelope and refused it",
        meaning=(
            "A supplier that pulls from the ICC's outbox listed the envelope in the `refused` "
            "list of its acknowledgement (docs/pull.md). The reason is the supplier's own code "
            "and text, as a push supplier's problem answer would give them."
        ),
        fix=(
            "Read the dead letter's reason (the supplier's code and reason), fix the cause, "
            "then replay it with b2bsim dlq replay."
        ),
        sv="Leverantören hämtade kuvertet från ICC:s utkorg och avvisade det.",
    ),
    CodeEntry(
        BROKER_REDELIVERY_LIMIT,
        Kind.DEAD_LETTER,
        title="ActiveMQ dead-lettered the message itself",
        meaning=(
            "A consumer gave the message back (NACK or crash) more often than the broker's "
            "redelivery limit."
        ),
        fix="Read the ICC workers' logs (icc-N.log) for why they could not handle it.",
    ),
)
