"""RunningChain: how the supplier stub of a run is started (its document rules)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from simulator.lab.components import Component
from simulator.runs.chain import ChainSpec, RunningChain
from simulator.vocabulary.state import StateDir


def stub_args(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **spec: Any) -> list[str]:
    """The arguments RunningChain passes to ``b2bsim serve supplier-stub`` for ``spec``."""
    started: list[tuple[str, list[str]]] = []

    async def fake_start(
        cls: type[Component], name: str, state: Path, args: list[str], log: Path
    ) -> Component:
        started.append((name, args))
        return object.__new__(cls)

    monkeypatch.setattr(Component, "start", classmethod(fake_start))
    chain = RunningChain(
        ChainSpec(
            state=StateDir(tmp_path / "state"),
            broker_dir=tmp_path / "broker",
            run_dir=tmp_path,
            broker_url="stomp://127.0.0.1:1",
            queue="/queue/x",
            **spec,
        ),
        None,
        lambda _msg: None,
    )
    asyncio.run(chain.start_stub())
    ((name, args),) = started
    assert name == "supplier-stub"
    return args


def test_scenario_runs_validate_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No rules given: the stub is started without --rules and --no-validate (shipped rules)."""
    args = stub_args(tmp_path, monkeypatch)
    assert "--no-validate" not in args
    assert "--rules" not in args


def test_rules_are_passed_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rules directory reaches the stub as --rules DIR."""
    args = stub_args(tmp_path, monkeypatch, rules="/elsewhere/rules")
    assert args[args.index("--rules") + 1] == "/elsewhere/rules"
    assert "--no-validate" not in args


def test_validate_false_is_no_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """validate=False (the bench) starts the stub with --no-validate, and no rules."""
    args = stub_args(tmp_path, monkeypatch, validate=False, rules="/elsewhere/rules")
    assert "--no-validate" in args
    assert "--rules" not in args
