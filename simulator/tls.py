"""TLS contexts shared by the ICC bridge and the supplier stub.

Both sides use TLS 1.2 or later and mutual authentication against the test
CA.  A client context can also pin the server's leaf certificate by its
SHA-256: the check runs inside the handshake (in the context's
``sslobject_class`` / ``sslsocket_class``), so a wrong server gets no request
bytes.  asyncio, and so aiohttp, use ``SSLObject`` via ``wrap_bio``.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509

from simulator.errors import B2BSimError, ConfigError, PkiError

__all__ = [
    "CertificatePinError",
    "client_context",
    "normalise_pin",
    "peer_certificate",
    "server_context",
]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_PKI_HINT = "run `b2bsim pki init`, or pass the right certificate, key and CA files"


class CertificatePinError(B2BSimError, ssl.SSLCertVerificationError):
    """The server's certificate is not the one pinned for it: the handshake is refused."""

    code = "CERT_PIN_MISMATCH"

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


def normalise_pin(pin: str) -> str:
    """``AB:CD:…`` or ``abcd…`` → 64 lower-case hex digits; ConfigError otherwise."""
    value = pin.strip().replace(":", "").lower()
    if not _SHA256_HEX.fullmatch(value):
        raise ConfigError(
            f"certificate pin {pin!r} is not a SHA-256 fingerprint",
            hint="give 64 hex digits, as `b2bsim pki show` prints them",
        )
    return value


def _check_pin(der: bytes | None, expected: str) -> None:
    presented = hashlib.sha256(der).hexdigest() if der else None
    if presented != expected:
        raise CertificatePinError(expected, presented)


class _PinnedSSLObject(ssl.SSLObject):
    """An SSLObject that checks the peer's leaf certificate once the handshake is done."""

    pin_sha256: ClassVar[str]

    def do_handshake(self) -> None:
        super().do_handshake()
        _check_pin(self.getpeercert(binary_form=True), self.pin_sha256)


class _PinnedSSLSocket(ssl.SSLSocket):
    """The same check for blocking sockets (``wrap_socket``)."""

    pin_sha256: ClassVar[str]

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        _check_pin(self.getpeercert(binary_form=True), self.pin_sha256)


def _load(ctx: ssl.SSLContext, cert: Path, key: Path, ca: Path) -> None:
    for what, path in (("certificate", cert), ("private key", key), ("CA certificate", ca)):
        if not Path(path).is_file():
            raise PkiError(f"no {what} at {path}", hint=_PKI_HINT)
    try:
        ctx.load_cert_chain(certfile=cert, keyfile=key)
    except ssl.SSLError as exc:
        raise PkiError(
            f"cannot use {cert} with key {key}: {exc.reason or exc.__class__.__name__}",
            hint="the key must be the unencrypted PEM key of that certificate",
        ) from None
    try:
        ctx.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise PkiError(
            f"cannot use {ca} as CA: {exc.reason or exc.__class__.__name__}", hint=_PKI_HINT
        ) from None


def server_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """A server context: TLS ≥ 1.2, and a client certificate chaining to ``ca`` is required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load(ctx, cert, key, ca)
    return ctx


def client_context(
    cert: Path, key: Path, ca: Path, *, pin_sha256: str | None = None
) -> ssl.SSLContext:
    """A client context: TLS ≥ 1.2, presents ``cert``, verifies chain and host name.

    With ``pin_sha256``, the handshake also fails with :class:`CertificatePinError`
    unless the server's leaf certificate has exactly that SHA-256.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, cert, key, ca)
    if pin_sha256 is not None:
        pin = normalise_pin(pin_sha256)
        ctx.sslobject_class = type("PinnedSSLObject", (_PinnedSSLObject,), {"pin_sha256": pin})
        ctx.sslsocket_class = type("PinnedSSLSocket", (_PinnedSSLSocket,), {"pin_sha256": pin})
    return ctx


def peer_certificate(transport_or_request: Any) -> x509.Certificate | None:
    """The peer's leaf certificate on a TLS connection, or None.

    Takes an aiohttp request (anything with ``.transport``) or an asyncio
    transport (anything with ``get_extra_info``).
    """
    transport = getattr(transport_or_request, "transport", transport_or_request)
    if transport is None or not hasattr(transport, "get_extra_info"):
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der) if der else None
