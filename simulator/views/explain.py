"""What each failure means and how to fix it, in plain English.

Reports (HTML, JUnit) explain every failure they show.  A failure is one of:

* an expectation of a scenario that did not hold (keyed by the figure's name,
  e.g. ``lost``; see docs/files.md);
* a dead letter, keyed by its ``b2b-dlq-code`` (docs/dlq.md);
* a refusal or an error, keyed by its stable code (simulator/problems.py,
  simulator/errors.py and the error classes beside them).

The keys are the stable codes themselves: add an entry when you add a code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from simulator.vocabulary.problems import PROBLEMS

__all__ = [
    "CODES",
    "EXPECTATIONS",
    "Explanation",
    "code_of_error",
    "explain_code",
    "explain_error",
    "explain_expectation",
]


@dataclass(frozen=True, slots=True)
class Explanation:
    key: str  # the code or the figure's name
    title: str  # one line: what happened
    meaning: str  # what it means for the chain
    fix: str  # what to do about it

    def text(self) -> str:
        """The explanation as a short paragraph (for JUnit messages and logs)."""
        return f"{self.title}. What it means: {self.meaning} How to fix it: {self.fix}"


_FIX_PRODUCER = "Fix the producer (KA) so it sends this correctly; replaying will not help."
_FIX_ICC_SIGNING = (
    "The receiver refused the envelope's signature. If you build the receiver, verify with the "
    "AF test CA (b2bsim pki init writes it) and accept exclusive C14N with ECDSA/RSA and SHA-2; "
    "if you run the ICC, check it signs with its own certificate from the same PKI."
)

#: code → (title, meaning, fix).
_CODES: dict[str, tuple[str, str, str]] = {
    # --- refusals a receiver makes (simulator/problems.py) ------------------------------------
    "ENVELOPE_MALFORMED": (
        "The envelope, or KA's message headers, are not well formed",
        "A required field is missing or wrong: a KA header (message id, type, organisation "
        "number, timestamp, sequence) on the queue, or an SBDH field in the envelope.",
        "Compare the message with docs/envelope.md and docs/messages.md; a poison message on "
        "KA's queue must be fixed at the producer.",
    ),
    "XML_FORBIDDEN": (
        "The XML uses a construct a safe receiver refuses",
        "The document or envelope contains something (entities, processing tricks) that could "
        "be used to attack the receiver, so it was refused unread.",
        "Send plain UTF-8 XML without DTDs or entities.",
    ),
    "XML_DOCTYPE": (
        "The XML has a DOCTYPE",
        "DTDs and entity declarations are refused outright: they enable XXE and billion-laughs "
        "attacks.",
        "Remove the <!DOCTYPE …> from the document.",
    ),
    "XML_TOO_LARGE": (
        "The XML is larger than allowed",
        "The envelope or document exceeds the 10 MiB limit a receiver accepts.",
        "Send smaller documents; split a huge invoice into several.",
    ),
    "XML_TOO_DEEP": (
        "The XML is nested too deeply",
        "Elements nest deeper than 64 levels, which no real UBL document does.",
        "Flatten the document; check the generator is not recursing by mistake.",
    ),
    "XML_NOT_UTF8": (
        "The body is not UTF-8",
        "The XML declares another encoding or contains bytes that are not valid UTF-8.",
        'Encode the document as UTF-8 and declare encoding="UTF-8" (or nothing).',
    ),
    "XML_MALFORMED": (
        "The body is not well-formed XML",
        "The document could not be parsed at all (for example a poison message that is plain "
        "text), so it cannot be wrapped or read.",
        "Check the document with an XML parser before sending it. " + _FIX_PRODUCER,
    ),
    "SIGNATURE_INVALID": (
        "The envelope signature does not verify",
        "The receiver could not confirm that the ICC signed this envelope.",
        _FIX_ICC_SIGNING,
    ),
    "SIGNATURE_MISSING": (
        "The envelope is not signed",
        "Every AF envelope carries an XML signature as the last child of env:Envelope; this one "
        "had none, so anyone could have written it.",
        "The ICC must sign every envelope; a receiver must refuse unsigned ones (as it did).",
    ),
    "SIGNATURE_TAMPERED": (
        "The envelope was changed after it was signed",
        "The digest or signature value no longer matches the content: something (a proxy, a "
        "re-serialisation, an attacker) altered the envelope in transit.",
        "Do not re-indent or rewrite signed XML; pass the bytes through unchanged.",
    ),
    "SIGNATURE_WRAPPING": (
        "The signature does not cover exactly the envelope",
        "The signature is in the wrong place, there is more than one, or it references "
        "something other than the whole envelope: the shape of a signature-wrapping attack.",
        "Sign the whole env:Envelope with one enveloped signature, as docs/envelope.md shows.",
    ),
    "SIGNATURE_WEAK_ALGORITHM": (
        "The signature uses a refused algorithm",
        "SHA-1 and other weak algorithms are refused; only SHA-2 with ECDSA or RSA is accepted.",
        "Sign with ECDSA P-256 and SHA-256 (what the ICC does).",
    ),
    "SIGNER_UNTRUSTED": (
        "The envelope is not signed by the ICC",
        "The signing certificate is not the ICC's, not issued by the AF test CA, or expired.",
        "Use the ICC certificate of the same test PKI on both sides (b2bsim pki init); "
        "re-issue it if it expired.",
    ),
    "SIGNER_REVOKED": (
        "The envelope's signing certificate is revoked",
        "AF revoked the certificate that signed this envelope, so it must not be trusted.",
        "Sign with a current ICC certificate; re-issue it with b2bsim pki.",
    ),
    "CLIENT_NOT_ICC": (
        "The client certificate is not an ICC certificate",
        "The TLS client that connected to the supplier is not AF's integration platform.",
        "Connect with the ICC's client certificate from the test PKI (icc.pem/icc.key).",
    ),
    "CLIENT_NOT_SUPPLIER": (
        "The client certificate is not a pull supplier's",
        "A client tried to pull from the ICC's outbox with a certificate that is not "
        "registered for a pull supplier.",
        "Pull with the supplier's own AF-issued certificate and register it as delivery_mode pull.",
    ),
    "CLIENT_REVOKED": (
        "The client certificate is revoked",
        "AF revoked the TLS client certificate that connected, so the receiver refused it.",
        "Connect with a current certificate; re-issue it with b2bsim pki.",
    ),
    "WRONG_ADDRESSEE": (
        "The envelope is addressed to another receiver",
        "The organisation number, certificate fingerprint or URL in the envelope is not this "
        "receiver's, so it was refused rather than stored for the wrong supplier.",
        "Correct the supplier's entry in the registry (org number, cert_sha256, url) and "
        "replay the dead letters.",
    ),
    "UNKNOWN_MESSAGE_TYPE": (
        "The message type is not an AF message type",
        "Only INKOPSORDER, SJALVFAKTURA and KREDIT exist; anything else cannot be routed.",
        _FIX_PRODUCER,
    ),
    "DOCUMENT_INVALID": (
        "The business document fails the XSD or a Peppol rule",
        "The UBL order, invoice or credit note breaks UBL 2.1 or the Peppol BIS rules, so a "
        "supplier's system would not accept it.",
        "Run b2bsim validate on the document and fix each rule it names.",
    ),
    "ENVELOPE_CONFLICT": (
        "This envelope id was received with other content",
        "An envelope id the receiver already stored arrived again with a different document: "
        "ids must identify content, so this is refused.",
        "Never reuse an envelope id for another document; the ICC derives it from KA's message id.",
    ),
    "BODY_TOO_LARGE": (
        "The request body is larger than allowed",
        "The HTTP body exceeds what the receiver accepts.",
        "Send smaller envelopes.",
    ),
    "UNSUPPORTED_MEDIA_TYPE": (
        "The body must be application/xml",
        "The request's Content-Type is not XML.",
        "POST envelopes with Content-Type: application/xml.",
    ),
    "NOT_FOUND": (
        "No such resource",
        "The request went to a URL the receiver does not serve.",
        "Check the URL in the registry (docs/openapi.yaml lists the paths).",
    ),
    "METHOD_NOT_ALLOWED": (
        "This method is not allowed here",
        "The HTTP method is wrong for this URL.",
        "Use the methods docs/openapi.yaml lists (POST to deliver).",
    ),
    "INTERNAL": (
        "The receiver failed; the envelope was not stored",
        "The receiver hit an unexpected error. Nothing was stored, so the ICC retries.",
        "Read the receiver's log (supplier-stub.log in the run directory) for the cause.",
    ),
    "SIMULATED_FAULT": (
        "A scenario injected this failure",
        "The scenario told the supplier stub to fail on purpose, to show retries and recovery.",
        "Nothing to fix if the scenario expects it; otherwise remove the fault step.",
    ),
    "ENVELOPE_STALE": (
        "The envelope's creation time is outside the accepted window",
        "The envelope was made too long ago (or in the future): a replayed capture or a "
        "skewed clock.",
        "Synchronise the ICC's and the receiver's clocks (NTP); do not resend old captures.",
    ),
    "REQUEST_TIMEOUT": (
        "The request was not received in time",
        "The receiver gave up waiting for the request body; the ICC retries.",
        "Check the network between the ICC and the supplier.",
    ),
    "CURSOR_INVALID": (
        "The cursor is not one this outbox issued to you",
        "A pull supplier sent a cursor the ICC's outbox never gave it.",
        "Start from the cursor of the last page you received, or from 0.",
    ),
    "PAGE_LIMIT_INVALID": (
        "The page limit is not a whole number in range",
        "A pull request asked for an impossible page size.",
        "Ask for a limit between 1 and the documented maximum (docs/pull.md).",
    ),
    "ACK_INVALID": (
        "The acknowledgement is not valid",
        "A pull supplier's ack was not JSON of the form {up_to: cursor}.",
        "Send the ack as docs/pull.md shows.",
    ),
    # --- dead-letter codes (docs/dlq.md) ------------------------------------------------------
    "DELIVERY_REFUSED": (
        "The supplier refused the envelope",
        "The supplier answered with a 4xx (other than 408/429), or presented a TLS certificate "
        "other than the pinned one. Retrying cannot help, so the ICC dead-lettered it at once.",
        "Read the dead letter's reason (the supplier's problem code), fix the supplier or the "
        "registry, then replay it with b2bsim dlq replay.",
    ),
    "DELIVERY_GAVE_UP": (
        "The ICC gave up delivering after its retries",
        "Connection errors, timeouts, 408, 429 or 5xx answers went on past the retry policy's "
        "attempts or age, so the message went to the dead-letter queue.",
        "Bring the supplier back, then replay with b2bsim dlq replay --all; a long outage may "
        "need a larger icc.retry (max_attempts, max_age) in the scenario.",
    ),
    "BROKER_REDELIVERY_LIMIT": (
        "ActiveMQ dead-lettered the message itself",
        "A consumer gave the message back (NACK or crash) more often than the broker's "
        "redelivery limit.",
        "Read the ICC workers' logs (icc-N.log) for why they could not handle it.",
    ),
    "DELIVERY_FAILED": (
        "The ICC could not deliver an envelope",
        "The supplier endpoint could not be reached or did not answer.",
        "Check that the supplier is up and its URL in the registry is right.",
    ),
    "CERT_PIN_MISMATCH": (
        "The supplier presented another certificate than the registered one",
        "The ICC pins each supplier's AF-issued certificate; a different one (even from the same "
        "CA) means the wrong server or a rotated certificate not yet registered.",
        "Update cert_sha256 in the registry after rotating a certificate, then replay.",
    ),
    "UNKNOWN_SUPPLIER": (
        "The organisation number is not in the supplier registry",
        "The ICC does not know where to send this message, so it dead-lettered it.",
        "Add the supplier to registry.json (org number, URL, certificate), then replay.",
    ),
    # --- outcomes of attacks that are not problem codes (simulator/attacks.py) -----------------
    "cut-off": (
        "The receiver hung up on the request",
        "The connection was closed before an answer: what a receiver should do to a client "
        "that sends too slowly (slow-loris) or too much.",
        "If a refusal was expected instead, make the receiver answer with a problem code; if "
        "the cut-off was unexpected, read the receiver's log.",
    ),
    "accepted": (
        "The receiver accepted and stored the request",
        "For an attack this is the worst outcome: a hostile or forged envelope was stored.",
        "Make the receiver run every check in docs/security.md before it stores anything.",
    ),
    "duplicate": (
        "The receiver answered 'duplicate'",
        "It recognised the envelope id as one it already stored and did not store it again: "
        "the right answer to a replayed envelope.",
        "If another answer was expected, deduplicate on the envelope id before storing.",
    ),
    # --- the simulator's own errors (simulator/errors.py and beside it) -----------------------
    "B2BSIM": (
        "The simulator failed",
        "An error without a more specific code.",
        "Read the message; run with -v for more detail.",
    ),
    "CONFIG": (
        "A configuration or command line is wrong",
        "Something given to b2bsim is not usable; nothing was started.",
        "Follow the hint in the message.",
    ),
    "SCENARIO": (
        "The scenario file is wrong",
        "The file has a syntax error, an unknown key, a wrong type or an unknown supplier; the "
        "message names the file and line.",
        "Fix the line named; b2bsim scenario check FILE checks it without running.",
    ),
    "REGISTRY": (
        "The supplier registry is missing or malformed",
        "The ICC cannot route messages without a valid registry.json.",
        "Fix the entry named in the message, or recreate it with b2bsim pki init.",
    ),
    "BROKER": (
        "The ActiveMQ broker failed",
        "The broker could not be started, reached or stopped.",
        "See broker/broker.log in the state directory.",
    ),
    "BROKER_NOT_INSTALLED": (
        "Java or ActiveMQ is not installed",
        "The embedded broker needs Java and an ActiveMQ distribution.",
        "Install them, or point --broker / $B2BSIM_BROKER at a running broker.",
    ),
    "BROKER_UNREACHABLE": (
        "Nothing answers STOMP at the broker address",
        "KA and the ICC cannot reach the queue.",
        "Start the broker (b2bsim broker start) or correct --broker / $B2BSIM_BROKER.",
    ),
    "PORT_IN_USE": (
        "A port is already taken",
        "Another process listens on a port the simulator needs.",
        "Stop that process or choose another port.",
    ),
    "PKI": (
        "The test PKI is missing or unreadable",
        "Certificates and keys for the ICC and suppliers are needed for mutual TLS and signatures.",
        "Run b2bsim pki init (or use a fresh --state directory).",
    ),
    "DOCUMENT_CHAIN": (
        "A document chain could not be built",
        "KA's generator could not make an invoice or credit that refers to its predecessor.",
        "Report it with the seed; it is a bug in the generator.",
    ),
    "RUN_TIMEOUT": (
        "The scenario did not finish in time",
        "The run's timeout ran out before every message was loaded or dead-lettered: the chain "
        "stalled or the run is bigger than its timeout allows.",
        "Look at the timeline for where messages stopped and at the component logs in the run "
        "directory; raise `timeout:` if the run is simply big.",
    ),
    "BENCH_TIMEOUT": (
        "The benchmark did not finish in time",
        "Not every message reached the supplier's ledger before the benchmark's timeout: the "
        "chain is slower than the timeout allows on this machine, or it stalled.",
        "Read the component logs in the bench's run directory; run fewer --messages or raise "
        "--timeout.",
    ),
    "COMPONENT_FAILED": (
        "A component process failed",
        "The supplier stub or an ICC worker did not start or exited unexpectedly.",
        "Read its log (supplier-stub.log, icc-N.log) in the run directory.",
    ),
    "DLQ_NOT_FOUND": (
        "No such dead letter",
        "The message id is not in the dead-letter queue (perhaps already replayed).",
        "List the dead letters with b2bsim dlq list.",
    ),
    "TARGET_UNREACHABLE": (
        "Nothing answers at the conformance target",
        "b2bsim conformance could not open a TLS connection to --target, so no case ran (and "
        "none is counted as passed).",
        "Start your integration point, check the URL and port, and that no firewall is in the way.",
    ),
    "TARGET_UNTRUSTED": (
        "The conformance target presents an untrusted certificate",
        "The target's server certificate does not chain to --target-ca (or fails the pin), so "
        "the kit refused to send it anything.",
        "Pass the CA that issued your server certificate as --target-ca, or serve the "
        "certificate AF issued to you.",
    ),
    "PULL_FAILED": (
        "A pull supplier could not fetch from the ICC's outbox",
        "The supplier's pull request failed (TLS, a refused cursor, or the ICC was down).",
        "Check the outbox URL and certificate; the puller retries on its own.",
    ),
}

#: figure → (title, meaning, fix).
_EXPECTATIONS: dict[str, tuple[str, str, str]] = {
    "produced": (
        "KA published another number of messages than the scenario says",
        "The count of distinct messages in produced.jsonl differs from what the steps produce "
        "(suppliers × messages per supplier), so the run did not do what it describes.",
        "If the scenario was edited, update `expect: produced`; otherwise look for a producer "
        "error in the run's output.",
    ),
    "delivered": (
        "The ICC got a receipt for another number of messages than expected",
        "Fewer: some were dead-lettered or never delivered. More than expected: the "
        "expectation is out of date.",
        "Look at the dead letters and the timeline rows without a 'delivered' time.",
    ),
    "ingested": (
        "The supplier loaded another number of messages into its ledger than expected",
        "Messages stopped between the ICC and the ledger: refused, dead-lettered, or still held "
        "for ordering when the run ended.",
        "Find the messages without a 'loaded' time in the timeline and follow them back hop by "
        "hop.",
    ),
    "lost": (
        "Messages were lost",
        "KA produced them, but they were neither loaded by the supplier nor dead-lettered: the "
        "one outcome the chain must never have.",
        "Follow the lost ids in the timeline to the last hop they reached; check that the ICC "
        "acks only after a 2xx and that the broker queue is persistent.",
    ),
    "double_ingested": (
        "Messages were loaded into the ledger more than once",
        "A redelivery or duplicate push was stored as a new message: the supplier would book "
        "the same invoice twice.",
        "Deduplicate on the envelope id (and KA's message id) before loading; answer a repeat "
        "with 200 duplicate.",
    ),
    "dead_lettered": (
        "Another number of messages went to the dead-letter queue than expected",
        "More: messages the scenario expects to flow were refused or given up (their codes are "
        "listed below). Fewer: messages that should have been refused got through.",
        "Read each dead letter's code and reason below; fix the cause and replay.",
    ),
    "redelivered": (
        "The supplier saw another number of duplicate arrivals than expected",
        "Duplicates come from retries after a lost answer, ICC restarts and injected duplicate "
        "pushes; the count shows how often idempotency was exercised.",
        "If the supplier counts none where duplicates were injected, it is not deduplicating "
        "on the envelope id.",
    ),
    "out_of_order": (
        "Messages were loaded out of KA's order",
        "The supplier loaded a message after a later one of the same supplier (by KA's "
        "timestamp, then sequence): an invoice could be booked before its order, or a credit "
        "before its invoice.",
        "Sort each supplier's messages by PRODUCED_AT then SEQUENCE and hold a message until "
        "its predecessor has loaded (docs/supplier.md).",
    ),
}

#: Expectations that count by code: prefix → (what is counted, what to do).
_BY_CODE: dict[str, tuple[str, str]] = {
    "refused": (
        "Another number of attacks got the answer {code} than expected",
        "Each attack must get exactly its documented answer (docs/security.md); compare the "
        "answers in attacks.jsonl of the run directory.",
    ),
    "dead_letter_codes": (
        "Another number of messages were dead-lettered with {code} than expected",
        "See the dead letters listed with their reasons.",
    ),
}

CODES: frozenset[str] = frozenset(_CODES)
EXPECTATIONS: frozenset[str] = frozenset(_EXPECTATIONS)

_ERROR_CODE = re.compile(r"\berror \[([A-Z0-9_]+)\]")


def explain_code(code: str) -> Explanation:
    """What the error or dead-letter ``code`` means and how to fix it (any code is answered)."""
    entry = _CODES.get(code)
    if entry is not None:
        return Explanation(code, *entry)
    if code.startswith("XML_"):
        base = _CODES["XML_FORBIDDEN"]
        return Explanation(code, base[0], base[1], base[2])
    problem = PROBLEMS.get(code)
    title = problem.title if problem is not None else f"Error {code or '(no code)'}"
    return Explanation(
        code,
        title,
        "There is no explanation for this code yet.",
        "Read the message that came with it, and the run directory's logs.",
    )


def explain_expectation(name: str, expected: int, actual: int) -> Explanation:
    """Why the figure ``name`` being ``actual`` instead of ``expected`` matters.

    Besides the figures, a name may count by code: ``refused.CODE`` (attacks
    the supplier refused with CODE) and ``dead_letter_codes.CODE``.
    """
    kind, _, code = name.partition(".")
    if code and kind in _BY_CODE:
        what, fix = _BY_CODE[kind]
        x = explain_code(code)
        return Explanation(
            name,
            f"{what.format(code=code)} (expected {expected}, got {actual})",
            f"{code}: {x.title}. {x.meaning}",
            f"{fix} {x.fix}",
        )
    title, meaning, fix = _EXPECTATIONS.get(
        name,
        (
            f"The figure {name!r} is not what the scenario expects",
            "The run's reconciliation disagrees with the scenario's `expect` block.",
            "Compare the figures with docs/files.md and the timeline.",
        ),
    )
    return Explanation(name, f"{title} (expected {expected}, got {actual})", meaning, fix)


def code_of_error(error: str) -> str:
    """The code in a run error line such as ``error [RUN_TIMEOUT]: …`` ("" if none)."""
    match = _ERROR_CODE.search(error)
    return match.group(1) if match else ""


def explain_error(error: str) -> Explanation:
    """The explanation of a run's error line (B2BSimError.one_line())."""
    return explain_code(code_of_error(error) or "B2BSIM")
