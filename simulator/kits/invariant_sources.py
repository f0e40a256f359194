"""The invariant checker's inputs, each read with its own code (docs/files.md, docs/dlq.md).

:mod:`simulator.kits.invariants` checks the chain against what it left behind;
this module reads it, sharing no code with the components (KA, the ICC, the
stub) nor with their readers in :mod:`simulator.vocabulary`, so that a bug in
a component's parser cannot hide itself from the check:

* KA's record (``produced.jsonl``): one JSON object per line, merged by
  ``message_id``; a line with a ``state`` (``recorded`` before the SEND,
  ``sent`` after it) or without one (the older format) names the message;
* the ICC workers' events (``icc-*.jsonl``);
* the stub's tables (``supplier-stub.sqlite``), read with a read-only URI;
* a queue of the broker, browsed over STOMP (``browser: true``), never consumed;
* the faults log a soak writes (``{"at_ms": …, "kind": …, "target": …}`` per line).

A line cut short by a crash is skipped; a missing file or table is empty.
"""

from __future__ import annotations

import json
import queue as queues
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import stomp

from simulator.vocabulary.errors import BrokerUnreachableError, ConfigError

#: ActiveMQ's default ``maxBrowsePageSize``: one browse shows at most this many messages.
BROWSE_PAGE = 400
_TIMESTAMP_CEILING = 1 << 43  # the year 2248: above every JMSTimestamp


def read_lines(path: Path | None) -> list[dict[str, Any]]:
    """Each JSON object line of ``path``; a missing file is empty, a cut line is skipped."""
    if path is None or not path.exists():
        return []
    out: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def _int(value: object, default: int = 0) -> int:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return default


# --- KA ---------------------------------------------------------------------
@dataclass
class Recorded:
    """One message KA recorded, from every line that names it."""

    message_id: str
    org_number: str = ""
    message_type: str = ""
    produced_at_ms: int = 0
    sequence: int = 0
    correlation_id: str = ""
    document_id: str = ""
    states: set[str] = field(default_factory=set)  # "recorded", "sent"; "" for the old format


def read_ka_record(path: Path) -> dict[str, Recorded]:
    """KA's record, by message id, in the order KA first named each message."""
    out: dict[str, Recorded] = {}
    for line in read_lines(path):
        message_id = str(line.get("message_id") or "")
        if not message_id:
            continue
        rec = out.setdefault(message_id, Recorded(message_id))
        rec.states.add(str(line.get("state") or ""))
        rec.org_number = rec.org_number or str(line.get("org_number") or "")
        rec.message_type = rec.message_type or str(line.get("message_type") or "")
        rec.produced_at_ms = rec.produced_at_ms or _int(line.get("produced_at_ms"))
        rec.sequence = rec.sequence or _int(line.get("sequence"))
        rec.correlation_id = rec.correlation_id or str(line.get("correlation_id") or "")
        rec.document_id = rec.document_id or str(line.get("document_id") or "")
    return out


# --- the ICC ----------------------------------------------------------------
def read_icc_events(run_dir: Path) -> list[dict[str, Any]]:
    """Every event of every ICC worker (``icc-*.jsonl``), in time order."""
    events = [e for log in sorted(run_dir.glob("icc-*.jsonl")) for e in read_lines(log)]
    return sorted(events, key=lambda e: _int(e.get("at_ms")))


# --- the stub ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LedgerRow:
    position: int
    org_number: str
    envelope_id: str
    message_id: str
    message_type: str
    sequence: int
    loaded_at_ms: int
    late: bool


@dataclass(frozen=True, slots=True)
class GapRow:
    org_number: str
    kind: str  # "gap" or "credit_before_invoice"
    first_missing: int | None
    last_missing: int | None
    envelope_id: str


@dataclass(frozen=True, slots=True)
class StoredRow:
    envelope_id: str
    org_number: str
    message_id: str
    sequence: int
    received_at_ms: int


@dataclass
class StubTables:
    """The stub's inbox and ledger as its SQLite file holds them."""

    ledger: list[LedgerRow] = field(default_factory=list)  # in load order
    gaps: list[GapRow] = field(default_factory=list)
    stored: list[StoredRow] = field(default_factory=list)


def _rows(db: sqlite3.Connection, sql: str) -> list[tuple[Any, ...]]:
    try:
        return list(db.execute(sql))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # the stub creates its tables when it starts
        raise


def read_stub_tables(path: Path) -> StubTables:
    """The stub's ``ledger``, ``gaps`` and ``envelopes`` (read-only; none if no file)."""
    if not path.exists():
        return StubTables()
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ConfigError(
            f"cannot open the stub's database {path}: {exc}",
            hint="give the run directory the stub wrote (docs/files.md)",
        ) from None
    try:
        ledger = _rows(
            db,
            "SELECT position, org_number, envelope_id, message_id, message_type, sequence, "
            "loaded_at_ms, late FROM ledger ORDER BY position",
        )
        gaps = _rows(
            db,
            "SELECT org_number, kind, first_missing, last_missing, envelope_id FROM gaps "
            "ORDER BY id",
        )
        stored = _rows(
            db,
            "SELECT envelope_id, org_number, message_id, sequence, received_at_ms FROM envelopes "
            "ORDER BY received_at_ms, rowid",
        )
    except sqlite3.Error as exc:
        raise ConfigError(
            f"cannot read the stub's database {path}: {exc}",
            hint="check that the file is the stub's SQLite file and not damaged",
        ) from None
    finally:
        db.close()
    return StubTables(
        ledger=[
            LedgerRow(int(p), str(o), str(e), str(m), str(t), int(s), int(at), bool(late))
            for p, o, e, m, t, s, at, late in ledger
        ],
        gaps=[
            GapRow(
                str(o), str(k), None if a is None else int(a), None if b is None else int(b), str(e)
            )
            for o, k, a, b, e in gaps
        ],
        stored=[StoredRow(str(e), str(o), str(m), int(s), int(at)) for e, o, m, s, at in stored],
    )


