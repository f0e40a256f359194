"""The refusals: problem codes (RFC 9457) a receiver answers with, each with its HTTP status.

The supplier stub and the ICC's pull API answer with these; ``docs/openapi.yaml`` lists them
with their statuses.  An error class may carry a refusal's code (``EnvelopeError`` →
``ENVELOPE_MALFORMED``): the answer is then this refusal.
"""

from __future__ import annotations

from typing import Final

from simulator.vocabulary.codes.model import CodeEntry, Kind, table

ENVELOPE_MALFORMED: Final = "ENVELOPE_MALFORMED"
XML_FORBIDDEN: Final = "XML_FORBIDDEN"
XML_DOCTYPE: Final = "XML_DOCTYPE"
XML_TOO_LARGE: Final = "XML_TOO_LARGE"
XML_TOO_DEEP: Final = "XML_TOO_DEEP"
XML_NOT_UTF8: Final = "XML_NOT_UTF8"
XML_MALFORMED: Final = "XML_MALFORMED"
SIGNATURE_INVALID: Final = "SIGNATURE_INVALID"
SIGNATURE_MISSING: Final = "SIGNATURE_MISSING"
SIGNATURE_TAMPERED: Final = "SIGNATURE_TAMPERED"
SIGNATURE_WRAPPING: Final = "SIGNATURE_WRAPPING"
SIGNATURE_WEAK_ALGORITHM: Final = "SIGNATURE_WEAK_ALGORITHM"
SIGNER_UNTRUSTED: Final = "SIGNER_UNTRUSTED"
CLIENT_NOT_ICC: Final = "CLIENT_NOT_ICC"
CLIENT_REVOKED: Final = "CLIENT_REVOKED"
WRONG_ADDRESSEE: Final = "WRONG_ADDRESSEE"
UNKNOWN_MESSAGE_TYPE: Final = "UNKNOWN_MESSAGE_TYPE"
DOCUMENT_INVALID: Final = "DOCUMENT_INVALID"
ENVELOPE_CONFLICT: Final = "ENVELOPE_CONFLICT"
BODY_TOO_LARGE: Final = "BODY_TOO_LARGE"
UNSUPPORTED_MEDIA_TYPE: Final = "UNSUPPORTED_MEDIA_TYPE"
NOT_FOUND: Final = "NOT_FOUND"
METHOD_NOT_ALLOWED: Final = "METHOD_NOT_ALLOWED"
INTERNAL: Final = "INTERNAL"
SIMULATED_FAULT: Final = "SIMULATED_FAULT"
ENVELOPE_STALE: Final = "ENVELOPE_STALE"
SIGNER_REVOKED: Final = "SIGNER_REVOKED"
REQUEST_TIMEOUT: Final = "REQUEST_TIMEOUT"
CLIENT_NOT_SUPPLIER: Final = "CLIENT_NOT_SUPPLIER"
CURSOR_INVALID: Final = "CURSOR_INVALID"
PAGE_LIMIT_INVALID: Final = "PAGE_LIMIT_INVALID"
ACK_INVALID: Final = "ACK_INVALID"
OUTBOX_UNAVAILABLE: Final = "OUTBOX_UNAVAILABLE"

_FIX_PRODUCER = "Fix the producer (KA) so it sends this correctly; replaying will not help."
_FIX_ICC_SIGNING = (
    "The receiver refused the envelope's signature. If you build the receiver, verify with the AF "
    "test CA (b2bsim pki init writes it) and accept exclusive C14N with ECDSA/RSA and SHA-2; if "
    "you run the ICC, check it signs with its own certificate from the same PKI."
)

