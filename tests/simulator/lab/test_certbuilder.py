"""Tests of simulator.lab.certbuilder: one builder for the test CA's and the kits' certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from simulator.lab.certbuilder import (
    BACKDATE,
    aware,
    build_certificate,
    host_names,
    key_usage,
    name,
    validity_window,
    write_atomic,
    write_pair,
)
from simulator.vocabulary.certs import load_certificate, load_private_key
from simulator.vocabulary.errors import ConfigError, PkiError

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
END = START + dt.timedelta(days=2)


E = TypeVar("E", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return build_certificate(
        name((NameOID.COMMON_NAME, "Test CA")),
        not_before=START,
        not_after=END,
        ca=True,
        path_length=0,
        usage=key_usage(cert_sign=True),
    )


class TestSelfSignedCa:
    def test_is_a_self_signed_p256_ca(
        self, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
    ) -> None:
        cert, key = ca
        assert cert.issuer == cert.subject
        assert cert.public_key() == key.public_key()
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == "secp256r1"
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
        cert.verify_directly_issued_by(cert)
        constraints = _ext(cert, x509.BasicConstraints)
        assert constraints.critical
        assert constraints.value.ca
        assert constraints.value.path_length == 0

    def test_key_usage_and_key_identifiers(
        self, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
    ) -> None:
        cert, _ = ca
        usage = _ext(cert, x509.KeyUsage)
        assert usage.critical
        assert usage.value.key_cert_sign
        assert usage.value.crl_sign
        assert not usage.value.digital_signature
        ski = _ext(cert, x509.SubjectKeyIdentifier).value
        assert _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest

    def test_validity_is_the_given_window(
        self, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
    ) -> None:
        cert, _ = ca
        assert cert.not_valid_before_utc == START
        assert cert.not_valid_after_utc == END


class TestLeaf:
    def test_issued_by_the_issuer_with_its_key_identifier(
        self, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
    ) -> None:
        leaf, key = build_certificate(
            name((NameOID.COMMON_NAME, "leaf")),
            not_before=START,
            not_after=END,
            issuer=ca,
            usage=key_usage(digital_signature=True),
            ekus=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            sans=host_names(["localhost", "127.0.0.1"]),
        )
        assert leaf.issuer == ca[0].subject
        assert leaf.public_key() == key.public_key()
        assert leaf.public_key() != ca[1].public_key()
        leaf.verify_directly_issued_by(ca[0])
        ca_ski = _ext(ca[0], x509.SubjectKeyIdentifier).value.digest
        assert _ext(leaf, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
        assert not _ext(leaf, x509.BasicConstraints).value.ca
        assert _ext(leaf, x509.KeyUsage).value.digital_signature
        assert not _ext(leaf, x509.KeyUsage).value.key_cert_sign
        assert list(_ext(leaf, x509.ExtendedKeyUsage).value) == [
            ExtendedKeyUsageOID.SERVER_AUTH,
            ExtendedKeyUsageOID.CLIENT_AUTH,
        ]
        san = _ext(leaf, x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["localhost"]
        assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]

    def test_empty_options_leave_their_extensions_out(
        self, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
    ) -> None:
        leaf, _ = build_certificate(
            name((NameOID.COMMON_NAME, "bare")), not_before=START, not_after=END, issuer=ca
        )
        for kind in (x509.KeyUsage, x509.ExtendedKeyUsage, x509.SubjectAlternativeName):
            with pytest.raises(x509.ExtensionNotFound):
                leaf.extensions.get_extension_for_class(kind)

    def test_each_certificate_gets_its_own_key_and_serial(
        self, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
    ) -> None:
        subject = name((NameOID.COMMON_NAME, "twice"))
        one, _ = build_certificate(subject, not_before=START, not_after=END, issuer=ca)
        two, _ = build_certificate(subject, not_before=START, not_after=END, issuer=ca)
        assert one.serial_number != two.serial_number
        assert one.public_key() != two.public_key()


class TestOptions:
    def test_validity_window_starts_backdated_in_whole_seconds(self) -> None:
        before = dt.datetime.now(dt.UTC).replace(microsecond=0)
        start, end = validity_window(dt.timedelta(days=3))
        after = dt.datetime.now(dt.UTC)
        assert start.microsecond == 0
        assert before - BACKDATE <= start <= after - BACKDATE
        assert end - start == BACKDATE + dt.timedelta(days=3)

    def test_aware_converts_to_utc_and_refuses_naive_times(self) -> None:
        stockholm = dt.timezone(dt.timedelta(hours=1))
        assert aware(dt.datetime(2026, 1, 1, 1, tzinfo=stockholm), "at") == START
        with pytest.raises(ConfigError, match=r"not_after .* has no time zone"):
            aware(dt.datetime(2026, 1, 1), "not_after")

    def test_host_names(self) -> None:
        assert host_names("localhost") == [x509.DNSName("localhost")]
        assert host_names(["::1"]) == [x509.IPAddress(ipaddress.ip_address("::1"))]
        for bad in ("", "under_score", "-leading.example"):
            with pytest.raises(ConfigError):
                host_names([bad])

    def test_name_keeps_the_order_of_its_attributes(self) -> None:
        built = name((NameOID.COMMON_NAME, "a"), (NameOID.ORGANIZATION_NAME, "b"))
        assert built.rfc4514_string() == "O=b,CN=a"


class TestFiles:
    def test_write_pair_modes_and_contents(
        self, tmp_path: Path, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
    ) -> None:
        cert, key = ca
        write_pair(tmp_path / "ca.pem", cert, tmp_path / "ca.key", key)
        assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "ca.pem").stat().st_mode) == 0o644
        assert load_certificate(tmp_path / "ca.pem") == cert
        assert load_private_key(tmp_path / "ca.key").public_key() == key.public_key()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key", "ca.pem"]

    def test_write_atomic_replaces_and_fails_as_a_pki_error(self, tmp_path: Path) -> None:
        target = tmp_path / "file"
        target.write_bytes(b"old")
        write_atomic(target, b"new", 0o600)
        assert target.read_bytes() == b"new"
        with pytest.raises(PkiError, match="cannot write"):
            write_atomic(tmp_path / "missing" / "file", b"x", 0o600)
