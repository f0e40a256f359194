"""`b2bsim pki issue --csr`: CSRs made by the real `openssl req`, through the real CLI.

The last test is the onboarding's certificate step end to end: openssl makes the
supplier's key and CSR, AF issues the certificate, the reference stub runs
standalone with the supplier's own key, and `b2bsim run --endpoint` delivers to it
through the ICC pinning the registered fingerprint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from simulator import cli
from simulator.lab.pki import cert_sha256, load_certificate
from simulator.lab.ports import free_ports
from simulator.vocabulary.identifiers import org_number_from_index
from simulator.vocabulary.registry import Registry
from simulator.vocabulary.state import StateDir

REPO = Path(__file__).resolve().parents[3]
ORG = org_number_from_index(11)
URL = "https://127.0.0.1:9600/b2b/envelopes"
#: `openssl req -newkey` arguments of each key the CA certifies.
ACCEPTED = {
    "ec-p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "rsa-2048": ["-newkey", "rsa:2048"],
    "rsa-3072": ["-newkey", "rsa:3072"],
}


@pytest.fixture(scope="module")
def openssl() -> str:
    """The openssl command (Debian package `openssl`, installed by `make test`)."""
    found = shutil.which("openssl")
    if found is None:
        message = "openssl is not installed: run scripts/ensure-openssl.sh (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def openssl_csr(
    openssl: str, where: Path, newkey: Sequence[str], *extra: str, name: str = "r"
) -> tuple[Path, Path]:
    """`openssl req -new` as a supplier runs it: its key and its CSR, in ``where``."""
    key, csr = where / f"{name}.key", where / f"{name}.csr"
    command = [openssl, "req", "-new", *newkey, "-nodes", "-keyout", str(key), "-out", str(csr)]
    subprocess.run(
        [*command, "-subj", "/CN=x", *extra],
        check=True,
        capture_output=True,
    )
    return key, csr


def pki(state: StateDir, *args: str | Path) -> int:
    return cli.main(["--state", str(state.root), "pki", *map(str, args)])


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateDir:
    """AF's state: a CA, the ICC and one supplier the simulator made (registry from 9443)."""
    monkeypatch.setattr(cli, "COMMANDS", ["pki"])
    state = StateDir(tmp_path / "af")
    assert pki(state, "init", "--suppliers", "1") == 0
    return state


def public_key_pem(openssl: str, *args: str) -> bytes:
    return subprocess.run([openssl, *args], check=True, capture_output=True).stdout


