"""The evidence certificate: certified by the AF test CA, made once, for signing evidence only."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulator.lab.pki import init_pki, is_issued_by
from simulator.lab.pki_evidence import DOCUMENT_SIGNING, evidence_paths, evidence_signer
from simulator.vocabulary.state import StateDir


def test_made_on_first_use_then_kept(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    init_pki(state, [])
    cert_path, key_path = evidence_paths(state)
    assert not cert_path.exists()
    first = evidence_signer(state)
    assert cert_path.is_file()
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert is_issued_by(first.cert, first.ca)
    again = evidence_signer(state)
    assert again.cert == first.cert


def test_its_usages_set_it_apart_from_tls_certificates(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    init_pki(state, [])
    cert = evidence_signer(state).cert
    ekus = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert ekus == [DOCUMENT_SIGNING]
    assert ExtendedKeyUsageOID.CLIENT_AUTH not in ekus
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert usage.value.content_commitment
    assert not usage.value.key_cert_sign


def test_a_new_ca_gets_a_new_evidence_certificate(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    init_pki(state, [])
    old = evidence_signer(state)
    init_pki(state, [], force=True)
    new = evidence_signer(state)
    assert new.cert != old.cert
    assert is_issued_by(new.cert, new.ca)
