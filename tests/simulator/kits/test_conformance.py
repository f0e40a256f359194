"""The conformance kit, graded against our own supplier stub over real mutual TLS."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

from simulator import cli
from simulator.kits.conformance import ConformanceReport, ConformanceTarget, run_conformance
from simulator.kits.conformance_cases import CASES
from simulator.lab.pki import cert_sha256, init_pki, numbered_suppliers
from simulator.vocabulary.errors import ConfigError, TargetUnreachableError, TargetUntrustedError
from simulator.vocabulary.registry import Registry, SupplierEntry
from simulator.vocabulary.state import StateDir
from supplier_stub.app import ENVELOPE_PATH, StubConfig, SupplierStub

ALL_IDS = [c.id for c in CASES]
# What a stub that skips the signature check (accept_unsigned) lets through: every check of
# the verifier (signature, signer, algorithms, time window, CRL). It still refuses the wrapped
# envelope, because it reads the envelope strictly and a nested envelope is not one.
SIGNATURE_CASES = {
    "tampered",
    "unsigned",
    "untrusted-signer",
    "signer-foreign-ca",
    "sha1-signature",
    "sha1-digest",
    "timestamp-future",
    "replay-after-a-day",
    "signer-revoked",
}
ADDRESSEE_CASES = {"misaddressed-org", "misaddressed-cert", "misaddressed-url"}
REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Pki:
    """A test PKI with one push supplier, its registry, and a CA that is not AF's."""

    state: StateDir
    registry: Path
    entry: SupplierEntry
    foreign_ca: Path


