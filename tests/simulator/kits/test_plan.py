"""``b2bsim plan`` and ``b2bsim evidence``: a supplier's test plan from init to a verified pack.

The supplier's endpoint here is a receiver written for these tests, independent of
``supplier_stub/``: aiohttp over mutual TLS, a store by envelope id (accepted,
duplicate, 409 for another document under a known id) and a read-back; it does
not check signatures, so the conformance kit's ``unsigned`` case fails against
it (a failed verdict to keep, show and pack).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from lxml import etree

from simulator.cli import main
from simulator.kits.evidence import sign_manifest
from simulator.lab.pki import SupplierIdentity, cert_sha256, init_pki
from simulator.lab.pki_evidence import EvidenceSigner
from simulator.lab.ports import free_ports
from simulator.vocabulary.certs import load_certificate, load_private_key
from simulator.vocabulary.state import StateDir

REPO = Path(__file__).resolve().parents[3]
ORG = "5520000000"
SBD = "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"
NS = {"sbd": SBD}


class Receiver:
    """A push endpoint with a ledger and its read-back; signatures are not checked."""

    def __init__(self, state: StateDir) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(state.supplier_cert(ORG), state.supplier_key(ORG))
        ctx.load_verify_locations(cafile=state.ca_cert)
        self.ctx = ctx
        self.seen: dict[str, str] = {}
        self.ledger: list[tuple[str, str]] = []
        (self.port,) = free_ports(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/b2b/envelopes"

    @property
    def readback(self) -> str:
        return f"https://127.0.0.1:{self.port}/b2b/ledger"

    def __enter__(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application(client_max_size=2 * 1024 * 1024)
        app.router.add_post("/b2b/envelopes", self._receive)
        app.router.add_get("/b2b/ledger", self._ledger)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ctx).start()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        try:
            root = etree.fromstring(body, parser)
        except etree.XMLSyntaxError:
            return web.json_response({"code": "XML_MALFORMED"}, status=400)
        envelope_id = root.findtext(".//sbd:DocumentIdentification/sbd:InstanceIdentifier", "", NS)
        scopes = {
            s.findtext("sbd:Type", namespaces=NS): s.findtext("sbd:InstanceIdentifier", "", NS)
            for s in root.iterfind(".//sbd:Scope", NS)
        }
        document = root.find("sbd:StandardBusinessDocument", NS)
        if not envelope_id or document is None or len(document) < 2:
            return web.json_response({"code": "ENVELOPE_MALFORMED"}, status=400)
        digest = hashlib.sha256(etree.tostring(document[1], method="c14n")).hexdigest()
        known = self.seen.get(envelope_id)
        if known is not None:
            if known != digest:
                return web.json_response({"code": "ENVELOPE_CONFLICT"}, status=409)
            return web.json_response({"status": "duplicate", "envelope_id": envelope_id})
        self.seen[envelope_id] = digest
        self.ledger.append((envelope_id, str(scopes.get("MESSAGE_ID"))))
        return web.json_response({"status": "accepted", "envelope_id": envelope_id}, status=201)

    async def _ledger(self, request: web.Request) -> web.Response:
        after, limit = int(request.query.get("after", 0)), int(request.query.get("limit", 500))
        entries = [
            {"position": i, "envelope_id": e, "message_id": m, "loaded_at_ms": 1_700_000_000 + i}
            for i, (e, m) in enumerate(self.ledger, 1)
            if i > after
        ]
        page = entries[:limit]
        following = page[-1]["position"] if len(entries) > limit else None
        return web.json_response({"entries": page, "next": following})


@dataclass
class Setup:
    state: StateDir
    receiver: Receiver
    plan: Path

    def cli(self, *argv: str) -> int:
        return main(["--state", str(self.state.root), *argv])


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    state = StateDir(tmp_path / "state").ensure()
    init_pki(state, [SupplierIdentity(ORG, "Leverantör Plan AB")])
    return state


@pytest.fixture
def setup(state: StateDir, tmp_path: Path) -> Iterator[Setup]:
    with Receiver(state) as receiver:
        s = Setup(state, receiver, tmp_path / "plans" / "supplier.yaml")
        code = s.cli(*init_args(s, readback=True))
        assert code == 0
        yield s


def init_args(s: Setup, *, readback: bool = False, mode: str = "push") -> list[str]:
    args = ["plan", "init", "--org-number", ORG, "--name", "Leverantör Plan AB"]
    args += ["--endpoint", s.receiver.url, "--endpoint-ca", str(s.state.ca_cert)]
    args += ["--mode", mode, "--start", "2027-01", "--go-live", "2027-03"]
    args += ["--scenarios", str(REPO / "scenarios"), "--out", str(s.plan)]
    return args + (["--readback", s.receiver.readback] if readback else [])


def runs_of(plan: Path) -> list[Path]:
    folder = plan.with_name(plan.name + ".runs")
    return sorted(folder.iterdir()) if folder.is_dir() else []


def run_json(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "run.json").read_text())
    return data


def verdicts(run: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in run["cases"]}


# --- init ----------------------------------------------------------------------------


class TestInit:
    def test_pins_the_endpoint_and_plans_every_case(self, setup: Setup) -> None:
        data = yaml.safe_load(setup.plan.read_text())
        pin = cert_sha256(setup.state.supplier_cert(ORG))
        assert data["endpoint"]["cert_sha256"] == pin
        assert "reachable at plan init" in data["endpoint"]["checked"]
        assert data["schedule"] == {"start": "2027-01", "go_live": "2027-03"}
        ids = [c["id"] for c in data["cases"]]
        assert "conformance/valid-order" in ids
        assert "conformance/month-end-burst" in ids
        library = sorted(p.stem for p in (REPO / "scenarios").glob("*.yaml"))
        assert sorted(i.split("/", 1)[1] for i in ids if i.startswith("scenario/")) == library
        partly = next(c for c in data["cases"] if c["id"] == "scenario/supplier-outage")
        assert partly["applies"] is True
        assert "do not apply" in partly["reason"]

    def test_an_unreachable_endpoint_is_said_not_pinned(
        self, state: StateDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (port,) = free_ports(1)
        plan = tmp_path / "p.yaml"
        code = main(
            [
                "--state",
                str(state.root),
                "plan",
                "init",
                "--org-number",
                ORG,
                "--name",
                "X",
                "--endpoint",
                f"https://127.0.0.1:{port}/b2b/envelopes",
                "--endpoint-ca",
                str(state.ca_cert),
                "--scenarios",
                str(REPO / "scenarios"),
                "--out",
                str(plan),
            ]
        )
        assert code == 0
        data = yaml.safe_load(plan.read_text())
        assert data["endpoint"]["cert_sha256"] is None
        assert data["endpoint"]["checked"].startswith("not reachable at plan init")
        assert "not reachable" in capsys.readouterr().out

    def test_an_untrusted_endpoint_is_said_not_pinned(
        self, setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        other = StateDir(tmp_path / "other")
        init_pki(other, [])
        plan = tmp_path / "p.yaml"
        code = setup.cli(
            "plan", "init", "--org-number", ORG, "--name", "X", "--endpoint", setup.receiver.url,
            "--endpoint-ca", str(other.ca_cert), "--scenarios", str(REPO / "scenarios"),
            "--out", str(plan),
        )  # fmt: skip
        assert code == 0
        endpoint = yaml.safe_load(plan.read_text())["endpoint"]
        assert endpoint["cert_sha256"] is None
        assert endpoint["checked"].startswith("not trusted at plan init")
        assert "untrusted certificate" in endpoint["checked"]

    def test_a_wrong_org_number_writes_nothing(
        self, state: StateDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        plan = tmp_path / "p.yaml"
        code = main(
            [
                "--state",
                str(state.root),
                "plan",
                "init",
                "--org-number",
                "5520000001",
                "--name",
                "X",
                "--endpoint",
                "https://127.0.0.1:1/b2b/envelopes",
                "--endpoint-ca",
                str(state.ca_cert),
                "--out",
                str(plan),
            ]
        )
        assert code == 2
        assert not plan.exists()
        assert "organisation number" in capsys.readouterr().err


# --- run and status ------------------------------------------------------------------


class TestRun:
    def test_keeps_verdicts_envelopes_and_answers(self, setup: Setup) -> None:
        code = setup.cli(
            "plan", "run", str(setup.plan), "--case", "valid-order", "--case", "unsigned"
        )
        assert code == 1  # unsigned: the receiver took an unsigned envelope
        (run_dir,) = runs_of(setup.plan)
        run = run_json(run_dir)
        assert verdicts(run) == {
            "conformance/valid-order": "passed",
            "conformance/unsigned": "failed",
        }
        assert run["endpoint"]["cert_sha256"] == cert_sha256(setup.state.supplier_cert(ORG))
        assert run["icc_cert_sha256"] == cert_sha256(setup.state.icc_cert)
        assert run["tool_version"]
        assert run["rule_sets"][0]["release"]
        assert run["started_at"] <= run["finished_at"]
        order = next(c for c in run["cases"] if c["id"] == "conformance/valid-order")
        sent = run_dir / "cases" / "conformance-valid-order" / "001-sent.xml"
        answer = json.loads(
            (run_dir / "cases" / "conformance-valid-order" / "001-answer.json").read_text()
        )
        assert b"Envelope" in sent.read_bytes()
        assert answer["status"] == 201
        assert answer["sent"] == "001-sent.xml"
        assert "accepted" in answer["body"]
        assert order["files"] == [
            "cases/conformance-valid-order/001-sent.xml",
            "cases/conformance-valid-order/001-answer.json",
        ]
        envelope_id = etree.fromstring(sent.read_bytes()).findtext(
            ".//sbd:DocumentIdentification/sbd:InstanceIdentifier", "", NS
        )
        assert envelope_id in setup.receiver.seen
        junit = etree.parse(str(run_dir / "junit.xml"))
        failures = junit.findall(".//testcase/failure/..")
        assert [f.get("name") for f in failures] == ["conformance/unsigned"]
        html = (run_dir / "report.html").read_text()
        assert "onboarding steps" in html
        assert "conformance/unsigned" in html
        assert "<link" not in html
        assert "src=" not in html
        assert "href=" not in html

    def test_status_shows_the_last_verdict_seed_and_what_is_missing(
        self, setup: Setup, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert setup.cli("plan", "run", str(setup.plan), "--case", "unsigned", "--seed", "3") == 1
        assert (
            setup.cli("plan", "run", str(setup.plan), "--case", "valid-order", "--seed", "4") == 0
        )
        capsys.readouterr()
        assert setup.cli("plan", "status", str(setup.plan), "--json") == 1  # not ready
        status = json.loads(capsys.readouterr().out)
        cases = {c["id"]: c for c in status["cases"]}
        assert (
            cases["conformance/valid-order"]["verdict"],
            cases["conformance/valid-order"]["seed"],
        ) == ("passed", 4)
        assert (
            cases["conformance/unsigned"]["verdict"],
            cases["conformance/unsigned"]["seed"],
        ) == ("failed", 3)
        assert cases["conformance/duplicate"]["verdict"] == "never run"
        steps = {s["step"]: s for s in status["checklist"]}
        assert len(steps) == 7
        assert steps[1]["done"]
        assert steps[2]["done"]
        assert steps[3]["done"]
        assert "conformance/unsigned: failed" in steps[5]["missing"][0]
        assert "conformance/duplicate: never run" in steps[5]["missing"][0]
        assert not steps[6]["done"]
        assert not steps[7]["done"]
        assert status["ready"] is False
        assert setup.cli("plan", "status", str(setup.plan)) == 1
        text = capsys.readouterr().out
        assert "conformance/unsigned" in text
        assert "failed at" in text
        assert "seed 3" in text
        assert "7. Decision meeting: missing" in text

    def test_no_readback_is_missing_in_the_checklist(
        self, setup: Setup, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert setup.cli(*init_args(setup)) == 0
        capsys.readouterr()
        setup.cli("plan", "status", str(setup.plan), "--json")
        steps = json.loads(capsys.readouterr().out)["checklist"]
        assert any("no read-back" in m for m in steps[5]["missing"])

    def test_an_interrupted_run_leaves_nothing(
        self, setup: Setup, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from simulator.kits import plan_run

        def interrupted(_run: Any) -> bytes:
            raise KeyboardInterrupt

        monkeypatch.setattr(plan_run, "plan_junit", interrupted)
        assert setup.cli("plan", "run", str(setup.plan), "--case", "valid-order") == 130
        assert runs_of(setup.plan) == []

    def test_an_endpoint_gone_at_run_time_is_exit_2_and_nothing_kept(
        self, setup: Setup, capsys: pytest.CaptureFixture[str]
    ) -> None:
        setup.receiver.stop()
        assert setup.cli("plan", "run", str(setup.plan), "--case", "valid-order") == 2
        assert "ENDPOINT_UNUSABLE" in capsys.readouterr().err
        assert runs_of(setup.plan) == []

    def test_an_unknown_case_is_a_usage_error(
        self, setup: Setup, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert setup.cli("plan", "run", str(setup.plan), "--case", "no-such-case") == 2
        assert "no case 'no-such-case'" in capsys.readouterr().err
        assert setup.cli("plan", "run", str(setup.plan), "--case", "out-of-order") == 2
        err = capsys.readouterr().err
        assert "names 2 cases: conformance/out-of-order, scenario/out-of-order" in err
        assert runs_of(setup.plan) == []


# --- the evidence pack ---------------------------------------------------------------


def rewrite(pack: Path, out: Path, change: dict[str, bytes | None]) -> Path:
    """``pack`` written again as a proper zip, with members replaced, added or (None) removed."""
    with zipfile.ZipFile(pack) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename in change:
                data = change[info.filename]
                if data is not None:
                    dst.writestr(info.filename, data)
            else:
                dst.writestr(info.filename, src.read(info))
        for name, data in change.items():
            if name not in src.namelist() and data is not None:
                dst.writestr(name, data)
    return out


@pytest.fixture
def pack(setup: Setup, tmp_path: Path) -> Path:
    assert setup.cli("plan", "run", str(setup.plan), "--case", "valid-order", "--seed", "5") == 0
    assert setup.cli("plan", "run", str(setup.plan), "--case", "unsigned", "--seed", "6") == 1
    out = tmp_path / "evidence.zip"
    assert setup.cli("plan", "evidence", str(setup.plan), "--out", str(out)) == 0
    return out


def verify(setup: Setup, pack: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = setup.cli("evidence", "verify", str(pack))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


class TestEvidence:
    def test_the_pack_verifies_and_claims_only_what_was_run(
        self, setup: Setup, pack: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out = verify(setup, pack, capsys)
        assert code == 0, out
        assert "verified" in out
        with zipfile.ZipFile(pack) as z:
            names = set(z.namelist())
            manifest = json.loads(z.read("manifest.json"))
            for name, digest in manifest["files"].items():
                assert hashlib.sha256(z.read(name)).hexdigest() == digest
        assert names == {"manifest.json", "manifest.p7s", *manifest["files"]}
        assert {"report.html", "junit.xml", "status.json"} <= names
        assert any(n.endswith("conformance-valid-order/001-sent.xml") for n in names)
        assert any(n.endswith("conformance-unsigned/001-answer.json") for n in names)
        cases = {c["id"]: c for c in manifest["cases"]}
        assert cases["conformance/valid-order"]["verdict"] == "passed"
        assert cases["conformance/unsigned"]["verdict"] == "failed"
        assert cases["conformance/duplicate"]["verdict"] == "never run"
        assert manifest["seeds"] == [5, 6]
        assert manifest["ready"] is False
        assert manifest["supplier_cert_sha256"] == cert_sha256(setup.state.supplier_cert(ORG))
        assert manifest["icc_cert_sha256"] == cert_sha256(setup.state.icc_cert)
        assert manifest["endpoint"]["url"] == setup.receiver.url
        assert manifest["started_at"] <= manifest["finished_at"]

    def test_one_byte_changed_in_one_file_is_refused_naming_it(
        self, setup: Setup, pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with zipfile.ZipFile(pack) as z:
            name = next(
                n for n in z.namelist() if n.endswith("conformance-valid-order/001-sent.xml")
            )
            data = bytearray(z.read(name))
        data[len(data) // 2] ^= 0x01
        code, out = verify(setup, rewrite(pack, tmp_path / "x.zip", {name: bytes(data)}), capsys)
        assert code == 1
        lines = out.strip().splitlines()
        assert lines[0] == f"changed: {name} (its SHA-256 is not the manifest's)"
        assert len(lines) == 2
        assert "REFUSED, 1 finding" in lines[1]

    def test_a_byte_flipped_inside_the_zip_is_refused_naming_the_file(
        self, setup: Setup, pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        raw = bytearray(pack.read_bytes())
        with zipfile.ZipFile(pack) as z:
            info = z.getinfo("report.html")
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        raw[start + info.compress_size // 2] ^= 0xFF
        flipped = tmp_path / "flipped.zip"
        flipped.write_bytes(bytes(raw))
        code, out = verify(setup, flipped, capsys)
        assert code == 1
        assert out.splitlines()[0].startswith("changed: report.html")

    def test_an_added_and_a_removed_file_are_named(
        self, setup: Setup, pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out = verify(setup, rewrite(pack, tmp_path / "a.zip", {"extra.txt": b"x"}), capsys)
        assert code == 1
        assert "added: extra.txt (in the pack, not in the manifest)" in out
        code, out = verify(setup, rewrite(pack, tmp_path / "r.zip", {"junit.xml": None}), capsys)
        assert code == 1
        assert "removed: junit.xml (the manifest lists it; the pack lacks it)" in out

    def test_a_changed_manifest_or_signature_is_refused(
        self, setup: Setup, pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with zipfile.ZipFile(pack) as z:
            manifest = json.loads(z.read("manifest.json"))
            signature = bytearray(z.read("manifest.p7s"))
        manifest["cases"][1]["verdict"] = "passed"  # claiming what did not pass
        edited = (json.dumps(manifest, indent=2) + "\n").encode()
        code, out = verify(
            setup, rewrite(pack, tmp_path / "m.zip", {"manifest.json": edited}), capsys
        )
        assert code == 1
        assert "changed: manifest.json (its digest is not the one signed)" in out
        signature[-10] ^= 0x01  # inside the ECDSA signature value, at the end of the DER
        tampered = rewrite(pack, tmp_path / "s.zip", {"manifest.p7s": bytes(signature)})
        code, out = verify(setup, tampered, capsys)
        assert code == 1
        assert "signature:" in out

    def test_another_ca_is_refused_in_the_chain(
        self, setup: Setup, pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        other = StateDir(tmp_path / "other")
        init_pki(other, [])
        capsys.readouterr()
        code = setup.cli("evidence", "verify", str(pack), "--ca", str(other.ca_cert))
        out = capsys.readouterr().out
        assert code == 1
        assert out.startswith("chain: the signer's certificate does not chain")

    def test_a_manifest_signed_by_another_key_of_the_ca_is_refused(
        self, setup: Setup, pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The ICC's certificate chains to the same CA, but it is no evidence signer."""
        icc = EvidenceSigner(
            load_certificate(setup.state.icc_cert),
            load_private_key(setup.state.icc_key),
            load_certificate(setup.state.ca_cert),
            setup.state.icc_cert,
        )
        with zipfile.ZipFile(pack) as z:
            manifest = z.read("manifest.json")
        forged = rewrite(pack, tmp_path / "f.zip", {"manifest.p7s": sign_manifest(manifest, icc)})
        code, out = verify(setup, forged, capsys)
        assert code == 1
        assert out.startswith("chain: the signer's certificate does not chain")
        assert "EKU" in out

    def test_a_truncated_zip_or_no_pack_is_a_one_line_error(
        self, setup: Setup, pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        cut = tmp_path / "cut.zip"
        cut.write_bytes(pack.read_bytes()[: pack.stat().st_size // 2])
        code, out = verify(setup, cut, capsys)
        assert code == 2
        assert len(out.strip().splitlines()) == 1
        assert "EVIDENCE_UNREADABLE" in out
        assert "no evidence pack" in out
        plain = tmp_path / "plain.zip"
        with zipfile.ZipFile(plain, "w") as z:
            z.writestr("hello.txt", "hi")
        code, out = verify(setup, plain, capsys)
        assert code == 2
        assert "it has no manifest.json" in out


# --- a scenario against the receiver, through a real broker --------------------------


@pytest.mark.broker
def test_a_scenario_runs_against_the_endpoint_and_is_kept(setup: Setup, broker_url: str) -> None:
    code = setup.cli(
        "plan", "run", str(setup.plan), "--case", "scenario/happy-path-order",
        "--seed", "9", "--broker", broker_url,
    )  # fmt: skip
    (run_dir,) = runs_of(setup.plan)
    run = run_json(run_dir)
    case = run["cases"][0]
    assert (code, case["verdict"]) == (0, "passed"), case["reason"]
    folder = run_dir / "cases" / "scenario-happy-path-order"
    result = json.loads((folder / "result.json").read_text())
    assert result["seed"] == 9
    assert result["endpoint"]["org_number"] == ORG
    events = [
        json.loads(line) for f in folder.glob("icc-*.jsonl") for line in f.read_text().splitlines()
    ]
    answers = [e for e in events if e["event"] == "delivered" and e["org_number"] == ORG]
    assert answers
    assert {e["receipt"] for e in answers} == {"accepted"}
    assert {e["envelope_id"] for e in answers} <= set(setup.receiver.seen)
    sent = [json.loads(line) for line in (folder / "sent.jsonl").read_text().splitlines()]
    assert {s["envelope_id"] for s in sent} == {e["envelope_id"] for e in answers}
    for record in sent:
        body = (folder / record["file"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == record["sha256"]
        assert record["org_number"] == ORG
    assert set(case["files"]) >= {f"cases/{folder.name}/{s['file']}" for s in sent}


@pytest.mark.broker
def test_an_attack_on_another_supplier_runs_beside_the_endpoint(
    setup: Setup, broker_url: str
) -> None:
    """tampered-envelope forges a signer with another supplier's key: never the external one's,
    which is not the run's (that crashed the run)."""
    code = setup.cli(
        "plan", "run", str(setup.plan), "--case", "scenario/tampered-envelope",
        "--seed", "2", "--broker", broker_url,
    )  # fmt: skip
    (run_dir,) = runs_of(setup.plan)
    (case,) = run_json(run_dir)["cases"]
    assert (code, case["verdict"]) == (0, "passed"), case["reason"]
