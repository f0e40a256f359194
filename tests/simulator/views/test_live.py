"""The live tailer: a fake run directory, grown step by step, read incrementally."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from simulator.views.live import RunTailer
from simulator.views.live_records import JsonlTail

_SCHEMA = """
CREATE TABLE envelopes (envelope_id TEXT PRIMARY KEY, org_number TEXT, message_id TEXT,
    message_type TEXT, correlation_id TEXT, produced_at_ms INTEGER, sequence INTEGER,
    document_sha256 TEXT, received_at_ms INTEGER, envelope BLOB);
CREATE TABLE arrivals (id INTEGER PRIMARY KEY AUTOINCREMENT, envelope_id TEXT, org_number TEXT,
    at_ms INTEGER, outcome TEXT);
CREATE TABLE ledger (position INTEGER PRIMARY KEY AUTOINCREMENT, org_number TEXT,
    envelope_id TEXT UNIQUE, message_id TEXT, message_type TEXT, document_id TEXT,
    produced_at_ms INTEGER, sequence INTEGER, received_at_ms INTEGER, loaded_at_ms INTEGER,
    late INTEGER);
CREATE TABLE gaps (id INTEGER PRIMARY KEY AUTOINCREMENT, org_number TEXT, kind TEXT,
    first_missing INTEGER, last_missing INTEGER, invoice_ids TEXT, envelope_id TEXT,
    detected_at_ms INTEGER);
"""

ORG = "5520000018"


class FakeRun:
    """A run directory that a test writes as the components would."""

    def __init__(self, root: Path) -> None:
        self.dir = root
        self.db = root / "supplier-stub.sqlite"
        self.now = 1_000_000

    def clock(self) -> int:
        return self.now

    def append(self, name: str, **record: Any) -> None:
        with (self.dir / name).open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def produce(self, n: int, mtype: str = "INKOPSORDER") -> None:
        self.append(
            "produced.jsonl",
            message_id=f"m{n}",
            message_type=mtype,
            org_number=ORG,
            produced_at_ms=self.now,
            sequence=n,
        )

    def icc(self, event: str, n: int, **extra: Any) -> None:
        self.append(
            "icc-1.jsonl",
            event=event,
            at_ms=self.now,
            envelope_id=f"e{n}",
            message_id=f"m{n}",
            message_type="INKOPSORDER",
            org_number=ORG,
            sequence=n,
            **extra,
        )

    def sql(self, statement: str, *params: Any) -> None:
        with closing(sqlite3.connect(self.db)) as con, con:
            if not con.execute("SELECT name FROM sqlite_master WHERE name='ledger'").fetchone():
                con.executescript(_SCHEMA)
            con.execute(statement, params)

    def arrive(self, n: int, outcome: str = "accepted") -> None:
        if outcome == "accepted":
            self.sql(
                "INSERT INTO envelopes VALUES (?, ?, ?, 'INKOPSORDER', 'c', ?, ?, 'x', ?, ?)",
                f"e{n}",
                ORG,
                f"m{n}",
                self.now,
                n,
                self.now,
                b"<x/>",
            )
        self.sql(
            "INSERT INTO arrivals (envelope_id, org_number, at_ms, outcome) VALUES (?, ?, ?, ?)",
            f"e{n}",
            ORG,
            self.now,
            outcome,
        )

    def load(self, n: int, late: bool = False, received: int | None = None) -> None:
        self.sql(
            "INSERT INTO ledger (org_number, envelope_id, message_id, message_type, document_id, "
            "produced_at_ms, sequence, received_at_ms, loaded_at_ms, late) "
            "VALUES (?, ?, ?, 'INKOPSORDER', 'd', ?, ?, ?, ?, ?)",
            ORG,
            f"e{n}",
            f"m{n}",
            self.now,
            n,
            self.now if received is None else received,
            self.now,
            int(late),
        )


@pytest.fixture
def run(tmp_path: Path) -> FakeRun:
    """An empty fake run directory."""
    return FakeRun(tmp_path)


@pytest.fixture
def tailer(run: FakeRun) -> RunTailer:
    """A tailer of the fake run, on the fake run's clock."""
    return RunTailer(run.dir, held_after_ms=400, clock=run.clock)


def kinds(events: list[Any]) -> list[str]:
    return [e.kind for e in events]


class TestJsonlTail:
    def test_missing_file_reads_nothing(self, tmp_path: Path) -> None:
        """A file that does not exist yet is not an error."""
        assert JsonlTail(tmp_path / "none.jsonl").read() == []

    def test_reads_only_new_complete_lines(self, tmp_path: Path) -> None:
        """Each read returns the lines written since the last; a half line waits."""
        path = tmp_path / "x.jsonl"
        tail = JsonlTail(path)
        path.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": ')
        assert tail.read() == [{"a": 1}, {"a": 2}]
        assert tail.read() == []
        with path.open("ab") as f:
            f.write(b'3}\n{"a": 4}\n')
        assert tail.read() == [{"a": 3}, {"a": 4}]

    def test_skips_lines_that_are_not_objects(self, tmp_path: Path) -> None:
        """Garbage and non-object lines are skipped, the rest read."""
        path = tmp_path / "x.jsonl"
        path.write_bytes(b'not json\n[1]\n{"ok": true}\n')
        assert JsonlTail(path).read() == [{"ok": True}]