def _self_signed_ca(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some other CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The module's PKI: the AF test CA, the ICC, one supplier on a free port."""
    base = tmp_path_factory.mktemp("conformance")
    state = StateDir(base / "state")
    (supplier,) = numbered_suppliers(1)
    init_pki(state, [supplier])
    entry = SupplierEntry(
        org_number=supplier.org_number,
        name=supplier.name,
        url=f"https://127.0.0.1:{_free_port()}{ENVELOPE_PATH}",
        cert_sha256=cert_sha256(state.supplier_cert(supplier.org_number)),
    )
    registry = base / "registry.json"
    Registry([entry]).save(registry)
    return Pki(state, registry, entry, _self_signed_ca(base / "foreign-ca.pem"))


def target_for(pki: Pki, **changes: Any) -> ConformanceTarget:
    """A target aimed at the stub's supplier, as the ICC of the test PKI."""
    state = pki.state
    target = ConformanceTarget(
        url=pki.entry.url,
        target_ca=state.ca_cert,
        org_number=pki.entry.org_number,
        client_cert=state.icc_cert,
        client_key=state.icc_key,
        signer_cert=state.icc_cert,
        signer_key=state.icc_key,
        state=state,
        timeout=10.0,
        seed=7,
    )
    return replace(target, **changes)


@asynccontextmanager
async def running_stub(pki: Pki, db: Path, **overrides: Any) -> AsyncIterator[SupplierStub]:
    """Our supplier stub in this test's event loop (StubConfig fields as keywords)."""
    stub = SupplierStub(StubConfig(registry=pki.registry, state=pki.state, db=db, **overrides))
    await stub.start()
    try:
        yield stub
    finally:
        await stub.stop()


def failed_ids(report: ConformanceReport) -> set[str]:
    return {r.case_id for r in report.failures}


class TestAgainstOurStub:
    """The proof: our stub passes, each broken mode fails exactly its cases."""

    async def test_our_stub_passes_every_case(self, pki: Pki, tmp_path: Path) -> None:
        """Every case of the plan runs, in plan order, and passes against the reference stub."""
        async with running_stub(pki, tmp_path / "inbox.sqlite"):
            report = await run_conformance(target_for(pki))
        assert [r.case_id for r in report.results] == ALL_IDS
        assert report.passed, [(r.case_id, r.reason) for r in report.failures]
        assert report.target_cert_sha256 == pki.entry.cert_sha256
        reasons = {r.case_id: r.reason for r in report.results}
        assert reasons["valid-order"] == "HTTP 201 accepted"
        assert reasons["duplicate"] == "HTTP 200 duplicate"
        assert reasons["conflict"] == "HTTP 409 ENVELOPE_CONFLICT"
        assert reasons["tampered"] == "HTTP 403 SIGNATURE_TAMPERED"
        assert reasons["unsigned"] == "HTTP 403 SIGNATURE_MISSING"
        assert reasons["untrusted-signer"].startswith("HTTP 403 SIGNER_UNTRUSTED")
        assert reasons["misaddressed-org"] == "HTTP 421 WRONG_ADDRESSEE"
        assert reasons["client-not-icc"].startswith("HTTP 403 CLIENT_NOT_ICC")
        assert reasons["client-foreign-ca"].startswith("refused in TLS")
        assert reasons["hostile-xml"].startswith("HTTP 400 XML_DOCTYPE")

    async def test_accept_unsigned_fails_exactly_the_signature_cases(
        self, pki: Pki, tmp_path: Path
    ) -> None:
        """A stub that skips the signature check fails tampered, unsigned, untrusted-signer only."""
        async with running_stub(pki, tmp_path / "inbox.sqlite", accept_unsigned=True):
            report = await run_conformance(target_for(pki))
        assert failed_ids(report) == SIGNATURE_CASES
        for r in report.failures:
            assert "got HTTP 201 accepted: the endpoint took" in r.reason

    async def test_ignore_addressee_fails_exactly_the_misaddressed_cases(
        self, pki: Pki, tmp_path: Path
    ) -> None:
        """A stub that skips the addressee check fails the three mis-addressed cases only."""
        async with running_stub(pki, tmp_path / "inbox.sqlite", ignore_addressee=True):
            report = await run_conformance(target_for(pki))
        assert failed_ids(report) == ADDRESSEE_CASES

    async def test_selected_cases_only(self, pki: Pki, tmp_path: Path) -> None:
        """case_ids runs just those cases, in plan order."""
        async with running_stub(pki, tmp_path / "inbox.sqlite"):
            report = await run_conformance(target_for(pki, case_ids=("unsigned", "valid-credit")))
        assert [r.case_id for r in report.results] == ["valid-credit", "unsigned"]
        assert report.passed

    async def test_reports_are_well_formed(self, pki: Pki, tmp_path: Path) -> None:
        """JUnit has one testcase per case with failures marked; JSON has counts and reasons."""
        async with running_stub(pki, tmp_path / "inbox.sqlite", accept_unsigned=True):
            report = await run_conformance(target_for(pki))
        suite = etree.fromstring(report.to_junit()).find("testsuite")
        assert suite is not None
        cases = suite.findall("testcase")
        assert len(cases) == len(CASES)
        assert suite.get("failures") == str(len(SIGNATURE_CASES))
        assert suite.get("skipped") == "0"
        failed = {c.get("name", "").split(":")[0] for c in cases if c.find("failure") is not None}
        assert failed == SIGNATURE_CASES
        data = report.to_json()
        n_failed = len(SIGNATURE_CASES)
        assert data["counts"] == {
            "total": len(CASES),
            "passed": len(CASES) - n_failed,
            "failed": n_failed,
            "not_graded": 0,
        }
        assert data["seed"] == 7
        assert {c["id"] for c in data["cases"] if c["result"] == "fail"} == SIGNATURE_CASES


class TestTargetProblems:
    """A target that cannot be tested is reported as such, not graded."""

    async def test_unreachable(self, pki: Pki) -> None:
        """Nothing listening: TargetUnreachableError naming host and port."""
        port = _free_port()
        target = target_for(pki, url=f"https://127.0.0.1:{port}/b2b/envelopes")
        with pytest.raises(TargetUnreachableError, match=f"127.0.0.1:{port}"):
            await run_conformance(target)

    async def test_untrusted_ca(self, pki: Pki, tmp_path: Path) -> None:
        """The stub's certificate does not chain to the given CA: TargetUntrustedError."""
        async with running_stub(pki, tmp_path / "inbox.sqlite"):
            with pytest.raises(TargetUntrustedError, match="untrusted certificate"):
                await run_conformance(target_for(pki, target_ca=pki.foreign_ca))

    async def test_pin_mismatch(self, pki: Pki, tmp_path: Path) -> None:
        """A --target-cert-sha256 that is not the presented certificate's: untrusted."""
        async with running_stub(pki, tmp_path / "inbox.sqlite"):
            with pytest.raises(TargetUntrustedError, match="target-cert-sha256"):
                await run_conformance(target_for(pki, cert_sha256="ab" * 32))

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"url": "http://127.0.0.1:1/b2b"}, "https"),
            ({"org_number": "1234567890"}, "1234567890"),
            ({"cert_sha256": "xyz"}, "SHA-256"),
            ({"timeout": 0.0}, "timeout"),
            ({"burst": 0}, "burst 0 is not from 1"),
        ],
        ids=["http-url", "bad-org", "bad-pin", "zero-timeout", "zero-burst"],
    )
    def test_bad_target(self, pki: Pki, changes: dict[str, Any], message: str) -> None:
        """A wrong URL, organisation number, pin, timeout or burst is a ConfigError saying which."""
        with pytest.raises(ConfigError, match=message):
            target_for(pki, **changes)


