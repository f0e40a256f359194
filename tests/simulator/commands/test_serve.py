"""Tests of simulator.commands.serve: running a component until a signal."""

from __future__ import annotations

import asyncio
import os
import pstats
from pathlib import Path

import pytest

from simulator.commands import serve
from simulator.vocabulary.errors import ConfigError


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
