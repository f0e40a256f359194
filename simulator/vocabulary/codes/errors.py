"""The codes of the project's own errors (simulator.vocabulary.errors) that are no refusal.

``B2BSimError.one_line()`` shows them (``error [RUN_TIMEOUT]: …``); each class of
:mod:`simulator.vocabulary.errors` takes its ``code`` from here or from
:mod:`simulator.vocabulary.codes.refusals`.
"""

from __future__ import annotations

from typing import Final

from simulator.vocabulary.codes.model import CodeEntry, Kind, table

B2BSIM: Final = "B2BSIM"
CONFIG: Final = "CONFIG"
SCENARIO: Final = "SCENARIO"
REGISTRY: Final = "REGISTRY"
UNKNOWN_SUPPLIER: Final = "UNKNOWN_SUPPLIER"
BROKER: Final = "BROKER"
BROKER_NOT_INSTALLED: Final = "BROKER_NOT_INSTALLED"
BROKER_UNREACHABLE: Final = "BROKER_UNREACHABLE"
PORT_IN_USE: Final = "PORT_IN_USE"
PKI: Final = "PKI"
CSR_UNREADABLE: Final = "CSR_UNREADABLE"
CSR_SIGNATURE_INVALID: Final = "CSR_SIGNATURE_INVALID"
CSR_KEY_REFUSED: Final = "CSR_KEY_REFUSED"
CSR_HASH_REFUSED: Final = "CSR_HASH_REFUSED"
CERT_PIN_MISMATCH: Final = "CERT_PIN_MISMATCH"
DELIVERY_FAILED: Final = "DELIVERY_FAILED"
PULL_FAILED: Final = "PULL_FAILED"
DOCUMENT_CHAIN: Final = "DOCUMENT_CHAIN"
COMPONENT_FAILED: Final = "COMPONENT_FAILED"
RUN_TIMEOUT: Final = "RUN_TIMEOUT"
BENCH_TIMEOUT: Final = "BENCH_TIMEOUT"
DLQ_NOT_FOUND: Final = "DLQ_NOT_FOUND"
TARGET_UNREACHABLE: Final = "TARGET_UNREACHABLE"
TARGET_UNTRUSTED: Final = "TARGET_UNTRUSTED"
ENDPOINT_UNUSABLE: Final = "ENDPOINT_UNUSABLE"
READBACK_INVALID: Final = "READBACK_INVALID"
PLAN_INVALID: Final = "PLAN_INVALID"
EVIDENCE_UNREADABLE: Final = "EVIDENCE_UNREADABLE"
EVIDENCE_REFUSED: Final = "EVIDENCE_REFUSED"