def b2bsim(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    """Run the b2bsim CLI in-process (the conformance command is registered)."""
    assert "conformance" in cli.COMMANDS
    return cli.main(list(argv))


@contextmanager
def stub_process(pki: Pki, db: Path, *flags: str) -> Iterator[None]:
    """``b2bsim serve supplier-stub`` in a child process, until it says it is ready."""
    cmd = [sys.executable, "-m", "simulator.cli", "--state", str(pki.state.root)]
    cmd += ["serve", "supplier-stub", "--registry", str(pki.registry), "--db", str(db)]
    # The kit's cases are about the envelope; the document rules have tests of their own.
    cmd += ["--no-validate", *flags]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert json.loads(line)["event"] == "ready", line
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung stub
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def cli_args(pki: Pki, *extra: str) -> list[str]:
    e = pki.entry
    return [
        "--state",
        str(pki.state.root),
        "conformance",
        "--target",
        e.url,
        "--target-ca",
        str(pki.state.ca_cert),
        "--org-number",
        e.org_number,
        "--seed",
        "3",
        *extra,
    ]


class TestCli:
    """``b2bsim conformance``: exit codes, plain output, report files."""

    def test_passes_against_stub_with_reports(
        self,
        pki: Pki,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Exit 0, a PASS line per case, and the JUnit and JSON files written."""
        junit, result = tmp_path / "out" / "junit.xml", tmp_path / "out" / "result.json"
        with stub_process(pki, tmp_path / "inbox.sqlite"):
            code = b2bsim(monkeypatch, *cli_args(pki, "--junit", str(junit), "--json", str(result)))
        out = capsys.readouterr().out
        assert code == 0, out
        assert out.count("\nPASS ") + out.startswith("PASS ") == len(CASES)
        assert f"{len(CASES)} passed, 0 failed, 0 not graded" in out
        assert "--seed 3" in out
        assert json.loads(result.read_text())["passed"] is True
        assert len(list(etree.fromstring(junit.read_bytes()).iter("testcase"))) == len(CASES)

    def test_accept_unsigned_flag_exits_1(
        self,
        pki: Pki,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`serve supplier-stub --accept-unsigned`: exit 1, FAIL lines for the signature cases."""
        with stub_process(pki, tmp_path / "inbox.sqlite", "--accept-unsigned"):
            code = b2bsim(monkeypatch, *cli_args(pki))
        out = capsys.readouterr().out
        assert code == 1, out
        failed = {line.split()[1].rstrip(":") for line in out.splitlines() if line[:5] == "FAIL "}
        assert failed == SIGNATURE_CASES
        failed_count = len(SIGNATURE_CASES)
        assert f"{len(CASES) - failed_count} passed, {failed_count} failed, 0 not graded" in out

    def test_unreachable_exits_2(
        self, pki: Pki, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No endpoint at the URL: exit 2, one clear line on stderr, no case graded."""
        url = f"https://127.0.0.1:{_free_port()}/b2b/envelopes"
        argv = cli_args(pki)
        argv[argv.index("--target") + 1] = url
        code = b2bsim(monkeypatch, *argv)
        captured = capsys.readouterr()
        assert code == 2
        assert captured.err.startswith("error [TARGET_UNREACHABLE]: cannot reach the target")
        assert len(captured.err.strip().splitlines()) == 1
        assert "PASS" not in captured.out
        assert "FAIL" not in captured.out
        assert "Traceback" not in captured.err

    def test_untrusted_exits_2(
        self,
        pki: Pki,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A --target-ca the stub's certificate does not chain to: exit 2, untrusted certificate."""
        argv = cli_args(pki)
        argv[argv.index("--target-ca") + 1] = str(pki.foreign_ca)
        with stub_process(pki, tmp_path / "inbox.sqlite"):
            code = b2bsim(monkeypatch, *argv)
        captured = capsys.readouterr()
        assert code == 2
        assert captured.err.startswith("error [TARGET_UNTRUSTED]:")
        assert "untrusted certificate" in captured.err
        assert "PASS" not in captured.out

    @pytest.mark.parametrize(
        ("drop", "add", "message"),
        [
            ("--target", (), "conformance needs --target"),
            (None, ("--client-cert", "x.pem"), "--client-cert and --client-key go together"),
            (None, ("--case", "nope"), "unknown conformance case"),
            (None, ("--burst", "0"), "burst 0 is not from 1"),
        ],
        ids=["no-target", "half-client-pair", "unknown-case", "zero-burst"],
    )
    def test_bad_command_line_exits_2(
        self,
        *,
        pki: Pki,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        drop: str | None,
        add: tuple[str, ...],
        message: str,
    ) -> None:
        """A missing or contradictory option: exit 2 and a one-line error, no traceback."""
        argv = cli_args(pki, *add)
        if drop is not None:
            at = argv.index(drop)
            del argv[at : at + 2]
        code = b2bsim(monkeypatch, *argv)
        err = capsys.readouterr().err
        assert code == 2
        assert message in err
        assert "Traceback" not in err

    def test_list(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--list prints every case id with what it checks, and exits 0."""
        assert b2bsim(monkeypatch, "conformance", "--list") == 0
        out = capsys.readouterr().out
        for case in CASES:
            assert f"{case.id}: {case.title}" in out
