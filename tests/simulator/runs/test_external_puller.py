"""`b2bsim run --endpoint-mode pull`: a scenario run against a supplier's own puller.

The pullers here are written for the tests, independently of ``supplier_stub/``:
an aiohttp client over mutual TLS (the supplier's certificate of the state
directory, trusting its AF test CA) that verifies each envelope with signxml
directly, keeps its own ledger and serves the read-back (GET /b2b/ledger).
Like a supplier's own rules might, every one of them refuses the first credit
note it gets; and each "restarts" (pauses 3.5 s, then starts again from its
saved cursor) after its third acknowledgement.  The run loses one
acknowledgement and answers 503 ``Retry-After: 2`` once, on purpose.

A correct puller passes; each broken one fails exactly its own check of the
puller (``pull.*``); the reference stub's puller, started by hand
(``b2bsim serve supplier-stub``), fails none.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from lxml import etree
from signxml.verifier import XMLVerifier

from simulator.cli import main
from simulator.lab.pki import SupplierIdentity, cert_sha256, init_pki
from simulator.lab.ports import free_ports
from simulator.runs.pull_endpoint import outbox_url, pull_endpoint
from simulator.runs.runner import RunOptions, RunResult, run_scenario
from simulator.runs.scenario import Produce, Scenario, Wait, load_scenario
from simulator.vocabulary.codes.refusals import DOCUMENT_INVALID
from simulator.vocabulary.registry import DeliveryMode, Registry, SupplierEntry
from simulator.vocabulary.state import StateDir

REPO = Path(__file__).resolve().parents[3]
ORG = "5520000000"  # Luhn-valid; supplier 1 of the run
NS = {"sbd": "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader"}
PULL_CHECKS = {
    "pull.ack_only_fetched",
    "pull.refetch_after_lost_ack",
    "pull.refusals_reported",
    "pull.honours_retry_after",
    "pull.resumes_from_cursor",
}


def small_pull_scenario() -> Scenario:
    """2 suppliers, 3 chains each (order, invoice, credit note): 18 messages; ours refuses 1."""
    base = load_scenario(REPO / "scenarios" / "bridge-crash.yaml")
    return dataclasses.replace(
        base,
        name="pull-external",
        supplier_count=2,
        icc_workers=1,
        timeout=120,
        steps=(Produce(chains=3, rate=20, background=True), Wait(timeout=60)),
        expect={"produced": 18, "ingested": 17, "dead_lettered": 1},
    )


class Puller:
    """A supplier's puller and its read-back server.

    ``mode``: ``correct``; ``overack`` acknowledges beyond the page it got;
    ``impatient`` retries a 503 after 0.2 s whatever its Retry-After;
    ``silent`` acknowledges past what it refuses without reporting it.
    """

    LIMIT = 2

    def __init__(self, state: StateDir, url: str, mode: str = "correct") -> None:
        self.mode, self.url = mode, url
        self.icc = x509.load_pem_x509_certificate(state.icc_cert.read_bytes())
        self.client = ssl.create_default_context(cafile=str(state.ca_cert))
        self.client.load_cert_chain(state.supplier_cert(ORG), state.supplier_key(ORG))
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_cert_chain(state.supplier_cert(ORG), state.supplier_key(ORG))
        server.load_verify_locations(cafile=state.ca_cert)
        self.server = server
        self.cursor = 0  # saved after each acknowledged page
        self.stored: set[str] = set()
        self.ledger: list[tuple[str, str]] = []
        self.refused_credit = False
        self.acks = 0
        self.port = 0
        self._stop = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def readback(self) -> str:
        return f"https://127.0.0.1:{self.port}/b2b/ledger"

    def __enter__(self) -> Puller:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        self._task = asyncio.run_coroutine_threadsafe(self._pull(), self._loop)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._task.result(20)
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/b2b/ledger", self._ledger)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        (self.port,) = free_ports(1)
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.server).start()

    async def _ledger(self, request: web.Request) -> web.Response:
        after, limit = int(request.query.get("after", 0)), int(request.query.get("limit", 500))
        entries = [
            {"position": i, "envelope_id": e, "message_id": m, "loaded_at_ms": 1_700_000_000 + i}
            for i, (e, m) in enumerate(self.ledger, 1)
            if i > after
        ]
        page = entries[:limit]
        more = len(entries) > limit
        return web.json_response({"entries": page, "next": page[-1]["position"] if more else None})

    async def _pull(self) -> None:
        while not self._stop.is_set():
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.client),
                timeout=aiohttp.ClientTimeout(total=10),
            ) as http:
                restart = await self._session(http)
            if restart:  # the puller "restarts": away for a while, then from its saved cursor
                await asyncio.sleep(3.5)

    async def _session(self, http: aiohttp.ClientSession) -> bool:
        """Poll until stopped (False) or until it is time to restart (True)."""
        while not self._stop.is_set():
            try:
                query = {"after": str(self.cursor), "limit": str(self.LIMIT)}
                async with http.get(self.url, params=query) as resp:
                    doc = await resp.json(content_type=None)
                    if await self._told_to_wait(resp):
                        continue
                if resp.status == 400 and doc.get("code") == "CURSOR_INVALID":
                    self.cursor = 0
                    continue
                if resp.status != 200 or not doc["envelopes"]:
                    await asyncio.sleep(0.1)
                    continue
                refused = [r for e in doc["envelopes"] if (r := self._store(e)) is not None]
                up_to = doc["envelopes"][-1]["cursor"]
                if await self._ack(http, up_to, refused) and self.acks == 3:
                    return True
            except (aiohttp.ClientError, OSError, TimeoutError):
                await asyncio.sleep(0.5)  # the ICC is away, or the acknowledgement was lost
        return False

    async def _told_to_wait(self, resp: aiohttp.ClientResponse) -> bool:
        if resp.status not in (429, 503):
            return False
        wait = 0.2 if self.mode == "impatient" else float(resp.headers.get("Retry-After", 1))
        await asyncio.sleep(wait)
        return True

    async def _ack(self, http: aiohttp.ClientSession, up_to: int, refused: list[Any]) -> bool:
        body: dict[str, Any] = {"up_to": up_to + (2 if self.mode == "overack" else 0)}
        if refused and self.mode != "silent":
            body["refused"] = refused
        async with http.post(self.url + "/ack", json=body) as resp:
            if await self._told_to_wait(resp):
                return False
            status = resp.status
        if status == 400 and self.mode == "overack":  # beyond any cursor issued yet
            async with http.post(self.url + "/ack", json={**body, "up_to": up_to}) as again:
                status = again.status
        if status != 204:
            return False
        self.cursor = up_to  # saved only once acknowledged
        self.acks += 1
        return True

    def _store(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """Verify and store one envelope, once; the refusal to report, if it refuses it."""
        body = base64.b64decode(item["envelope"])
        XMLVerifier().verify(body, x509_cert=self.icc, expect_references=1)
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
        scopes = {
            s.findtext("sbd:Type", namespaces=NS): s.findtext(
                "sbd:InstanceIdentifier", namespaces=NS
            )
            for s in root.iterfind(".//sbd:Scope", NS)
        }
        assert scopes.get("ORG_NUMBER") == ORG
        envelope_id = str(item["envelope_id"])
        if envelope_id in self.stored:
            return None  # fetched again: a duplicate, loaded once
        if item["message_type"] == "KREDIT" and not self.refused_credit:
            self.refused_credit = True  # our own rule refuses it, for good
            self.stored.add(envelope_id)
            return {
                "cursor": item["cursor"],
                "envelope_id": envelope_id,
                "code": DOCUMENT_INVALID,
                "reason": "the credit note names no invoice we know",
            }
        self.stored.add(envelope_id)
        self.ledger.append((envelope_id, str(scopes.get("MESSAGE_ID"))))
        return None


@pytest.fixture
def ext_state(tmp_path: Path) -> StateDir:
    """A state directory as AF gives it to a supplier: the test CA, the ICC, supplier ORG."""
    state = StateDir(tmp_path / "state").ensure()
    init_pki(state, [SupplierIdentity(ORG, "Leverantör Extern AB")])
    return state


def run_with(mode: str, state: StateDir, broker_url: str) -> tuple[RunResult, Puller]:
    (port,) = free_ports(1)
    with Puller(state, outbox_url(port), mode) as puller:
        endpoint = pull_endpoint(
            state,
            org_number=ORG,
            cert=state.supplier_cert(ORG),
            pull_port=port,
            readback=puller.readback,
        )
        options = RunOptions(state=state, broker_url=broker_url, endpoint=endpoint)
        result = run_scenario(small_pull_scenario(), options)
    return result, puller


def pull_failures(result: RunResult) -> dict[str, str]:
    return {
        e.name: e.reason
        for e in result.expectations
        if e.name in PULL_CHECKS and e.status == "graded" and not e.passed
    }


@pytest.mark.broker
@pytest.mark.integration
class TestPullersInTheChain:
    def test_a_correct_puller_passes(self, broker_url: str, ext_state: StateDir) -> None:
        result, puller = run_with("correct", ext_state, broker_url)
        statuses = {e.name: e.status for e in result.expectations}
        assert result.passed, ([(e.name, e.reason) for e in result.expectations], result.error)
        assert {n: statuses[n] for n in PULL_CHECKS} == dict.fromkeys(PULL_CHECKS, "graded")
        assert result.figures.lost == 0
        assert result.figures.dead_lettered == 1
        assert result.figures.dead_letters[0]["code"] == "PULL_REFUSED"
        assert result.figures.dead_letters[0]["reason"].startswith("DOCUMENT_INVALID: ")
        assert len(puller.ledger) == 8  # the lost acknowledgement's envelopes loaded once
        grade = result.endpoint
        assert grade is not None
        assert (len(grade.lost_ids), len(grade.double_ids)) == (0, 0)
        saved = json.loads((result.run_dir / "result.json").read_text())
        assert saved["verdict"] == "passed"

    @pytest.mark.parametrize(
        ("mode", "check", "says"),
        [
            ("overack", "pull.ack_only_fetched", "ack-only-fetched"),
            ("impatient", "pull.honours_retry_after", "honours-retry-after"),
            ("silent", "pull.refusals_reported", "refusals-reported"),
        ],
    )
    def test_a_broken_puller_fails_exactly_its_check(
        self, broker_url: str, ext_state: StateDir, mode: str, check: str, says: str
    ) -> None:
        result, _ = run_with(mode, ext_state, broker_url)
        failures = pull_failures(result)
        assert set(failures) == {check}, failures
        assert says in failures[check]
        assert result.verdict == "failed"


@pytest.mark.broker
@pytest.mark.integration
def test_the_reference_stubs_puller_started_by_hand_fails_no_check(
    broker_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`b2bsim serve supplier-stub` pulling, `b2bsim run --endpoint-mode pull`: no pull check
    fails, nothing is lost (the stub serves no read-back for a pulling supplier)."""
    state = tmp_path / "af-state"
    cli = [sys.executable, "-m", "simulator.cli", "--state", str(state)]
    subprocess.run([*cli, "pki", "init", "--suppliers", "1"], check=True, capture_output=True)
    org = json.loads((state / "registry.json").read_text())["suppliers"][0]["org_number"]
    (port,) = free_ports(1)
    registry = tmp_path / "stub-registry.json"
    Registry(
        [
            SupplierEntry(
                org_number=org,
                name="Leverantör Extern AB",
                url=outbox_url(port),
                cert_sha256=cert_sha256(StateDir(state).supplier_cert(org)),
                delivery_mode=DeliveryMode.PULL,
            )
        ]
    ).save(registry)
    stub = subprocess.Popen(
        [
            *cli,
            "serve",
            "supplier-stub",
            "--registry",
            str(registry),
            "--db",
            str(tmp_path / "stub.sqlite"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert stub.stdout is not None
        stub.stdout.readline()  # ready
        scenario = tmp_path / "pull-external.yaml"
        scenario.write_text(
            "name: pull-external\ndescription: the stub's puller as an external supplier\n"
            "seed: 3\nsuppliers: {count: 2}\ntimeout: 120\n"
            "steps:\n  - produce: {chains: 3, rate: 20, background: true}\n"
            "  - wait: {timeout: 60}\n"
            "expect: {produced: 18, ingested: 18}\n"
        )
        out = tmp_path / "result.json"
        code = main(
            [
                "--state",
                str(state),
                "run",
                str(scenario),
                "--broker",
                broker_url,
                "--endpoint-mode",
                "pull",
                "--org-number",
                org,
                "--pull-port",
                str(port),
                "--result-json",
                str(out),
            ]
        )
        result = json.loads(out.read_text())
    finally:
        stub.send_signal(signal.SIGTERM)
        stub.wait(20)
        if stub.stdout is not None:
            stub.stdout.close()
    # The run told the puller where to fetch, what to trust and what it registered.
    said = capsys.readouterr().out
    assert f"external supplier {org} pulls from {outbox_url(port)}" in said
    assert str(state / "pki" / "ca.pem") in said
    checks = {c["name"]: c for c in result["endpoint"]["checks"]}
    assert {
        n for n in PULL_CHECKS if checks[n]["status"] == "graded" and checks[n]["failures"]
    } == set()
    for name in (
        "pull.ack_only_fetched",
        "pull.refetch_after_lost_ack",
        "pull.honours_retry_after",
    ):
        assert checks[name]["status"] == "graded", checks[name]
    assert result["endpoint"]["lost"] == 0
    assert result["lost"] == 0
    assert result["verdict"] == "not graded (no read-back)"
    assert code == 1  # what only a read-back proves was not graded


class TestBadInput:
    def _run(self, state: StateDir, *extra: str) -> int:
        scenario = str(REPO / "scenarios" / "pull-mode.yaml")
        return main(
            ["--state", str(state.root), "run", scenario, "--endpoint-mode", "pull", *extra]
        )

    def _one_line(self, capsys: pytest.CaptureFixture[str]) -> str:
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    def test_endpoint_is_refused_in_pull_mode(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = self._run(ext_state, "--org-number", ORG, "--endpoint", "https://127.0.0.1:1/x")
        assert code == 2
        assert "a pulling supplier has none" in self._one_line(capsys)
        assert not ext_state.runs.exists() or not any(ext_state.runs.iterdir())

    def test_a_certificate_of_another_ca(
        self, ext_state: StateDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        other = StateDir(tmp_path / "other").ensure()
        init_pki(other, [SupplierIdentity(ORG, "Leverantör Extern AB")])
        code = self._run(
            ext_state, "--org-number", ORG, "--endpoint-cert", str(other.supplier_cert(ORG))
        )
        assert code == 2
        assert "is not issued by the AF test CA of --state" in self._one_line(capsys)

    def test_a_certificate_of_another_supplier(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = self._run(
            ext_state,
            "--org-number",
            "5560000001",
            "--endpoint-cert",
            str(ext_state.supplier_cert(ORG)),
        )
        assert code == 2
        assert f"names organisation {ORG}, not --org-number 5560000001" in self._one_line(capsys)

    def test_no_certificate_known(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert self._run(ext_state, "--org-number", "5560000001") == 2
        assert "pass --endpoint-cert FILE" in self._one_line(capsys)

    def test_a_pull_port_in_use(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            code = self._run(ext_state, "--org-number", ORG, "--pull-port", str(port))
        assert code == 2
        assert f"cannot serve the outbox on 127.0.0.1:{port}" in self._one_line(capsys)

    def test_pull_options_without_pull_mode(
        self, ext_state: StateDir, capsys: pytest.CaptureFixture[str]
    ) -> None:
        scenario = str(REPO / "scenarios" / "pull-mode.yaml")
        code = main(["--state", str(ext_state.root), "run", scenario, "--pull-port", "9500"])
        assert code == 2
        assert "--pull-port only applies with --endpoint-mode pull" in self._one_line(capsys)
