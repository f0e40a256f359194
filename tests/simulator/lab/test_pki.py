"""Tests of simulator.lab.pki (the test CA) and the `b2bsim pki` command."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from simulator import cli
from simulator.lab.pki import (
    CRL_VALIDITY,
    CrlFile,
    PkiSummary,
    SupplierIdentity,
    cert_sha256,
    crl_path,
    init_pki,
    is_icc_certificate,
    is_issued_by,
    issue_icc_cert,
    issue_supplier_cert,
    load_certificate,
    load_crl,
    load_private_key,
    numbered_suppliers,
    org_number_of,
    pki_summary,
    previous_supplier_cert,
    publish_crl,
    require_pki,
    revoke_certificate,
    rotate_supplier_cert,
    supplier_identity,
)
from simulator.vocabulary.errors import ConfigError, PkiError
from simulator.vocabulary.identifiers import org_number_from_index
from simulator.vocabulary.registry import Registry, SupplierEntry, update_registry_cert
from simulator.vocabulary.state import StateDir


@dataclass(frozen=True)
class Pki:
    """A PKI made once per session, with its summary."""

    state: StateDir
    summary: PkiSummary
    suppliers: list[SupplierIdentity]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test PKI with two suppliers, shared by the read-only tests."""
    state = StateDir(tmp_path_factory.mktemp("pki") / "state")
    suppliers = numbered_suppliers(2)
    return Pki(state, init_pki(state, suppliers), suppliers)


def _subject(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def _eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _store(pki: Pki) -> Store:
    return Store([load_certificate(pki.state.ca_cert)])


def _plain_cert(subject: x509.Name) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


class TestCertificates:
    """The certificates init_pki writes."""

    def test_ca_is_a_self_signed_p256_ca(self, pki: Pki) -> None:
        """The CA names AF's test CA, is a CA that signs certificates and CRLs, on P-256."""
        ca = load_certificate(pki.state.ca_cert)
        assert _subject(ca, NameOID.COMMON_NAME) == ["AF test CA"]
        assert _subject(ca, NameOID.ORGANIZATION_NAME) == ["Arbetsförmedlingen (test)"]
        assert _subject(ca, NameOID.COUNTRY_NAME) == ["SE"]
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical
        assert bc.value.ca
        ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.key_cert_sign
        assert ku.crl_sign
        assert not ku.digital_signature
        assert is_issued_by(ca, ca)
        key = ca.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.curve.name == "secp256r1"

    def test_icc_certificate_fields(self, pki: Pki) -> None:
        """The ICC's certificate names AF, is for client and server auth and signing."""
        icc = load_certificate(pki.state.icc_cert)
        assert _subject(icc, NameOID.COMMON_NAME) == ["ICC"]
        assert _subject(icc, NameOID.ORGANIZATION_NAME) == ["Arbetsförmedlingen (test)"]
        assert _subject(icc, NameOID.ORGANIZATION_IDENTIFIER) == ["NTRSE-2021002114"]
        assert _eku(icc) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
        assert icc.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
        assert _san(icc).get_values_for_type(x509.DNSName) == ["localhost"]
        assert _san(icc).get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
        assert is_icc_certificate(icc)
        assert org_number_of(icc) == "2021002114"

    def test_supplier_certificate_is_bound_to_org_number(self, pki: Pki) -> None:
        """A supplier's certificate carries its org number in subject and SAN; server and client."""
        for supplier in pki.suppliers:
            cert = load_certificate(pki.state.supplier_cert(supplier.org_number))
            org = supplier.org_number
            assert _subject(cert, NameOID.COMMON_NAME) == [supplier.name]
            assert _subject(cert, NameOID.ORGANIZATION_NAME) == [supplier.name]
            assert _subject(cert, NameOID.SERIAL_NUMBER) == [org]
            assert _subject(cert, NameOID.ORGANIZATION_IDENTIFIER) == [f"NTRSE-{org}"]
            san = _san(cert)
            assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
                f"urn:b2bsim:org:{org}"
            ]
            assert san.get_values_for_type(x509.DNSName) == ["localhost"]
            assert _eku(cert) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
            assert org_number_of(cert) == org
            assert not is_icc_certificate(cert)

    def test_leaf_certificates_verify_against_the_ca(self, pki: Pki) -> None:
        """Suppliers and the ICC verify as TLS servers for 127.0.0.1, the ICC also as client."""
        verifier = (
            PolicyBuilder()
            .store(_store(pki))
            .build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        )
        for path in [pki.state.icc_cert] + [
            pki.state.supplier_cert(s.org_number) for s in pki.suppliers
        ]:
            chain = verifier.verify(load_certificate(path), [])
            assert chain[-1] == load_certificate(pki.state.ca_cert)
        client = PolicyBuilder().store(_store(pki)).build_client_verifier()
        client.verify(load_certificate(pki.state.icc_cert), [])

    def test_supplier_certificate_is_a_client_certificate_but_not_the_iccs(self, pki: Pki) -> None:
        """A supplier's certificate verifies as a TLS client (to pull) but is not the ICC's."""
        client = PolicyBuilder().store(_store(pki)).build_client_verifier()
        org = pki.suppliers[0].org_number
        cert = load_certificate(pki.state.supplier_cert(org))
        client.verify(cert, [])
        assert not is_icc_certificate(cert)

    def test_keys_match_their_certificates(self, pki: Pki) -> None:
        """Each key file holds the private key of the certificate beside it."""
        pairs = [(pki.state.ca_cert, pki.state.ca_key), (pki.state.icc_cert, pki.state.icc_key)]
        pairs += [
            (pki.state.supplier_cert(s.org_number), pki.state.supplier_key(s.org_number))
            for s in pki.suppliers
        ]
        for cert_path, key_path in pairs:
            key = load_private_key(key_path)
            assert key.public_key() == load_certificate(cert_path).public_key()


