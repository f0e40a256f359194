"""Tests of simulator.vocabulary.broker_source: following broker.json, giving up in time."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from simulator.vocabulary.broker_source import (
    BrokerSource,
    read_broker_file,
    reconnect,
    wait_for_broker_file,
)
from simulator.vocabulary.errors import BrokerUnreachableError


def _broker_json(path: Path, url: str) -> Path:
    path.write_text(json.dumps({"pid": 1, "port": 1, "url": url}))
    return path


def test_follow_reads_the_file_again_each_time(tmp_path: Path) -> None:
    """A broker that moved is found; a missing or broken file keeps the last URL."""
    info = _broker_json(tmp_path / "broker.json", "stomp://127.0.0.1:1001")
    source = BrokerSource("stomp://127.0.0.1:1000", follow=info)
    assert source.current() == "stomp://127.0.0.1:1001"
    info.unlink()
    assert source.current() == "stomp://127.0.0.1:1001"
    info.write_text("{not json")
    assert source.current() == "stomp://127.0.0.1:1001"
    _broker_json(info, "stomp://127.0.0.1:1002")
    assert source.current() == "stomp://127.0.0.1:1002"
    assert source.tried == ["stomp://127.0.0.1:1001", "stomp://127.0.0.1:1002"]


def test_a_fixed_url_does_not_move(tmp_path: Path) -> None:
    source = BrokerSource("stomp://127.0.0.1:1000")
    assert source.current() == "stomp://127.0.0.1:1000"
    assert read_broker_file(tmp_path / "absent.json") is None
    assert read_broker_file(_broker_json(tmp_path / "bad.json", "http://x:1")) is None


async def test_reconnect_uses_the_current_url_and_returns_its_result(tmp_path: Path) -> None:
    info = _broker_json(tmp_path / "broker.json", "stomp://127.0.0.1:1001")
    source = BrokerSource("stomp://127.0.0.1:1000", follow=info)
    calls: list[str] = []

    async def attempt(url: str) -> str:
        calls.append(url)
        if len(calls) == 1:
            _broker_json(info, "stomp://127.0.0.1:1002")  # the broker moves meanwhile
            raise BrokerUnreachableError("down")
        return url

    assert await reconnect(source, attempt, who="KA", give_up=10, first_delay=0) == (
        "stomp://127.0.0.1:1002"
    )
    assert calls == ["stomp://127.0.0.1:1001", "stomp://127.0.0.1:1002"]


async def test_reconnect_gives_up_after_the_bound_naming_what_it_tried(tmp_path: Path) -> None:
    info = _broker_json(tmp_path / "broker.json", "stomp://127.0.0.1:1001")
    source = BrokerSource("stomp://127.0.0.1:1000", follow=info)

    async def attempt(url: str) -> str:
        raise BrokerUnreachableError("down")

    begun = time.monotonic()
    with pytest.raises(BrokerUnreachableError) as caught:
        await reconnect(source, attempt, who="the ICC", give_up=1.0, first_delay=0)
    assert 1.0 <= time.monotonic() - begun < 3.0
    line = caught.value.one_line()
    assert "the ICC gave up after 1 s" in line
    assert "127.0.0.1:1001" in line
    assert str(info) in line
    assert "b2bsim broker start" in line
    assert "\n" not in line


async def test_reconnect_stops_when_asked() -> None:
    stop = asyncio.Event()

    async def attempt(url: str) -> str:
        stop.set()
        raise BrokerUnreachableError("down")

    assert await reconnect(BrokerSource("stomp://h:1"), attempt, who="KA", stop=stop) is None


def test_waiting_for_a_broker_file_is_bounded(tmp_path: Path) -> None:
    """A broker.json that never names a broker is an error after the bound, naming it."""
    missing = tmp_path / "broker.json"
    with pytest.raises(BrokerUnreachableError, match=r"named no broker for 0\.6 s") as caught:
        wait_for_broker_file(missing, give_up=0.6)
    assert str(missing) in caught.value.one_line()
    _broker_json(missing, "stomp://127.0.0.1:1003")
    assert wait_for_broker_file(missing, give_up=0.6) == "stomp://127.0.0.1:1003"
