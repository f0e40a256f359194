"""Tests for simulator.runs.stub_records: the conductor's reader of the stub's SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from icc_bridge.outbox import OUTBOX_SCHEMA
from simulator.runs import stub_records
from simulator.runs.stub_records import (
    OUTBOX_DB,
    STUB_DB,
    StubNews,
    duplicate_arrivals,
    envelope_of,
    latest_envelope,
    ledger_count,
    ledger_stamps,
    loaded_messages,
    news_since,
    stored_envelopes,
    stored_messages,
    timeline_envelopes,
)
from supplier_stub.ledger import LEDGER_SCHEMA
from supplier_stub.store import SCHEMA

A = "5560000001"
B = "5560000002"
T0 = 1_767_225_600_000


class Stub:
    """A stub's SQLite file written with the stub's own schema."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / STUB_DB
        self.con = sqlite3.connect(self.path)
        self.con.executescript(SCHEMA + LEDGER_SCHEMA)

    def envelope(self, n: int, org: str, received: int, blob: bytes | str) -> None:
        self.con.execute(
            "INSERT INTO envelopes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f"e{n}", org, f"m{n}", "INKOPSORDER", "c", T0 + n, n, "0" * 64, T0 + received, blob),
        )
        self.con.commit()

    def arrival(self, n: int, org: str, at: int, outcome: str) -> None:
        self.con.execute(
            "INSERT INTO arrivals (envelope_id, org_number, at_ms, outcome) VALUES (?, ?, ?, ?)",
            (f"e{n}", org, T0 + at, outcome),
        )
        self.con.commit()

    def loaded(self, n: int, org: str, loaded: int, late: int = 0) -> None:
        self.con.execute(
            "INSERT INTO ledger (org_number, envelope_id, message_id, message_type, document_id, "
            "produced_at_ms, sequence, received_at_ms, loaded_at_ms, late) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (org, f"e{n}", f"m{n}", "INKOPSORDER", f"d{n}", T0 + n, n, T0, T0 + loaded, late),
        )
        self.con.commit()

    def gap(self, n: int, org: str, first: int, last: int) -> None:
        self.con.execute(
            "INSERT INTO gaps (org_number, kind, first_missing, last_missing, invoice_ids, "
            "envelope_id, detected_at_ms) VALUES (?, 'gap', ?, ?, '', ?, ?)",
            (org, first, last, f"e{n}", T0 + 500),
        )
        self.con.commit()

    def close(self) -> None:
        self.con.close()


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[Stub]:
    """Two suppliers: e1, e3 of A (e3 received first), e2 of B; one duplicate arrival."""
    s = Stub(tmp_path)
    s.envelope(1, A, 20, b"<one/>")
    s.envelope(2, B, 10, b"<two/>")
    s.envelope(3, A, 5, b"<three/>")
    for n, org, at in ((3, A, 5), (2, B, 10), (1, A, 20)):
        s.arrival(n, org, at, "accepted")
    s.arrival(1, A, 30, "duplicate")
    s.loaded(3, A, 40)
    s.loaded(1, A, 50, late=1)
    yield s
    s.close()


def test_the_conductor_reads_sqlite_only_here() -> None:
    """No other module of the conductor opens a component's database.

    (The vocabulary's SQLite worker is the components' own, not the conductor's;
    the soak's invariant checker reads the tables with SQL of its own on purpose:
    it shares no code with what it checks.)
    """
    root = Path(stub_records.__file__).resolve().parents[1]
    readers = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "import sqlite3" in p.read_text(encoding="utf-8")
        and p.relative_to(root).parts[0] != "vocabulary"
        and p.relative_to(root).as_posix() != "kits/invariant_sources.py"
    )
    assert readers == ["runs/stub_records.py"]


class TestNothingYet:
    def test_a_missing_file_reads_as_empty_and_is_not_created(self, tmp_path: Path) -> None:
        db = tmp_path / STUB_DB
        assert stored_messages(db) == []
        assert loaded_messages(db) == []
        assert duplicate_arrivals(db) == 0
        assert latest_envelope(db, A) is None
        assert ledger_count(db) == 0
        assert timeline_envelopes(db) == []
        assert ledger_stamps(db) == []
        assert envelope_of(tmp_path, "e1") is None
        assert list(stored_envelopes(tmp_path)) == []
        assert news_since(db, {}) == StubNews()
        assert not db.exists()

    def test_missing_tables_read_as_empty(self, tmp_path: Path) -> None:
        """The stub has created its file but not yet its tables."""
        db = tmp_path / STUB_DB
        sqlite3.connect(db).close()
        assert stored_messages(db) == []
        assert loaded_messages(db) == []
        assert duplicate_arrivals(db) == 0
        assert ledger_count(db) == 0
        assert timeline_envelopes(db) == []
        assert ledger_stamps(db) == []
        assert envelope_of(tmp_path, "e1") is None
        cursors = {"arrivals": 4}
        assert news_since(db, cursors) == StubNews()
        assert cursors == {"arrivals": 4}


