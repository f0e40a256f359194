"""The live view: a local web page that shows a run as it happens (``--ui``, ``b2bsim ui``).

:class:`LiveView` serves ``simulator/data/ui.html`` and a Server-Sent Events
stream from aiohttp, bound to 127.0.0.1, on a thread of its own with its own
event loop.  It reads the run directory with :class:`simulator.views.live.RunTailer`
(files only), so the chain never waits for a browser:

* every client has a bounded buffer of frames; when a slow page falls behind,
  the oldest frames are dropped and the page gets one snapshot of the whole
  state instead (it drops frames, never messages);
* a port in use falls back to a free one (said in :attr:`LiveView.notice`);
* a browser that goes away only ends its own stream.

Teaching mode: :meth:`LiveView.before_step` (``RunOptions.before_step``) waits
until "next" is pressed on the page (``POST /api/next``) or
:meth:`LiveView.release` is called.

Endpoints: ``/`` the page, ``/events`` the stream, ``/api/state`` the
snapshot, ``/api/message/{id}`` one message with its envelope and document,
``/api/timeline`` each message's hops, ``POST /api/next`` (with the header
``X-B2BSim: next``) the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import logging
import re
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from lxml import etree

from simulator.views.explain import explain_code
from simulator.views.live import LiveEvent, MessageState, RunTailer
from simulator.views.timeline import HOP_LABELS, HOPS, build_timeline, envelope_of
from simulator.vocabulary.codes import CATALOGUE
from simulator.vocabulary.envelope import SBDH_NS
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.xmlsafe import parse_xml

if TYPE_CHECKING:  # the runner pulls in every component: not needed to serve the page
    from simulator.runs.runner import RunOptions
    from simulator.runs.scenario import Scenario, Step

__all__ = [
    "EVENT_TEXT",
    "FIELDS",
    "STEP_ALLOWANCE",
    "LiveView",
    "describe_step",
    "envelope_view",
    "latest_run_dir",
    "open_live_view",
    "teaching",
]

log = logging.getLogger(__name__)

#: The fields AF's description names: Scope type → (English label, Swedish label, English, Swedish).
FIELDS: dict[str, tuple[str, str, str, str]] = {
    "ORG_NUMBER": (
        "Organisation number",
        "Organisationsnummer",
        "The addressee: the supplier's organisation number (10 digits with a Luhn check digit). "
        "A supplier refuses an envelope addressed to anyone else (421 WRONG_ADDRESSEE).",
        "Mottagaren: leverantörens organisationsnummer (10 siffror med kontrollsiffra). "
        "Leverantören avvisar ett kuvert som är adresserat till någon annan (421 WRONG_ADDRESSEE).",
    ),
    "RECEIVER_CERT_SHA256": (
        "Certificate",
        "Certifikat",
        "The SHA-256 fingerprint of the unique certificate AF issued to this supplier. The ICC "
        "accepts only this certificate when it connects, and the supplier checks it is its own.",
        "SHA-256-fingeravtrycket av det unika certifikat som AF har utfärdat till leverantören. "
        "ICC godtar bara detta certifikat vid anslutningen, och leverantören kontrollerar att "
        "det är dess eget.",
    ),
    "RECEIVER_URL": (
        "URL",
        "URL",
        "The supplier's current endpoint, where the ICC pushes the envelope (for a supplier "
        "that pulls: the ICC's outbox).",
        "Leverantörens aktuella adress, dit ICC skickar kuvertet (för en leverantör som hämtar "
        "själv: ICC:s utkorg).",
    ),
    "MESSAGE_TYPE": (
        "Message type",
        "Meddelandetyp",
        "What the content is: INKOPSORDER (purchase order), SJALVFAKTURA (self-billing "
        "invoice) or KREDIT (credit note).",
        "Vad innehållet är: INKOPSORDER (inköpsorder), SJALVFAKTURA (självfaktura) eller "
        "KREDIT (kreditfaktura).",
    ),
    "PRODUCED_AT": (
        "Timestamp",
        "Tidsstämpel",
        "When KA produced the message (UTC, to the millisecond). The supplier sorts on it, then "
        "on the sequence number, to load messages in the order KA produced them.",
        "När KA skapade meddelandet (UTC, på millisekunden). Leverantören sorterar på den, och "
        "sedan på löpnumret, för att läsa in meddelandena i den ordning KA skapade dem.",
    ),
}

#: What befell a message → (English, Swedish).
EVENT_TEXT: dict[str, tuple[str, str]] = {
    "retry": (
        "A push failed in a way that may pass (a 5xx answer, a timeout, no connection): the ICC "
        "waits and tries again, in order, and loses nothing.",
        "En leverans misslyckades på ett sätt som kan gå över (ett 5xx-svar, en timeout, ingen "
        "anslutning): ICC väntar och försöker igen, i ordning, och tappar ingenting.",
    ),
    "dead_lettered": (
        "The ICC gave up on this message and put it in the dead-letter queue with its reason. "
        "It is not delivered unless someone fixes the cause and replays it.",
        "ICC gav upp meddelandet och lade det i kön för olevererbara meddelanden (DLQ) med "
        "orsaken. Det levereras inte förrän någon åtgärdar orsaken och skickar om det.",
    ),
    "duplicate": (
        "The supplier got an envelope it already had (same envelope id): it answers "
        "'duplicate' and never loads it twice.",
        "Leverantören fick ett kuvert som den redan hade (samma kuvert-id): den svarar "
        "'duplicate' och läser aldrig in det två gånger.",
    ),
    "held": (
        "The supplier stored it, but held it back until its predecessor (by KA's timestamp and "
        "sequence) arrived, so that its ledger follows KA's order.",
        "Leverantören sparade det men höll inne det tills föregående meddelande (enligt KA:s "
        "tidsstämpel och löpnummer) kom, så att reskontran följer KA:s ordning.",
    ),
    "reordered": (
        "Injected fault: the ICC delivered this message before the one KA produced before it.",
        "Injicerat fel: ICC levererade meddelandet före det som KA skapade närmast före.",
    ),
    "late": (
        "Loaded after a later message of the same supplier: the supplier stopped waiting for it.",
        "Inläst efter ett senare meddelande till samma leverantör: leverantören slutade vänta.",
    ),
    "redelivered": (
        "The broker handed it out more than once (a worker died before its ack): the "
        "envelope id is the same, so the supplier sees a duplicate, not a new message.",
        "Meddelandekön lämnade ut det mer än en gång (en ICC-process dog före kvitteringen): "
        "kuvert-id:t är detsamma, så leverantören ser en dubblett, inte ett nytt meddelande.",
    ),
    "loaded": (
        "Loaded into the supplier's ledger, in KA's order: the message has arrived.",
        "Inläst i leverantörens reskontra, i KA:s ordning: meddelandet har kommit fram.",
    ),
    "refused": (
        "The supplier refused a hostile or forged request with this code; nothing was stored.",
        "Leverantören avvisade en fientlig eller förfalskad begäran med den här koden; inget "
        "sparades.",
    ),
}

_AF_SCOPE = re.compile(r"<(?:[\w.-]+:)?Type>([A-Z_0-9]+)</")
_BLOCK_START = re.compile(r"^\s*<(?:[\w.-]+:)?(Scope|Receiver)>\s*$")
_SNAPSHOT_EVENTS = 200
#: Seconds added to a scenario's timeout in teaching mode: the pauses count towards it.
STEP_ALLOWANCE = 3600.0


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


def teaching(scenario: Scenario) -> Scenario:
    """``scenario`` for teaching mode: its timeout allows for the pauses between steps."""
    return dataclasses.replace(scenario, timeout=scenario.timeout + STEP_ALLOWANCE)


def describe_step(step: Step) -> str:
    """A step as one short line, e.g. ``Produce: chains=1``."""
    if not dataclasses.is_dataclass(step):
        return str(step)
    parts = []
    for f in dataclasses.fields(step):
        value = getattr(step, f.name)
        default = f.default if f.default is not dataclasses.MISSING else object()
        if value != default:
            shown = ", ".join(map(str, value)) if isinstance(value, tuple) else value
            parts.append(f"{f.name}={shown}")
    return f"{type(step).__name__}: {', '.join(parts)}" if parts else type(step).__name__


def latest_run_dir(runs: Path) -> Path | None:
    """The newest run directory under ``runs`` (their names start with the time)."""
    if not runs.is_dir():
        return None
    dirs = sorted(p for p in runs.iterdir() if p.is_dir())
    return dirs[-1] if dirs else None


def envelope_view(raw: bytes) -> dict[str, Any]:
    """A stored envelope for the page: pretty-printed, AF fields marked, document apart.

    Returns ``envelope`` (segments ``{"text", "field"}``; ``field`` names the AF
    field a segment shows, or is null), ``document`` (text), ``fields`` (the
    AF fields' values) and ``error`` (why it is shown as plain text, or null).
    The XML is parsed with :func:`simulator.vocabulary.xmlsafe.parse_xml` only.
    """
    try:
        root = parse_xml(raw)
    except B2BSimError as exc:
        text = raw.decode("utf-8", "replace")
        return {
            "envelope": [{"text": text, "field": None}],
            "document": "",
            "fields": {},
            "error": exc.one_line(),
        }
    scopes = {}
    for scope in root.iter(f"{{{SBDH_NS}}}Scope"):
        kind = scope.findtext(f"{{{SBDH_NS}}}Type") or ""
        scopes[kind] = scope.findtext(f"{{{SBDH_NS}}}InstanceIdentifier") or ""
    envelope = copy.deepcopy(root)
    document = ""
    sbd = envelope.find(f"{{{SBDH_NS}}}StandardBusinessDocument")
    if sbd is not None:
        payload = next(
            (c for c in sbd if isinstance(c.tag, str) and not c.tag.startswith(f"{{{SBDH_NS}}}")),
            None,
        )
        if payload is not None:
            doc = copy.deepcopy(payload)
            etree.indent(doc, space="  ")
            document = etree.tostring(doc, encoding="unicode")
            note = etree.Comment(" the business document: shown below ")
            note.tail = payload.tail
            sbd.replace(payload, note)
    etree.indent(envelope, space="  ")
    text = etree.tostring(envelope, encoding="unicode")
    fields = {k: scopes[k] for k in FIELDS if k in scopes}
    return {"envelope": _mark_fields(text), "document": document, "fields": fields, "error": None}


def _mark_fields(text: str) -> list[dict[str, str | None]]:
    """Split pretty-printed envelope text into segments, marking each AF field's block."""
    lines = text.splitlines(keepends=True)
    segments: list[dict[str, str | None]] = []
    plain: list[str] = []
    i = 0
    while i < len(lines):
        start = _BLOCK_START.match(lines[i])
        if start is None:
            plain.append(lines[i])
            i += 1
            continue
        end = next(
            (
                j
                for j in range(i + 1, len(lines))
                if f"{start.group(1)}>" in lines[j] and "</" in lines[j]
            ),
            len(lines) - 1,
        )
        block = "".join(lines[i : end + 1])
        kind = "ORG_NUMBER" if start.group(1) == "Receiver" else None
        if kind is None and (m := _AF_SCOPE.search(block)) and m.group(1) in FIELDS:
            kind = m.group(1)
        if kind is None:
            plain.append(block)
        else:
            if plain:
                segments.append({"text": "".join(plain), "field": None})
                plain = []
            segments.append({"text": block, "field": kind})
        i = end + 1
    if plain:
        segments.append({"text": "".join(plain), "field": None})
    return segments


def _explanations(m: MessageState) -> list[dict[str, str]]:
    """What befell ``m``, each explained in English and Swedish."""
    keys = []
    if m.retries:
        keys.append("retry")
    if m.consumed > 1:
        keys.append("redelivered")
    if m.duplicates:
        keys.append("duplicate")
    if m.held:
        keys.append("held")
    if m.reordered:
        keys.append("reordered")
    if m.late:
        keys.append("late")
    if m.station == "ledger":
        keys.append("loaded")
    out = [{"key": k, "en": EVENT_TEXT[k][0], "sv": EVENT_TEXT[k][1]} for k in keys]
    if m.code:
        x = explain_code(m.code)
        entry = CATALOGUE.get(m.code)
        en = f"{EVENT_TEXT['dead_lettered'][0]} {m.code}: {x.title}. {x.meaning} {x.fix}"
        sv = f"{EVENT_TEXT['dead_lettered'][1]} {m.code}: " + (
            entry.sv
            if entry is not None and entry.sv is not None
            else f"se förklaringen på engelska ({x.title})."
        )
        out.append({"key": m.code, "en": en, "sv": sv})
    return out


class _Client:
    """One browser's stream: a bounded buffer, oldest frames dropped when it lags."""

    def __init__(self, limit: int) -> None:
        self.frames: deque[str] = deque(maxlen=limit)
        self.wake = asyncio.Event()
        self.lagged = False

    def push(self, frame: str) -> None:
        if len(self.frames) == self.frames.maxlen:
            self.lagged = True  # the oldest frame falls out: a snapshot replaces them all
        self.frames.append(frame)
        self.wake.set()


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
        self._clients: set[_Client] = set()
        self._tailer: RunTailer | None = None
        self._run: dict[str, Any] = {}
        self._events: deque[dict[str, Any]] = deque(maxlen=_SNAPSHOT_EVENTS)
        self._timeline: dict[str, Any] | None = None
        self._step: dict[str, Any] | None = None
        self._follow: Path | None = None
        self._gate_lock = threading.Lock()
        self._gate: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
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
        """Stop serving (and release a step that waits, so no run hangs)."""
        self.release()
        loop, thread = self._loop, self._thread
        if loop is not None and self._stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stopping.set)
        if thread is not None:
            thread.join(timeout=10)

    def linger(self) -> None:
        """After the runs: keep the page up (for its timeline) until Enter or Ctrl+C, when
        a person is at the terminal; then stop."""
        try:
            if sys.stdin is not None and sys.stdin.isatty():
                print(f"live view: still at {self.url}: press Enter to stop it", flush=True)
                with contextlib.suppress(EOFError):
                    input()
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
        self, run_dir: Path, *, title: str = "", description: str = "", steps: Sequence[str] = ()
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
        steps = [describe_step(s) for s in scenario.steps]

        def on_start(run_dir: Path) -> None:
            self.watch(run_dir, title=scenario.name, description=scenario.description, steps=steps)

        return dataclasses.replace(
            options, on_start=on_start, before_step=self.before_step if step else None
        )

    async def before_step(self, index: int, step: Step) -> None:
        """Wait, in the runner's loop, until "next" is pressed (teaching mode)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._gate_lock:
            self._gate = (loop, future)
        self._call(self._set_step, index, describe_step(step), True)
        try:
            await future
        finally:
            with self._gate_lock:
                if self._gate is not None and self._gate[1] is future:
                    self._gate = None
        self._call(self._set_step, index, describe_step(step), False)

    def release(self) -> bool:
        """Release the step that waits; False if none waits."""
        with self._gate_lock:
            gate, self._gate = self._gate, None
        if gate is None:
            return False
        loop, future = gate

        def done() -> None:
            if not future.done():
                future.set_result(None)

        with contextlib.suppress(RuntimeError):  # the run's loop has closed
            loop.call_soon_threadsafe(done)
        return True

    @property
    def waiting(self) -> bool:
        """A step waits for "next"."""
        with self._gate_lock:
            return self._gate is not None

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
        out = []
        touched: dict[str, MessageState] = {}
        for e in events:
            self._seq += 1
            record = {"n": self._seq, **e.to_json()}
            out.append(record)
            self._events.append(record)
            m = tailer.messages.get(e.message_id)
            if m is not None:
                touched[m.message_id] = m
        frame: dict[str, Any] = {
            "type": "update",
            "events": out,
            "messages": [m.to_json() for m in touched.values()],
            "counters": tailer.counters.to_json(),
        }
        if tailer.finished:
            self._timeline = _timeline_json(tailer.run_dir)
            frame["finished"] = True
            frame["timeline"] = self._timeline
        self._broadcast(frame)

    def _set_step(self, index: int, text: str, waiting: bool) -> None:
        total = len(self._run.get("steps", [])) or None
        self._step = {"index": index, "total": total, "text": text, "waiting": waiting}
        self._broadcast({"type": "step", "step": self._step})

    def _snapshot(self) -> dict[str, Any]:
        t = self._tailer
        return {
            "type": "snapshot",
            "run": self._run,
            "step": self._step,
            "counters": t.counters.to_json() if t else None,
            "messages": [m.to_json() for m in t.messages.values()] if t else [],
            "events": list(self._events),
            "finished": bool(t and t.finished),
            "timeline": self._timeline,
        }

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
        client = _Client(self.client_buffer)
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
        view = (
            await asyncio.to_thread(envelope_view, raw)
            if raw is not None
            else {"envelope": [], "document": "", "fields": {}, "error": None}
        )
        labels = {
            k: {"en": v[0], "sv": v[1], "about_en": v[2], "about_sv": v[3]}
            for k, v in FIELDS.items()
        }
        note = None
        if raw is None:
            note = (
                f"No envelope stored for this message (yet): it is {_where(m)}."
                if not m.code
                else "No envelope was stored: the ICC dead-lettered the message."
            )
        return web.json_response(
            {
                "message": m.to_json(),
                **view,
                "labels": labels,
                "explanations": _explanations(m),
                "note": note,
            }
        )

    async def _timeline_json(self, request: web.Request) -> web.Response:
        t = self._tailer
        if t is None:
            return web.json_response({"error": "no run yet"}, status=404)
        return web.json_response(await asyncio.to_thread(_timeline_json, t.run_dir))

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


def _where(m: MessageState) -> str:
    return {
        "ka": "at KA",
        "queue": "on the broker's queue",
        "icc": "at the ICC",
        "supplier": "at the supplier",
        "ledger": "in the ledger",
        "dead": "in the dead-letter queue",
    }.get(m.station, m.station)


def _timeline_json(run_dir: Path, limit: int = 500) -> dict[str, Any]:
    """The after-run timeline: hop statistics and up to ``limit`` messages (problems first)."""
    timeline = build_timeline(run_dir)
    msgs = timeline.messages
    notable = [m for m in msgs if m.notable][:limit]
    chosen = {m.message_id for m in notable}
    for m in msgs:
        if len(chosen) >= limit:
            break
        chosen.add(m.message_id)
    stats = timeline.stats()
    return {
        "hops": [{"hop": h, "label": HOP_LABELS[h], **dataclasses.asdict(stats[h])} for h in HOPS],
        "start_ms": timeline.start_ms(),
        "count": len(msgs),
        "messages": [m.to_json() for m in msgs if m.message_id in chosen],
    }
