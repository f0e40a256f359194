"""Tests of simulator.commands.health: ``b2bsim health supplier-stub`` over real mutual TLS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from aiohttp import web

from simulator.commands import health
from simulator.lab.pki import cert_sha256, init_pki, numbered_suppliers
from simulator.lab.ports import free_ports
from simulator.vocabulary.registry import Registry, SupplierEntry
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import server_context

SUPPLIERS = numbered_suppliers(1)
ORG = SUPPLIERS[0].org_number

Serve = Callable[[web.Application], Coroutine[Any, Any, Registry]]


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    state = StateDir(tmp_path_factory.mktemp("health") / "state")
    init_pki(state, SUPPLIERS)
    return state


@pytest.fixture
async def serve(state: StateDir) -> AsyncIterator[Serve]:
    """Serve an app as supplier 0's endpoint; returns a registry naming it."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> Registry:
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        runners.append(runner)
        ctx = server_context(state.supplier_cert(ORG), state.supplier_key(ORG), state.ca_cert)
        (port,) = free_ports(1)
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
        return Registry(
            [
                SupplierEntry(
                    org_number=ORG,
                    name=SUPPLIERS[0].name,
                    url=f"https://127.0.0.1:{port}/b2b/envelopes",
                    cert_sha256=cert_sha256(state.supplier_cert(ORG)),
                )
            ]
        )

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.json_response({"status": "ok"})


class TestSupplierStub:
    async def test_answering_health_is_ok(
        self, state: StateDir, serve: Serve, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An endpoint that serves GET /health with 200: ok, exit 0."""
        app = web.Application()
        app.router.add_get(health.HEALTH_PATH, _ok)
        registry = await serve(app)
        assert await health._check_stub(state, registry) == 0
        assert capsys.readouterr().out.rstrip().endswith(": ok")

    async def test_own_endpoint_without_health_says_it_is_optional(
        self, state: StateDir, serve: Serve, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A supplier's own endpoint that answers 404: the line says /health is optional."""
        registry = await serve(web.Application())
        assert await health._check_stub(state, registry) == 1
        (line,) = capsys.readouterr().out.splitlines()
        assert "HTTP 404" in line
        assert "optional" in line
        assert "reachable" in line  # the handshake with the pinned certificate worked

    async def test_timeout_says_after_how_long(
        self,
        state: StateDir,
        serve: Serve,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An endpoint that does not answer in time: the line says so, not ``TimeoutError: ``."""
        monkeypatch.setattr(health, "TIMEOUT", 0.3)
        app = web.Application()
        app.router.add_get(health.HEALTH_PATH, _slow)
        registry = await serve(app)
        assert await health._check_stub(state, registry) == 1
        (line,) = capsys.readouterr().out.splitlines()
        assert "no answer within 0.3 s" in line
        assert "TimeoutError" not in line
