"""Tests of ka_producer.outbox: what survives KA, and how it is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ka_producer.outbox import KaOutbox, Outgoing
from simulator.runs.reconcile import read_record
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.messages import MessageMeta, MessageType

ORG = "5520000018"


def _outgoing(sequence: int) -> Outgoing:
    meta = MessageMeta.new(MessageType.INKOPSORDER, ORG, sequence, message_id=f"m{sequence}")
    record = {"state": "recorded", "message_id": meta.message_id, "org_number": ORG}
    return Outgoing(
        meta.message_id,
        meta.headers(),
        f"<Order>{sequence}</Order>",
        record | {"sequence": sequence},
    )


async def test_restart_restores_sequences_known_ids_and_unsent(tmp_path: Path) -> None:
    """Recorded and sent, recorded only: a new outbox on the same file knows both, and
    holds the body of the one never confirmed, to send it again."""
    db, log = tmp_path / "ka-outbox.sqlite", tmp_path / "produced.jsonl"
    outbox = KaOutbox(db, log)
    assert (await outbox.open()).sequences == {}
    await outbox.record([_outgoing(1), _outgoing(2)])
    await outbox.mark_sent(["m1"])
    await outbox.record([_outgoing(3)])
    await outbox.close()

    record = read_record(log)
    assert list(record.recorded) == ["m1", "m2", "m3"]
    assert record.unconfirmed == {"m2", "m3"}

    again = KaOutbox(db, log)
    restored = await again.open()
    try:
        assert restored.sequences == {ORG: 3}
        assert set(restored.known) == {"m1", "m2", "m3"}
        assert restored.known["m2"].sequence == 2
        assert [(o.message_id, o.body, o.stored) for o in restored.unsent] == [
            ("m2", "<Order>2</Order>", True),
            ("m3", "<Order>3</Order>", True),
        ]
    finally:
        await again.close()
    assert list(read_record(log).recorded) == ["m1", "m2", "m3"]  # not recorded twice


async def test_a_record_missing_its_lines_gets_them_back(tmp_path: Path) -> None:
    """KA died after the outbox committed, before the record: the restart records them;
    a line a crash cut short does not swallow the next one."""
    db, log = tmp_path / "ka-outbox.sqlite", tmp_path / "produced.jsonl"
    outbox = KaOutbox(db, None)
    await outbox.open()
    await outbox.record([_outgoing(1)])
    await outbox.close()
    log.write_text('{"state": "recorded", "message_id": "cu')
    again = KaOutbox(db, log)
    await again.open()
    await again.close()
    lines = log.read_text().splitlines()
    assert json.loads(lines[-1])["message_id"] == "m1"
    assert list(read_record(log).recorded) == ["m1"]


async def test_one_ka_per_outbox(tmp_path: Path) -> None:
    db = tmp_path / "ka-outbox.sqlite"
    first = KaOutbox(db, None)
    await first.open()
    try:
        with pytest.raises(ConfigError, match="another KA is using the outbox"):
            await KaOutbox(db, None).open()
    finally:
        await first.close()
    second = KaOutbox(db, None)
    await second.open()
    await second.close()
