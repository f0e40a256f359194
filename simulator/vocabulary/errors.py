"""One exception tree for the whole project: every exception class is here.

Every error carries a stable ``code`` from the catalogue (simulator.vocabulary.codes;
used in logs, problem-details answers, result files and reports) and a message
that says what was wrong and what to do.  Each class also inherits the matching
builtin, so callers can catch either way (``except ConfigError`` or ``except ValueError``).

The components (``ka_producer``, ``icc_bridge``, ``supplier_stub``) and the
conductor raise these classes; none defines an exception of its own.
"""

from __future__ import annotations

import ssl

from simulator.vocabulary.codes.errors import (
    B2BSIM,
    BENCH_TIMEOUT,
    BROKER,
    BROKER_NOT_INSTALLED,
    BROKER_UNREACHABLE,
    CERT_PIN_MISMATCH,
    COMPONENT_FAILED,
    CONFIG,
    CSR_HASH_REFUSED,
    CSR_KEY_REFUSED,
    CSR_SIGNATURE_INVALID,
    CSR_UNREADABLE,
    DELIVERY_FAILED,
    DLQ_NOT_FOUND,
    DOCUMENT_CHAIN,
    ENDPOINT_UNUSABLE,
    EVIDENCE_REFUSED,
    EVIDENCE_UNREADABLE,
    PKI,
    PLAN_INVALID,
    PORT_IN_USE,
    PULL_FAILED,
    READBACK_INVALID,
    REGISTRY,
    RUN_TIMEOUT,
    SCENARIO,
    TARGET_UNREACHABLE,
    TARGET_UNTRUSTED,
    UNKNOWN_SUPPLIER,
)
from simulator.vocabulary.codes.refusals import (
    CURSOR_INVALID,
    DOCUMENT_INVALID,
    ENVELOPE_MALFORMED,
    ENVELOPE_STALE,
    SIGNATURE_INVALID,
    SIGNATURE_MISSING,
    SIGNATURE_TAMPERED,
    SIGNATURE_WEAK_ALGORITHM,
    SIGNATURE_WRAPPING,
    SIGNER_REVOKED,
    SIGNER_UNTRUSTED,
    UNKNOWN_MESSAGE_TYPE,
    WRONG_ADDRESSEE,
    XML_DOCTYPE,
    XML_FORBIDDEN,
    XML_MALFORMED,
    XML_NOT_UTF8,
    XML_TOO_DEEP,
    XML_TOO_LARGE,
)


class B2BSimError(Exception):
    """Base of every error the simulator raises on purpose."""

    code = B2BSIM

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} — {hint}" if hint else message)

    def one_line(self) -> str:
        """The error as one line for a terminal: code, what, what to do."""
        return f"error [{self.code}]: {self}"


class ConfigError(B2BSimError, ValueError):
    """A configuration, registry, scenario or command line is wrong."""

    code = CONFIG


class ScenarioError(ConfigError):
    """A scenario file is missing or malformed."""

    code = SCENARIO


class RegistryError(ConfigError):
    """The supplier registry is missing, malformed or lacks a supplier."""

    code = REGISTRY


class UnknownSupplierError(RegistryError, LookupError):
    """An organisation number is not in the supplier registry."""

    code = UNKNOWN_SUPPLIER


class BrokerError(B2BSimError, RuntimeError):
    """The ActiveMQ broker cannot be installed, started, reached or stopped."""

    code = BROKER


class BrokerNotInstalledError(BrokerError, FileNotFoundError):
    """Java or ActiveMQ is not installed where we look."""

    code = BROKER_NOT_INSTALLED


class BrokerUnreachableError(BrokerError, ConnectionError):
    """Nothing answers STOMP at the broker address."""

    code = BROKER_UNREACHABLE


class PortInUseError(BrokerError, OSError):
    """A port we were told to listen on is taken."""

    code = PORT_IN_USE


class PkiError(B2BSimError, RuntimeError):
    """The test PKI is missing, incomplete or unreadable."""

    code = PKI


class CsrError(PkiError, ValueError):
    """A certificate signing request is not PEM/DER PKCS#10."""

    code = CSR_UNREADABLE


class CsrSignatureError(CsrError):
    """A certificate signing request's own signature does not verify."""

    code = CSR_SIGNATURE_INVALID


class CsrKeyError(CsrError):
    """The key of a certificate signing request is of a type or size the CA refuses."""

    code = CSR_KEY_REFUSED


class CsrHashError(CsrError):
    """A certificate signing request is signed with a hash the CA refuses (SHA-1, MD5)."""

    code = CSR_HASH_REFUSED


class CertificatePinError(B2BSimError, ssl.SSLCertVerificationError):
    """The server's certificate is not the one pinned for it: the handshake is refused."""

    code = CERT_PIN_MISMATCH

    def __init__(self, expected: str, presented: str | None) -> None:
        self.expected = expected
        self.presented = presented
        super().__init__(
            f"server certificate SHA-256 {presented or '(none)'} does not match the pinned "
            f"{expected}",
            hint="check the supplier's URL, or update cert_sha256 in the registry "
            "if the supplier's certificate was renewed",
        )
        self.verify_message = "certificate pin mismatch"

    def __str__(self) -> str:
        # ssl.SSLError's own __str__ shows the args tuple when there is no strerror.
        return Exception.__str__(self)


class EnvelopeError(B2BSimError, ValueError):
    """An envelope is malformed or fails a check."""

    code = ENVELOPE_MALFORMED


