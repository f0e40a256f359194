"""The live view's server without a browser: the step gate, the stream, the guards."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator.runs.runner import RunOptions
from simulator.runs.scenario import Sleep, load_scenario
from simulator.views.ui_frames import Client as _Client
from simulator.views.ui_server import LiveView
from simulator.vocabulary.state import StateDir

ORG = "5520000018"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def view() -> Iterator[LiveView]:
    """A running live view on a free port."""
    v = LiveView(poll_interval=0.05)
    v.start()
    try:
        yield v
    finally:
        v.stop()


def request(
    view: LiveView, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    port = int(view.url.rsplit(":", 1)[1].strip("/"))
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        con.request(method, path, headers=headers or {})
        response = con.getresponse()
        body = response.read()
        kind = response.getheader("Content-Type", "")
        return response.status, json.loads(body) if "json" in kind else body
    finally:
        con.close()


class TestClient:
    def test_a_lagging_client_drops_the_oldest_frames_and_is_marked(self) -> None:
        """The buffer is bounded: the oldest frame falls out and a snapshot is owed."""
        client = _Client(2)
        for frame in ("a", "b", "c"):
            client.push(frame)
        assert list(client.frames) == ["b", "c"]
        assert client.lagged


class TestLiveView:
    def test_a_port_in_use_falls_back_to_a_free_one(self) -> None:
        """A taken --ui-port does not stop anything: another port is used, and said."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            v = LiveView(port=port)
            try:
                url = v.start()
                assert f":{port}/" not in url
                assert v.notice is not None
                assert str(port) in v.notice
            finally:
                v.stop()

    async def test_before_step_waits_until_released(self, view: LiveView) -> None:
        """A step waits for "next"; a release from another thread lets it go."""
        task = asyncio.create_task(view.before_step(0, Sleep(seconds=1)))
        await asyncio.sleep(0.2)
        assert not task.done()
        assert view.waiting
        assert await asyncio.to_thread(view.release)
        await asyncio.wait_for(task, 2)
        assert not view.waiting
        assert not view.release()

    def test_next_needs_its_header(self, view: LiveView) -> None:
        """A plain POST (a form on another site) cannot press next."""
        status, body = request(view, "POST", "/api/next")
        assert status == 400
        status, body = request(view, "POST", "/api/next", {"X-B2BSim": "next"})
        assert (status, body) == (200, {"released": False})

    def test_other_host_names_are_refused(self, view: LiveView) -> None:
        """A request for another host name (DNS rebinding) is refused."""
        status, _ = request(view, "GET", "/api/state", {"Host": "evil.example"})
        assert status == 421

    def test_the_page_is_served_self_contained(self, view: LiveView) -> None:
        """The page has no external assets and a strict content security policy."""
        status, body = request(view, "GET", "/")
        assert status == 200
        assert b"<title>" in body
        assert b"http://" not in body
        assert b"https://" not in body

    def test_a_watched_run_is_in_the_snapshot(self, view: LiveView, tmp_path: Path) -> None:
        """After watch(), the state and the messages come from the run directory."""
        (tmp_path / "produced.jsonl").write_text(
            json.dumps(
                {
                    "message_id": "m1",
                    "message_type": "KREDIT",
                    "org_number": ORG,
                    "produced_at_ms": 1,
                    "sequence": 1,
                }
            )
            + "\n"
        )
        view.watch(tmp_path, title="demo", steps=[{"what": "KA produces.", "watch": ""}])
        for _ in range(100):
            status, state = request(view, "GET", "/api/state")
            if state["messages"]:
                break
            time.sleep(0.05)
        assert state["run"]["title"] == "demo"
        assert state["counters"]["queue_depth"] == 1
        status, detail = request(view, "GET", "/api/message/m1")
        assert status == 200
        assert detail["message"]["station"] == "queue"
        assert "No envelope stored" in detail["note"]
        status, _ = request(view, "GET", "/api/message/nope")
        assert status == 404

    def test_the_stream_starts_with_a_snapshot(self, view: LiveView) -> None:
        """A new browser gets the whole state first."""
        port = int(view.url.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while b"\n\n" not in data.split(b"\r\n\r\n", 1)[-1]:
                data += s.recv(4096)
        body = data.split(b"\r\n\r\n", 1)[1]
        line = next(x for x in body.split(b"\n") if x.startswith(b"data: "))
        assert json.loads(line[6:])["type"] == "snapshot"

    def test_a_finished_run_shows_its_verdict(self, view: LiveView, tmp_path: Path) -> None:
        """Once result.json is there, the state has the verdict and its expectations."""
        expectation = {"name": "lost", "expected": 0, "actual": 0, "passed": True}
        (tmp_path / "result.json").write_text(
            json.dumps({"passed": True, "error": None, "expectations": [expectation]})
        )
        view.watch(tmp_path, title="demo")
        for _ in range(100):
            _, state = request(view, "GET", "/api/state")
            if state["finished"]:
                break
            time.sleep(0.05)
        assert state["verdict"]["passed"] is True
        assert state["verdict"]["expectations"] == [expectation]

    def test_wired_steps_are_said_in_words(self, view: LiveView, tmp_path: Path) -> None:
        """The step bar gets each step's sentence and what to watch, not its fields."""
        scenario = load_scenario(ROOT / "scenarios" / "trainer-walkthrough.yaml")
        options = view.wire(RunOptions(state=StateDir(tmp_path)), scenario, step=True)
        assert options.on_start is not None
        assert options.before_step is not None
        options.on_start(tmp_path)
        for _ in range(100):
            _, state = request(view, "GET", "/api/state")
            if state["run"].get("steps"):
                break
            time.sleep(0.05)
        steps = state["run"]["steps"]
        assert len(steps) == len(scenario.steps)
        assert (
            steps[4]["what"] == "The supplier's endpoint answers HTTP 503 to the next 2 requests."
        )
        assert all("=" not in s["what"] + s["watch"] for s in steps)

    def test_stopping_says_bye_to_every_page(self, view: LiveView) -> None:
        """The last frame a page gets is ``bye``: it stops instead of reconnecting."""
        port = int(view.url.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while b"snapshot" not in data:
                data += s.recv(4096)
            stopper = threading.Thread(target=view.stop)
            stopper.start()
            while chunk := s.recv(4096):
                data += chunk
            stopper.join(10)
        frames = [json.loads(x[6:]) for x in data.split(b"\n") if x.startswith(b"data: ")]
        assert frames[-1] == {"type": "bye"}

    def test_without_a_terminal_linger_stops_at_once(
        self, view: LiveView, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """CI, a pipe, a test: nothing waits for a person."""
        monkeypatch.setattr("sys.stdin", io.StringIO(""))
        started = time.monotonic()
        view.linger()
        assert time.monotonic() - started < 8
        assert "no terminal to keep it open" in capsys.readouterr().out
        with pytest.raises(ConnectionRefusedError):
            request(view, "GET", "/api/state")

    def test_at_a_terminal_linger_serves_until_ctrl_c(
        self, view: LiveView, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The finished run stays on the page, and the terminal says how to stop it."""

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        def ctrl_c(*_: object) -> str:
            assert request(view, "GET", "/api/state")[0] == 200  # still serving
            raise KeyboardInterrupt

        monkeypatch.setattr("sys.stdin", Terminal(""))
        monkeypatch.setattr("builtins.input", ctrl_c)
        view.linger()
        assert "press Ctrl+C" in capsys.readouterr().out
        with pytest.raises(ConnectionRefusedError):
            request(view, "GET", "/api/state")
