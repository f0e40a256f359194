"""Tests of simulator.lab.csr: the AF test CA certifies a supplier's own key from its CSR.

The CSRs here are built with ``cryptography``; the ones ``openssl req`` makes are
tested through the command (tests/simulator/commands/test_pki_csr.py).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from simulator.lab.csr import is_issued_from_csr, issue_from_csr, read_csr
from simulator.lab.pki import (
    SupplierIdentity,
    crl_path,
    init_pki,
    is_issued_by,
    issue_supplier_cert,
    load_certificate,
    load_crl,
    numbered_suppliers,
    previous_supplier_cert,
    revoke_certificate,
    rotate_supplier_cert,
)
from simulator.vocabulary.errors import (
    ConfigError,
    CsrError,
    CsrHashError,
    CsrKeyError,
    CsrSignatureError,
    PkiError,
)
from simulator.vocabulary.identifiers import org_number_from_index
from simulator.vocabulary.state import StateDir

ORG = org_number_from_index(5)

SupplierKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def make_csr(
    path: Path,
    key: SupplierKey,
    *,
    algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None = None,
    der: bool = False,
    subject: str = "x",
    sans: list[x509.GeneralName] | None = None,
) -> Path:
    """A CSR for ``key`` signed with ``algorithm`` (default SHA-256; None for Ed25519)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        csr = builder.sign(key, None)
    else:
        csr = builder.sign(key, algorithm or hashes.SHA256())
    encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
    path.write_bytes(csr.public_bytes(encoding))
    return path


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    """A PKI with one supplier made the usual way (the simulator holds its key)."""
    state = StateDir(tmp_path / "state")
    init_pki(state, numbered_suppliers(1))
    return state


def _der(tag: int, body: bytes) -> bytes:
    """One DER element: tag, definite length, body."""
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


#: AlgorithmIdentifier sha1WithRSAEncryption (1.2.840.113549.1.1.5) with NULL parameters.
_SHA1_WITH_RSA = _der(0x30, bytes.fromhex("06092a864886f70d0101050500"))


def sha1_csr(key: rsa.RSAPrivateKey) -> bytes:
    """A DER CSR for ``key`` whose signature is RSA PKCS#1 v1.5 over SHA-1."""
    tbs = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(key, hashes.SHA256())
        .tbs_certrequest_bytes
    )
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    return _der(0x30, tbs + _SHA1_WITH_RSA + _der(0x03, b"\x00" + signature))


def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _files(state: StateDir) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(state.root.rglob("*")) if p.is_file()}