class TestFiles:
    """Permissions and the summary."""

    def test_key_files_are_0600_and_dirs_0700(self, pki: Pki) -> None:
        """Private keys are readable by the owner only; the PKI directories too."""
        keys = [pki.state.ca_key, pki.state.icc_key] + [
            pki.state.supplier_key(s.org_number) for s in pki.suppliers
        ]
        for key in keys:
            assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        for directory in (pki.state.root, pki.state.pki, pki.state.supplier_cert("x").parent):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        assert stat.S_IMODE(pki.state.ca_cert.stat().st_mode) == 0o644

    def test_no_temporary_files_are_left(self, pki: Pki) -> None:
        """Atomic writes leave only the final files behind."""
        names = {p.name for p in pki.state.pki.rglob("*")}
        assert not [n for n in names if n.endswith(".tmp")]

    def test_summary_lists_paths_and_der_fingerprints(self, pki: Pki) -> None:
        """The summary gives every certificate's path and the SHA-256 of its DER."""
        summary = pki.summary
        assert [c.role for c in summary.certificates] == ["ca", "icc", "supplier", "supplier"]
        for info in summary.certificates:
            der = load_certificate(info.path).public_bytes(serialization.Encoding.DER)
            assert info.sha256 == hashlib.sha256(der).hexdigest()
            assert info.sha256 == cert_sha256(info.path)
            assert info.created
        org = pki.suppliers[1].org_number
        assert summary.supplier(org).path == pki.state.supplier_cert(org)
        assert "PRIVATE" not in repr(summary)

    def test_pki_summary_reads_back_the_same(self, pki: Pki) -> None:
        """pki_summary describes the PKI on disk like init_pki did."""
        again = pki_summary(pki.state)
        assert [(c.path, c.sha256) for c in again.certificates] == [
            (c.path, c.sha256) for c in pki.summary.certificates
        ]
        assert not any(c.created for c in again.certificates)


class TestReinit:
    """Running init again."""

    def test_second_init_keeps_ca_and_certs_and_adds_suppliers(self, tmp_path: Path) -> None:
        """Re-running keeps the CA, ICC and existing suppliers, and issues only new ones."""
        state = StateDir(tmp_path / "s")
        first = init_pki(state, numbered_suppliers(1))
        second = init_pki(state, numbered_suppliers(2))
        assert second.ca.sha256 == first.ca.sha256
        assert not second.ca.created
        assert second.icc.sha256 == first.icc.sha256
        assert not second.icc.created
        old, new = second.suppliers
        assert old.sha256 == first.suppliers[0].sha256
        assert not old.created
        assert new.created
        assert is_issued_by(load_certificate(new.path), load_certificate(state.ca_cert))

    def test_force_replaces_everything(self, tmp_path: Path) -> None:
        """--force makes a new CA and reissues every certificate from it."""
        state = StateDir(tmp_path / "s")
        first = init_pki(state, numbered_suppliers(1))
        second = init_pki(state, numbered_suppliers(1), force=True)
        assert {c.sha256 for c in first.certificates}.isdisjoint(
            c.sha256 for c in second.certificates
        )
        assert all(c.created for c in second.certificates)

    def test_incomplete_ca_is_refused_without_force(self, tmp_path: Path) -> None:
        """A CA certificate without its key raises PkiError pointing at pki init."""
        state = StateDir(tmp_path / "s")
        init_pki(state, [])
        state.ca_key.unlink()
        with pytest.raises(PkiError, match="b2bsim pki init"):
            init_pki(state, [])
        assert init_pki(state, [], force=True).ca.created


