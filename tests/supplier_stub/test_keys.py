"""Tests of supplier_stub.keys: the stub serving a supplier with its own key (--cert/--key).

The supplier's certificate is issued from its CSR (simulator.lab.csr), so the
state holds no key of it; the ICC's client context pins the registered
fingerprint, as the ICC does.
"""

from __future__ import annotations

import asyncio
import socket
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from simulator.lab.csr import issue_from_csr
from simulator.lab.pki import cert_sha256, init_pki, numbered_suppliers
from simulator.vocabulary.errors import CertificatePinError, PkiError
from simulator.vocabulary.identifiers import org_number_from_index
from simulator.vocabulary.registry import Registry, SupplierEntry
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import client_context
from supplier_stub.app import StubConfig, SupplierStub
from supplier_stub.keys import OwnKeyPair, server_tls, supplier_key_pair

ORG = org_number_from_index(9)


@dataclass(frozen=True)
class Issued:
    state: StateDir
    own: OwnKeyPair
    entry: SupplierEntry


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def issued(tmp_path: Path) -> Issued:
    """AF's state with one ordinary supplier, and supplier ORG certified from its RSA CSR."""
    state = StateDir(tmp_path / "af")
    init_pki(state, numbered_suppliers(1))
    key = rsa.generate_private_key(65537, 2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(key, hashes.SHA256())
    )
    supplier = tmp_path / "supplier"
    supplier.mkdir()
    (supplier / "r.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    key_path = supplier / "key.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    done = issue_from_csr(state, supplier / "r.csr", ORG, out=supplier / "cert.pem")
    entry = SupplierEntry(
        org_number=ORG,
        name=done.name,
        url=f"https://127.0.0.1:{_free_port()}/b2b/envelopes",
        cert_sha256=done.issued.sha256,
    )
    Registry([entry]).save(state.registry)
    return Issued(state, OwnKeyPair(supplier / "cert.pem", key_path), entry)


class TestKeyPair:
    def test_own_files_for_their_supplier(self, issued: Issued) -> None:
        assert issued.own.org_number == ORG
        assert supplier_key_pair(issued.state, ORG, issued.own) == (issued.own.cert, issued.own.key)

    def test_the_states_files_for_another_supplier(self, issued: Issued) -> None:
        other = numbered_suppliers(1)[0].org_number
        assert supplier_key_pair(issued.state, other, issued.own) == (
            issued.state.supplier_cert(other),
            issued.state.supplier_key(other),
        )

    def test_a_supplier_whose_key_the_state_does_not_hold(self, issued: Issued) -> None:
        """Without its own files, a supplier issued from its CSR cannot be served: say how."""
        with pytest.raises(PkiError, match=r"issued from its CSR.*--cert CERT\.pem --key KEY\.pem"):
            supplier_key_pair(issued.state, ORG, None)

    def test_a_certificate_that_is_not_the_registered_one(
        self, issued: Issued, tmp_path: Path
    ) -> None:
        moved = SupplierEntry(org_number=ORG, name="x", url=issued.entry.url, cert_sha256="ab" * 32)
        with pytest.raises(PkiError, match="not the one registered"):
            server_tls(moved, issued.state, issued.own)


async def test_the_stub_serves_the_suppliers_own_key_and_the_pin_holds(issued: Issued) -> None:
    """The ICC, pinning the registered fingerprint, reaches the stub served with the
    supplier's own RSA key; pinning anything else fails inside the handshake."""
    state = issued.state
    config = StubConfig(
        registry=state.registry,
        state=state,
        db=state.root / "stub.sqlite",
        org_numbers=[ORG],
        own_keys=issued.own,
    )
    stub = SupplierStub(config)
    urls = await stub.start()
    try:
        assert urls == [issued.entry.url]
        health = issued.entry.url.replace("/b2b/envelopes", "/health")
        pinned = client_context(
            state.icc_cert, state.icc_key, state.ca_cert, pin_sha256=issued.entry.cert_sha256
        )
        async with aiohttp.ClientSession() as session, session.get(health, ssl=pinned) as got:
            assert got.status == 200
        port = urlsplit(issued.entry.url).port
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=pinned)
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(True)
        finally:
            writer.close()
        served = x509.load_der_x509_certificate(der)
        assert cert_sha256(served) == issued.entry.cert_sha256
        assert isinstance(served.public_key(), rsa.RSAPublicKey)
        wrong = client_context(state.icc_cert, state.icc_key, state.ca_cert, pin_sha256="cd" * 32)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError) as caught:
                await session.get(health, ssl=wrong)
        assert isinstance(caught.value.certificate_error, CertificatePinError)
    finally:
        await stub.stop()
