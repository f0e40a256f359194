"""Tests of simulator.kits.conformance_certs: the wrong certificates of a conformance run."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from simulator.kits.conformance_certs import Credential, make_material
from simulator.lab.pki import (
    ICC_COMMON_NAME,
    init_pki,
    is_icc_certificate,
    is_issued_by,
    load_certificate,
    load_private_key,
    numbered_suppliers,
)
from simulator.vocabulary.state import StateDir


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    state = StateDir(tmp_path / "state")
    init_pki(state, numbered_suppliers(1))
    return state


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "material"
    folder.mkdir(mode=0o700)
    return folder


def _client_cert(credential: Credential) -> x509.Certificate:
    cert = load_certificate(credential.cert)
    assert load_private_key(credential.key).public_key() == cert.public_key()
    assert stat.S_IMODE(credential.key.stat().st_mode) == 0o600
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    return cert


def test_with_the_ca_key(state: StateDir, out: Path) -> None:
    material = make_material(state, out)
    ca = load_certificate(state.ca_cert)
    assert material.af_non_icc_client is not None
    af_client = _client_cert(material.af_non_icc_client)
    assert is_issued_by(af_client, ca)
    assert not is_icc_certificate(af_client)
    assert material.af_non_icc_client.cert.parent == out

    foreign = _client_cert(material.foreign_client)
    cns = foreign.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [c.value for c in cns] == [ICC_COMMON_NAME]
    assert is_icc_certificate(foreign)  # named like the ICC ...
    assert not is_issued_by(foreign, ca)  # ... but from another CA
    foreign_ca = load_certificate(out / "foreign-ca.pem")
    assert is_issued_by(foreign, foreign_ca)
    assert foreign_ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    assert material.rogue_signer == material.af_non_icc_client
    assert material.notes == ()


def test_without_the_ca_key_a_supplier_certificate_stands_in(state: StateDir, out: Path) -> None:
    state.ca_key.unlink()
    material = make_material(state, out)
    org = numbered_suppliers(1)[0].org_number
    assert material.af_non_icc_client is not None
    assert material.af_non_icc_client.cert == state.supplier_cert(org)
    assert material.af_non_icc_client.key == state.supplier_key(org)
    assert material.rogue_signer == material.af_non_icc_client
    assert material.notes == ()


def test_without_any_af_certificate_the_foreign_one_signs(tmp_path: Path, out: Path) -> None:
    empty = StateDir(tmp_path / "empty")
    material = make_material(empty, out)
    assert material.af_non_icc_client is None
    assert material.rogue_signer == material.foreign_client
    assert len(material.notes) == 2
    assert "the AF-CA wrong-client case cannot run" in material.notes[0]
    assert material.notes[1] == "the non-ICC signer is a certificate from another CA"
