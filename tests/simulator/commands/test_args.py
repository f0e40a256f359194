"""Tests of simulator.commands.args: the argument helpers the command modules share."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from simulator import commands
from simulator.commands.args import broker_url_for, check_port
from simulator.vocabulary.broker_url import BROKER_ENV
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.state import StateDir


class TestBrokerUrlFor:
    def test_the_given_broker_first(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(BROKER_ENV, "stomp://127.0.0.1:61999")
        args = argparse.Namespace(broker="stomp://127.0.0.1:61613")
        assert broker_url_for(args, StateDir(tmp_path)) == ("stomp://127.0.0.1:61613", None)

    def test_then_the_environment(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(BROKER_ENV, "stomp://127.0.0.1:61999")
        args = argparse.Namespace(broker=None)
        assert broker_url_for(args, StateDir(tmp_path)) == ("stomp://127.0.0.1:61999", None)

    def test_a_bad_url_is_refused(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(BROKER_ENV, raising=False)
        with pytest.raises(ConfigError):
            broker_url_for(argparse.Namespace(broker="http://nowhere"), StateDir(tmp_path))

    def test_no_broker_running_says_what_to_do(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv(BROKER_ENV, raising=False)
        with pytest.raises(ConfigError, match="embedded broker is not running") as caught:
            broker_url_for(argparse.Namespace(broker=None), StateDir(tmp_path))
        assert "b2bsim broker start" in (caught.value.hint or "")


class TestCheckPort:
    @pytest.mark.parametrize("port", [0, 1, 8080, 65535])
    def test_a_tcp_port(self, port: int) -> None:
        assert check_port(port) == port

    @pytest.mark.parametrize("port", [-1, 65536])
    def test_not_a_tcp_port(self, port: int) -> None:
        with pytest.raises(ConfigError, match=f"port {port} is not a TCP port"):
            check_port(port)


def test_command_modules_share_only_the_args_module() -> None:
    """A command module imports no other command module; shared helpers live in args."""
    found: dict[str, set[str]] = {}
    for path in sorted(Path(commands.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("simulator.commands."):
                    found.setdefault(path.stem, set()).add(name)
    assert found, "the scan found no import of simulator.commands at all"
    # A command's own parts (``run_pull`` of ``run``) are imported by that command only.
    parts = {
        (stem, name)
        for stem, names in found.items()
        for name in names
        if name.split(".")[2].startswith(stem + "_")
    }
    assert {("run", "simulator.commands.run_pull")} <= parts, "the scan missed a command's part"
    shared = {n for stem, names in found.items() for n in names if (stem, n) not in parts}
    assert shared == {"simulator.commands.args"} | {
        f"simulator.commands.args.{h}" for h in ("broker_url_for", "check_port")
    }
