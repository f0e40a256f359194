"""simulator/runs/endpoint_run.py: KA's sequences for an external supplier go on from run
to run (its endpoint remembers them)."""

from __future__ import annotations

import json
from pathlib import Path

from simulator.runs.endpoint_run import SEQUENCES_FILE, last_sequences, record_sequences
from simulator.vocabulary.state import StateDir

ORG, OTHER = "5520000000", "5520000018"


def produced(run_dir: Path, rows: list[tuple[str, int]]) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "produced.jsonl").write_text(
        "".join(
            json.dumps({"message_id": f"m{i}", "org_number": org, "sequence": seq}) + "\n"
            for i, (org, seq) in enumerate(rows)
        )
    )
    return run_dir


def test_a_first_run_starts_from_nothing(tmp_path: Path) -> None:
    assert last_sequences(StateDir(tmp_path), [ORG]) == {}


def test_each_run_records_where_the_next_goes_on(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    first = produced(tmp_path / "runs" / "a", [(ORG, 1), (ORG, 3), (ORG, 2), ("5560360793", 9)])
    record_sequences(state, first, [ORG])
    assert last_sequences(state, [ORG, OTHER]) == {ORG: 3}
    second = produced(tmp_path / "runs" / "b", [(ORG, 4), (OTHER, 1)])
    record_sequences(state, second, [ORG, OTHER])
    assert last_sequences(state, [ORG, OTHER]) == {ORG: 4, OTHER: 1}
    # A run that produced nothing for a supplier keeps what it had.
    record_sequences(state, produced(tmp_path / "runs" / "c", []), [ORG])
    assert last_sequences(state, [ORG]) == {ORG: 4}


def test_a_broken_record_is_ignored(tmp_path: Path) -> None:
    (tmp_path / SEQUENCES_FILE).write_text("not json")
    assert last_sequences(StateDir(tmp_path), [ORG]) == {}