class HostileXmlError(EnvelopeError):
    """XML uses a DTD, entities or limits that a safe receiver refuses."""

    code = XML_FORBIDDEN


class XmlDoctypeError(HostileXmlError):
    """The XML has a DOCTYPE: DTDs and entities are refused outright."""

    code = XML_DOCTYPE


class XmlTooLargeError(HostileXmlError):
    """The XML is larger than the byte limit."""

    code = XML_TOO_LARGE


class XmlTooDeepError(HostileXmlError):
    """The XML nests elements deeper than the depth limit."""

    code = XML_TOO_DEEP


class XmlNotUtf8Error(HostileXmlError):
    """The XML is not UTF-8: another declared encoding or invalid bytes."""

    code = XML_NOT_UTF8


class XmlMalformedError(HostileXmlError):
    """The XML is not well-formed."""

    code = XML_MALFORMED


class SignatureError(EnvelopeError):
    """An envelope's XML signature is missing, invalid or not from the ICC."""

    code = SIGNATURE_INVALID


class SignatureMissingError(SignatureError):
    """The envelope carries no XML signature."""

    code = SIGNATURE_MISSING


class SignatureTamperedError(SignatureError):
    """The signature does not match the envelope: it was changed after signing."""

    code = SIGNATURE_TAMPERED


class WeakAlgorithmError(SignatureError):
    """The signature uses SHA-1 or another algorithm outside the SHA-2 family."""

    code = SIGNATURE_WEAK_ALGORITHM


class SignatureWrappingError(SignatureError):
    """The signature is misplaced, duplicated or signs something else (signature wrapping)."""

    code = SIGNATURE_WRAPPING


class UntrustedSignerError(SignatureError):
    """The signing certificate is not from the AF CA, not valid now, or not the ICC's."""

    code = SIGNER_UNTRUSTED


class SignerRevokedError(UntrustedSignerError):
    """The signing certificate is on the AF CA's revocation list."""

    code = SIGNER_REVOKED


class EnvelopeStaleError(EnvelopeError):
    """The envelope's creation time is further from the receiver's clock than allowed.

    Refused with 422: the envelope is well-formed and authentic, but too old
    (a replay or a message held too long) or from the future (a wrong clock).
    """

    code = ENVELOPE_STALE


class AddresseeError(EnvelopeError):
    """An envelope is addressed to someone else."""

    code = WRONG_ADDRESSEE


class UnknownMessageTypeError(EnvelopeError):
    """A message type that is not one of the AF message types."""

    code = UNKNOWN_MESSAGE_TYPE


class DeliveryError(B2BSimError, ConnectionError):
    """The ICC could not deliver an envelope to a supplier endpoint."""

    code = DELIVERY_FAILED


class CursorError(B2BSimError, ValueError):
    """A supplier named a cursor the outbox never issued to it."""

    code = CURSOR_INVALID


class PullError(B2BSimError, ConnectionError):
    """A round of pulling failed (network, TLS, or an answer the ICC should not give)."""

    code = PULL_FAILED


class DocumentValidationError(B2BSimError, ValueError):
    """A business document fails the XSD or a rule set."""

    code = DOCUMENT_INVALID


class DocumentChainError(B2BSimError, ValueError):
    """A document cannot follow the one given: wrong type, other seller, or unreadable."""

    code = DOCUMENT_CHAIN


# --- the conductor's own: components, runs and the kits --------------------------------


class ComponentError(B2BSimError, RuntimeError):
    """A component did not start, or died."""

    code = COMPONENT_FAILED


class RunTimeoutError(B2BSimError, TimeoutError):
    """A scenario run did not finish within its timeout."""

    code = RUN_TIMEOUT


class BenchTimeoutError(B2BSimError, TimeoutError):
    """The chain did not load every message in time."""

    code = BENCH_TIMEOUT


class BaselineTimeoutError(B2BSimError, TimeoutError):
    """The broker did not hand back every message in time."""

    code = BENCH_TIMEOUT


class DeadLetterNotFoundError(B2BSimError, LookupError):
    """No dead letter in the DLQ has the id the user gave."""

    code = DLQ_NOT_FOUND


class TargetUnreachableError(B2BSimError, ConnectionError):
    """Nothing answers TLS at the conformance target: no case can run."""

    code = TARGET_UNREACHABLE


class TargetUntrustedError(B2BSimError, ConnectionError):
    """The target's certificate does not chain to --target-ca (or fails its pin)."""

    code = TARGET_UNTRUSTED


class EndpointError(ConfigError):
    """``b2bsim run --endpoint``: the endpoint cannot be used (nothing started)."""

    code = ENDPOINT_UNUSABLE


class ReadbackError(ConfigError):
    """The supplier's read-back (GET /b2b/ledger) answered garbage or could not be read."""

    code = READBACK_INVALID


class PlanError(ConfigError):
    """A test plan file (``b2bsim plan``) is missing or malformed."""

    code = PLAN_INVALID


class EvidenceUnreadableError(ConfigError):
    """``b2bsim evidence verify``: the file is no evidence pack (truncated, not a zip)."""

    code = EVIDENCE_UNREADABLE


class EvidenceRefusedError(B2BSimError, ValueError):
    """An evidence pack's signature, chain or hashes do not hold (``findings`` names each)."""

    code = EVIDENCE_REFUSED

    def __init__(self, findings: list[str], *, hint: str | None = None) -> None:
        self.findings = list(findings)
        super().__init__("; ".join(self.findings), hint=hint)