class TestReadCsr:
    @pytest.mark.parametrize(
        "key",
        [
            pytest.param(p256, id="ec-p256"),
            pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="ec-p384"),
            pytest.param(lambda: rsa.generate_private_key(65537, 2048), id="rsa-2048"),
        ],
    )
    @pytest.mark.parametrize("der", [False, True], ids=["pem", "der"])
    def test_accepted_keys_in_pem_and_der(self, tmp_path: Path, key: object, der: bool) -> None:
        """P-256, P-384 and RSA 2048 CSRs, PEM or DER, are read with their key."""
        private = key()  # type: ignore[operator]
        csr = read_csr(make_csr(tmp_path / "r.csr", private, der=der))
        assert csr.public_key() == private.public_key()

    @pytest.mark.parametrize(
        "algorithm", [hashes.SHA384(), hashes.SHA512()], ids=["sha384", "sha512"]
    )
    def test_longer_hashes_are_accepted(
        self, tmp_path: Path, algorithm: hashes.SHA384 | hashes.SHA512
    ) -> None:
        csr = read_csr(make_csr(tmp_path / "r.csr", p256(), algorithm=algorithm))
        assert csr.signature_hash_algorithm is not None
        assert csr.signature_hash_algorithm.name == algorithm.name

    @pytest.mark.parametrize(
        "content",
        [b"", b"not a csr\n", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END"],
        ids=["empty", "text", "broken-pem"],
    )
    def test_not_a_csr(self, tmp_path: Path, content: bytes) -> None:
        path = tmp_path / "r.csr"
        path.write_bytes(content)
        with pytest.raises(CsrError, match="not a certificate signing request") as caught:
            read_csr(path)
        assert caught.value.code == "CSR_UNREADABLE"
        assert str(path) in str(caught.value)

    def test_a_certificate_is_not_a_csr(self, state: StateDir) -> None:
        with pytest.raises(CsrError, match="not a certificate signing request"):
            read_csr(state.ca_cert)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(CsrError, match="no CSR at"):
            read_csr(tmp_path / "absent.csr")

    def test_signature_that_does_not_verify(self, tmp_path: Path) -> None:
        """A CSR whose subject was changed after signing proves nothing: refused."""
        path = make_csr(tmp_path / "r.csr", p256(), der=True, subject="honest")
        path.write_bytes(path.read_bytes().replace(b"honest", b"forged"))
        with pytest.raises(CsrSignatureError, match="does not verify") as caught:
            read_csr(path)
        assert caught.value.code == "CSR_SIGNATURE_INVALID"

    def test_rsa_below_2048_bits(self, tmp_path: Path) -> None:
        path = make_csr(tmp_path / "r.csr", rsa.generate_private_key(65537, 1024))  # noqa: S505
        with pytest.raises(CsrKeyError, match="RSA key of 1024 bits") as caught:
            read_csr(path)
        assert caught.value.code == "CSR_KEY_REFUSED"

    @pytest.mark.parametrize("curve", [ec.SECP521R1(), ec.SECP256K1()], ids=["p521", "secp256k1"])
    def test_other_curves(self, tmp_path: Path, curve: ec.EllipticCurve) -> None:
        path = make_csr(tmp_path / "r.csr", ec.generate_private_key(curve))
        with pytest.raises(CsrKeyError, match=f"curve {curve.name}"):
            read_csr(path)

    def test_ed25519(self, tmp_path: Path) -> None:
        path = make_csr(tmp_path / "r.csr", ed25519.Ed25519PrivateKey.generate())
        with pytest.raises(CsrKeyError, match="Ed25519"):
            read_csr(path)

    def test_sha1(self, tmp_path: Path) -> None:
        """A CSR signed with SHA-1 (cryptography's builder refuses to make one: signed here
        with the key directly, like old tools do) is refused for its hash."""
        path = tmp_path / "r.csr"
        path.write_bytes(sha1_csr(rsa.generate_private_key(65537, 2048)))
        with pytest.raises(CsrHashError, match="SHA-1") as caught:
            read_csr(path)
        assert caught.value.code == "CSR_HASH_REFUSED"


class TestIssueFromCsr:
    def test_the_csrs_key_is_certified_as_a_supplier(self, state: StateDir, tmp_path: Path) -> None:
        """Same subject, SAN, key usage and EKUs as a supplier certificate the CA makes itself;
        nothing of the CSR's own subject or SAN is copied."""
        key = p256()
        csr = make_csr(tmp_path / "r.csr", key, subject="evil", sans=[x509.DNSName("evil.example")])
        done = issue_from_csr(state, csr, ORG)
        cert = load_certificate(done.issued.cert_path)
        assert cert.public_key() == key.public_key()
        assert is_issued_by(cert, load_certificate(state.ca_cert))
        assert done.key == "EC P-256"
        assert done.issued.key_path is None
        # The reference: a supplier certificate the CA makes with its own key, same org.
        other = StateDir(tmp_path / "other")
        init_pki(other, [])
        reference = load_certificate(
            issue_supplier_cert(other, SupplierIdentity(ORG, done.name)).cert_path
        )
        assert cert.subject == reference.subject
        for ext in (
            x509.SubjectAlternativeName,
            x509.KeyUsage,
            x509.ExtendedKeyUsage,
            x509.BasicConstraints,
        ):
            ours = cert.extensions.get_extension_for_class(ext)
            theirs = reference.extensions.get_extension_for_class(ext)
            assert (ours.value, ours.critical) == (theirs.value, theirs.critical)
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert "evil" not in cert.subject.rfc4514_string()
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "evil.example" not in san.get_values_for_type(x509.DNSName)
        assert f"urn:b2bsim:org:{ORG}" in san.get_values_for_type(x509.UniformResourceIdentifier)

    def test_rsa_3072(self, state: StateDir, tmp_path: Path) -> None:
        key = rsa.generate_private_key(65537, 3072)
        done = issue_from_csr(state, make_csr(tmp_path / "r.csr", key), ORG)
        assert done.key == "RSA 3072"
        assert load_certificate(done.issued.cert_path).public_key() == key.public_key()

    def test_out_gets_the_same_certificate(self, state: StateDir, tmp_path: Path) -> None:
        out = tmp_path / "supplier.pem"
        done = issue_from_csr(state, make_csr(tmp_path / "r.csr", p256()), ORG, out=out)
        assert out.read_bytes() == done.issued.cert_path.read_bytes()
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        assert not list(tmp_path.glob(".supplier.pem.*"))  # no temporary file left

    def test_hosts_and_name(self, state: StateDir, tmp_path: Path) -> None:
        done = issue_from_csr(
            state,
            make_csr(tmp_path / "r.csr", p256()),
            ORG,
            name="Exempel AB",
            hosts=["supplier.example"],
        )
        cert = load_certificate(done.issued.cert_path)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["supplier.example"]
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert [a.value for a in cns] == ["Exempel AB"]

    def test_replacing_a_certificate_the_simulator_made(
        self, state: StateDir, tmp_path: Path
    ) -> None:
        """The old pair goes to previous/; the state then holds no key of the supplier."""
        org = numbered_suppliers(1)[0].org_number
        old = state.supplier_cert(org).read_bytes()
        old_key = state.supplier_key(org).read_bytes()
        done = issue_from_csr(state, make_csr(tmp_path / "r.csr", p256()), org)
        prev_cert, prev_key = previous_supplier_cert(state, org)
        assert done.previous == prev_cert
        assert prev_cert.read_bytes() == old
        assert prev_key.read_bytes() == old_key
        assert not state.supplier_key(org).exists()
        assert is_issued_from_csr(state, org)

    def test_renewal_takes_a_new_csr(self, state: StateDir, tmp_path: Path) -> None:
        """rotate and a key-making issue refuse; a new CSR renews, the old one kept."""
        first = issue_from_csr(state, make_csr(tmp_path / "1.csr", p256()), ORG)
        first_pem = first.issued.cert_path.read_bytes()
        with pytest.raises(PkiError, match="needs a new CSR"):
            rotate_supplier_cert(state, ORG)
        key = rsa.generate_private_key(65537, 2048)
        second = issue_from_csr(state, make_csr(tmp_path / "2.csr", key), ORG)
        assert second.issued.sha256 != first.issued.sha256
        assert load_certificate(state.supplier_cert(ORG)).public_key() == key.public_key()
        prev_cert, prev_key = previous_supplier_cert(state, ORG)
        assert second.previous == prev_cert
        assert prev_cert.read_bytes() == first_pem
        assert not prev_key.exists()

    def test_revoke_needs_no_supplier_key(self, state: StateDir, tmp_path: Path) -> None:
        done = issue_from_csr(state, make_csr(tmp_path / "r.csr", p256()), ORG)
        revoked = revoke_certificate(state, ORG)
        assert revoked.sha256 == done.issued.sha256
        serial = load_certificate(done.issued.cert_path).serial_number
        assert serial in {r.serial_number for r in load_crl(crl_path(state))}

    def test_pki_init_keeps_a_certificate_issued_from_a_csr(
        self, state: StateDir, tmp_path: Path
    ) -> None:
        """Re-running init for that supplier does not replace its certificate with a new key."""
        done = issue_from_csr(state, make_csr(tmp_path / "r.csr", p256()), ORG)
        summary = init_pki(state, [SupplierIdentity(ORG, done.name)])
        assert summary.supplier(ORG).sha256 == done.issued.sha256
        assert not summary.supplier(ORG).created
        assert not state.supplier_key(ORG).exists()

    @pytest.mark.parametrize(
        ("org", "key", "error"),
        [
            ("5567891234", p256, ConfigError),  # fails the Luhn check
            (ORG, lambda: rsa.generate_private_key(65537, 1024), CsrKeyError),  # noqa: S505
        ],
        ids=["luhn", "weak-key"],
    )
    def test_nothing_is_written_on_a_refusal(
        self,
        state: StateDir,
        tmp_path: Path,
        org: str,
        key: object,
        error: type[Exception],
    ) -> None:
        csr = make_csr(tmp_path / "r.csr", key())  # type: ignore[operator]
        before = _files(state)
        with pytest.raises(error):
            issue_from_csr(state, csr, org, out=tmp_path / "out.pem")
        assert _files(state) == before
        assert not (tmp_path / "out.pem").exists()

    def test_without_a_ca(self, tmp_path: Path) -> None:
        csr = make_csr(tmp_path / "r.csr", p256())
        with pytest.raises(PkiError, match="test CA is incomplete"):
            issue_from_csr(StateDir(tmp_path / "empty"), csr, ORG)
