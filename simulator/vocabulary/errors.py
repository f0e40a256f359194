"""One exception tree for the whole simulator.

Every error carries a stable ``code`` (used in logs, problem-details answers,
result files and reports) and a message that says what was wrong and what to
do.  Each class also inherits the matching builtin, so callers can catch
either way (``except ConfigError`` or ``except ValueError``).
"""

from __future__ import annotations


class B2BSimError(Exception):
    """Base of every error the simulator raises on purpose."""

    code = "B2BSIM"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} — {hint}" if hint else message)

    def one_line(self) -> str:
        """The error as one line for a terminal: code, what, what to do."""
        return f"error [{self.code}]: {self}"


class ConfigError(B2BSimError, ValueError):
    """A configuration, registry, scenario or command line is wrong."""

    code = "CONFIG"


class ScenarioError(ConfigError):
    """A scenario file is missing or malformed."""

    code = "SCENARIO"


class RegistryError(ConfigError):
    """The supplier registry is missing, malformed or lacks a supplier."""

    code = "REGISTRY"


class UnknownSupplierError(RegistryError, LookupError):
    """An organisation number is not in the supplier registry."""

    code = "UNKNOWN_SUPPLIER"


class BrokerError(B2BSimError, RuntimeError):
    """The ActiveMQ broker cannot be installed, started, reached or stopped."""

    code = "BROKER"


class BrokerNotInstalledError(BrokerError, FileNotFoundError):
    """Java or ActiveMQ is not installed where we look."""

    code = "BROKER_NOT_INSTALLED"


class BrokerUnreachableError(BrokerError, ConnectionError):
    """Nothing answers STOMP at the broker address."""

    code = "BROKER_UNREACHABLE"


class PortInUseError(BrokerError, OSError):
    """A port we were told to listen on is taken."""

    code = "PORT_IN_USE"


class PkiError(B2BSimError, RuntimeError):
    """The test PKI is missing, incomplete or unreadable."""

    code = "PKI"


class EnvelopeError(B2BSimError, ValueError):
    """An envelope is malformed or fails a check."""

    code = "ENVELOPE_MALFORMED"


class HostileXmlError(EnvelopeError):
    """XML uses a DTD, entities or limits that a safe receiver refuses."""

    code = "XML_FORBIDDEN"


class SignatureError(EnvelopeError):
    """An envelope's XML signature is missing, invalid or not from the ICC."""

    code = "SIGNATURE_INVALID"


class AddresseeError(EnvelopeError):
    """An envelope is addressed to someone else."""

    code = "WRONG_ADDRESSEE"


class UnknownMessageTypeError(EnvelopeError):
    """A message type that is not one of the AF message types."""

    code = "UNKNOWN_MESSAGE_TYPE"


class DeliveryError(B2BSimError, ConnectionError):
    """The ICC could not deliver an envelope to a supplier endpoint."""

    code = "DELIVERY_FAILED"


class DocumentValidationError(B2BSimError, ValueError):
    """A business document fails the XSD or a rule set."""

    code = "DOCUMENT_INVALID"