#: code → its entry.  Stable: add, never rename.
ERRORS: dict[str, CodeEntry] = table(
    CodeEntry(
        B2BSIM,
        Kind.ERROR,
        title="The simulator failed",
        meaning="An error without a more specific code.",
        fix="Read the message; run with -v for more detail.",
    ),
    CodeEntry(
        CONFIG,
        Kind.ERROR,
        title="A configuration or command line is wrong",
        meaning="Something given to b2bsim is not usable; nothing was started.",
        fix="Follow the hint in the message.",
    ),
    CodeEntry(
        SCENARIO,
        Kind.ERROR,
        title="The scenario file is wrong",
        meaning=(
            "The file has a syntax error, an unknown key, a wrong type or an unknown supplier; "
            "the message names the file and line."
        ),
        fix="Fix the line named; b2bsim scenario check FILE checks it without running.",
    ),
    CodeEntry(
        REGISTRY,
        Kind.ERROR,
        title="The supplier registry is missing or malformed",
        meaning="The ICC cannot route messages without a valid registry.json.",
        fix="Fix the entry named in the message, or recreate it with b2bsim pki init.",
    ),
    CodeEntry(
        UNKNOWN_SUPPLIER,
        Kind.ERROR,
        title="The organisation number is not in the supplier registry",
        meaning="The ICC does not know where to send this message, so it dead-lettered it.",
        fix="Add the supplier to registry.json (org number, URL, certificate), then replay.",
        sv="Organisationsnumret finns inte i leverantörsregistret.",
    ),
    CodeEntry(
        BROKER,
        Kind.ERROR,
        title="The ActiveMQ broker failed",
        meaning="The broker could not be started, reached or stopped.",
        fix="See broker/broker.log in the state directory.",
    ),
    CodeEntry(
        BROKER_NOT_INSTALLED,
        Kind.ERROR,
        title="Java or ActiveMQ is not installed",
        meaning="The embedded broker needs Java and an ActiveMQ distribution.",
        fix="Install them, or point --broker / $B2BSIM_BROKER at a running broker.",
    ),
    CodeEntry(
        BROKER_UNREACHABLE,
        Kind.ERROR,
        title="Nothing answers STOMP at the broker address",
        meaning="KA and the ICC cannot reach the queue.",
        fix="Start the broker (b2bsim broker start) or correct --broker / $B2BSIM_BROKER.",
    ),
    CodeEntry(
        PORT_IN_USE,
        Kind.ERROR,
        title="A port is already taken",
        meaning="Another process listens on a port the simulator needs.",
        fix="Stop that process or choose another port.",
    ),
    CodeEntry(
        PKI,
        Kind.ERROR,
        title="The test PKI is missing or unreadable",
        meaning=(
            "Certificates and keys for the ICC and suppliers are needed for mutual TLS and "
            "signatures."
        ),
        fix="Run b2bsim pki init (or use a fresh --state directory).",
    ),
    CodeEntry(
        CSR_UNREADABLE,
        Kind.ERROR,
        title="The certificate signing request cannot be read",
        meaning="The file is not a PKCS#10 certificate signing request in PEM or DER form.",
        fix="Make it again, e.g. openssl req -new -key KEY -out FILE.csr, and pass that file.",
    ),
    CodeEntry(
        CSR_SIGNATURE_INVALID,
        Kind.ERROR,
        title="The certificate signing request's own signature does not verify",
        meaning=(
            "A CSR is signed with the key it asks a certificate for; this one was not (it was "
            "changed after signing, or made without that key), so it proves no possession."
        ),
        fix="Make a new CSR with the supplier's private key; do not edit it afterwards.",
    ),
    CodeEntry(
        CSR_KEY_REFUSED,
        Kind.ERROR,
        title="The key in the certificate signing request is not accepted",
        meaning=(
            "The AF test CA certifies EC keys on P-256 or P-384 and RSA keys of 2048 bits or "
            "more; nothing else (other curves, short RSA, DSA, Ed25519)."
        ),
        fix="Make a new key and CSR: an EC P-256 key (recommended) or RSA 3072.",
    ),
    CodeEntry(
        CSR_HASH_REFUSED,
        Kind.ERROR,
        title="The certificate signing request is signed with a weak or unknown hash",
        meaning="Only SHA-256, SHA-384 and SHA-512 are accepted; SHA-1 and MD5 are not.",
        fix="Make the CSR again with -sha256 (openssl's default).",
    ),
    CodeEntry(
        CERT_PIN_MISMATCH,
        Kind.ERROR,
        title="The supplier presented another certificate than the registered one",
        meaning=(
            "The ICC pins each supplier's AF-issued certificate; a different one (even from the "
            "same CA) means the wrong server or a rotated certificate not yet registered."
        ),
        fix="Update cert_sha256 in the registry after rotating a certificate, then replay.",
    ),
    CodeEntry(
        DELIVERY_FAILED,
        Kind.ERROR,
        title="The ICC could not deliver an envelope",
        meaning="The supplier endpoint could not be reached or did not answer.",
        fix="Check that the supplier is up and its URL in the registry is right.",
    ),
    CodeEntry(
        PULL_FAILED,
        Kind.ERROR,
        title="A pull supplier could not fetch from the ICC's outbox",
        meaning="The supplier's pull request failed (TLS, a refused cursor, or the ICC was down).",
        fix="Check the outbox URL and certificate; the puller retries on its own.",
    ),
    CodeEntry(
        DOCUMENT_CHAIN,
        Kind.ERROR,
        title="A document chain could not be built",
        meaning=(
            "KA's generator could not make an invoice or credit that refers to its predecessor."
        ),
        fix="Report it with the seed; it is a bug in the generator.",
    ),
    CodeEntry(
        COMPONENT_FAILED,
        Kind.ERROR,
        title="A component process failed",
        meaning="The supplier stub or an ICC worker did not start or exited unexpectedly.",
        fix="Read its log (supplier-stub.log, icc-N.log) in the run directory.",
    ),
    CodeEntry(
        RUN_TIMEOUT,
        Kind.ERROR,
        title="The scenario did not finish in time",
        meaning=(
            "The run's timeout ran out before every message was loaded or dead-lettered: the "
            "chain stalled or the run is bigger than its timeout allows."
        ),
        fix=(
            "Look at the timeline for where messages stopped and at the component logs in the run "
            "directory; raise `timeout:` if the run is simply big."
        ),
    ),
    CodeEntry(
        BENCH_TIMEOUT,
        Kind.ERROR,
        title="The benchmark did not finish in time",
        meaning=(
            "Not every message reached the supplier's ledger before the benchmark's timeout: the "
            "chain is slower than the timeout allows on this machine, or it stalled."
        ),
        fix=(
            "Read the component logs in the bench's run directory; run fewer --messages or raise "
            "--timeout."
        ),
    ),
    CodeEntry(
        DLQ_NOT_FOUND,
        Kind.ERROR,
        title="No such dead letter",
        meaning="The message id is not in the dead-letter queue (perhaps already replayed).",
        fix="List the dead letters with b2bsim dlq list.",
    ),
    CodeEntry(
        TARGET_UNREACHABLE,
        Kind.ERROR,
        title="Nothing answers at the conformance target",
        meaning=(
            "b2bsim conformance could not open a TLS connection to --target, so no case ran (and "
            "none is counted as passed)."
        ),
        fix=(
            "Start your integration point, check the URL and port, and that no firewall is in the "
            "way."
        ),
    ),
    CodeEntry(
        TARGET_UNTRUSTED,
        Kind.ERROR,
        title="The conformance target presents an untrusted certificate",
        meaning=(
            "The target's server certificate does not chain to --target-ca (or fails the pin), so "
            "the kit refused to send it anything."
        ),
        fix=(
            "Pass the CA that issued your server certificate as --target-ca, or serve the "
            "certificate AF issued to you."
        ),
    ),
    CodeEntry(
        ENDPOINT_UNUSABLE,
        Kind.ERROR,
        title="The external endpoint of a run cannot be used",
        meaning=(
            "b2bsim run --endpoint could not reach the endpoint over mutual TLS, or its "
            "certificate does not chain to --endpoint-ca or match --endpoint-cert-sha256, or the "
            "organisation number is not valid; nothing was started."
        ),
        fix=(
            "Start the endpoint, check the URL, pass the CA that issued its certificate and its "
            "current fingerprint, and a Luhn-valid organisation number."
        ),
    ),
    CodeEntry(
        READBACK_INVALID,
        Kind.ERROR,
        title="The supplier's read-back answered something else than its specification",
        meaning=(
            "GET /b2b/ledger (docs/openapi.yaml) did not answer 200 with JSON entries "
            "{position, envelope_id, message_id, loaded_at_ms} and next, so what the supplier "
            "loaded cannot be graded."
        ),
        fix="Implement the read-back as docs/openapi.yaml says, or run without --readback.",
    ),
    CodeEntry(
        PLAN_INVALID,
        Kind.ERROR,
        title="The test plan file is wrong",
        meaning=(
            "The plan file (b2bsim plan init) has a syntax error, an unknown key or a wrong "
            "type, or names a case it does not have; the message names the file, line and key."
        ),
        fix="Fix the line named, or write the plan again with b2bsim plan init (docs/plan.md).",
    ),
    CodeEntry(
        EVIDENCE_UNREADABLE,
        Kind.ERROR,
        title="The file is no evidence pack",
        meaning=(
            "b2bsim evidence verify could not read it as a zip of an evidence pack (truncated, "
            "not a zip, or without manifest.json and manifest.p7s)."
        ),
        fix="Ask for the pack again as it was written by b2bsim plan evidence.",
    ),
    CodeEntry(
        EVIDENCE_REFUSED,
        Kind.ERROR,
        title="The evidence pack does not verify",
        meaning=(
            "Its manifest's signature, the signer's chain to the AF test CA, or a file's SHA-256 "
            "does not hold: the pack was changed after it was signed, or signed by someone else."
        ),
        fix="Do not use the pack; make a new one with b2bsim plan evidence.",
    ),
)