class TestIssueSupplierCert:
    """issue_supplier_cert: rotation and scripted validity."""

    def test_rotation_replaces_the_certificate(self, tmp_path: Path) -> None:
        """Issuing again gives a new certificate and key from the same CA."""
        state = StateDir(tmp_path / "s")
        supplier = numbered_suppliers(1)[0]
        before = init_pki(state, [supplier]).supplier(supplier.org_number)
        issued = issue_supplier_cert(state, supplier, validity_days=30)
        assert issued.sha256 != before.sha256
        assert issued.sha256 == cert_sha256(issued.cert_path)
        assert issued.key_path == state.supplier_key(supplier.org_number)
        assert stat.S_IMODE(issued.key_path.stat().st_mode) == 0o600
        assert issued.not_after - issued.not_before <= dt.timedelta(days=30, minutes=5)

    def test_explicit_window_makes_an_expired_certificate(self, tmp_path: Path) -> None:
        """not_before/not_after script a certificate that has already expired."""
        state = StateDir(tmp_path / "s")
        supplier = numbered_suppliers(1)[0]
        init_pki(state, [supplier])
        start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        end = dt.datetime(2020, 2, 1, tzinfo=dt.UTC)
        issued = issue_supplier_cert(state, supplier, not_before=start, not_after=end)
        cert = load_certificate(issued.cert_path)
        assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (start, end)
        verifier = (
            PolicyBuilder()
            .store(Store([load_certificate(state.ca_cert)]))
            .build_server_verifier(x509.DNSName("localhost"))
        )
        with pytest.raises(VerificationError):
            verifier.verify(cert, [])

    @pytest.mark.parametrize(
        ("not_before", "not_after"),
        [
            (dt.datetime(2020, 2, 1, tzinfo=dt.UTC), dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
            (dt.datetime(2020, 1, 1), None),  # naive: the point of the test
        ],
    )
    def test_bad_window_is_a_config_error(
        self, pki: Pki, not_before: dt.datetime, not_after: dt.datetime | None
    ) -> None:
        """A window that ends before it starts, or a naive time, raises ConfigError."""
        with pytest.raises(ConfigError):
            issue_supplier_cert(
                pki.state, pki.suppliers[0], not_before=not_before, not_after=not_after
            )

    def test_without_a_pki_it_says_to_run_init(self, tmp_path: Path) -> None:
        """Issuing without a CA raises PkiError telling to run `b2bsim pki init`."""
        with pytest.raises(PkiError, match="b2bsim pki init"):
            issue_supplier_cert(StateDir(tmp_path), numbered_suppliers(1)[0])


class TestBadInput:
    """Bad input raises ConfigError or PkiError, never a traceback from a library."""

    @pytest.mark.parametrize(
        ("suppliers", "kwargs"),
        [
            ([SupplierIdentity("5567891234", "Bad Luhn AB")], {}),
            ([SupplierIdentity(org_number_from_index(0), " ")], {}),
            ([SupplierIdentity(org_number_from_index(0), "x" * 65)], {}),
            ([SupplierIdentity(org_number_from_index(0), "A AB")] * 2, {}),
            ([], {"validity_days": 0}),
            ([], {"hosts": ["not a host"]}),
            ([], {"hosts": [""]}),
        ],
    )
    def test_init_rejects_bad_input(
        self, tmp_path: Path, suppliers: list[SupplierIdentity], kwargs: dict[str, object]
    ) -> None:
        """Invalid org numbers, names, duplicates, validity and hosts raise ConfigError."""
        with pytest.raises(ConfigError):
            init_pki(StateDir(tmp_path), suppliers, **kwargs)  # type: ignore[arg-type]

    def test_missing_and_garbage_files(self, tmp_path: Path) -> None:
        """Missing or non-PEM files raise PkiError."""
        garbage = tmp_path / "garbage.pem"
        garbage.write_text("not a certificate")
        for path in (tmp_path / "missing.pem", garbage):
            with pytest.raises(PkiError):
                load_certificate(path)
            with pytest.raises(PkiError):
                load_private_key(path)
        with pytest.raises(PkiError, match="b2bsim pki init"):
            pki_summary(StateDir(tmp_path))

    def test_require_pki_names_missing_supplier_files(self, pki: Pki) -> None:
        """require_pki passes for present suppliers and names a missing one."""
        require_pki(pki.state, [s.org_number for s in pki.suppliers])
        missing = org_number_from_index(99)
        with pytest.raises(PkiError, match=missing):
            require_pki(pki.state, [missing])


class TestOrgNumberOf:
    """org_number_of on certificates from elsewhere."""

    def test_falls_back_to_subject_serial_number(self) -> None:
        """Without the SAN URI, the subject's serialNumber is the org number."""
        cert = _plain_cert(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "5560000001")]))
        assert org_number_of(cert) == "5560000001"

    def test_none_without_either(self) -> None:
        """A certificate with neither gives None, and is not the ICC's."""
        cert = _plain_cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ICC")]))
        assert org_number_of(cert) is None
        assert not is_icc_certificate(cert)


