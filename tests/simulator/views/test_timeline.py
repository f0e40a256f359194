"""Tests for simulator.views.timeline: each message's hops, read from a run directory's files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from simulator.views.timeline import build_timeline, envelope_of, percentile
from supplier_stub.ledger import LEDGER_SCHEMA
from supplier_stub.store import SCHEMA

ORG = "5520000000"
T0 = 1_767_225_600_000


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Write ``records`` as JSON lines (and one line cut short, as after a crash)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"event": "deliv')


def fake_run(run_dir: Path) -> Path:
    """A run of three messages: m1 loaded, m2 retried and loaded late, m3 dead-lettered."""
    run_dir.mkdir(parents=True, exist_ok=True)
    produced = [
        {"message_id": f"m{n}", "message_type": t, "org_number": ORG}
        | {"produced_at_ms": T0 + n, "sequence": n}
        for n, t in ((1, "INKOPSORDER"), (2, "SJALVFAKTURA"), (3, "KREDIT"))
    ]
    write_jsonl(run_dir / "produced.jsonl", produced)

    def ev(kind: str, n: int, at: int, **extra: Any) -> dict[str, Any]:
        base = {"event": kind, "at_ms": T0 + at, "envelope_id": f"e{n}", "message_id": f"m{n}"}
        return base | {"org_number": ORG, "sequence": n} | extra

    write_jsonl(
        run_dir / "icc-1.jsonl",
        [
            ev("consumed", 1, 11),
            ev("delivered", 1, 40, status=200),
            ev("consumed", 2, 12),
            ev("retry", 2, 20, attempt=1),
            ev("delivered", 2, 90, status=200),
            ev("consumed", 3, 23),
            ev("dead_lettered", 3, 50, code="DELIVERY_REFUSED", detail="HTTP 403"),
        ],
    )
    write_jsonl(
        run_dir / "icc-2.jsonl",
        [
            ev("consumed", 2, 60, redelivered=True),
            {"event": "dead_lettered", "at_ms": T0 + 5, "envelope_id": "", "message_id": "poison"}
            | {"code": "ENVELOPE_MALFORMED", "detail": "no headers"},
        ],
    )
    con = sqlite3.connect(run_dir / "supplier-stub.sqlite")
    con.executescript(SCHEMA + LEDGER_SCHEMA)
    for n, received, loaded, late in ((1, 30, 35, 0), (2, 80, 100, 1)):
        con.execute(
            "INSERT INTO envelopes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                f"e{n}",
                ORG,
                f"m{n}",
                "INKOPSORDER",
                "c",
                T0 + n,
                n,
                "0" * 64,
                T0 + received,
                f"<x>{n}</x>".encode(),
            ),
        )
        con.execute(
            "INSERT INTO ledger (org_number, envelope_id, message_id, message_type, document_id, "
            "produced_at_ms, sequence, received_at_ms, loaded_at_ms, late) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ORG,
                f"e{n}",
                f"m{n}",
                "INKOPSORDER",
                f"d{n}",
                T0 + n,
                n,
                T0 + received,
                T0 + loaded,
                late,
            ),
        )
    con.commit()
    con.close()
    return run_dir


class TestBuildTimeline:
    def test_one_record_per_message_in_ka_order(self, tmp_path: Path) -> None:
        """Poison messages KA never logged come too; order is KA's (produced time)."""
        t = build_timeline(fake_run(tmp_path / "run"))
        assert [m.message_id for m in t.messages] == ["m1", "m2", "m3", "poison"]

    def test_hops_of_a_loaded_message(self, tmp_path: Path) -> None:
        """Each hop is the difference of its two stamps, in ms."""
        m1 = build_timeline(fake_run(tmp_path / "run")).by_id()["m1"]
        assert m1.hops() == {
            "broker": 10,
            "delivery": 19,
            "receipt": 10,
            "ledger": 5,
            "total": 34,
        }
        assert m1.outcome == "loaded"
        assert not m1.notable

    def test_retries_redelivery_and_lateness(self, tmp_path: Path) -> None:
        """The first consumption counts; retries, redeliveries and late loads are flagged."""
        m2 = build_timeline(fake_run(tmp_path / "run")).by_id()["m2"]
        assert m2.consumed == T0 + 12
        assert (m2.consumed_times, m2.retries, m2.late, m2.ledger_rows) == (2, 1, True, 1)
        assert m2.notable

    def test_dead_lettered_message(self, tmp_path: Path) -> None:
        """A dead letter has no supplier stamps, and carries its code and reason."""
        m3 = build_timeline(fake_run(tmp_path / "run")).by_id()["m3"]
        assert m3.outcome == "dead_lettered"
        assert (m3.dead_letter_code, m3.dead_letter_reason) == ("DELIVERY_REFUSED", "HTTP 403")
        assert m3.hop("broker") == 20
        assert m3.hop("delivery") is None

    def test_empty_directory(self, tmp_path: Path) -> None:
        """A run directory without files gives an empty timeline, not an error."""
        t = build_timeline(tmp_path)
        assert t.messages == []
        assert t.stats()["total"].count == 0
        assert t.start_ms() is None

    def test_stub_without_tables(self, tmp_path: Path) -> None:
        """A SQLite file the stub had not set up yet is read as empty."""
        sqlite3.connect(tmp_path / "supplier-stub.sqlite").close()
        assert build_timeline(tmp_path).messages == []


class TestStats:
    def test_percentiles_per_hop(self, tmp_path: Path) -> None:
        """Percentiles cover every message that has both stamps of the hop."""
        stats = build_timeline(fake_run(tmp_path / "run")).stats()
        assert stats["broker"].count == 3
        assert (stats["broker"].p50, stats["broker"].max) == (10, 20)
        assert stats["ledger"].count == 2
        assert stats["ledger"].p99 == 20

    @pytest.mark.parametrize(("p", "expected"), [(50, 50), (95, 95), (99, 99), (100, 100), (0, 1)])
    def test_nearest_rank(self, p: float, expected: int) -> None:
        """Nearest-rank percentiles of 1..100."""
        assert percentile(list(range(1, 101)), p) == expected

    def test_percentile_of_nothing(self) -> None:
        """No values, no percentile."""
        assert percentile([], 50) is None


class TestEnvelopeOf:
    def test_reads_stored_envelope(self, tmp_path: Path) -> None:
        """The envelope is read back as the bytes the stub stored."""
        run = fake_run(tmp_path / "run")
        assert envelope_of(run, "e2") == b"<x>2</x>"
        assert envelope_of(run, "nope") is None

    def test_falls_back_to_pull_outbox(self, tmp_path: Path) -> None:
        """A pulled envelope not yet stored by the supplier is found in the ICC's outbox."""
        con = sqlite3.connect(tmp_path / "icc-outbox.sqlite")
        con.execute("CREATE TABLE outbox (envelope_id TEXT, envelope BLOB)")
        con.execute("INSERT INTO outbox VALUES ('e9', ?)", (b"<y/>",))
        con.commit()
        con.close()
        assert envelope_of(tmp_path, "e9") == b"<y/>"
