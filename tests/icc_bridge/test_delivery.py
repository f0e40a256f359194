"""Tests of icc_bridge.delivery: what one push attempt reports, against a real TLS server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest
from aiohttp import web

from icc_bridge.delivery import Outcome, PushClient
from simulator.lab.pki import cert_sha256, init_pki, numbered_suppliers
from simulator.lab.ports import free_ports
from simulator.vocabulary.codes.refusals import ENVELOPE_STALE
from simulator.vocabulary.problems import PROBLEM_MEDIA_TYPE, problem
from simulator.vocabulary.registry import SupplierEntry
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import server_context

SUPPLIERS = numbered_suppliers(2)
TIMEOUT = 0.5  # the client's delivery timeout in these tests, seconds
#: What a refusal's excerpt may hold at most (characters), whatever the supplier sent.
EXCERPT_MAX = 200
#: What a problem document's code and detail may hold at most (the DLQ reason holds 500).
PROBLEM_MAX = 400


@dataclass
class Server:
    """A supplier-like HTTPS server and a push client pinned to it."""

    client: PushClient
    entry: SupplierEntry  # supplier 0, served with its own certificate
    other_pin: str  # supplier 1's fingerprint: not what the server presents

    def at(self, path: str) -> SupplierEntry:
        return replace(self.entry, url=self.entry.url.replace("/b2b/envelopes", path))


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    state = StateDir(tmp_path_factory.mktemp("delivery") / "state")
    init_pki(state, SUPPLIERS)
    return state


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(TIMEOUT * 6)
    return web.json_response({"status": "accepted"}, status=201)


async def _refuse_plain_json(request: web.Request) -> web.Response:
    return web.json_response({"error": "refused"}, status=400)


async def _refuse_noisy(request: web.Request) -> web.Response:
    body = '{"error": "line one\\nline two", "\x1b[31m": 1, "pad": "' + "x" * 5000 + '"}'
    return web.Response(status=400, body=b"\x00\x07" + body.encode(), content_type="text/plain")


async def _refuse_empty(request: web.Request) -> web.Response:
    return web.Response(status=400)


#: A stale envelope's refusal as the stub words it (simulator/vocabulary/verifier.py).
STALE_DETAIL = (
    "the envelope 6f1c1d0e-8a43-4a53-9d4c-2b8e1c7e0a11 was created at "
    "2026-12-01T21:04:06.000Z, 312 s in the future by the receiver's clock (allowed skew "
    "300 s; the receiver's clock read 2026-12-01T20:58:54.000Z): the sender's clock is "
    "ahead, or the receiver's behind — check NTP on both"
)


async def _refuse_stale(request: web.Request) -> web.Response:
    status, body = problem(ENVELOPE_STALE, STALE_DETAIL)
    return web.Response(status=status, body=body, content_type=PROBLEM_MEDIA_TYPE)


async def _refuse_long_problem(request: web.Request) -> web.Response:
    status, body = problem(ENVELOPE_STALE, "\x1b[31mx" + "y" * 5000)
    return web.Response(status=status, body=body, content_type=PROBLEM_MEDIA_TYPE)


#: Where the /moved route says the endpoint went.
MOVED_TO = "/b2b/elsewhere"
#: What arrived at MOVED_TO (a redirect the client followed).
followed: list[str] = []


async def _moved(request: web.Request) -> web.Response:
    return web.Response(status=308, headers={"Location": MOVED_TO})


async def _elsewhere(request: web.Request) -> web.Response:
    followed.append(request.method)
    return web.json_response({"status": "accepted"}, status=201)


@pytest.fixture
async def server(state: StateDir) -> AsyncIterator[Server]:
    app = web.Application()
    app.router.add_post("/slow", _slow)
    app.router.add_post("/refuse", _refuse_plain_json)
    app.router.add_post("/noisy", _refuse_noisy)
    app.router.add_post("/empty", _refuse_empty)
    app.router.add_post("/stale", _refuse_stale)
    app.router.add_post("/long-problem", _refuse_long_problem)
    app.router.add_post("/moved", _moved)
    app.router.add_route("*", MOVED_TO, _elsewhere)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    org = SUPPLIERS[0].org_number
    ctx = server_context(state.supplier_cert(org), state.supplier_key(org), state.ca_cert)
    (port,) = free_ports(1)
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx)
    await site.start()
    client = PushClient(
        ca_cert=state.ca_cert, icc_cert=state.icc_cert, icc_key=state.icc_key, timeout=TIMEOUT
    )
    await client.start()
    entry = SupplierEntry(
        org_number=org,
        name=SUPPLIERS[0].name,
        url=f"https://127.0.0.1:{port}/b2b/envelopes",
        cert_sha256=cert_sha256(state.supplier_cert(org)),
    )
    other = cert_sha256(state.supplier_cert(SUPPLIERS[1].org_number))
    try:
        yield Server(client, entry, other)
    finally:
        await client.close()
        await runner.cleanup()


class TestTimeout:
    async def test_timeout_says_what_timed_out_and_after_how_long(self, server: Server) -> None:
        """A supplier that answers too late: a retry whose detail names the URL and the limit."""
        entry = server.at("/slow")
        attempt = await server.client.push(entry, b"<x/>")
        assert attempt.outcome is Outcome.RETRY
        assert attempt.status is None
        assert attempt.detail.startswith("timed out"), attempt.detail
        assert entry.url in attempt.detail
        assert f"{TIMEOUT:g} s" in attempt.detail
        assert "TimeoutError" not in attempt.detail


class TestRefusalBody:
    async def test_json_without_known_keys_keeps_an_excerpt(self, server: Server) -> None:
        """``{"error": "refused"}`` is kept in the detail, not dropped."""
        attempt = await server.client.push(server.at("/refuse"), b"<x/>")
        assert attempt.outcome is Outcome.REFUSED
        assert attempt.status == 400
        assert attempt.detail == '{"error": "refused"}'

    async def test_excerpt_is_short_and_printable(self, server: Server) -> None:
        """A long body with control characters: a bounded, one-line, printable excerpt."""
        attempt = await server.client.push(server.at("/noisy"), b"<x/>")
        assert attempt.status == 400
        assert len(attempt.detail) <= EXCERPT_MAX
        assert attempt.detail.isprintable(), repr(attempt.detail)
        assert attempt.detail.startswith('{"error": "line one\\nline two"')
        assert attempt.detail.endswith("…")

    async def test_problem_gives_its_code_and_detail(self, server: Server) -> None:
        """A problem document's code and its whole detail reach the detail (and so the DLQ
        reason): a stale envelope's says which clock and by how much."""
        attempt = await server.client.push(server.at("/stale"), b"<x/>")
        assert attempt.outcome is Outcome.REFUSED
        assert attempt.status == 422
        assert attempt.detail == f"{ENVELOPE_STALE}: {STALE_DETAIL}"

    async def test_problem_detail_is_bounded_and_printable(self, server: Server) -> None:
        """A problem with a huge detail: its code, then a bounded, printable excerpt."""
        attempt = await server.client.push(server.at("/long-problem"), b"<x/>")
        assert attempt.detail.startswith(f"{ENVELOPE_STALE}: [31mxyyy")
        assert len(attempt.detail) <= PROBLEM_MAX
        assert attempt.detail.isprintable(), repr(attempt.detail)
        assert attempt.detail.endswith("…")

    async def test_empty_body_says_so(self, server: Server) -> None:
        """A refusal without a body says that it had none."""
        attempt = await server.client.push(server.at("/empty"), b"<x/>")
        assert attempt.status == 400
        assert attempt.detail == "(no body)"


