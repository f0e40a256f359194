"""The live view: a local web page that shows a run as it happens (``--ui``, ``b2bsim ui``).

:class:`LiveView` serves ``simulator/data/ui.html`` and a Server-Sent Events
stream from aiohttp, bound to 127.0.0.1, on a thread of its own with its own
event loop.  It reads the run directory with :class:`simulator.views.live.RunTailer`
(files only), so the chain never waits for a browser:

* every client has a bounded buffer of frames; when a slow page falls behind,
  the oldest frames are dropped and the page gets one snapshot of the whole
  state instead (it drops frames, never messages);
* a port in use falls back to a free one (said in :attr:`LiveView.notice`);
* a browser that goes away only ends its own stream;
* :meth:`LiveView.stop` sends what is left of the run (its verdict), then ``bye``:
  the pages say the server stopped, not reconnect (:mod:`simulator.views.ui_frames`).

Teaching mode: :meth:`LiveView.before_step` (``RunOptions.before_step``) waits
until "next" is pressed on the page (``POST /api/next``) or
:meth:`LiveView.release` is called.  What the page teaches (AF's fields, what
befell a message, in English and Swedish) is in :mod:`simulator.views.teaching`,
what each step does in :mod:`simulator.views.step_words`.

Endpoints: ``/`` the page, ``/events`` the stream, ``/api/state`` the
snapshot, ``/api/message/{id}`` one message with its envelope and document,
``/api/timeline`` each message's hops, ``POST /api/next`` (with the header
``X-B2BSim: next``) the next step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from simulator.views.live import RunTailer
from simulator.views.live_records import LiveEvent
from simulator.views.step_words import step_text
from simulator.views.teaching import StepGate, envelope_view, message_detail
from simulator.views.timeline import envelope_of
from simulator.views.ui_frames import Client, snapshot_frame, timeline_json, update_frame
from simulator.vocabulary.errors import B2BSimError

if TYPE_CHECKING:  # the runner pulls in every component: not needed to serve the page
    from simulator.runs.runner import RunOptions
    from simulator.runs.scenario import Scenario, Step

__all__ = [
    "LiveView",
    "latest_run_dir",
    "open_live_view",
]

log = logging.getLogger(__name__)

_SNAPSHOT_EVENTS = 200


def open_live_view(port: int, *, step: bool, say: Callable[[str], None] = print) -> LiveView | None:
    """Start the live view for ``b2bsim run --ui`` and say its URL.

    A view that cannot start is said and skipped (None): the run goes on without it.
    """
    view = LiveView(port=port)
    try:
        url = view.start()
    except B2BSimError as exc:
        say(f"live view: not started: {exc.one_line()}")
        return None
    if view.notice:
        say(f"live view: {view.notice}")
    mode = "  (teaching mode: press Next on the page before each step)" if step else ""
    say(f"live view: {url}{mode}")
    return view


def latest_run_dir(runs: Path) -> Path | None:
    """The newest run directory under ``runs`` (their names start with the time)."""
    if not runs.is_dir():
        return None
    dirs = sorted(p for p in runs.iterdir() if p.is_dir())
    return dirs[-1] if dirs else None


class LiveView:
    """The live view's server; see the module doc.  Use :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        poll_interval: float = 0.25,
        client_buffer: int = 256,
    ) -> None:
        self.host, self.port = host, port
        self.poll_interval = poll_interval
        self.client_buffer = client_buffer
        self.url = ""
        self.notice: str | None = None  # e.g. the port asked for was taken
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._clients: set[Client] = set()
        self._tailer: RunTailer | None = None
        self._run: dict[str, Any] = {}
        self._events: deque[dict[str, Any]] = deque(maxlen=_SNAPSHOT_EVENTS)
        self._timeline: dict[str, Any] | None = None
        self._step: dict[str, Any] | None = None
        self._follow: Path | None = None
        self._gate = StepGate()
        self._seq = 0

    # --- life cycle (any thread) ---------------------------------------------------
    def start(self, timeout: float = 10.0) -> str:
        """Start serving on a thread of its own; return the page's URL."""
        self._thread = threading.Thread(target=self._serve, name="b2bsim-ui", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._startup_error is not None:
            raise B2BSimError(
                f"the live view could not start: {self._startup_error or 'timed out'}",
                hint="run without --ui, or pass another --ui-port",
            )
        return self.url

    def stop(self) -> None:
        """Stop serving (and release a step that waits, so no run hangs).

        The pages first get what is left of the run (its verdict) and a last frame,
        ``bye``: they say the server has stopped, and do not try to reconnect.
        """
        self.release()
        loop, thread = self._loop, self._thread
        if loop is not None and self._stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError, TimeoutError, concurrent.futures.TimeoutError):
                asyncio.run_coroutine_threadsafe(self._farewell(), loop).result(timeout=5)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stopping.set)
        if thread is not None:
            thread.join(timeout=10)

    def linger(self) -> None:
        """After the runs: keep the finished run on the page (its verdict, its timeline)
        until Enter or Ctrl+C, when a person is at the terminal; then stop.  Without a
        terminal (CI, a pipe) it stops at once, and the page says the server stopped."""
        try:
            if sys.stdin is not None and sys.stdin.isatty():
                print(
                    f"live view: the finished run stays at {self.url}: "
                    "press Ctrl+C (or Enter) to stop it",
                    flush=True,
                )
                with contextlib.suppress(EOFError):
                    input()
            else:
                print(f"live view: stopped ({self.url}): no terminal to keep it open", flush=True)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> LiveView:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the runner calls (any thread) ----------------------------------------
    def watch(
        self,
        run_dir: Path,
        *,
        title: str = "",
        description: str = "",
        steps: Sequence[dict[str, str]] = (),
    ) -> None:
        """Show ``run_dir`` from now on (``RunOptions.on_start``)."""
        info = {
            "dir": str(run_dir),
            "title": title or run_dir.name,
            "description": description,
            "steps": list(steps),
        }
        self._call(self._switch, run_dir, info)

    def follow(self, runs: Path) -> None:
        """Show the newest run directory under ``runs``, switching when a newer one appears."""
        self._follow = runs
        latest = latest_run_dir(runs)
        if latest is not None:
            self.watch(latest)

    def wire(self, options: RunOptions, scenario: Scenario, *, step: bool = False) -> RunOptions:
        """``options`` with ``on_start`` showing this scenario's run (and, in teaching mode,
        ``before_step`` waiting for "next")."""
        texts = [step_text(s, scenario.supplier_count) for s in scenario.steps]

        def on_start(run_dir: Path) -> None:
            self.watch(run_dir, title=scenario.name, description=scenario.description, steps=texts)

        async def before_step(index: int, step: Step) -> None:
            await self._pause(index, texts[index] if index < len(texts) else step_text(step))

        return dataclasses.replace(
            options, on_start=on_start, before_step=before_step if step else None
        )

    async def before_step(self, index: int, step: Step) -> None:
        """Wait, in the runner's loop, until "next" is pressed (teaching mode)."""
        await self._pause(index, step_text(step))

    async def _pause(self, index: int, text: dict[str, str]) -> None:
        await self._gate.wait(lambda: self._call(self._set_step, index, text, True))
        self._call(self._set_step, index, text, False)

    def release(self) -> bool:
        """Release the step that waits; False if none waits."""
        return self._gate.release()

    @property
    def waiting(self) -> bool:
        """A step waits for "next"."""
        return self._gate.waiting

    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn, *args)

    # --- the server's own thread ---------------------------------------------------
    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except Exception as exc:  # reported by start(); the run goes on without the view
            self._startup_error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(middlewares=[self._local_only])
        app.router.add_get("/", self._page)
        app.router.add_get("/events", self._stream)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/message/{message_id}", self._message)
        app.router.add_get("/api/timeline", self._timeline_json)
        app.router.add_post("/api/next", self._next)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = self._bind()
        try:
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self.url = f"http://{self.host}:{sock.getsockname()[1]}/"
        self._ready.set()
        poller = asyncio.create_task(self._poll_forever())
        try:
            await self._stopping.wait()
        finally:
            poller.cancel()
            for client in self._clients:
                client.wake.set()
            await runner.cleanup()

    def _bind(self) -> socket.socket:
        """A listening socket on the port asked for, else (it is taken) on a free one."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            self.notice = f"port {self.port} is not free ({exc.strerror}): using another one"
            sock.bind((self.host, 0))
        sock.listen(64)
        sock.setblocking(False)
        return sock

    async def _poll_forever(self) -> None:
        # The tailer runs in this (the view's) loop: reads are small and incremental,
        # and the state it keeps is only ever touched here.
        ticks = 0
        while True:
            ticks += 1
            if self._follow is not None and ticks % 4 == 0:
                latest = latest_run_dir(self._follow)
                if latest is not None and (self._tailer is None or latest != self._tailer.run_dir):
                    self._switch(latest, {"dir": str(latest), "title": latest.name, "steps": []})
            tailer = self._tailer
            if tailer is not None and not tailer.finished:
                try:
                    events = tailer.poll()
                except (OSError, ValueError) as exc:  # never let a bad read end the view
                    log.warning("live view: reading %s failed: %s", tailer.run_dir, exc)
                    events = []
                if events:
                    self._publish(tailer, events)
            await asyncio.sleep(self.poll_interval)

    def _switch(self, run_dir: Path, info: dict[str, Any]) -> None:
        self._tailer = RunTailer(run_dir)
        self._run, self._timeline, self._step = info, None, None
        self._events.clear()
        self._broadcast(self._snapshot())

    def _publish(self, tailer: RunTailer, events: list[LiveEvent]) -> None:
        frame, records = update_frame(tailer, events, self._seq)
        self._seq += len(records)
        self._events.extend(records)
        if tailer.finished:
            self._timeline = frame["timeline"]
        self._broadcast(frame)

    async def _farewell(self) -> None:
        """What is left of the run, then ``bye``; give the streams a moment to send it."""
        tailer = self._tailer
        if tailer is not None and not tailer.finished:
            with contextlib.suppress(OSError, ValueError):
                events = tailer.poll()
                if events:
                    self._publish(tailer, events)
        self._broadcast({"type": "bye"})
        for _ in range(40):
            if not any(c.frames for c in self._clients):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)

    def _set_step(self, index: int, text: dict[str, str], waiting: bool) -> None:
        total = len(self._run.get("steps", [])) or None
        self._step = {"index": index, "total": total, **text, "waiting": waiting}
        self._broadcast({"type": "step", "step": self._step})

    def _snapshot(self) -> dict[str, Any]:
        return snapshot_frame(self._tailer, self._run, self._step, self._events, self._timeline)

    def _broadcast(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, separators=(",", ":"))
        for client in self._clients:
            client.push(text)

    # --- handlers ------------------------------------------------------------------
    @web.middleware
    async def _local_only(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Refuse requests for another host name (DNS rebinding)."""
        host = (request.host or "").rsplit(":", 1)[0].strip("[]")
        if host not in ("127.0.0.1", "localhost", "::1", self.host):
            raise web.HTTPMisdirectedRequest(text="the live view answers on localhost only")
        response: web.StreamResponse = await handler(request)
        return response

    async def _page(self, request: web.Request) -> web.Response:
        page = resources.files("simulator").joinpath("data/ui.html").read_text("utf-8")
        return web.Response(
            text=page,
            content_type="text/html",
            headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP},
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        client = Client(self.client_buffer)
        self._clients.add(client)
        assert self._stopping is not None
        try:
            await _send(response, json.dumps(self._snapshot(), separators=(",", ":")))
            while not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client.wake.wait(), 15)
                client.wake.clear()
                if self._stopping.is_set():
                    break
                if client.lagged:
                    client.frames.clear()
                    client.lagged = False
                    await _send(response, json.dumps(self._snapshot(), separators=(",", ":")))
                    continue
                if not client.frames:
                    await response.write(b": keep-alive\n\n")
                while client.frames:
                    await _send(response, client.frames.popleft())
        except (ConnectionError, asyncio.CancelledError):
            pass  # the browser went away, or the view stops: only this stream ends
        finally:
            self._clients.discard(client)
        return response

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self._snapshot())

    async def _message(self, request: web.Request) -> web.Response:
        message_id = request.match_info["message_id"]
        t = self._tailer
        m = t.messages.get(message_id) if t else None
        if t is None or m is None:
            return web.json_response(
                {"error": f"no message {message_id!r} in this run"}, status=404
            )
        raw = (
            await asyncio.to_thread(envelope_of, t.run_dir, m.envelope_id)
            if m.envelope_id
            else None
        )
        view = await asyncio.to_thread(envelope_view, raw) if raw is not None else None
        return web.json_response(message_detail(m, view))

    async def _timeline_json(self, request: web.Request) -> web.Response:
        t = self._tailer
        if t is None:
            return web.json_response({"error": "no run yet"}, status=404)
        return web.json_response(await asyncio.to_thread(timeline_json, t.run_dir))

    async def _next(self, request: web.Request) -> web.Response:
        if request.headers.get("X-B2BSim") != "next":
            return web.json_response({"error": "send the header X-B2BSim: next"}, status=400)
        return web.json_response({"released": self.release()})


_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)


async def _send(response: web.StreamResponse, data: str) -> None:
    await response.write(f"data: {data}\n\n".encode())
