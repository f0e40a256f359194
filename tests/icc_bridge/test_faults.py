"""icc_bridge/faults.py: the faults file a running ICC re-reads, and the ack-hold kill point."""

from __future__ import annotations

import os
from pathlib import Path

from icc_bridge import read_delivery_faults, write_delivery_faults, write_hold_ack
from icc_bridge.faults import DeliveryFaults

ORG = "5520000000"


def _touch_later(path: Path, n: int) -> None:
    """A new mtime, so that the reader sees the change even within one clock tick."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + n * 1_000_000))


def test_the_hold_is_per_supplier_and_ends_when_the_key_goes(tmp_path: Path) -> None:
    path = tmp_path / "icc-faults.json"
    faults = DeliveryFaults(path)
    assert faults.hold_ack(ORG) == 0  # no file: no fault
    write_hold_ack(path, {ORG: 30.0}, reorder=0.5)
    assert faults.hold_ack(ORG) == 30.0
    assert faults.hold_ack("5560360793") == 0
    assert read_delivery_faults(path) == {"duplicate": 0.0, "reorder": 0.5}
    write_delivery_faults(path, reorder=0.5)
    _touch_later(path, 1)
    assert faults.hold_ack(ORG) == 0


def test_a_broken_hold_is_ignored_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "icc-faults.json"
    faults = DeliveryFaults(path)
    write_hold_ack(path, {ORG: 5.0})
    assert faults.hold_ack(ORG) == 5.0
    path.write_text('{"duplicate": 0, "hold_ack": [1, 2]}')
    _touch_later(path, 2)
    assert faults.hold_ack(ORG) == 5.0  # the last good file still holds