#: code → its entry.  Stable: add, never rename.
REFUSALS: dict[str, CodeEntry] = table(
    CodeEntry(
        ENVELOPE_MALFORMED,
        Kind.REFUSAL,
        status=400,
        title="The envelope, or KA's message headers, are not well formed",
        answer_title="The envelope is not a valid B2B envelope",
        meaning=(
            "A required field is missing or wrong: a KA header (message id, type, organisation "
            "number, timestamp, sequence) on the queue, or an SBDH field in the envelope."
        ),
        fix=(
            "Compare the message with docs/envelope.md and docs/messages.md; a poison message on "
            "KA's queue must be fixed at the producer."
        ),
        sv="KA:s meddelande saknar eller har fel i ett obligatoriskt fält.",
    ),
    CodeEntry(
        XML_FORBIDDEN,
        Kind.REFUSAL,
        status=400,
        title="The XML uses a construct a safe receiver refuses",
        meaning=(
            "The document or envelope contains something (entities, processing tricks) that could "
            "be used to attack the receiver, so it was refused unread."
        ),
        fix="Send plain UTF-8 XML without DTDs or entities.",
    ),
    CodeEntry(
        XML_DOCTYPE,
        Kind.REFUSAL,
        status=400,
        title="The XML has a DOCTYPE",
        answer_title="The XML has a DOCTYPE (DTDs and entities are refused)",
        meaning=(
            "DTDs and entity declarations are refused outright: they enable XXE and "
            "billion-laughs attacks."
        ),
        fix="Remove the <!DOCTYPE …> from the document.",
    ),
    CodeEntry(
        XML_TOO_LARGE,
        Kind.REFUSAL,
        status=413,
        title="The XML is larger than allowed",
        meaning="The envelope or document exceeds the 10 MiB limit a receiver accepts.",
        fix="Send smaller documents; split a huge invoice into several.",
    ),
    CodeEntry(
        XML_TOO_DEEP,
        Kind.REFUSAL,
        status=400,
        title="The XML is nested too deeply",
        answer_title="The XML is nested deeper than allowed",
        meaning="Elements nest deeper than 64 levels, which no real UBL document does.",
        fix="Flatten the document; check the generator is not recursing by mistake.",
    ),
    CodeEntry(
        XML_NOT_UTF8,
        Kind.REFUSAL,
        status=400,
        title="The body is not UTF-8",
        answer_title="The body is not UTF-8 text",
        meaning="The XML declares another encoding or contains bytes that are not valid UTF-8.",
        fix='Encode the document as UTF-8 and declare encoding="UTF-8" (or nothing).',
    ),
    CodeEntry(
        XML_MALFORMED,
        Kind.REFUSAL,
        status=400,
        title="The body is not well-formed XML",
        meaning=(
            "The document could not be parsed at all (for example a poison message that is plain "
            "text), so it cannot be wrapped or read."
        ),
        fix="Check the document with an XML parser before sending it. " + _FIX_PRODUCER,
    ),
    CodeEntry(
        SIGNATURE_INVALID,
        Kind.REFUSAL,
        status=403,
        title="The envelope signature does not verify",
        meaning="The receiver could not confirm that the ICC signed this envelope.",
        fix=_FIX_ICC_SIGNING,
    ),
    CodeEntry(
        SIGNATURE_MISSING,
        Kind.REFUSAL,
        status=403,
        title="The envelope is not signed",
        meaning=(
            "Every AF envelope carries an XML signature as the last child of env:Envelope; this "
            "one had none, so anyone could have written it."
        ),
        fix="The ICC must sign every envelope; a receiver must refuse unsigned ones (as it did).",
    ),
    CodeEntry(
        SIGNATURE_TAMPERED,
        Kind.REFUSAL,
        status=403,
        title="The envelope was changed after it was signed",
        meaning=(
            "The digest or signature value no longer matches the content: something (a proxy, a "
            "re-serialisation, an attacker) altered the envelope in transit."
        ),
        fix="Do not re-indent or rewrite signed XML; pass the bytes through unchanged.",
    ),
    CodeEntry(
        SIGNATURE_WRAPPING,
        Kind.REFUSAL,
        status=403,
        title="The signature does not cover exactly the envelope",
        meaning=(
            "The signature is in the wrong place, there is more than one, or it references "
            "something other than the whole envelope: the shape of a signature-wrapping attack."
        ),
        fix="Sign the whole env:Envelope with one enveloped signature, as docs/envelope.md shows.",
    ),
    CodeEntry(
        SIGNATURE_WEAK_ALGORITHM,
        Kind.REFUSAL,
        status=403,
        title="The signature uses a refused algorithm",
        meaning=(
            "SHA-1 and other weak algorithms are refused; only SHA-2 with ECDSA or RSA is accepted."
        ),
        fix="Sign with ECDSA P-256 and SHA-256 (what the ICC does).",
    ),
    CodeEntry(
        SIGNER_UNTRUSTED,
        Kind.REFUSAL,
        status=403,
        title="The envelope is not signed by the ICC",
        meaning=(
            "The signing certificate is not the ICC's, not issued by the AF test CA, or expired."
        ),
        fix=(
            "Use the ICC certificate of the same test PKI on both sides (b2bsim pki init); "
            "re-issue it if it expired."
        ),
    ),
    CodeEntry(
        CLIENT_NOT_ICC,
        Kind.REFUSAL,
        status=403,
        title="The client certificate is not an ICC certificate",
        meaning="The TLS client that connected to the supplier is not AF's integration platform.",
        fix="Connect with the ICC's client certificate from the test PKI (icc.pem/icc.key).",
    ),
    CodeEntry(
        CLIENT_REVOKED,
        Kind.REFUSAL,
        status=403,
        title="The client certificate is revoked",
        meaning=(
            "AF revoked the TLS client certificate that connected, so the receiver refused it."
        ),
        fix="Connect with a current certificate; re-issue it with b2bsim pki.",
    ),
    CodeEntry(
        WRONG_ADDRESSEE,
        Kind.REFUSAL,
        status=421,
        title="The envelope is addressed to another receiver",
        meaning=(
            "The organisation number, certificate fingerprint or URL in the envelope is not this "
            "receiver's, so it was refused rather than stored for the wrong supplier."
        ),
        fix=(
            "Correct the supplier's entry in the registry (org number, cert_sha256, url) and "
            "replay the dead letters."
        ),
    ),
    CodeEntry(
        UNKNOWN_MESSAGE_TYPE,
        Kind.REFUSAL,
        status=422,
        title="The message type is not an AF message type",
        meaning="Only INKOPSORDER, SJALVFAKTURA and KREDIT exist; anything else cannot be routed.",
        fix=_FIX_PRODUCER,
        sv="Meddelandetypen är inte INKOPSORDER, SJALVFAKTURA eller KREDIT.",
    ),
    CodeEntry(
        DOCUMENT_INVALID,
        Kind.REFUSAL,
        status=422,
        title="The business document fails the XSD or a Peppol rule",
        answer_title="The business document fails the XSD or a rule",
        meaning=(
            "The UBL order, invoice or credit note breaks UBL 2.1 or the Peppol BIS rules, so a "
            "supplier's system would not accept it."
        ),
        fix="Run b2bsim validate on the document and fix each rule it names.",
    ),
    CodeEntry(
        ENVELOPE_CONFLICT,
        Kind.REFUSAL,
        status=409,
        title="This envelope id was received with other content",
        meaning=(
            "An envelope id the receiver already stored arrived again with a different document: "
            "ids must identify content, so this is refused."
        ),
        fix=(
            "Never reuse an envelope id for another document; the ICC derives it from KA's "
            "message id."
        ),
    ),
    CodeEntry(
        BODY_TOO_LARGE,
        Kind.REFUSAL,
        status=413,
        title="The request body is larger than allowed",
        meaning="The HTTP body exceeds what the receiver accepts.",
        fix="Send smaller envelopes.",
    ),
    CodeEntry(
        UNSUPPORTED_MEDIA_TYPE,
        Kind.REFUSAL,
        status=415,
        title="The body must be application/xml",
        meaning="The request's Content-Type is not XML.",
        fix="POST envelopes with Content-Type: application/xml.",
    ),
    CodeEntry(
        NOT_FOUND,
        Kind.REFUSAL,
        status=404,
        title="No such resource",
        meaning="The request went to a URL the receiver does not serve.",
        fix="Check the URL in the registry (docs/openapi.yaml lists the paths).",
    ),
    CodeEntry(
        METHOD_NOT_ALLOWED,
        Kind.REFUSAL,
        status=405,
        title="This method is not allowed here",
        meaning="The HTTP method is wrong for this URL.",
        fix="Use the methods docs/openapi.yaml lists (POST to deliver).",
    ),
    CodeEntry(
        INTERNAL,
        Kind.REFUSAL,
        status=500,
        title="The receiver failed; the envelope was not stored",
        meaning="The receiver hit an unexpected error. Nothing was stored, so the ICC retries.",
        fix="Read the receiver's log (supplier-stub.log in the run directory) for the cause.",
    ),
    CodeEntry(
        SIMULATED_FAULT,
        Kind.REFUSAL,
        status=503,
        title="A scenario injected this failure",
        meaning=(
            "The scenario told the supplier stub to fail on purpose, to show retries and recovery."
        ),
        fix="Nothing to fix if the scenario expects it; otherwise remove the fault step.",
    ),
    CodeEntry(
        ENVELOPE_STALE,
        Kind.REFUSAL,
        status=422,
        title="The envelope's creation time is outside the accepted window",
        answer_title="The envelope's creation time is outside the window",
        meaning=(
            "The envelope was made too long ago (or in the future): a replayed capture or a "
            "skewed clock."
        ),
        fix="Synchronise the ICC's and the receiver's clocks (NTP); do not resend old captures.",
    ),
    CodeEntry(
        SIGNER_REVOKED,
        Kind.REFUSAL,
        status=403,
        title="The envelope's signing certificate is revoked",
        meaning="AF revoked the certificate that signed this envelope, so it must not be trusted.",
        fix="Sign with a current ICC certificate; re-issue it with b2bsim pki.",
    ),
    CodeEntry(
        REQUEST_TIMEOUT,
        Kind.REFUSAL,
        status=408,
        title="The request was not received in time",
        meaning="The receiver gave up waiting for the request body; the ICC retries.",
        fix="Check the network between the ICC and the supplier.",
    ),
    CodeEntry(
        CLIENT_NOT_SUPPLIER,
        Kind.REFUSAL,
        status=403,
        title="The client certificate is not a pull supplier's",
        meaning=(
            "A client tried to pull from the ICC's outbox with a certificate that is not "
            "registered for a pull supplier."
        ),
        fix=(
            "Pull with the supplier's own AF-issued certificate and register it as delivery_mode "
            "pull."
        ),
    ),
    CodeEntry(
        CURSOR_INVALID,
        Kind.REFUSAL,
        status=400,
        title="The cursor is not one this outbox issued to you",
        meaning="A pull supplier sent a cursor the ICC's outbox never gave it.",
        fix="Start from the cursor of the last page you received, or from 0.",
    ),
    CodeEntry(
        PAGE_LIMIT_INVALID,
        Kind.REFUSAL,
        status=400,
        title="The page limit is not a whole number in range",
        meaning="A pull request asked for an impossible page size.",
        fix="Ask for a limit between 1 and the documented maximum (docs/pull.md).",
    ),
    CodeEntry(
        ACK_INVALID,
        Kind.REFUSAL,
        status=400,
        title="The acknowledgement is not valid",
        answer_title="The acknowledgement is not valid JSON {up_to: cursor}",
        meaning=(
            "A pull supplier's ack was not JSON of the form {up_to: cursor, refused: [...]}, or "
            "listed a refused envelope above up_to, twice, or one it was never served."
        ),
        fix="Send the ack as docs/pull.md shows; the detail says which part was wrong.",
    ),
    CodeEntry(
        OUTBOX_UNAVAILABLE,
        Kind.REFUSAL,
        status=503,
        title="The ICC's outbox cannot answer now",
        meaning=(
            "The ICC could not take the request now (it could not reach the dead-letter queue "
            "for the refused envelopes of an acknowledgement, or it is busy). Nothing was "
            "acknowledged."
        ),
        fix="Wait as long as the Retry-After header says, then send the same request again.",
    ),
)
