"""Tests of simulator.runs.reconcile: KA's record, old and new format, and what is named."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from simulator.runs.reconcile import produced_ids, produced_records, read_record, reconcile


def _write(path: Path, *lines: dict[str, Any] | str) -> Path:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )
    return path


def _recorded(message_id: str, sequence: int = 1) -> dict[str, Any]:
    return {
        "state": "recorded",
        "message_id": message_id,
        "message_type": "INKOPSORDER",
        "org_number": "5520000018",
        "produced_at_ms": 1000 + sequence,
        "sequence": sequence,
        "correlation_id": "c",
        "document_id": f"PO-{sequence}",
    }


def _ledger(db: Path, *message_ids: str) -> Path:
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE ledger (position INTEGER PRIMARY KEY, org_number, message_id, "
        "produced_at_ms, sequence)"
    )
    con.executemany(
        "INSERT INTO ledger (org_number, message_id, produced_at_ms, sequence) VALUES (?,?,?,?)",
        [("5520000018", m, 1000 + i, i) for i, m in enumerate(message_ids, 1)],
    )
    con.commit()
    con.close()
    return db


def test_new_format_reads_recorded_and_sent(tmp_path: Path) -> None:
    """Each message once, by its first recorded line; sent lines are confirmations only."""
    log = _write(
        tmp_path / "produced.jsonl",
        _recorded("a", 1),
        {"state": "sent", "message_id": "a", "at_ms": 5},
        _recorded("b", 2),
        '{"state": "recorded", "message_id": "cut',  # cut short by a crash
        _recorded("b", 2) | {"produced_at_ms": 9},  # recorded again after a restart
    )
    record = read_record(log)
    assert list(record.recorded) == ["a", "b"]
    assert record.recorded["b"]["produced_at_ms"] == 1002
    assert record.sent == {"a"}
    assert record.unconfirmed == {"b"}
    assert [r["message_id"] for r in produced_records(log)] == ["a", "b"]
    assert produced_ids(log) == {"a", "b"}


def test_old_format_lines_are_recorded_and_sent(tmp_path: Path) -> None:
    """A line without state (written after the SEND, before this format) was sent."""
    old = _recorded("a")
    del old["state"]
    record = read_record(_write(tmp_path / "produced.jsonl", old))
    assert list(record.recorded) == ["a"]
    assert record.unconfirmed == set()


def test_recorded_never_sent_is_named(tmp_path: Path) -> None:
    """Lost messages KA never had confirmed are named in unsent_ids, not just counted."""
    log = _write(
        tmp_path / "produced.jsonl",
        _recorded("a", 1),
        {"state": "sent", "message_id": "a", "at_ms": 5},
        _recorded("b", 2),
        {"state": "sent", "message_id": "b", "at_ms": 6},
        _recorded("c", 3),
        _recorded("d", 4),
    )
    db = _ledger(tmp_path / "stub.sqlite", "a", "d")  # d arrived, its receipt did not
    figures = reconcile(log, [], db)
    assert figures.produced == 4
    assert figures.lost_ids == ["b", "c"]
    assert figures.unsent_ids == ["c"]