class TestOpensslCsrs:
    @pytest.mark.parametrize("newkey", ACCEPTED.values(), ids=ACCEPTED.keys())
    def test_issue_certifies_the_suppliers_key(
        self,
        openssl: str,
        state: StateDir,
        tmp_path: Path,
        newkey: list[str],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The certificate chains to the CA (openssl verify), carries the supplier's own
        public key, and the registry gets the supplier with its URL and fingerprint."""
        capsys.readouterr()
        key, csr = openssl_csr(openssl, tmp_path, newkey)
        out = tmp_path / "cert.pem"
        args: list[str | Path] = ["issue", "--csr", csr, "--org-number", ORG, "--out", out]
        assert pki(state, *args, "--url", URL) == 0
        printed, err = capsys.readouterr()
        verified = subprocess.run(
            [openssl, "verify", "-CAfile", str(state.ca_cert), str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert verified.returncode == 0, verified.stderr
        assert public_key_pem(openssl, "x509", "-in", str(out), "-noout", "-pubkey") == (
            public_key_pem(openssl, "pkey", "-in", str(key), "-pubout")
        )
        sha = cert_sha256(load_certificate(out))
        entry = Registry.load(state.registry).lookup(ORG)
        assert (entry.url, entry.cert_sha256) == (URL, sha)
        assert out.read_bytes() == state.supplier_cert(ORG).read_bytes()
        assert not state.supplier_key(ORG).exists()
        assert sha in printed
        assert f"registry: {state.registry} {ORG} added" in printed
        assert "PRIVATE" not in printed + err
        assert key.read_text() not in printed + err

    def test_a_der_csr(self, openssl: str, state: StateDir, tmp_path: Path) -> None:
        _, csr = openssl_csr(openssl, tmp_path, ACCEPTED["ec-p256"], "-outform", "DER")
        assert not csr.read_bytes().startswith(b"-----")
        assert pki(state, "issue", "--csr", csr, "--org-number", ORG, "--url", URL) == 0

    @pytest.mark.parametrize(
        ("req", "code"),
        [
            (["-newkey", "rsa:1024"], "CSR_KEY_REFUSED"),
            (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"], "CSR_KEY_REFUSED"),
            (["-newkey", "ed25519"], "CSR_KEY_REFUSED"),
            (["-newkey", "rsa:2048", "-sha1"], "CSR_HASH_REFUSED"),
        ],
        ids=["rsa-1024", "p521", "ed25519", "sha1"],
    )
    def test_refused_csrs(
        self,
        openssl: str,
        state: StateDir,
        req: list[str],
        code: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Exit 2, one line naming the code and the file; nothing issued, registry untouched."""
        _, csr = openssl_csr(openssl, state.root.parent, req)
        registry = state.registry.read_bytes()
        capsys.readouterr()
        assert pki(state, "issue", "--csr", csr, "--org-number", ORG, "--url", URL) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error [{code}]: {csr}")
        assert err.count("\n") == 1
        assert not state.supplier_cert(ORG).exists()
        assert state.registry.read_bytes() == registry

    def test_an_edited_csr(
        self, openssl: str, state: StateDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        _, csr = openssl_csr(openssl, tmp_path, ACCEPTED["ec-p256"], "-outform", "DER")
        csr.write_bytes(csr.read_bytes().replace(b"\x0c\x01x", b"\x0c\x01y"))  # CN=x → CN=y
        capsys.readouterr()
        assert pki(state, "issue", "--csr", csr, "--org-number", ORG, "--url", URL) == 2
        assert "error [CSR_SIGNATURE_INVALID]" in capsys.readouterr().err


class TestOptions:
    @pytest.fixture
    def csr(self, openssl: str, tmp_path: Path) -> Path:
        return openssl_csr(openssl, tmp_path, ACCEPTED["ec-p256"])[1]

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["issue"], "needs ORG, icc or --csr"),
            (["issue", "icc", "--out", "x.pem"], "--out: only with --csr"),
            (["issue", "--csr", "{csr}"], "--csr needs --org-number"),
            (["issue", ORG, "--csr", "{csr}"], f"give --org-number {ORG} instead"),
            (["issue", "--csr", "{csr}", "--org-number", "5567891234"], "Luhn"),
            (["issue", "--csr", "{csr}", "--org-number", ORG], "add --url https://"),
            (
                ["issue", "--csr", "{csr}", "--org-number", ORG, "--url", "https://h.example/"],
                "--url host h.example is not a host of the certificate",
            ),
            (
                ["issue", "--csr", "{csr}", "--org-number", ORG, "--url", "http://127.0.0.1/"],
                "https",
            ),
        ],
        ids=["nothing", "out-alone", "no-org", "org-twice", "luhn", "no-url", "host", "http"],
    )
    def test_usage_errors(
        self,
        state: StateDir,
        csr: Path,
        args: list[str],
        message: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Exit 2 with one line saying what to do; nothing issued."""
        capsys.readouterr()
        assert pki(state, *(a.replace("{csr}", str(csr)) for a in args)) == 2
        err = capsys.readouterr().err
        assert message in err
        assert err.count("\n") == 1
        assert not state.supplier_cert(ORG).exists()

    def test_host_makes_the_url_usable(self, state: StateDir, csr: Path) -> None:
        url = "https://supplier.example:9600/b2b/envelopes"
        args: list[str | Path] = ["issue", "--csr", csr, "--org-number", ORG, "--url", url]
        assert pki(state, *args, "--host", "supplier.example") == 0
        assert Registry.load(state.registry).lookup(ORG).url == url


class TestLifeCycle:
    """An existing supplier moves to its own key: URL kept; renewal needs a new CSR."""

    def test_existing_supplier(
        self, openssl: str, state: StateDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        org = org_number_from_index(0)
        url = Registry.load(state.registry).lookup(org).url
        _, csr = openssl_csr(openssl, tmp_path, ACCEPTED["rsa-2048"])
        assert pki(state, "issue", "--csr", csr, "--org-number", org) == 0
        entry = Registry.load(state.registry).lookup(org)
        assert entry.url == url
        assert entry.cert_sha256 == cert_sha256(state.supplier_cert(org))
        assert "previous certificate kept (not revoked)" in capsys.readouterr().out
        # AF holds no key of it: no renewal without a new CSR.
        for args in (["rotate", org], ["issue", org, "--expired"]):
            assert pki(state, *args) == 2
            assert f"--csr NEW.csr --org-number {org}" in capsys.readouterr().err
        # Revocation needs no key of the supplier.
        assert pki(state, "revoke", org) == 0
        serial = load_certificate(state.supplier_cert(org)).serial_number
        assert f"revoked {org} serial={serial:x}" in capsys.readouterr().out
        # Renewal: a new CSR; here an expired certificate for it, as the lab scripts them.
        _, new_csr = openssl_csr(openssl, tmp_path, ACCEPTED["ec-p256"], name="new")
        assert pki(state, "issue", "--csr", new_csr, "--org-number", org, "--expired") == 0
        renewed = load_certificate(state.supplier_cert(org))
        assert renewed.serial_number != serial
        assert Registry.load(state.registry).lookup(org).cert_sha256 == cert_sha256(renewed)


@pytest.mark.broker
@pytest.mark.integration
def test_a_stub_with_the_suppliers_own_key_takes_a_delivery(
    openssl: str, broker_url: str, tmp_path: Path
) -> None:
    """openssl makes key + CSR, AF issues, the stub runs standalone with the supplier's
    own key and certificate, and the ICC (pinning the registered fingerprint) delivers."""
    state = tmp_path / "af"
    (port,) = free_ports(1)
    url = f"https://127.0.0.1:{port}/b2b/envelopes"
    b2bsim = [sys.executable, "-m", "simulator.cli", "--state", str(state)]
    supplier = tmp_path / "supplier"
    supplier.mkdir()
    key, csr = openssl_csr(openssl, supplier, ACCEPTED["ec-p256"])
    cert = supplier / "cert.pem"
    for args in (
        ["pki", "init", "--suppliers", "1"],
        ["pki", "issue", "--csr", str(csr), "--org-number", ORG, "--out", str(cert), "--url", url],
    ):
        done = subprocess.run([*b2bsim, *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    pin = Registry.load(state / "registry.json").lookup(ORG).cert_sha256
    serve = ["serve", "supplier-stub", "--cert", str(cert), "--key", str(key)]
    stub = subprocess.Popen(
        [*b2bsim, *serve, "--db", str(tmp_path / "stub.sqlite")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert stub.stdout is not None
        ready = json.loads(stub.stdout.readline())
        assert ready["urls"] == [url]
        out = tmp_path / "result.json"
        code = cli.main(
            [
                *("--state", str(state), "run", str(REPO / "scenarios" / "happy-path.yaml")),
                *("--broker", broker_url, "--endpoint", url),
                *("--endpoint-ca", str(state / "pki" / "ca.pem"), "--org-number", ORG),
                *("--endpoint-cert-sha256", pin, "--readback", url.replace("envelopes", "ledger")),
                *("--result-json", str(out)),
            ]
        )
        result = json.loads(out.read_text())
        assert code == 0, result["expectations"]
        assert result["endpoint"]["loaded"] == result["endpoint"]["produced"] == 3
        assert result["endpoint"]["lost"] == 0
    finally:
        stub.send_signal(signal.SIGTERM)
        stub.wait(20)
        if stub.stdout is not None:
            stub.stdout.close()