class TestUnreadableFile:
    @pytest.fixture
    def garbage(self, tmp_path: Path) -> Path:
        db = tmp_path / STUB_DB
        db.write_bytes(b"not a database, " * 256)
        return db

    def test_the_figures_let_the_error_through(self, garbage: Path) -> None:
        with pytest.raises(sqlite3.DatabaseError):
            loaded_messages(garbage)
        with pytest.raises(sqlite3.DatabaseError):
            ledger_count(garbage)

    def test_the_views_show_nothing(self, garbage: Path) -> None:
        assert timeline_envelopes(garbage) == []
        assert ledger_stamps(garbage) == []
        assert envelope_of(garbage.parent, "e1") is None
        assert list(stored_envelopes(garbage.parent)) == []

    def test_the_live_view_tries_again(self, garbage: Path) -> None:
        assert news_since(garbage, {}) is None


class TestFigures:
    def test_stored_messages_in_order_of_arrival(self, stub: Stub) -> None:
        assert stored_messages(stub.path) == [
            ("m3", A, 3, T0 + 5),
            ("m2", B, 2, T0 + 10),
            ("m1", A, 1, T0 + 20),
        ]

    def test_loaded_messages_in_load_order(self, stub: Stub) -> None:
        assert loaded_messages(stub.path) == [("m3", A, T0 + 3, 3), ("m1", A, T0 + 1, 1)]
        assert ledger_count(stub.path) == 2

    def test_duplicate_arrivals(self, stub: Stub) -> None:
        assert duplicate_arrivals(stub.path) == 1

    def test_latest_envelope_of_a_supplier(self, stub: Stub) -> None:
        """The one stored last (by row), not the one received last."""
        assert latest_envelope(stub.path, A) == b"<three/>"
        assert latest_envelope(stub.path, B) == b"<two/>"
        assert latest_envelope(stub.path, "5560000003") is None


class TestViews:
    def test_timeline_envelopes_as_stored(self, stub: Stub) -> None:
        assert sorted(timeline_envelopes(stub.path)) == [
            ("m1", "e1", A, "INKOPSORDER", 1, T0 + 20),
            ("m2", "e2", B, "INKOPSORDER", 2, T0 + 10),
            ("m3", "e3", A, "INKOPSORDER", 3, T0 + 5),
        ]

    def test_ledger_stamps_in_load_order(self, stub: Stub) -> None:
        assert ledger_stamps(stub.path) == [("m3", T0 + 40, 0), ("m1", T0 + 50, 1)]

    def test_envelope_of_inbox_then_outbox(self, stub: Stub, tmp_path: Path) -> None:
        outbox = sqlite3.connect(tmp_path / OUTBOX_DB)
        outbox.executescript(OUTBOX_SCHEMA)
        for envelope_id, blob in (("e2", "<two from the outbox/>"), ("e9", "<nine/>")):
            outbox.execute(
                "INSERT INTO outbox (envelope_id, org_number, message_id, message_type, "
                "sequence, created_at_ms, envelope) VALUES (?, ?, 'm', 'KREDIT', 1, 0, ?)",
                (envelope_id, B, blob),
            )
        outbox.commit()
        outbox.close()
        assert envelope_of(tmp_path, "e2") == b"<two/>"
        assert envelope_of(tmp_path, "e9") == b"<nine/>"
        assert envelope_of(tmp_path, "e7") is None
        assert list(stored_envelopes(tmp_path)) == [
            ("e1", b"<one/>"),
            ("e2", b"<two/>"),
            ("e3", b"<three/>"),
            ("e9", b"<nine/>"),
        ]

    def test_news_since_moves_the_cursors(self, stub: Stub) -> None:
        cursors = {"arrivals": 0, "ledger": 0, "gaps": 0}
        news = news_since(stub.path, cursors)
        assert news is not None
        assert [(r[1], r[4], r[5]) for r in news.arrivals] == [
            ("e3", "accepted", "m3"),
            ("e2", "accepted", "m2"),
            ("e1", "accepted", "m1"),
            ("e1", "duplicate", "m1"),
        ]
        assert [(r[1], r[4], r[7]) for r in news.ledger] == [("e3", "m3", 0), ("e1", "m1", 1)]
        assert news.gaps == []
        assert cursors == {"arrivals": 4, "ledger": 2, "gaps": 0}

        stub.arrival(4, B, 60, "accepted")
        stub.gap(4, B, 3, 3)
        news = news_since(stub.path, cursors)
        assert news is not None
        assert [r[1] for r in news.arrivals] == ["e4"]
        assert news.arrivals[0][5] is None  # no envelope stored for it
        assert news.ledger == []
        assert [r[1:] for r in news.gaps] == [("e4", B, T0 + 500, "gap", 3, 3)]
        assert cursors == {"arrivals": 5, "ledger": 2, "gaps": 1}

    def test_reading_never_writes(self, stub: Stub) -> None:
        stub.close()
        before = stub.path.read_bytes()
        news_since(stub.path, {})
        list(stored_envelopes(stub.path.parent))
        loaded_messages(stub.path)
        assert stub.path.read_bytes() == before
        assert sorted(p.name for p in stub.path.parent.iterdir()) == [STUB_DB]