class TestPinMismatch:
    async def test_reason_is_a_plain_sentence(self, server: Server) -> None:
        """A server presenting another certificate than the pinned one: nothing sent, no repr."""
        entry = replace(server.at("/refuse"), cert_sha256=server.other_pin)
        attempt = await server.client.push(entry, b"<x/>")
        assert attempt.outcome is Outcome.RETRY
        assert attempt.status is None
        assert attempt.detail.startswith("certificate refused: server certificate SHA-256 ")
        assert server.other_pin in attempt.detail
        assert "(" + '"' not in attempt.detail
        assert not attempt.detail.endswith(",)")


class TestRedirect:
    async def test_a_redirect_is_not_followed_but_refused_naming_where(
        self, server: Server
    ) -> None:
        """308: the registry is the only source of the URL; the refusal names the new one."""
        followed.clear()
        attempt = await server.client.push(server.at("/moved"), b"<x/>")
        assert followed == []
        assert attempt.outcome is Outcome.REFUSED
        assert attempt.status == 308
        assert attempt.detail.startswith(f"moved to {MOVED_TO};")
        assert "update the registry" in attempt.detail


class TestWithoutPin:
    async def test_the_test_only_switch_accepts_another_certificate(
        self, server: Server, state: StateDir
    ) -> None:
        """pin=False (B2BSIM_ICC_TEST_NO_PIN): a wrong pin no longer stops the request."""
        client = PushClient(
            ca_cert=state.ca_cert, icc_cert=state.icc_cert, icc_key=state.icc_key, pin=False
        )
        await client.start()
        try:
            entry = replace(server.at("/refuse"), cert_sha256=server.other_pin)
            attempt = await client.push(entry, b"<x/>")
        finally:
            await client.close()
        assert attempt.status == 400  # the request went through: broken on purpose
