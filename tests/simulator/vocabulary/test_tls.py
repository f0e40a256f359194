"""Tests of simulator.vocabulary.tls: real mutual-TLS handshakes on 127.0.0.1 with aiohttp."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web

from simulator.lab.pki import (
    ICC,
    cert_sha256,
    crl_path,
    init_pki,
    is_icc_certificate,
    numbered_suppliers,
    org_number_of,
    revoke_certificate,
    rotate_supplier_cert,
)
from simulator.vocabulary.errors import CertificatePinError, ConfigError, PkiError
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import (
    ContextCache,
    FileWatcher,
    client_context,
    normalise_pin,
    peer_certificate,
    reloading_server_context,
    server_context,
)


@dataclass(frozen=True)
class Pkis:
    """Two independent test PKIs: ours, and a rogue one with another CA."""

    ours: StateDir
    rogue: StateDir
    orgs: list[str]


@pytest.fixture(scope="session")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> Pkis:
    """Our PKI with two suppliers and a rogue PKI, made once per session."""
    ours = StateDir(tmp_path_factory.mktemp("tls") / "ours")
    rogue = StateDir(tmp_path_factory.mktemp("tls") / "rogue")
    suppliers = numbered_suppliers(2)
    init_pki(ours, suppliers)
    init_pki(rogue, suppliers[:1])
    return Pkis(ours, rogue, [s.org_number for s in suppliers])


@dataclass
class Server:
    """A running aiohttp HTTPS server and what its handler saw."""

    url: str
    port: int
    calls: list[str | None] = field(default_factory=list)


Serve = Callable[[ssl.SSLContext], Awaitable[Server]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start aiohttp servers on 127.0.0.1 with a given context; stop them afterwards."""
    runners: list[web.AppRunner] = []

    async def start(ctx: ssl.SSLContext) -> Server:
        server = Server(url="", port=0)

        async def handler(request: web.Request) -> web.Response:
            cert = peer_certificate(request)
            server.calls.append(None if cert is None else cert_sha256(cert))
            icc = cert is not None and is_icc_certificate(cert)
            return web.Response(text=f"icc={icc} org={cert and org_number_of(cert)}")

        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        server.port = runner.addresses[0][1]
        server.url = f"https://127.0.0.1:{server.port}/"
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


def _supplier_server(pkis: Pkis, index: int = 0) -> ssl.SSLContext:
    org = pkis.orgs[index]
    s = pkis.ours
    return server_context(s.supplier_cert(org), s.supplier_key(org), s.ca_cert)


def _icc_client(state: StateDir, ca: Path, pin: str | None = None) -> ssl.SSLContext:
    return client_context(state.icc_cert, state.icc_key, ca, pin_sha256=pin)


async def _get(url: str, ctx: ssl.SSLContext, server_hostname: str | None = None) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=ctx, server_hostname=server_hostname) as resp,
    ):
        assert resp.status == 200
        return await resp.text()


