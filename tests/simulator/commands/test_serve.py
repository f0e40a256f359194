"""Tests of simulator.commands.serve: running a component until a signal."""

from __future__ import annotations

import asyncio
import json
import os
import pstats
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.commands import serve
from simulator.lab.pki import init_pki, numbered_suppliers
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.identifiers import org_number_from_index
from simulator.vocabulary.registry import Registry, SupplierEntry
from simulator.vocabulary.state import StateDir


def test_profile_dir_gets_the_components_statistics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With $B2BSIM_PROFILE_DIR set, a component's run leaves NAME-PID.prof there, readable."""
    monkeypatch.setenv(serve.PROFILE_DIR_ENV, str(tmp_path / "prof"))

    async def main(stop: asyncio.Event) -> None:
        sum(i * i for i in range(10_000))

    assert serve._run_until_signal("demo", main) == 0
    out = tmp_path / "prof" / f"demo-{os.getpid()}.prof"
    stats = pstats.Stats(str(out))
    assert any(func[2] == "main" for func in stats.stats)  # type: ignore[attr-defined]


def test_without_profile_dir_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the variable the component just runs."""
    monkeypatch.delenv(serve.PROFILE_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    ran: list[bool] = []

    async def main(stop: asyncio.Event) -> None:
        ran.append(True)

    assert serve._run_until_signal("demo", main) == 0
    assert ran == [True]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("choice", "uvloop_used"), [(None, True), ("uvloop", True), ("asyncio", False)]
)
def test_event_loop_choice(
    choice: str | None, uvloop_used: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served components run on uvloop unless $B2BSIM_EVENT_LOOP says asyncio."""
    if choice is None:
        monkeypatch.delenv(serve.EVENT_LOOP_ENV, raising=False)
    else:
        monkeypatch.setenv(serve.EVENT_LOOP_ENV, choice)
    monkeypatch.delenv(serve.PROFILE_DIR_ENV, raising=False)
    loops: list[str] = []

    async def main(stop: asyncio.Event) -> None:
        loops.append(type(asyncio.get_running_loop()).__module__)

    serve._run_until_signal("demo", main)
    assert loops[0].startswith("uvloop") is uvloop_used


def test_unknown_event_loop_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt choice is refused, naming the variable."""
    monkeypatch.setenv(serve.EVENT_LOOP_ENV, "uv-loop")

    async def main(stop: asyncio.Event) -> None:
        raise AssertionError("must not run")

    with pytest.raises(ConfigError, match="B2BSIM_EVENT_LOOP"):
        serve._run_until_signal("demo", main)


def _one_supplier(tmp_path: Path) -> Path:
    registry = tmp_path / "registry.json"
    Registry(
        [
            SupplierEntry(
                org_number=org_number_from_index(1),
                name="A AB",
                url="https://127.0.0.1:9443/b2b/envelopes",
                cert_sha256="ab" * 32,
            )
        ]
    ).save(registry)
    return registry


def _serve_producer(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "simulator.cli", "--state", str(tmp_path), "serve"]
    return subprocess.run(
        [*command, "producer", "--registry", str(_one_supplier(tmp_path)), *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_producer_is_not_ready_before_the_broker_answers(tmp_path: Path) -> None:
    """With no broker answering, ``serve producer`` prints no ready event and one error line."""
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"stomp://127.0.0.1:{sock.getsockname()[1]}"
    done = _serve_producer(tmp_path, "--broker", dead)
    assert done.returncode != 0
    assert '"ready"' not in done.stdout
    assert done.stderr.count("\n") == 1, done.stderr
    assert dead.removeprefix("stomp://") in done.stderr


@pytest.mark.broker
def test_producer_is_ready_once_connected(tmp_path: Path, broker_url: str) -> None:
    """With a broker answering, the ready event comes first, then the chain is published."""
    done = _serve_producer(
        tmp_path, "--broker", broker_url, "--queue", f"/queue/test.serve.{os.getpid()}"
    )
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout.splitlines()[0])
    assert first == {
        "event": "ready",
        "component": "producer",
        "queue": f"/queue/test.serve.{os.getpid()}",
        "suppliers": 1,
    }


class TestOwnKeys:
    """`serve supplier-stub --cert FILE --key FILE`: the pair, and the one supplier it serves."""

    @pytest.fixture
    def pair(self, tmp_path: Path) -> tuple[Path, Path, str]:
        state = StateDir(tmp_path / "af")
        (supplier,) = numbered_suppliers(1)
        init_pki(state, [supplier])
        org = supplier.org_number
        return state.supplier_cert(org), state.supplier_key(org), org

    def test_neither_serves_as_asked(self) -> None:
        assert serve._own_keys(None, None, ["5520000000"]) == (None, ["5520000000"])
        assert serve._own_keys(None, None, None) == (None, None)

    def test_the_pair_serves_its_supplier_only(self, pair: tuple[Path, Path, str]) -> None:
        cert, key, org = pair
        own, orgs = serve._own_keys(cert, key, None)
        assert own is not None
        assert (own.cert, own.key, orgs) == (cert, key, [org])
        dashed = f"{org[:6]}-{org[6:]}"
        assert serve._own_keys(cert, key, [dashed])[1] == [org]

    def test_one_without_the_other(self, pair: tuple[Path, Path, str]) -> None:
        cert, key, _ = pair
        with pytest.raises(ConfigError, match="--cert and --key go together"):
            serve._own_keys(cert, None, None)
        with pytest.raises(ConfigError, match="--cert and --key go together"):
            serve._own_keys(None, key, None)

    def test_another_org_number(self, pair: tuple[Path, Path, str]) -> None:
        cert, key, org = pair
        other = org_number_from_index(3)
        with pytest.raises(ConfigError, match=f"supplier {org}'s, but --org-number asks for"):
            serve._own_keys(cert, key, [other])

    def test_a_certificate_of_no_supplier(self, pair: tuple[Path, Path, str]) -> None:
        cert, key, _ = pair
        ca = cert.parent.parent / "ca.pem"
        with pytest.raises(ConfigError, match="names no organisation number"):
            serve._own_keys(ca, key, None)