# --- faults -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault of the soak's log."""

    at_ms: int
    kind: str
    target: str
    line: dict[str, Any]  # the whole line, with whatever else the soak wrote


def read_faults(path: Path | None) -> list[Fault]:
    """The faults log in time order (no log, or a log not written yet: none)."""
    faults = [
        Fault(_int(f.get("at_ms")), str(f.get("kind", "")), str(f.get("target", "")), f)
        for f in read_lines(path)
        if "at_ms" in f
    ]
    return sorted(faults, key=lambda f: f.at_ms)


# --- the broker -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Browsed:
    """One message seen in a browse: its headers as the broker gave them."""

    headers: dict[str, str]
    body_bytes: int


def broker_addresses(url: str) -> list[tuple[str, int]]:
    """``stomp://h:p`` or ``failover:(stomp://a:1,stomp://b:2)`` → the addresses to try."""
    text = url.strip()
    if text.lower().startswith("failover:"):
        text = text[len("failover:") :].strip().removeprefix("(").removesuffix(")")
    out = []
    for part in text.split(","):
        try:
            split = urlsplit(part.strip())
            host, port = split.hostname, split.port
        except ValueError:
            host, port = None, None
        if split.scheme not in ("stomp", "tcp") or not host or not port:
            raise ConfigError(
                f"broker URL {url!r} is not stomp://HOST:PORT",
                hint="give the broker as stomp://HOST:PORT or failover:(stomp://…,stomp://…)",
            )
        out.append((host, port))
    return out


class _Inbox(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.frames: queues.Queue[Any] = queues.Queue()

    def on_message(self, frame: Any) -> None:
        self.frames.put(frame)

    def on_disconnected(self) -> None:
        self.frames.put(None)


class QueueBrowser:
    """Browses queues of one broker without consuming; use as a context manager."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self._addresses = broker_addresses(url)
        self._inbox = _Inbox()
        self._conn: Any = None

    def __enter__(self) -> QueueBrowser:
        last: Exception | None = None
        for address in self._addresses:
            conn = stomp.Connection12(
                [address], heartbeats=(0, 0), timeout=self.timeout, reconnect_attempts_max=1
            )
            conn.set_listener("browse", self._inbox)
            try:
                conn.connect(wait=True)
            except Exception as exc:  # stomp.py raises its own and OS errors
                last = exc
                continue
            self._conn = conn
            return self
        raise BrokerUnreachableError(
            f"cannot browse the broker at {self.url}: {last}",
            hint="start the broker (b2bsim broker start) or pass the URL of one that runs",
        )

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None and self._conn.is_connected():
            self._conn.disconnect()

    def messages(self, destination: str) -> list[Browsed]:
        """Every message on ``destination``, oldest first, without consuming any.

        A page is at most :data:`BROWSE_PAGE` messages; when one comes back
        full, the ``JMSTimestamp`` range is split and each part browsed, until
        each part fits (a browse with a selector searches the whole queue).
        """
        page = self._browse(destination, None)
        if len(page) >= BROWSE_PAGE:
            page = self._split(destination, 0, _TIMESTAMP_CEILING)
        unique = {m.headers.get("message-id", str(i)): m for i, m in enumerate(page)}
        return list(unique.values())

    def _split(self, destination: str, lo: int, hi: int) -> list[Browsed]:
        page = self._browse(destination, f"JMSTimestamp >= {lo} AND JMSTimestamp < {hi}")
        if len(page) < BROWSE_PAGE or hi - lo <= 1:
            return page
        mid = max(_int(m.headers.get("timestamp")) for m in page)
        if not lo < mid < hi:
            mid = (lo + hi) // 2
        return self._split(destination, lo, mid) + self._split(destination, mid, hi)

    def _browse(self, destination: str, selector: str | None) -> list[Browsed]:
        sub = f"browse-{uuid.uuid4()}"
        headers = {"browser": "true"}
        if selector:
            headers["selector"] = selector
        self._conn.subscribe(destination, id=sub, ack="auto", headers=headers)
        out: list[Browsed] = []
        try:
            while True:
                try:
                    frame = self._inbox.frames.get(timeout=self.timeout)
                except queues.Empty:
                    raise BrokerUnreachableError(
                        f"the broker at {self.url} did not finish browsing {destination} "
                        f"within {self.timeout:g} s",
                        hint="check the broker (b2bsim broker status) and check again",
                    ) from None
                if frame is None:
                    raise BrokerUnreachableError(
                        f"the broker at {self.url} closed the connection while browsing "
                        f"{destination}",
                        hint="check the broker (b2bsim broker status) and check again",
                    )
                headers_of = dict(frame.headers)
                if headers_of.get("subscription") != sub:
                    continue
                if headers_of.get("browser") == "end":
                    return out
                body = frame.body
                size = len(body.encode("utf-8") if isinstance(body, str) else body or b"")
                out.append(Browsed(headers_of, size))
        finally:
            if self._conn.is_connected():
                self._conn.unsubscribe(sub)


def dead_letter_queue(queue: str) -> str:
    """``/queue/x`` → ``/queue/DLQ.x`` (ActiveMQ's naming, docs/dlq.md)."""
    if not queue.startswith("/queue/") or queue == "/queue/":
        raise ConfigError(
            f"{queue!r} is not a queue name", hint="give the queue KA sends to as /queue/NAME"
        )
    return "/queue/DLQ." + queue[len("/queue/") :]
