"""Reconciliation: compare what KA produced, the ICC delivered or dead-lettered,
and the supplier stored.

Inputs are the run's documented files (docs/files.md): ``produced.jsonl``
(KA), ``icc.jsonl`` (the ICC's events) and the stub's SQLite file: its inbox
(``envelopes``, ``arrivals``) and its ledger (``ledger``, what was loaded, in
load order; docs/supplier.md), read with :mod:`simulator.runs.stub_records`.  Nothing
here talks to a component.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from simulator.runs.stub_records import duplicate_arrivals, loaded_messages


@dataclass
class Reconciliation:
    produced: int = 0
    delivered: int = 0  # distinct messages the ICC got a 2xx for
    ingested: int = 0  # distinct messages the supplier loaded into its ledger
    lost: int = 0  # produced, but neither loaded nor dead-lettered
    double_ingested: int = 0  # extra ledger rows for a message
    dead_lettered: int = 0  # distinct messages in the DLQ
    redelivered: int = 0  # arrivals the supplier answered as duplicates
    out_of_order: int = 0  # ledger rows loaded after a later message of the same supplier
    lost_ids: list[str] = field(default_factory=list)
    # lost because KA recorded them but the broker never confirmed them (KA died before)
    unsent_ids: list[str] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)

    def figures(self) -> dict[str, int]:
        """The integer figures, for expectations and the result file."""
        return {k: v for k, v in asdict(self).items() if isinstance(v, int)}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path`` (a missing file is empty)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash
    return out


def out_of_order_rows(loaded: list[tuple[str, str, int, int]]) -> int:
    """Rows whose (produced_at_ms, sequence) is below a row of the same supplier loaded before."""
    highest: dict[str, tuple[int, int]] = {}
    count = 0
    for _, org, produced_at_ms, sequence in loaded:
        key = (produced_at_ms, sequence)
        top = highest.get(org)
        if top is not None and key < top:
            count += 1
        else:
            highest[org] = key
    return count


@dataclass
class KaRecord:
    """KA's record (``produced.jsonl``, docs/files.md): each message KA recorded,
    by id (its first ``recorded`` line), and the ids the broker confirmed.

    A line without ``state`` is of the older format, written after the SEND:
    recorded and sent.
    """

    recorded: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: set[str] = field(default_factory=set)

    @property
    def unconfirmed(self) -> set[str]:
        """Recorded, but the broker never confirmed them (yet)."""
        return set(self.recorded) - self.sent


def read_record(produced_log: Path) -> KaRecord:
    """KA's record of ``produced_log`` (a missing file is empty)."""
    record = KaRecord()
    for line in read_jsonl(produced_log):
        message_id = line.get("message_id")
        if not isinstance(message_id, str):
            continue
        state = line.get("state")
        if state == "sent":
            record.sent.add(message_id)
            continue
        record.recorded.setdefault(message_id, line)
        if state is None:  # the older format: written once sent
            record.sent.add(message_id)
    return record


def produced_records(produced_log: Path) -> list[dict[str, Any]]:
    """Each message KA recorded, once, in the order of the record."""
    return list(read_record(produced_log).recorded.values())


def produced_ids(produced_log: Path) -> set[str]:
    return set(read_record(produced_log).recorded)


def icc_events(logs: Iterable[Path]) -> list[dict[str, Any]]:
    """Every event of every ICC worker's log."""
    return [e for log in logs for e in read_jsonl(log)]


def dead_lettered_ids(logs: Iterable[Path]) -> set[str]:
    return {str(e.get("message_id")) for e in icc_events(logs) if e.get("event") == "dead_lettered"}


def delivered_ids(logs: Iterable[Path], org_number: str) -> set[str]:
    """Messages of ``org_number`` the ICC got a 2xx receipt for."""
    return delivered_ids_of(icc_events(logs), org_number)


def delivered_ids_of(events: Iterable[dict[str, Any]], org_number: str) -> set[str]:
    return {
        str(e.get("message_id"))
        for e in events
        if e.get("event") == "delivered" and e.get("org_number") == org_number
    }


#: An external supplier for :func:`reconcile`: its number, and its read-back's order.
External = tuple[str, list[str] | None]


def _externals(external: External | Sequence[External] | None) -> list[External]:
    if external is None:
        return []
    if len(external) == 2 and isinstance(external[0], str):  # one: (org, order)
        return [external]  # type: ignore[list-item]
    return list(external)  # type: ignore[arg-type]


def reconcile(
    produced_log: Path,
    icc_logs: Iterable[Path],
    stub_db: Path,
    external: External | Sequence[External] | None = None,
) -> Reconciliation:
    """Compare KA's log, the ICC workers' event logs and the supplier's ledger.

    ``external`` is (organisation number, message ids in the order its read-back
    says it loaded them) of a supplier at an external endpoint, whose ledger is
    not the stub's; without a read-back (None) what it acknowledged with a 2xx
    counts as loaded, once.  Several such (``--target``): a list of them.
    """
    record = read_record(produced_log)
    rows = list(record.recorded.values())
    produced = set(record.recorded)
    events = icc_events(icc_logs)
    delivered = {e["message_id"] for e in events if e.get("event") == "delivered"}
    dead = {e["message_id"]: e for e in events if e.get("event") == "dead_lettered"}
    loaded = loaded_messages(stub_db)
    redelivered = duplicate_arrivals(stub_db)
    for org, order in _externals(external):
        meta = {str(r["message_id"]): r for r in rows if r.get("org_number") == org}
        loaded = loaded + [
            (m, org, int(meta[m]["produced_at_ms"]), int(meta[m]["sequence"]))
            for m in (sorted(delivered_ids_of(events, org) & set(meta)) if order is None else order)
            if m in meta
        ]
        redelivered += sum(
            1
            for e in events
            if e.get("org_number") == org
            and e.get("event") in ("delivered", "duplicated")
            and e.get("receipt") == "duplicate"
        )
    copies = Counter(m for m, _, _, _ in loaded)
    out_of_order = out_of_order_rows(loaded)
    lost = sorted(produced - set(copies) - set(dead))
    return Reconciliation(
        produced=len(produced),
        delivered=len(delivered),
        ingested=len(copies),
        lost=len(lost),
        double_ingested=sum(n - 1 for n in copies.values()),
        dead_lettered=len(dead),
        redelivered=redelivered,
        out_of_order=out_of_order,
        lost_ids=lost[:100],
        unsent_ids=sorted(set(lost) & record.unconfirmed)[:100],
        dead_letters=[
            {"message_id": m, "code": e.get("code", ""), "reason": e.get("detail", "")}
            for m, e in sorted(dead.items())
        ],
    )
