"""TLS contexts shared by the ICC bridge and the supplier stub.

Both sides use TLS 1.2 or later and mutual authentication against the test
CA.  A client context can also pin the server's leaf certificate by its
SHA-256: the check runs inside the handshake (in the context's
``sslobject_class`` / ``sslsocket_class``), so a wrong server gets no request
bytes.  asyncio, and so aiohttp, use ``SSLObject`` via ``wrap_bio``.

With ``crl=``, both sides also check the peer's leaf certificate against the
CA's revocation list (``VERIFY_CRL_CHECK_LEAF``): a revoked peer fails the
handshake.  A context never re-reads its files, so a process that must see a
new CRL (or a rotated certificate) without restarting asks a
:class:`ContextCache` for a context per connection; on the server side
:func:`reloading_server_context` does that inside each handshake.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509

from simulator.vocabulary.errors import B2BSimError, CertificatePinError, ConfigError, PkiError

__all__ = [
    "ContextCache",
    "FileWatcher",
    "client_context",
    "normalise_pin",
    "peer_certificate",
    "reloading_server_context",
    "server_context",
]

log = logging.getLogger(__name__)

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_PKI_HINT = "run `b2bsim pki init`, or pass the right certificate, key and CA files"


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


def _load_crl(ctx: ssl.SSLContext, crl: Path | None) -> None:
    """Add the PEM CRL at ``crl`` to the context's store and check leaf certificates with it."""
    if crl is None:
        return
    if not Path(crl).is_file():
        raise PkiError(f"no CRL at {crl}", hint="run `b2bsim pki init` (it publishes pki/crl.pem)")
    try:
        ctx.load_verify_locations(cafile=crl)
    except ssl.SSLError as exc:
        raise PkiError(
            f"cannot use {crl} as CRL: {exc.reason or exc.__class__.__name__}",
            hint="pass the PEM CRL of the test CA (pki/crl.pem)",
        ) from None
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def server_context(cert: Path, key: Path, ca: Path, *, crl: Path | None = None) -> ssl.SSLContext:
    """A server context: TLS ≥ 1.2, and a client certificate chaining to ``ca`` is required.

    With ``crl``, a client certificate on that CRL fails the handshake (and so
    does any client certificate if the CRL has expired: renew it with
    ``b2bsim pki crl``).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load(ctx, cert, key, ca)
    _load_crl(ctx, crl)
    return ctx


def client_context(
    cert: Path,
    key: Path,
    ca: Path,
    *,
    pin_sha256: str | None = None,
    crl: Path | None = None,
) -> ssl.SSLContext:
    """A client context: TLS ≥ 1.2, presents ``cert``, verifies chain and host name.

    With ``pin_sha256``, the handshake also fails with :class:`CertificatePinError`
    unless the server's leaf certificate has exactly that SHA-256.  With
    ``crl``, a server certificate on that CRL fails the handshake.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, cert, key, ca)
    _load_crl(ctx, crl)
    if pin_sha256 is not None:
        pin = normalise_pin(pin_sha256)
        ctx.sslobject_class = type("PinnedSSLObject", (_PinnedSSLObject,), {"pin_sha256": pin})
        ctx.sslsocket_class = type("PinnedSSLSocket", (_PinnedSSLSocket,), {"pin_sha256": pin})
    return ctx


class FileWatcher:
    """Tells whether any of some files changed (mtime, size or inode) since last asked.

    One ``stat`` per file per call; a missing file counts as a state of its own.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(Path(p) for p in paths)
        self._stamp: tuple[tuple[int, int, int] | None, ...] | None = None

    def stamp(self) -> tuple[tuple[int, int, int] | None, ...]:
        """The files' current (mtime_ns, size, inode), None for a missing one."""
        stamps: list[tuple[int, int, int] | None] = []
        for path in self.paths:
            try:
                st = os.stat(path)
            except OSError:
                stamps.append(None)
            else:
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamps)

    def changed(self) -> bool:
        """True the first time, and whenever a file changed since the last call."""
        stamp = self.stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True


class ContextCache:
    """An SSL context that is rebuilt when the files it was built from change.

    ``build`` makes the context (e.g. ``lambda: client_context(..., crl=crl)``);
    ``watch`` lists its files (at least the CRL).  :meth:`get` is cheap while
    nothing changed.  If a rebuild fails (say a key and its certificate are
    being replaced one after the other), the previous context is kept and the
    rebuild is tried again on the next call; the first build's error is raised.
    """

    def __init__(self, build: Callable[[], ssl.SSLContext], watch: Sequence[Path]) -> None:
        self._build = build
        self._watcher = FileWatcher(watch)
        self._ctx: ssl.SSLContext | None = None
        self._built_from: tuple[tuple[int, int, int] | None, ...] | None = None
        self._lock = threading.Lock()
        #: How many times a context was built (for tests and logs).
        self.builds = 0

    def get(self) -> ssl.SSLContext:
        """The current context, rebuilt first if a watched file changed."""
        with self._lock:
            stamp = self._watcher.stamp()
            if self._ctx is not None and stamp == self._built_from:
                return self._ctx
            try:
                ctx = self._build()
            except B2BSimError as exc:
                if self._ctx is None:
                    raise
                log.warning("keeping the previous TLS context: %s", exc)
                return self._ctx
            self._built_from = stamp
            self._ctx = ctx
            self.builds += 1
            return ctx


def reloading_server_context(
    cert: Path, key: Path, ca: Path, *, crl: Path | None = None
) -> ssl.SSLContext:
    """A server context that picks up a new CRL, certificate or key without a restart.

    Use it like :func:`server_context` (e.g. ``web.TCPSite(..., ssl_context=…)``).
    In every handshake its SNI callback swaps in a context from a
    :class:`ContextCache` watching ``cert``, ``key``, ``ca`` and ``crl``, so a
    revocation applies from the next handshake.  Established connections keep
    the context they were made with.
    """
    watched = [Path(cert), Path(key), Path(ca)] + ([Path(crl)] if crl is not None else [])
    cache = ContextCache(lambda: server_context(cert, key, ca, crl=crl), watched)
    outer = cache.get()  # fails now, not in a handshake, if the files are wrong

    def swap(ssl_object: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: Any) -> None:
        ssl_object.context = cache.get()

    outer.sni_callback = swap
    return outer


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
    return _certificate(der) if der else None


@functools.lru_cache(maxsize=256)  # the same few peers on every request
def _certificate(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)