class TestPkiCommand:
    """`b2bsim pki init|show` through the real CLI entry point."""

    @pytest.fixture(autouse=True)
    def _only_pki(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Load only the pki command, so these tests do not depend on the others."""
        monkeypatch.setattr(cli, "COMMANDS", ["pki"])

    def test_init_prints_paths_and_fingerprints_but_no_keys(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """init prints each certificate's path and SHA-256 and nothing of any key."""
        state = StateDir(tmp_path / "s")
        assert cli.main(["--state", str(state.root), "pki", "init", "--suppliers", "2"]) == 0
        out, err = capsys.readouterr()
        summary = pki_summary(state)
        assert len(summary.certificates) == 4
        for info in summary.certificates:
            assert info.sha256 in out
            assert str(info.path) in out
        assert "PRIVATE" not in out + err
        for key_path in state.pki.rglob("*.key"):
            body = "".join(key_path.read_text().splitlines()[1:-1])
            assert body[:40] not in out + err
        assert str(state.supplier_cert(org_number_from_index(1))) in out

    def test_org_numbers_and_show(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--org-number (with a dash) issues for that org; show lists the same fingerprints."""
        org = org_number_from_index(7)
        root = str(tmp_path / "s")
        dashed = f"{org[:6]}-{org[6:]}"
        assert cli.main(["--state", root, "pki", "init", "--org-number", dashed]) == 0
        init_out = capsys.readouterr().out
        assert cli.main(["--state", root, "pki", "show"]) == 0
        show_out = capsys.readouterr().out
        sha = cert_sha256(StateDir(Path(root)).supplier_cert(org))
        assert sha in init_out
        assert sha in show_out
        assert org in show_out

    @pytest.mark.parametrize(
        ("options", "registry_host"),
        [
            ([], "127.0.0.1"),
            (["--host", "supplier.example"], "supplier.example"),
            (["--host", "a.example", "--host", "b.example"], "a.example"),
            (
                ["--host", "a.example", "--host", "b.example", "--registry-host", "b.example"],
                "b.example",
            ),
        ],
    )
    def test_registry_urls_name_a_host_of_the_certificates(
        self, tmp_path: Path, options: list[str], registry_host: str
    ) -> None:
        """The registry's URLs use the first --host (or --registry-host), which the SAN names."""
        state = StateDir(tmp_path / "s")
        args = ["--state", str(state.root), "pki", "init", "--suppliers", "2", *options]
        assert cli.main(args) == 0
        urls = [urlsplit(entry.url) for entry in Registry.load(state.registry)]
        assert [(url.hostname, url.port) for url in urls] == [
            (registry_host, 9443),
            (registry_host, 9444),
        ]
        san = load_certificate(state.supplier_cert(org_number_from_index(0))).extensions
        names = san.get_extension_for_class(x509.SubjectAlternativeName).value
        assert registry_host in [str(n.value) for n in names]

    def test_registry_host_outside_the_certificates_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--registry-host not among the --host names exits 2 in one line and writes nothing."""
        state = StateDir(tmp_path / "s")
        args = ["--state", str(state.root), "pki", "init", "--host", "a.example"]
        assert cli.main([*args, "--registry-host", "127.0.0.1"]) == 2
        err = capsys.readouterr().err
        assert "error [CONFIG]" in err
        assert "--host 127.0.0.1" in err
        assert err.count("\n") == 1
        assert not state.registry.exists()

    def test_show_without_pki_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """show on an empty state dir exits 2 and says to run pki init."""
        assert cli.main(["--state", str(tmp_path), "pki", "show"]) == 2
        assert "b2bsim pki init" in capsys.readouterr().err

    def test_bad_org_number_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An invalid --org-number exits 2 with a one-line error."""
        args = ["--state", str(tmp_path), "pki", "init", "--org-number", "5567891234"]
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert "error [CONFIG]" in err
        assert "e.g. 5567891238" in err  # the valid number nearest to what was typed
        assert err.count("\n") == 1


def _serials(state: StateDir) -> set[int]:
    return {r.serial_number for r in load_crl(crl_path(state), load_certificate(state.ca_cert))}


def _crl_number(state: StateDir) -> int:
    crl = load_crl(crl_path(state))
    return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


@pytest.fixture
def fresh(tmp_path: Path) -> Pki:
    """A PKI with two suppliers and a registry, for tests that change it."""
    state = StateDir(tmp_path / "state")
    suppliers = numbered_suppliers(2)
    summary = init_pki(state, suppliers, hosts=("localhost", "127.0.0.1", "stub.test"))
    Registry(
        SupplierEntry(
            info.org_number or "", info.subject, f"https://127.0.0.1:{9443 + i}/b", info.sha256
        )
        for i, info in enumerate(summary.suppliers)
    ).save(state.registry)
    return Pki(state, summary, suppliers)


class TestCrl:
    """The CA's revocation list: published by init, extended by revoke_certificate."""

    def test_init_publishes_an_empty_crl_signed_by_the_ca(self, pki: Pki) -> None:
        """init_pki writes pki/crl.pem (0644): the CA's, empty, valid now and for 30 days."""
        path = crl_path(pki.state)
        crl = load_crl(path, load_certificate(pki.state.ca_cert))
        now = dt.datetime.now(dt.UTC)
        assert list(crl) == []
        assert crl.last_update_utc <= now
        assert crl.next_update_utc is not None
        assert crl.next_update_utc - now > CRL_VALIDITY - dt.timedelta(minutes=1)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644

    def test_revoke_supplier_and_icc(self, fresh: Pki) -> None:
        """Revoking adds the current certificate's serial and keeps earlier entries."""
        org = fresh.suppliers[0].org_number
        number = _crl_number(fresh.state)
        first = revoke_certificate(fresh.state, org)
        cert = load_certificate(fresh.state.supplier_cert(org))
        assert (first.who, first.serial, first.already) == (org, cert.serial_number, False)
        assert first.sha256 == cert_sha256(cert)
        second = revoke_certificate(fresh.state, "ICC")
        assert second.serial == load_certificate(fresh.state.icc_cert).serial_number
        assert _serials(fresh.state) == {first.serial, second.serial}
        assert _crl_number(fresh.state) == number + 2

    def test_revoking_twice_is_harmless(self, fresh: Pki) -> None:
        """A second revocation reports already=True and keeps the first time and one entry."""
        org = fresh.suppliers[1].org_number
        first = revoke_certificate(fresh.state, org)
        again = revoke_certificate(fresh.state, f"{org[:6]}-{org[6:]}")
        assert again.already
        assert again.revoked_at == first.revoked_at
        assert _serials(fresh.state) == {first.serial}

    def test_reinit_keeps_entries_and_a_new_ca_starts_empty(self, fresh: Pki) -> None:
        """init with the same CA re-publishes the entries; init --force starts an empty CRL."""
        revoked = revoke_certificate(fresh.state, fresh.suppliers[0].org_number)
        init_pki(fresh.state, fresh.suppliers)
        assert _serials(fresh.state) == {revoked.serial}
        init_pki(fresh.state, fresh.suppliers, force=True)
        assert _serials(fresh.state) == set()

    def test_bad_input(self, fresh: Pki, tmp_path: Path) -> None:
        """A bad org number is a ConfigError; no certificate or no CA is a PkiError."""
        with pytest.raises(ConfigError):
            revoke_certificate(fresh.state, "5567891234")
        with pytest.raises(PkiError, match="no certificate"):
            revoke_certificate(fresh.state, org_number_from_index(50))
        with pytest.raises(PkiError, match="b2bsim pki init"):
            revoke_certificate(StateDir(tmp_path / "none"), "icc")
        garbage = tmp_path / "crl.pem"
        garbage.write_text("nope")
        with pytest.raises(PkiError, match="not a PEM CRL"):
            load_crl(garbage)
        with pytest.raises(PkiError, match="no CRL"):
            load_crl(tmp_path / "missing.pem")

    def test_crl_of_another_ca_is_refused(self, fresh: Pki, pki: Pki) -> None:
        """load_crl and CrlFile refuse a CRL that another CA signed."""
        other_ca = load_certificate(pki.state.ca_cert)
        with pytest.raises(PkiError, match="not signed by the CA"):
            load_crl(crl_path(fresh.state), other_ca)
        with pytest.raises(PkiError):
            CrlFile(crl_path(fresh.state), other_ca).serials()

    def test_crl_file_rereads_on_change(self, fresh: Pki) -> None:
        """CrlFile.revoked sees a revocation made after its first read."""
        crl = CrlFile(crl_path(fresh.state), load_certificate(fresh.state.ca_cert))
        icc = load_certificate(fresh.state.icc_cert)
        assert not crl.revoked(icc)
        revoke_certificate(fresh.state, "icc")
        assert crl.revoked(icc)
        crl_path(fresh.state).unlink()
        with pytest.raises(PkiError, match="no CRL"):
            crl.revoked(icc)

    def test_publish_crl_renews_next_update(self, fresh: Pki) -> None:
        """publish_crl re-signs the same entries with a higher CRL number."""
        revoked = revoke_certificate(fresh.state, "icc")
        number = _crl_number(fresh.state)
        assert publish_crl(fresh.state) == crl_path(fresh.state)
        assert _serials(fresh.state) == {revoked.serial}
        assert _crl_number(fresh.state) == number + 1


class TestRotation:
    """rotate_supplier_cert, issue_icc_cert and update_registry_cert."""

    def test_rotation_makes_a_new_key_and_keeps_the_old_pair(self, fresh: Pki) -> None:
        """A new key and certificate; the previous pair is kept (0600 key), valid, not revoked."""
        org = fresh.suppliers[0].org_number
        old_cert = load_certificate(fresh.state.supplier_cert(org))
        old_key = fresh.state.supplier_key(org).read_bytes()
        issued = rotate_supplier_cert(fresh.state, org)
        new_cert = load_certificate(issued.cert_path)
        assert issued.sha256 != cert_sha256(old_cert)
        assert new_cert.public_key() != old_cert.public_key()
        assert new_cert.subject == old_cert.subject
        assert set(_san(new_cert)) == set(_san(old_cert))  # the old hosts, stub.test included
        prev_cert, prev_key = previous_supplier_cert(fresh.state, org)
        assert load_certificate(prev_cert) == old_cert
        assert prev_key.read_bytes() == old_key
        assert stat.S_IMODE(prev_key.stat().st_mode) == 0o600
        assert stat.S_IMODE(prev_key.parent.stat().st_mode) == 0o700
        assert is_issued_by(old_cert, load_certificate(fresh.state.ca_cert))
        assert old_cert.serial_number not in _serials(fresh.state)

    def test_rotation_without_a_certificate(self, fresh: Pki) -> None:
        """Rotating a supplier that has no certificate says how to issue one."""
        with pytest.raises(PkiError, match="pki init --org-number"):
            rotate_supplier_cert(fresh.state, org_number_from_index(40))

    def test_update_registry_cert(self, fresh: Pki, tmp_path: Path) -> None:
        """Only the named supplier's cert_sha256 changes; no file or no entry writes nothing."""
        a, b = (s.org_number for s in fresh.suppliers)
        before = Registry.load(fresh.state.registry)
        assert update_registry_cert(fresh.state.registry, a, "ab" * 32)
        after = Registry.load(fresh.state.registry)
        assert after.lookup(a).cert_sha256 == "ab" * 32
        assert after.lookup(b) == before.lookup(b)
        assert after.lookup(a).url == before.lookup(a).url
        assert not update_registry_cert(fresh.state.registry, org_number_from_index(40), "cd" * 32)
        assert not update_registry_cert(tmp_path / "none.json", a, "cd" * 32)
        assert not list(fresh.state.root.glob("*.tmp"))

    def test_expired_icc_certificate(self, fresh: Pki) -> None:
        """issue_icc_cert with a past window makes an expired ICC certificate, still the ICC's."""
        end = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
        issued = issue_icc_cert(fresh.state, not_before=end - dt.timedelta(days=1), not_after=end)
        cert = load_certificate(fresh.state.icc_cert)
        assert issued.sha256 == cert_sha256(cert)
        assert cert.not_valid_after_utc == end
        assert is_icc_certificate(cert)
        assert "stub.test" in _san(cert).get_values_for_type(x509.DNSName)

    def test_supplier_identity_reads_the_name(self, fresh: Pki) -> None:
        """supplier_identity takes the name from the current certificate, else a default."""
        s = fresh.suppliers[0]
        assert supplier_identity(fresh.state, s.org_number) == s
        other = org_number_from_index(40)
        assert supplier_identity(fresh.state, other).name == f"Leverantör {other} AB"


class TestLifeCycleCommands:
    """`b2bsim pki issue|rotate|revoke|crl` through the real CLI entry point."""

    @pytest.fixture(autouse=True)
    def _only_pki(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Load only the pki command."""
        monkeypatch.setattr(cli, "COMMANDS", ["pki"])

    def _run(self, state: StateDir, *args: str) -> int:
        return cli.main(["--state", str(state.root), "pki", *args])

    def test_revoke_and_crl(self, fresh: Pki, capsys: pytest.CaptureFixture[str]) -> None:
        """revoke prints the serial and fingerprint; crl lists it."""
        org = fresh.suppliers[0].org_number
        assert self._run(fresh.state, "revoke", org) == 0
        serial = load_certificate(fresh.state.supplier_cert(org)).serial_number
        out = capsys.readouterr().out
        assert f"revoked {org} serial={serial:x}" in out
        assert self._run(fresh.state, "crl") == 0
        assert f"revoked serial={serial:x}" in capsys.readouterr().out

    def test_rotate_updates_the_registry(
        self, fresh: Pki, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """rotate issues a new certificate and writes its SHA-256 into registry.json."""
        org = fresh.suppliers[1].org_number
        assert self._run(fresh.state, "rotate", org) == 0
        sha = cert_sha256(fresh.state.supplier_cert(org))
        assert Registry.load(fresh.state.registry).lookup(org).cert_sha256 == sha
        out, err = capsys.readouterr()
        assert sha in out
        assert "PRIVATE" not in out + err

    def test_issue_expired_supplier_and_icc(self, fresh: Pki) -> None:
        """issue --expired and --not-after make certificates that are no longer valid."""
        org = fresh.suppliers[0].org_number
        now = dt.datetime.now(dt.UTC)
        assert self._run(fresh.state, "issue", org, "--expired") == 0
        cert = load_certificate(fresh.state.supplier_cert(org))
        assert cert.not_valid_after_utc < now
        assert Registry.load(fresh.state.registry).lookup(org).cert_sha256 == cert_sha256(cert)
        assert self._run(fresh.state, "issue", "icc", "--not-after", "2021-01-01T00:00:00Z") == 0
        icc = load_certificate(fresh.state.icc_cert)
        assert icc.not_valid_after_utc == dt.datetime(2021, 1, 1, tzinfo=dt.UTC)

    @pytest.mark.parametrize(
        "args",
        [
            ["issue", "icc", "--not-after", "tomorrow"],
            ["revoke", "5567891234"],
            ["rotate", "not-a-number"],
            ["issue", "icc", "--expired", "--not-after", "2021-01-01"],
        ],
    )
    def test_bad_input_is_a_usage_error(
        self, fresh: Pki, args: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Bad times, org numbers and conflicting options exit 2 without a traceback."""
        with contextlib.suppress(SystemExit):  # argparse exits 2 itself on conflicts
            assert self._run(fresh.state, *args) == 2
        assert "Traceback" not in capsys.readouterr().err