def _legacy_tls11(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """Allow TLS 1.0-1.1 only (deprecated on purpose, so it warns)."""
    with pytest.warns(DeprecationWarning, match="TLSv1 is deprecated"):
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    with pytest.warns(DeprecationWarning, match="TLSv1_1 is deprecated"):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


class TestMutualTls:
    """Handshakes between server_context and client_context."""

    async def test_pinned_handshake_succeeds_and_handler_sees_icc(
        self, pkis: Pkis, serve: Serve
    ) -> None:
        """With the right pin the request goes through and the server sees the ICC's cert."""
        server = await serve(_supplier_server(pkis))
        pin = cert_sha256(pkis.ours.supplier_cert(pkis.orgs[0]))
        body = await _get(server.url, _icc_client(pkis.ours, pkis.ours.ca_cert, pin.upper()))
        assert body == "icc=True org=2021002114"
        assert server.calls == [cert_sha256(pkis.ours.icc_cert)]

    async def test_wrong_pin_fails_before_the_handler(self, pkis: Pkis, serve: Serve) -> None:
        """A pin of another supplier's certificate (same CA) fails the handshake."""
        server = await serve(_supplier_server(pkis, 0))
        other = cert_sha256(pkis.ours.supplier_cert(pkis.orgs[1]))
        ctx = _icc_client(pkis.ours, pkis.ours.ca_cert, other)
        with pytest.raises(aiohttp.ClientConnectorCertificateError) as caught:
            await _get(server.url, ctx)
        error = caught.value.certificate_error
        assert isinstance(error, CertificatePinError)
        assert error.expected == other
        assert error.presented == cert_sha256(pkis.ours.supplier_cert(pkis.orgs[0]))
        assert other in str(error)
        assert error.presented in str(error)
        assert error.code == "CERT_PIN_MISMATCH"
        assert server.calls == []

    async def test_wrong_pin_fails_blocking_sockets_too(self, pkis: Pkis, serve: Serve) -> None:
        """wrap_socket on a pinned context also refuses the wrong server."""
        server = await serve(_supplier_server(pkis, 0))
        other = cert_sha256(pkis.ours.supplier_cert(pkis.orgs[1]))
        ctx = _icc_client(pkis.ours, pkis.ours.ca_cert, other)

        def connect() -> None:
            with (
                socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
                ctx.wrap_socket(sock, server_hostname="127.0.0.1"),
            ):
                pass

        with pytest.raises(CertificatePinError):
            await asyncio.to_thread(connect)
        assert server.calls == []

    async def test_hostname_is_verified(self, pkis: Pkis, serve: Serve) -> None:
        """A host name not in the server certificate's SAN fails verification."""
        server = await serve(_supplier_server(pkis))
        ctx = _icc_client(pkis.ours, pkis.ours.ca_cert)
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _get(server.url, ctx, server_hostname="other.example")
        assert server.calls == []

    async def test_server_from_another_ca_is_refused(self, pkis: Pkis, serve: Serve) -> None:
        """The client refuses a server whose certificate does not chain to our CA."""
        rogue = pkis.rogue
        org = pkis.orgs[0]
        ctx = server_context(rogue.supplier_cert(org), rogue.supplier_key(org), pkis.ours.ca_cert)
        server = await serve(ctx)
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _get(server.url, _icc_client(pkis.ours, pkis.ours.ca_cert))
        assert server.calls == []

    async def test_client_without_certificate_is_refused(self, pkis: Pkis, serve: Serve) -> None:
        """The server refuses a client that presents no certificate."""
        server = await serve(_supplier_server(pkis))
        ctx = ssl.create_default_context(cafile=pkis.ours.ca_cert)
        with pytest.raises(aiohttp.ClientError):
            await _get(server.url, ctx)
        assert server.calls == []

    async def test_client_certificate_from_another_ca_is_refused(
        self, pkis: Pkis, serve: Serve
    ) -> None:
        """The server refuses a client certificate issued by another CA."""
        server = await serve(_supplier_server(pkis))
        ctx = _icc_client(pkis.rogue, pkis.ours.ca_cert)
        with pytest.raises(aiohttp.ClientError):
            await _get(server.url, ctx)
        assert server.calls == []

    async def test_server_refuses_tls_1_1(self, pkis: Pkis, serve: Serve) -> None:
        """A TLS 1.1 client is refused by our server but accepted by a permissive one."""
        ours = await serve(_supplier_server(pkis))
        org = pkis.orgs[0]
        lax = _legacy_tls11(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
        lax.load_cert_chain(pkis.ours.supplier_cert(org), pkis.ours.supplier_key(org))
        lax.load_verify_locations(pkis.ours.ca_cert)
        lax.verify_mode = ssl.CERT_REQUIRED
        permissive = await serve(lax)

        client = _legacy_tls11(_icc_client(pkis.ours, pkis.ours.ca_cert))
        assert await _get(permissive.url, client) == "icc=True org=2021002114"
        with pytest.raises(aiohttp.ClientError):
            await _get(ours.url, client)
        assert ours.calls == []


class TestPinError:
    def test_reads_as_one_sentence(self) -> None:
        """str() of a pin mismatch is its message and hint, not the repr of a tuple."""
        error = CertificatePinError("a" * 64, "b" * 64)
        assert str(error) == f"{error.message} — {error.hint}"
        assert str(error).startswith("server certificate SHA-256 " + "b" * 64)
        assert error.one_line() == f"error [CERT_PIN_MISMATCH]: {error.message} — {error.hint}"


class TestContexts:
    """Context settings and bad input."""

    def test_settings(self, pkis: Pkis) -> None:
        """Both sides require TLS 1.2+ and verify the peer; the client checks host names."""
        server = _supplier_server(pkis)
        client = _icc_client(pkis.ours, pkis.ours.ca_cert)
        for ctx in (server, client):
            assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
            assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert client.check_hostname

    def test_missing_files_raise_pki_error(self, pkis: Pkis, tmp_path: Path) -> None:
        """A missing certificate, key or CA file raises PkiError."""
        s = pkis.ours
        with pytest.raises(PkiError, match="b2bsim pki init"):
            client_context(tmp_path / "none.pem", s.icc_key, s.ca_cert)
        with pytest.raises(PkiError):
            server_context(s.icc_cert, s.icc_key, tmp_path / "none.pem")

    def test_mismatched_key_raises_pki_error(self, pkis: Pkis) -> None:
        """A key that does not belong to the certificate raises PkiError, not SSLError."""
        s = pkis.ours
        with pytest.raises(PkiError, match="cannot use"):
            server_context(s.icc_cert, s.ca_key, s.ca_cert)

    def test_pin_format(self) -> None:
        """Pins may use colons and upper case; anything but 64 hex digits is a ConfigError."""
        pin = "AB:" * 31 + "CD"
        assert normalise_pin(pin) == ("ab" * 31 + "cd")
        with pytest.raises(ConfigError):
            normalise_pin("abc")

    def test_peer_certificate_without_tls(self) -> None:
        """peer_certificate is None without a transport or without TLS."""
        assert peer_certificate(SimpleNamespace(transport=None)) is None
        plain = SimpleNamespace(get_extra_info=lambda name: None)
        assert peer_certificate(SimpleNamespace(transport=plain)) is None
        assert peer_certificate(plain) is None


@pytest.fixture
def fresh(tmp_path: Path) -> Pkis:
    """A PKI of this test's own (with its CRL), for tests that revoke or rotate."""
    ours = StateDir(tmp_path / "ours")
    suppliers = numbered_suppliers(2)
    init_pki(ours, suppliers)
    return Pkis(ours, ours, [s.org_number for s in suppliers])


def _crl_server(pkis: Pkis, *, reloading: bool = False) -> ssl.SSLContext:
    s, org = pkis.ours, pkis.orgs[0]
    make = reloading_server_context if reloading else server_context
    return make(s.supplier_cert(org), s.supplier_key(org), s.ca_cert, crl=crl_path(s))


def _crl_client(pkis: Pkis) -> ssl.SSLContext:
    s = pkis.ours
    return client_context(s.icc_cert, s.icc_key, s.ca_cert, crl=crl_path(s))


class TestRevocation:
    """CRL checks in real handshakes, on both sides, and revocations that come later."""

    async def test_unrevoked_peers_pass_with_crl_on_both_sides(
        self, fresh: Pkis, serve: Serve
    ) -> None:
        """With CRL checking on both sides and nothing revoked, the request goes through."""
        server = await serve(_crl_server(fresh))
        assert await _get(server.url, _crl_client(fresh)) == "icc=True org=2021002114"

    async def test_revoked_server_certificate_is_refused_by_the_client(
        self, fresh: Pkis, serve: Serve
    ) -> None:
        """The ICC refuses a supplier whose certificate is on the CRL, before any request."""
        server = await serve(_supplier_server(fresh))
        revoke_certificate(fresh.ours, fresh.orgs[0])
        with pytest.raises(aiohttp.ClientConnectorCertificateError) as caught:
            await _get(server.url, _crl_client(fresh))
        assert "revoked" in str(caught.value.certificate_error)
        assert server.calls == []

    async def test_revoked_client_certificate_is_refused_by_the_server(
        self, fresh: Pkis, serve: Serve
    ) -> None:
        """The stub's side refuses an ICC certificate that is on the CRL."""
        revoke_certificate(fresh.ours, ICC)
        server = await serve(_crl_server(fresh))
        with pytest.raises(aiohttp.ClientError):
            await _get(server.url, _icc_client(fresh.ours, fresh.ours.ca_cert))
        assert server.calls == []

    async def test_client_without_crl_check_still_connects_to_revoked_server(
        self, fresh: Pkis, serve: Serve
    ) -> None:
        """The refusal comes from the CRL check: without crl= the same handshake passes."""
        server = await serve(_supplier_server(fresh))
        revoke_certificate(fresh.ours, fresh.orgs[0])
        assert await _get(server.url, _icc_client(fresh.ours, fresh.ours.ca_cert))

    async def test_later_revocation_applies_to_a_running_server(
        self, fresh: Pkis, serve: Serve
    ) -> None:
        """reloading_server_context sees a CRL published after the server started."""
        server = await serve(_crl_server(fresh, reloading=True))
        client = _icc_client(fresh.ours, fresh.ours.ca_cert)
        assert await _get(server.url, client)
        revoke_certificate(fresh.ours, ICC)
        with pytest.raises(aiohttp.ClientError):
            await _get(server.url, client)
        assert len(server.calls) == 1

    async def test_later_revocation_applies_to_a_client_cache(
        self, fresh: Pkis, serve: Serve
    ) -> None:
        """A ContextCache rebuilds the client context when the CRL changes, and only then."""
        server = await serve(_supplier_server(fresh))
        cache = ContextCache(lambda: _crl_client(fresh), [crl_path(fresh.ours)])
        assert await _get(server.url, cache.get())
        assert cache.get() is cache.get()
        assert cache.builds == 1
        revoke_certificate(fresh.ours, fresh.orgs[0])
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _get(server.url, cache.get())
        assert cache.builds == 2
        assert len(server.calls) == 1

    async def test_rotated_certificate_is_served_without_restart(
        self, fresh: Pkis, serve: Serve
    ) -> None:
        """After rotate_supplier_cert, a reloading server presents the new certificate."""
        server = await serve(_crl_server(fresh, reloading=True))
        old = cert_sha256(fresh.ours.supplier_cert(fresh.orgs[0]))
        new = rotate_supplier_cert(fresh.ours, fresh.orgs[0]).sha256
        assert new != old
        assert await _get(server.url, _icc_client(fresh.ours, fresh.ours.ca_cert, new))
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _get(server.url, _icc_client(fresh.ours, fresh.ours.ca_cert, old))


class TestContextCache:
    """ContextCache and the crl= option on bad input."""

    def test_missing_crl_is_a_pki_error(self, pkis: Pkis, tmp_path: Path) -> None:
        """crl= naming no file raises PkiError saying how to publish one."""
        s = pkis.ours
        with pytest.raises(PkiError, match="pki init"):
            client_context(s.icc_cert, s.icc_key, s.ca_cert, crl=tmp_path / "none.pem")
        with pytest.raises(PkiError):
            server_context(s.icc_cert, s.icc_key, s.ca_cert, crl=tmp_path / "none.pem")

    def test_garbage_crl_is_a_pki_error(self, pkis: Pkis, tmp_path: Path) -> None:
        """A file that is not a PEM CRL raises PkiError, not SSLError."""
        s = pkis.ours
        bad = tmp_path / "bad.pem"
        bad.write_text("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
        with pytest.raises(PkiError, match="as CRL"):
            client_context(s.icc_cert, s.icc_key, s.ca_cert, crl=bad)

    def test_crl_flag_is_set(self, fresh: Pkis) -> None:
        """crl= turns on leaf CRL checking on both sides."""
        for ctx in (_crl_server(fresh), _crl_client(fresh)):
            assert ctx.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF

    def test_failed_rebuild_keeps_the_previous_context(self, tmp_path: Path) -> None:
        """A rebuild that fails keeps the last good context; the first failure is raised."""
        watched = tmp_path / "crl.pem"
        watched.write_text("one")
        results: list[ssl.SSLContext | PkiError] = [ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)]

        def build() -> ssl.SSLContext:
            result = results[-1]
            if isinstance(result, PkiError):
                raise result
            return result

        cache = ContextCache(build, [watched])
        first = cache.get()
        results.append(PkiError("half written"))
        watched.write_text("two, longer")
        assert cache.get() is first
        failing = ContextCache(build, [watched])
        with pytest.raises(PkiError, match="half written"):
            failing.get()

    def test_file_watcher_sees_replacement_and_removal(self, tmp_path: Path) -> None:
        """FileWatcher reports a first look, a replaced file and a removed file."""
        path = tmp_path / "f"
        path.write_text("a")
        watcher = FileWatcher([path])
        assert watcher.changed()
        assert not watcher.changed()
        other = tmp_path / "g"
        other.write_text("b")
        other.replace(path)
        assert watcher.changed()
        path.unlink()
        assert watcher.changed()
        assert watcher.stamp() == (None,)


class TestPushClientRevocation:
    """The ICC's PushClient (icc_bridge.delivery) uses a ContextCache with the CRL."""

    async def test_revoked_supplier_is_refused_without_restart(
        self, fresh: Pkis, serve: Serve
    ) -> None:
        """A supplier revoked between two pushes gets nothing on the second: the handshake
        fails, and the ICC retries (then dead-letters) instead of sending."""
        from icc_bridge.delivery import Outcome, PushClient
        from simulator.vocabulary.registry import SupplierEntry

        server = await serve(_supplier_server(fresh))
        s, org = fresh.ours, fresh.orgs[0]
        supplier = SupplierEntry(org, "A", server.url, cert_sha256(s.supplier_cert(org)))
        client = PushClient(
            ca_cert=s.ca_cert, icc_cert=s.icc_cert, icc_key=s.icc_key, crl=crl_path(s)
        )
        await client.start()
        try:
            first = await client.push(supplier, b"<x/>")
            revoke_certificate(s, org)
            second = await client.push(supplier, b"<x/>")
        finally:
            await client.close()
        assert first.status == 405  # the test server only answers GET: it was reached
        assert second.outcome is Outcome.RETRY  # never DELIVERED: see docs/icc.md
        assert second.status is None  # no HTTP answer: the TLS handshake failed
        assert "revoked" in second.detail
        assert len(server.calls) == 0