class TestRunTailer:
    def test_empty_run_directory_gives_no_events(self, tailer: RunTailer) -> None:
        """Before any component wrote anything, a poll is quiet."""
        assert tailer.poll() == []
        assert tailer.counters.produced == 0

    def test_a_message_travels_from_ka_to_the_ledger(self, run: FakeRun, tailer: RunTailer) -> None:
        """produced → consumed → received → delivered → loaded, station by station."""
        run.produce(1)
        assert kinds(tailer.poll()) == ["produced"]
        assert tailer.messages["m1"].station == "queue"
        assert tailer.counters.queue_depth == 1
        run.icc("consumed", 1, redelivered=False)
        assert kinds(tailer.poll()) == ["consumed"]
        assert tailer.messages["m1"].station == "icc"
        assert tailer.counters.queue_depth == 0
        run.arrive(1)
        run.icc("delivered", 1, status=201, detail="accepted")
        events = tailer.poll()
        assert kinds(events) == ["delivered", "received"]
        assert events[1].detail == "accepted"
        assert tailer.messages["m1"].station == "supplier"
        run.load(1)
        assert kinds(tailer.poll()) == ["loaded"]
        m = tailer.messages["m1"]
        assert (m.station, m.delivered, m.envelope_id) == ("ledger", True, "e1")
        c = tailer.counters
        assert (c.produced, c.delivered, c.received, c.loaded) == (1, 1, 1, 1)

    def test_retries_and_dead_letters_are_counted(self, run: FakeRun, tailer: RunTailer) -> None:
        """Retries count per attempt; a dead letter moves the message to the DLQ with its code."""
        run.produce(1)
        run.icc("consumed", 1)
        run.icc("retry", 1, attempt=1, detail="HTTP 503")
        run.icc("retry", 1, attempt=2, detail="HTTP 503")
        run.icc("dead_lettered", 1, code="DELIVERY_REFUSED", detail="HTTP 400: bad")
        events = tailer.poll()
        assert kinds(events) == ["produced", "consumed", "retry", "retry", "dead_lettered"]
        assert events[3].attempt == 2
        m = tailer.messages["m1"]
        assert (m.station, m.retries, m.code) == ("dead", 2, "DELIVERY_REFUSED")
        assert (tailer.counters.retries, tailer.counters.dead_lettered) == (2, 1)

    def test_duplicate_arrivals_are_counted_not_loaded(
        self, run: FakeRun, tailer: RunTailer
    ) -> None:
        """A second arrival of one envelope is a duplicate, seen as such."""
        run.produce(1)
        run.arrive(1)
        run.load(1)
        run.arrive(1, "duplicate")
        events = tailer.poll()
        assert [e.detail for e in events if e.kind == "received"] == ["accepted", "duplicate"]
        assert tailer.messages["m1"].duplicates == 1
        assert (tailer.counters.duplicates, tailer.counters.loaded) == (1, 1)

    def test_a_stored_message_not_loaded_is_held_once(
        self, run: FakeRun, tailer: RunTailer
    ) -> None:
        """Stored but not loaded past held_after_ms: one held event, then loaded."""
        run.produce(2)
        run.arrive(2)
        assert "held" not in kinds(tailer.poll())
        run.now += 500
        assert kinds(tailer.poll()) == ["held"]
        run.now += 500
        assert tailer.poll() == []
        run.load(2, received=run.now - 1000)
        assert kinds(tailer.poll()) == ["released", "loaded"]
        assert tailer.messages["m2"].held
        assert tailer.messages["m2"].held_ms == 1000
        assert tailer.counters.held == 1

    def test_a_message_loaded_after_one_that_arrived_later_was_held_for_it(
        self, run: FakeRun, tailer: RunTailer
    ) -> None:
        """However short the hold, it is seen: for how long, and what it waited for."""
        run.produce(1)
        run.produce(2)
        run.arrive(2)
        sent_at = run.now
        run.now += 30
        run.arrive(1)
        run.load(1)
        run.load(2, received=sent_at)
        events = tailer.poll()
        assert kinds(events).count("held") == 1
        held = next(e for e in events if e.kind == "held")
        assert (held.message_id, held.at_ms) == ("m2", sent_at)
        assert "held back 30 ms until #1 arrived" in held.detail
        m1, m2 = tailer.messages["m1"], tailer.messages["m2"]
        assert (m2.held, m2.held_ms, m2.waited_for) == (True, 30, ["m1"])
        assert not m1.held
        assert (m1.position, m2.position) == (1, 2)
        assert tailer.counters.held == 1

    def test_each_message_keeps_its_history(self, run: FakeRun, tailer: RunTailer) -> None:
        """What befell a message stays with it, in order, after the events have gone by."""
        run.produce(1)
        tailer.poll()
        run.icc("consumed", 1)
        run.icc("retry", 1, status=503, detail="503 Service Unavailable")
        run.icc("delivered", 1, status=200)
        run.arrive(1)
        run.load(1)
        tailer.poll()
        m = tailer.messages["m1"]
        assert [h["kind"] for h in m.history] == [
            "produced",
            "consumed",
            "retry",
            "delivered",
            "received",
            "loaded",
        ]
        assert m.history[2]["status"] == 503
        assert m.from_ka

    def test_a_finished_run_has_the_verdict_of_its_result(
        self, run: FakeRun, tailer: RunTailer
    ) -> None:
        """result.json's verdict and expectations, as the terminal shows them."""
        expectation = {"name": "lost", "expected": 0, "actual": 1, "passed": False}
        result = {"passed": False, "error": None, "expectations": [expectation], "rerun": "x"}
        (run.dir / "result.json").write_text(json.dumps(result))
        assert kinds(tailer.poll()) == ["finished"]
        assert tailer.verdict is not None
        assert tailer.verdict["passed"] is False
        assert tailer.verdict["expectations"] == [expectation]

    def test_rows_are_read_once(self, run: FakeRun, tailer: RunTailer) -> None:
        """Each SQLite row and each line appears in exactly one poll."""
        for n in (1, 2):
            run.produce(n)
            run.arrive(n)
            run.load(n)
        assert kinds(tailer.poll()).count("loaded") == 2
        run.produce(3)
        run.arrive(3)
        run.load(3, late=True)
        events = tailer.poll()
        assert kinds(events) == ["produced", "received", "loaded"]
        assert events[-1].detail == "late"
        assert tailer.messages["m3"].late

    def test_gaps_and_refused_attacks_are_events(self, run: FakeRun, tailer: RunTailer) -> None:
        """The stub's gaps and the attacks' refusals come out with their codes."""
        run.sql(
            "INSERT INTO gaps (org_number, kind, first_missing, last_missing, envelope_id, "
            "detected_at_ms) VALUES (?, 'gap', 2, 3, 'e4', 5)",
            ORG,
        )
        run.append(
            "attacks.jsonl",
            attack="xxe",
            org_number=ORG,
            status=400,
            code="XML_DOCTYPE",
            expected="XML_DOCTYPE",
            at_ms=7,
        )
        events = {e.kind: e for e in tailer.poll()}
        assert events["gap"].detail == "gave up waiting for sequences 2–3"
        assert (events["refused"].status, events["refused"].code) == (400, "XML_DOCTYPE")
        assert tailer.counters.refused == 1

    def test_result_file_finishes_the_run_and_counts_the_lost(
        self, run: FakeRun, tailer: RunTailer
    ) -> None:
        """Once result.json exists: lost = produced − stored − dead-lettered, and polling stops."""
        for n in (1, 2, 3):
            run.produce(n)
        run.arrive(1)
        run.icc("dead_lettered", 2, code="DELIVERY_GAVE_UP")
        assert tailer.counters.lost is None
        (run.dir / "result.json").write_text("{}")
        assert kinds(tailer.poll())[-1] == "finished"
        assert tailer.finished
        assert tailer.counters.lost == 1
        run.produce(4)
        assert tailer.poll() == []

    def test_poison_messages_are_followed_by_message_id(
        self, run: FakeRun, tailer: RunTailer
    ) -> None:
        """A message KA never logged (poison) still gets a state, and does not count as produced."""
        run.append(
            "icc-2.jsonl",
            event="dead_lettered",
            at_ms=1,
            envelope_id="",
            message_id="poison-not-xml",
            code="XML_MALFORMED",
        )
        events = tailer.poll()
        assert kinds(events) == ["dead_lettered"]
        assert tailer.messages["poison-not-xml"].station == "dead"
        assert (tailer.counters.produced, tailer.counters.queue_depth) == (0, 0)

    def test_a_database_without_tables_is_not_an_error(
        self, run: FakeRun, tailer: RunTailer
    ) -> None:
        """The stub may not have created its tables yet."""
        with closing(sqlite3.connect(run.db)) as con:
            con.execute("CREATE TABLE other (x)")
        assert tailer.poll() == []

    def test_events_serialise_without_empty_fields(self, run: FakeRun, tailer: RunTailer) -> None:
        """An event's JSON leaves out what does not apply."""
        run.produce(1)
        (event,) = tailer.poll()
        assert event.to_json() == {
            "kind": "produced",
            "at_ms": run.now,
            "message_id": "m1",
            "message_type": "INKOPSORDER",
            "org_number": ORG,
            "sequence": 1,
        }
