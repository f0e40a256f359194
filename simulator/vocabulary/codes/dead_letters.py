"""The dead-letter codes the ICC and the broker give (the ``b2b-dlq-code`` header, docs/dlq.md).

Besides these, the ICC dead-letters a message with the code of the error that stopped
it (``UNKNOWN_SUPPLIER``, ``ENVELOPE_MALFORMED``, ``XML_…``): those are in
:mod:`simulator.vocabulary.codes.errors` and :mod:`simulator.vocabulary.codes.refusals`.
"""

from __future__ import annotations

from typing import Final

from simulator.vocabulary.codes.model import CodeEntry, Kind, table

DELIVERY_REFUSED: Final = "DELIVERY_REFUSED"
DELIVERY_GAVE_UP: Final = "DELIVERY_GAVE_UP"
BROKER_REDELIVERY_LIMIT: Final = "BROKER_REDELIVERY_LIMIT"

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
