"""``b2bsim conformance --mode pull``: the command line, bad input, and the kit's outbox.

The grading against pullers is tests/simulator/kits/test_conformance_pullers.py;
here: what the command prints and refuses, and the outbox's own protocol
(identity, the acknowledgement's ``refused`` list, cursors).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from simulator import cli
from simulator.kits.conformance_outbox import Fault, KitOutbox
from simulator.kits.conformance_pull_cases import PULL_CASES, PUSH_ONLY
from simulator.lab.pki import init_pki, numbered_suppliers
from simulator.vocabulary.certs import cert_sha256
from simulator.vocabulary.identifiers import org_number_from_index
from simulator.vocabulary.state import StateDir

REPO = Path(__file__).resolve().parents[3]
PULL_ARGS = ("--listen", "127.0.0.1:0", "--org-number", "ORG")


@dataclass(frozen=True)
class Setup:
    state: StateDir
    org_number: str
    other_org: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    state = StateDir(tmp_path_factory.mktemp("pullkit") / "state")
    suppliers = numbered_suppliers(2)
    init_pki(state, suppliers)
    return Setup(state, suppliers[0].org_number, suppliers[1].org_number)


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cli(setup: Setup, *extra: str) -> int:
    return cli.main(["--state", str(setup.state.root), "conformance", "--mode", "pull", *extra])


class TestBadInput:
    @pytest.mark.parametrize(
        ("args", "says"),
        [
            (["--listen", "127.0.0.1:0", "--org-number", "5560125791"], "is not a Swedish"),
            (["--listen", "127.0.0.1:0", "--org-number", "UNKNOWN"], "unknown organisation"),
            (["--listen", "nohost", "--org-number", "ORG"], "--listen 'nohost' is not HOST:PORT"),
            (["--listen", "127.0.0.1:70000", "--org-number", "ORG"], "is not HOST:PORT"),
            (["--listen", ":9600", "--org-number", "ORG"], "is not HOST:PORT"),
            (["--org-number", "ORG"], "needs --listen"),
            (["--listen", "127.0.0.1:0", "--org-number", "ORG", "--target", "https://x/"], "push"),
            (
                ["--listen", "127.0.0.1:0", "--org-number", "ORG", "--case", "client-foreign-ca"],
                "push only",
            ),
            (
                [*PULL_ARGS, "--readback", "https://127.0.0.1:1/b2b/ledger"],
                "cannot read the read-back https://127.0.0.1:1/b2b/ledger",
            ),
            (
                [*PULL_ARGS, "--readback", "http://127.0.0.1:1/b2b/ledger"],
                "is not an https URL",
            ),
        ],
        ids=[
            "not-luhn",
            "unknown-org",
            "no-port",
            "big-port",
            "no-host",
            "no-listen",
            "push-option",
            "push-case",
            "readback-down",
            "readback-http",
        ],
    )
    def test_one_line_and_exit_2(
        self, setup: Setup, capsys: pytest.CaptureFixture[str], args: list[str], says: str
    ) -> None:
        unknown = org_number_from_index(4242, prefix="55")
        args = [setup.org_number if a == "ORG" else unknown if a == "UNKNOWN" else a for a in args]
        assert _cli(setup, *args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert says in err
        assert " — " in err  # what to do

    def test_a_port_taken_is_one_line_and_exit_2(
        self, setup: Setup, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            code = _cli(setup, "--listen", f"127.0.0.1:{port}", "--org-number", setup.org_number)
        err = capsys.readouterr().err
        assert code == 2
        assert err.count("\n") == 1, err
        assert f"cannot listen on 127.0.0.1:{port}" in err

    def test_pull_options_in_push_mode_are_refused(
        self, setup: Setup, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = cli.main(
            ["--state", str(setup.state.root), "conformance", "--listen", "127.0.0.1:0"]
        )
        assert code == 2
        assert "--listen only apply to --mode pull" in capsys.readouterr().err


class TestWithoutAPuller:
    def test_it_says_where_it_listens_and_fails_not_exercised(
        self, setup: Setup, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No puller within --timeout: every case failed 'not exercised', exit 1, never passed."""
        port = _free_port()
        code = _cli(
            setup,
            *("--listen", f"127.0.0.1:{port}", "--org-number", setup.org_number),
            *("--timeout", "0.3", "--case", "valid-order", "--case", "lost-ack-503"),
        )
        out = capsys.readouterr().out
        assert code == 1, out
        url = f"https://127.0.0.1:{port}/b2b/outbox"
        assert f"the kit plays the ICC's outbox at {url}" in out
        assert f"pin the ICC       SHA-256 {cert_sha256(setup.state.icc_cert)}" in out
        assert f"the certificate of organisation {setup.org_number}" in out
        assert str(setup.state.ca_cert) in out
        assert "waiting up to 0.3 s for the puller's first request" in out
        for case in ("valid-order", "lost-ack-503"):
            assert re.search(
                rf"^FAIL {case}: .* not exercised: no puller fetched from {url}", out, re.M
            )
        assert "0 passed, 2 failed, 0 not graded — NOT passed" in out

    def test_list_shows_the_pull_plan(
        self, setup: Setup, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert _cli(setup, "--list") == 0
        out = capsys.readouterr().out
        listed = [line.split(":", 1)[0] for line in out.splitlines()]
        assert listed == [c.id for c in PULL_CASES]
        assert not PUSH_ONLY & set(listed) - {"month-end-burst"}


def _client(state: StateDir, org: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(state.ca_cert))
    ctx.load_cert_chain(state.supplier_cert(org), state.supplier_key(org))
    return ctx


class TestOutbox:
    async def _outbox(self, setup: Setup) -> KitOutbox:
        state = setup.state
        outbox = KitOutbox(
            "127.0.0.1",
            0,
            setup.org_number,
            cert_sha256(state.supplier_cert(setup.org_number)),
            state.icc_cert,
            state.icc_key,
            state.ca_cert,
        )
        await outbox.start()
        return outbox

    async def test_another_supplier_is_refused_and_named(self, setup: Setup) -> None:
        outbox = await self._outbox(setup)
        try:
            async with aiohttp.ClientSession() as http:
                ctx = _client(setup.state, setup.other_org)
                async with http.get(outbox.url, ssl=ctx) as resp:
                    assert resp.status == 403
                    assert (await resp.json())["code"] == "CLIENT_NOT_SUPPLIER"
        finally:
            await outbox.stop()
        assert outbox.requests == []
        assert outbox.strangers == [f"a client naming organisation {setup.other_org}"]

    async def test_the_refused_list_and_what_was_served(self, setup: Setup) -> None:
        """Refusals are recorded for fetched cursors only; an ack beyond is a violation."""
        outbox = await self._outbox(setup)
        first = outbox.add(b"<a/>", "id-1", "INKOPSORDER")
        second = outbox.add(b"<b/>", "id-2", "KREDIT")
        outbox.page_cap = 1
        ctx = _client(setup.state, setup.org_number)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(outbox.url, params={"after": "0"}, ssl=ctx) as resp:
                    page = await resp.json()
                assert [e["cursor"] for e in page["envelopes"]] == [1]
                assert page["more"] is True
                refused = [
                    {
                        "cursor": 1,
                        "envelope_id": "id-1",
                        "code": "SIGNATURE_INVALID",
                        "reason": "x",
                    },
                    {"cursor": 2, "envelope_id": "id-2", "code": "SIGNATURE_INVALID"},
                ]
                body = {"up_to": 2, "refused": refused}
                async with http.post(outbox.url + "/ack", json=body, ssl=ctx) as resp:
                    assert resp.status == 400  # a refusal needs its reason, as the ICC's does
                    assert (await resp.json())["code"] == "ACK_INVALID"
                refused[1]["reason"] = "y"
                async with http.post(outbox.url + "/ack", json=body, ssl=ctx) as resp:
                    assert resp.status == 204
                async with http.post(outbox.url + "/ack", json={"upto": 1}, ssl=ctx) as resp:
                    assert resp.status == 400
                    assert (await resp.json())["code"] == "ACK_INVALID"
                async with http.get(outbox.url, params={"after": "9"}, ssl=ctx) as resp:
                    assert resp.status == 400
                    assert (await resp.json())["code"] == "CURSOR_INVALID"
        finally:
            await outbox.stop()
        assert first.settled
        assert first.refusal is not None
        assert first.refusal.code == "SIGNATURE_INVALID"
        assert not second.settled
        assert second.refusal is None
        missing_reason, *rest = outbox.violations
        assert "is not {cursor, envelope_id, code, reason}" in missing_reason
        assert rest[0].startswith("acknowledged up to cursor 2, but the kit had")
        assert rest[1] == "listed cursor 2 as refused, never served to it"
        assert rest[2].startswith("sent an acknowledgement the ICC refuses")

    async def test_a_fault_answers_once_with_retry_after(self, setup: Setup) -> None:
        outbox = await self._outbox(setup)
        fault = outbox.fault(Fault("GET", 429, retry_after=2))
        ctx = _client(setup.state, setup.org_number)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(outbox.url, ssl=ctx) as resp:
                    assert resp.status == 429
                    assert resp.headers["Retry-After"] == "2"
                async with http.get(outbox.url, ssl=ctx) as resp:
                    assert resp.status == 200
        finally:
            await outbox.stop()
        assert fault.hit_at is not None
        assert len(outbox.requests) == 2


class TestDocs:
    def test_every_pull_case_is_in_the_guide_and_links_a_section(self) -> None:
        text = (REPO / "docs" / "conformance.md").read_text()
        anchors = {
            re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{2,4} (.+)$", text, re.MULTILINE)
        }
        pull = text[text.index("## Pull mode") :]
        for case in PULL_CASES:
            assert case.rule in anchors, (case.id, case.rule)
            assert f"`{case.id}`" in pull, case.id

    def test_the_refused_list_is_part_of_the_api(self) -> None:
        api = (REPO / "docs" / "openapi.yaml").read_text()
        assert "refused:" in api
        assert '"refused"' in (REPO / "docs" / "pull.md").read_text()


async def test_the_kit_stops_listening_after_the_run(setup: Setup) -> None:
    """No listener is left behind: the port is free again once the report is made."""
    port = _free_port()
    code = await asyncio.to_thread(
        _cli_quiet, setup, "--listen", f"127.0.0.1:{port}", "--timeout", "0.2"
    )
    assert code == 1
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as again:
        again.bind(("127.0.0.1", port))


def _cli_quiet(setup: Setup, *extra: str) -> int:
    return _cli(setup, *extra, "--org-number", setup.org_number, "--case", "valid-order")
