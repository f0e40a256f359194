"""The invariant checker: synthetic run directories for each violation, a real run, the broker.

The synthetic runs are written here by hand (JSON lines and the stub's tables
by this file's own SQL), so that the checker is tested against the documented
formats (docs/files.md), not against the components' code.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import stomp

from simulator.kits.invariants import KINDS, InvariantReport, check_invariants
from simulator.runs.runner import RunOptions, run_scenario
from simulator.runs.scenario import load_scenario
from simulator.vocabulary.errors import BrokerUnreachableError, ConfigError
from simulator.vocabulary.state import StateDir

REPO = Path(__file__).resolve().parents[3]
QUEUE = "/queue/af.ka.outbound.run-test"

#: The stub's tables as docs/files.md gives them (not supplier_stub's own SCHEMA).
STUB_TABLES = """
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
ORG_A, ORG_B = "5520000018", "5560360793"
TYPES = ("INKOPSORDER", "SJALVFAKTURA", "KREDIT")
ORDERS = ("INKOPSORDER",)


@dataclass(frozen=True)
class Msg:
    message_id: str
    org: str
    seq: int
    type: str
    correlation: str
    produced_at_ms: int

    @property
    def envelope_id(self) -> str:
        return f"env-{self.message_id}"


def chain(
    org: str, count: int, *, start_ms: int = 1000, types: tuple[str, ...] = TYPES
) -> list[Msg]:
    """``count`` messages of ``org``: order, invoice, credit, order, … (one chain per three)."""
    return [
        Msg(
            f"{org}-{seq}",
            org,
            seq,
            types[(seq - 1) % len(types)],
            f"chain-{org}-{(seq - 1) // 3}",
            start_ms + seq * 10,
        )
        for seq in range(1, count + 1)
    ]


class FakeRun:
    """A run directory written by hand: KA's record, ICC events and the stub's tables."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(root / "supplier-stub.sqlite")
        self.db.executescript(STUB_TABLES)
        self.clock = 5000

    def tick(self) -> int:
        self.clock += 10
        return self.clock

    def record(self, *msgs: Msg, state: str | None = None) -> None:
        with (self.root / "produced.jsonl").open("a") as out:
            for m in msgs:
                line: dict[str, object] = {
                    "message_id": m.message_id,
                    "message_type": m.type,
                    "org_number": m.org,
                    "produced_at_ms": m.produced_at_ms,
                    "sequence": m.seq,
                    "correlation_id": m.correlation,
                    "document_id": f"doc-{m.message_id}",
                }
                if state is not None:
                    line["state"] = state
                out.write(json.dumps(line) + "\n")

    def store(self, m: Msg) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO envelopes VALUES (?, ?, ?, ?, ?, ?, ?, 'sha', ?, x'00')",
            (
                m.envelope_id,
                m.org,
                m.message_id,
                m.type,
                m.correlation,
                m.produced_at_ms,
                m.seq,
                self.tick(),
            ),
        )
        self.db.commit()

    def load(
        self,
        *msgs: Msg,
        late: bool = False,
        envelope_id: str | None = None,
        sequence: int | None = None,
    ) -> None:
        for m in msgs:
            self.store(m)
            self.db.execute(
                "INSERT INTO ledger (org_number, envelope_id, message_id, message_type, "
                "document_id, produced_at_ms, sequence, received_at_ms, loaded_at_ms, late) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    m.org,
                    envelope_id or m.envelope_id,
                    m.message_id,
                    m.type,
                    f"doc-{m.message_id}",
                    m.produced_at_ms,
                    m.seq if sequence is None else sequence,
                    self.clock,
                    self.tick(),
                    int(late),
                ),
            )
        self.db.commit()

    def gap(self, loaded: Msg, first: int | None, last: int | None, kind: str = "gap") -> None:
        self.db.execute(
            "INSERT INTO gaps (org_number, kind, first_missing, last_missing, invoice_ids, "
            "envelope_id, detected_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (loaded.org, kind, first, last, None, loaded.envelope_id, self.clock),
        )
        self.db.commit()

    def event(self, event: str, m: Msg, **extra: object) -> None:
        line = {
            "event": event,
            "at_ms": self.tick(),
            "envelope_id": m.envelope_id,
            "message_id": m.message_id,
            "message_type": m.type,
            "org_number": m.org,
            "sequence": m.seq,
            **extra,
        }
        with (self.root / "icc-1.jsonl").open("a") as out:
            out.write(json.dumps(line) + "\n")

    def check(
        self, faults: Path | None = None, broker_url: str | None = None, queue: str = QUEUE
    ) -> InvariantReport:
        return check_invariants(self.root, broker_url=broker_url, queue=queue, faults_log=faults)


def counts(report: InvariantReport) -> dict[str, int]:
    """The violation counts that are not 0."""
    return {k: getattr(report, k) for k in KINDS if getattr(report, k)}


def kinds(report: InvariantReport) -> list[tuple[str, str]]:
    return [(v.kind, v.message_id) for v in report.violations]


@pytest.fixture
def run(tmp_path: Path) -> FakeRun:
    return FakeRun(tmp_path / "run")


def clean(run: FakeRun) -> tuple[list[Msg], list[Msg]]:
    a, b = chain(ORG_A, 6), chain(ORG_B, 3)
    run.record(*a, *b)
    for m in (*a, *b):
        run.event("consumed", m, redelivered=False)
        run.event("delivered", m, status=201)
    run.load(a[0], b[0], a[1], a[2], b[1], b[2], *a[3:])  # suppliers interleaved, each in order
    return a, b


class TestCleanRun:
    def test_a_clean_run_passes(self, run: FakeRun) -> None:
        clean(run)
        report = run.check()
        assert report.violations == []
        assert report.passed
        assert (report.recorded, report.loaded, report.out_of_order) == (9, 9, 0)
        assert counts(report) == {}
        assert report.broker_browsed is False
        saved = json.loads(json.dumps(report.to_json()))
        assert saved["passed"] is True
        assert saved["violations"] == []

    def test_a_run_directory_that_is_not_there_is_one_clear_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="not a run directory"):
            check_invariants(tmp_path / "nope", broker_url=None, queue=QUEUE, faults_log=None)

    def test_a_cut_line_is_skipped(self, run: FakeRun) -> None:
        clean(run)
        with (run.root / "produced.jsonl").open("a") as out:
            out.write('{"message_id": "cut-sh')
        assert run.check().passed


class TestRecordedLoadedOnce:
    def test_a_message_neither_stored_nor_dead_lettered_is_lost(self, run: FakeRun) -> None:
        a = chain(ORG_A, 3)
        run.record(*a)
        run.load(a[0], a[1])
        run.event("consumed", a[2], redelivered=False)
        report = run.check()
        assert counts(report) == {"lost": 1}
        (v,) = report.violations
        assert (v.kind, v.message_id, v.org_number) == ("lost", a[2].message_id, ORG_A)
        assert "neither stored nor loaded" in v.what
        assert "consumed" in v.what

    def test_stored_but_not_loaded_is_lost_and_unloaded(self, run: FakeRun) -> None:
        a = chain(ORG_A, 2)
        run.record(*a)
        run.load(a[0])
        run.store(a[1])
        report = run.check()
        assert counts(report) == {"lost": 1, "unloaded": 1}
        assert kinds(report) == [("lost", a[1].message_id), ("unloaded", a[1].message_id)]
        assert "stored by the supplier but not loaded" in report.violations[0].what

    def test_a_dead_lettered_message_is_not_lost(self, run: FakeRun) -> None:
        a = chain(ORG_A, 2)
        run.record(*a)
        run.load(a[0])
        run.event("dead_lettered", a[1], code="DELIVERY_GAVE_UP", detail="HTTP 503: down")
        report = run.check()
        assert report.passed, report.violations
        assert report.dead_lettered == {"DELIVERY_GAVE_UP": 1}

    def test_a_message_loaded_twice_is_double_ingested(self, run: FakeRun) -> None:
        a = chain(ORG_A, 3)
        run.record(*a)
        run.load(*a)
        run.load(a[1], envelope_id="another-envelope")
        report = run.check()
        assert counts(report) == {"double_ingested": 1}
        assert kinds(report) == [("double_ingested", a[1].message_id)]
        assert report.out_of_order == 0  # the copy is check 1's, not an order exception

    def test_a_loaded_message_ka_never_recorded_is_unrecorded(self, run: FakeRun) -> None:
        a = chain(ORG_A, 3)
        run.record(*a[:2])
        run.load(*a)
        report = run.check()
        assert counts(report) == {"unrecorded": 1}
        assert kinds(report) == [("unrecorded", a[2].message_id)]


class TestKaOutbox:
    def test_recorded_and_sent_lines_name_one_message(self, run: FakeRun) -> None:
        a = chain(ORG_A, 3)
        run.record(*a, state="recorded")
        run.record(*a[:2], state="sent")
        run.load(*a)
        report = run.check()
        assert report.passed, report.violations
        assert report.recorded == 3

    def test_a_message_only_about_to_be_sent_and_missing_says_so(self, run: FakeRun) -> None:
        a = chain(ORG_A, 2)
        run.record(*a, state="recorded")
        run.record(a[0], state="sent")
        run.load(a[0])
        report = run.check()
        assert kinds(report) == [("lost", a[1].message_id)]
        assert "about to be sent, never as sent" in report.violations[0].what
        assert "the ICC never saw it" in report.violations[0].what

    def test_a_sent_line_alone_records_the_message(self, run: FakeRun) -> None:
        a = chain(ORG_A, 1)
        with (run.root / "produced.jsonl").open("w") as out:
            out.write(json.dumps({"message_id": a[0].message_id, "state": "sent"}) + "\n")
        run.load(a[0])
        assert run.check().passed


class TestOrder:
    def test_a_late_row_with_its_gap_row_is_explained(self, run: FakeRun) -> None:
        a = chain(ORG_A, 4, types=ORDERS)
        run.record(*a)
        run.load(a[0])
        run.load(a[2])
        run.gap(a[2], 2, 2)
        run.load(a[3])
        run.load(a[1], late=True)  # replayed from the DLQ: its place was given up
        report = run.check()
        assert report.passed, report.violations
        assert report.out_of_order == 1

    def test_20_before_19_with_no_gap_row_is_unexplained(self, run: FakeRun) -> None:
        """The disk-full defect of issue 18: sequence 20 loaded before 19, no gap row at all."""
        a = chain(ORG_A, 20)
        run.record(*a)
        run.load(*a[:18])
        run.load(a[19])
        run.load(a[18], late=True)
        report = run.check()
        assert report.out_of_order == 1
        assert counts(report) == {"unexplained": 2}
        skip, late = report.violations
        assert skip.message_id == a[19].message_id
        assert "skipping 19..19" in skip.what
        assert late.message_id == a[18].message_id
        assert "no gap row" in late.what

    def test_a_row_marked_late_that_nothing_overtook_is_unexplained(self, run: FakeRun) -> None:
        a = chain(ORG_A, 3)
        run.record(*a)
        run.load(a[0])
        run.load(a[1], late=True)
        run.load(a[2])
        report = run.check()
        assert kinds(report) == [("unexplained", a[1].message_id)]
        assert "nothing overtook it" in report.violations[0].what

    def test_a_late_row_not_marked_late_is_unexplained(self, run: FakeRun) -> None:
        a = chain(ORG_A, 3, types=ORDERS)
        run.record(*a)
        run.load(a[0], a[2])
        run.gap(a[2], 2, 2)
        run.load(a[1])
        report = run.check()
        assert kinds(report) == [("unexplained", a[1].message_id)]
        assert "not marked late" in report.violations[0].what

    def test_a_gap_row_of_another_message_does_not_explain_a_skip(self, run: FakeRun) -> None:
        a = chain(ORG_A, 5)
        run.record(*a)
        run.load(a[0], a[2])
        run.gap(a[4], 2, 2)  # names a message that did not skip
        report = run.check()
        assert ("unexplained", a[2].message_id) in kinds(report)

    def test_a_gap_row_of_a_later_load_does_not_explain_a_late_row(self, run: FakeRun) -> None:
        a = chain(ORG_A, 7)
        run.record(*a)
        run.load(a[0], a[1], a[2], a[4])  # 5 skips 4 with no gap row
        run.load(a[3], late=True)
        run.load(a[5], a[6])
        run.gap(a[6], 4, 4)  # names a message loaded after the late one
        report = run.check()
        assert kinds(report) == [
            ("unexplained", a[4].message_id),
            ("unexplained", a[3].message_id),
        ]
        assert "no gap row giving up its place" in report.violations[1].what

    def test_each_supplier_is_ordered_on_its_own(self, run: FakeRun) -> None:
        a, b = chain(ORG_A, 3), chain(ORG_B, 3)
        run.record(*a, *b)
        run.load(a[0], a[1], b[0], a[2], b[1], b[2])
        assert run.check().passed

    def test_a_credit_before_its_invoice_needs_its_own_row(self, run: FakeRun) -> None:
        order, invoice, credit = chain(ORG_A, 3)
        run.record(order, invoice, credit)
        run.load(order, credit)
        run.gap(credit, 2, 2)
        run.load(invoice, late=True)
        report = run.check()
        assert kinds(report) == [("unexplained", credit.message_id)]
        assert "before its invoice" in report.violations[0].what
        run.gap(credit, None, None, kind="credit_before_invoice")
        assert run.check().passed

    def test_a_sequence_other_than_kas_is_unexplained(self, run: FakeRun) -> None:
        a = chain(ORG_A, 2)
        run.record(*a)
        run.load(a[0])
        run.load(a[1], sequence=2)
        assert run.check().passed
        b = chain(ORG_B, 2)
        run.record(*b)
        run.load(b[0])
        run.load(b[1], sequence=7)
        run.gap(b[1], 2, 6)
        report = run.check()
        assert kinds(report) == [("unexplained", b[1].message_id)]
        assert "KA recorded 2" in report.violations[0].what


class TestDeadLetterReasons:
    @pytest.mark.parametrize(
        ("code", "detail", "wrong"),
        [
            ("NO_SUCH_CODE_EVER", "HTTP 400: bad", "not in the catalogue"),
            ("DELIVERY_REFUSED", "  ", "gives no reason"),
            ("", "something", "has no b2b-dlq-code"),
        ],
    )
    def test_a_dead_letter_must_name_its_cause(
        self, run: FakeRun, code: str, detail: str, wrong: str
    ) -> None:
        a = chain(ORG_A, 1)
        run.record(*a)
        run.event("dead_lettered", a[0], code=code, detail=detail)
        report = run.check()
        assert counts(report) == {"bad_dead_letter": 1}
        (v,) = report.violations
        assert v.message_id == a[0].message_id
        assert wrong in v.what


class TestFaults:
    def test_each_violation_names_the_last_fault_before_it(
        self, run: FakeRun, tmp_path: Path
    ) -> None:
        a = chain(ORG_A, 3)
        run.record(*a)
        run.load(a[0])
        run.event("consumed", a[1], redelivered=False)
        lost_at = run.clock
        faults = tmp_path / "faults.jsonl"
        lines = [
            {"at_ms": lost_at - 5, "kind": "kill", "target": "icc-1", "signal": 9},
            {"at_ms": 2000, "kind": "freeze", "target": "stub"},
            {"at_ms": lost_at + 1, "kind": "disk_full", "target": "stub"},
        ]
        faults.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
        report = run.check(faults)
        by_id = {v.message_id: v for v in report.violations}
        assert by_id[a[1].message_id].fault == lines[0]
        # a[2]: never seen by the ICC; its time is KA's, before every fault
        assert by_id[a[2].message_id].at_ms == a[2].produced_at_ms
        assert by_id[a[2].message_id].fault is None
        assert report.faults == {"kill": 1, "freeze": 1, "disk_full": 1}

    def test_no_faults_log_yet_is_no_faults(self, run: FakeRun, tmp_path: Path) -> None:
        clean(run)
        report = run.check(tmp_path / "not-written-yet.jsonl")
        assert report.passed
        assert report.faults == {}


class TestContract:
    def test_every_vocabulary_reader_is_forbidden_to_the_checker(self) -> None:
        """The import-linter contract lists every vocabulary module but errors and codes."""
        config = tomllib.loads((REPO / "pyproject.toml").read_text())
        (contract,) = [
            c
            for c in config["tool"]["importlinter"]["contracts"]
            if "simulator.kits.invariants" in c.get("source_modules", [])
        ]
        assert contract["type"] == "forbidden"
        vocabulary = REPO / "simulator" / "vocabulary"
        modules = {
            f"simulator.vocabulary.{p.stem}"
            for p in vocabulary.glob("*.py")
            if p.stem not in ("__init__", "errors")
        }
        assert modules - set(contract["forbidden_modules"]) == set()
        assert {"ka_producer", "icc_bridge", "supplier_stub"} <= set(contract["forbidden_modules"])


# --- the broker ---------------------------------------------------------------
class Receipts(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.ready = threading.Condition()

    def on_receipt(self, frame: stomp.utils.Frame) -> None:
        with self.ready:
            self.seen.add(frame.headers["receipt-id"])
            self.ready.notify_all()


def send(url: str, destination: str, messages: list[dict[str, str]]) -> None:
    """SEND each message (persistent), then wait for the broker's receipt of the last."""
    host, port = url.removeprefix("stomp://").rsplit(":", 1)
    conn = stomp.Connection12([(host, int(port))], heartbeats=(0, 0))
    receipts = Receipts()
    conn.set_listener("receipts", receipts)
    conn.connect(wait=True)
    try:
        for i, headers in enumerate(messages):
            extra = {"receipt": "last"} if i == len(messages) - 1 else {}
            conn.send(destination, "<x/>", headers={"persistent": "true", **headers, **extra})
        with receipts.ready:
            assert receipts.ready.wait_for(lambda: "last" in receipts.seen, timeout=30)
    finally:
        conn.disconnect()


@pytest.mark.broker
class TestBroker:
    def test_dead_letters_and_the_queue_are_browsed_not_consumed(
        self, run: FakeRun, broker_url: str
    ) -> None:
        queue = f"/queue/invariants-{uuid.uuid4()}"
        a = chain(ORG_A, 5)
        run.record(*a)
        run.load(a[0])
        run.event("dead_lettered", a[1], code="DELIVERY_GAVE_UP", detail="in the events only")
        send(
            broker_url,
            queue.replace("/queue/", "/queue/DLQ.", 1),
            [
                {
                    "b2b-message-id": a[2].message_id,
                    "b2b-org-number": ORG_A,
                    "b2b-dlq-code": "DELIVERY_REFUSED",
                    "b2b-dlq-reason": "HTTP 422: no",
                },
                {
                    "b2b-message-id": a[3].message_id,
                    "b2b-org-number": ORG_A,
                    "b2b-dlq-code": "MADE_UP_CODE",
                    "b2b-dlq-reason": "x",
                },
                {"b2b-message-id": "poison-x", "dlqDeliveryFailureCause": "redelivery limit"},
            ],
        )
        send(broker_url, queue, [{"b2b-message-id": a[4].message_id}])
        for _ in range(2):  # the second check sees the same: nothing was consumed
            report = run.check(broker_url=broker_url, queue=queue)
            assert report.broker_browsed
            assert report.dead_lettered == {
                "BROKER_REDELIVERY_LIMIT": 1,
                "DELIVERY_REFUSED": 1,
                "MADE_UP_CODE": 1,
            }
            assert sorted(kinds(report)) == sorted(
                [
                    ("bad_dead_letter", a[3].message_id),
                    ("lost", a[1].message_id),  # the DLQ, not the ICC's events, is the truth
                    ("undelivered", a[4].message_id),
                ]
            )

    def test_more_dead_letters_than_one_browse_shows(self, run: FakeRun, broker_url: str) -> None:
        queue = f"/queue/invariants-{uuid.uuid4()}"
        a = chain(ORG_A, 450)
        run.record(*a)
        send(
            broker_url,
            queue.replace("/queue/", "/queue/DLQ.", 1),
            [
                {
                    "b2b-message-id": m.message_id,
                    "b2b-dlq-code": "DELIVERY_GAVE_UP",
                    "b2b-dlq-reason": "timed out",
                }
                for m in a
            ],
        )
        report = run.check(broker_url=broker_url, queue=queue)
        assert report.dead_lettered == {"DELIVERY_GAVE_UP": 450}
        assert report.passed, report.violations[:3]

    def test_a_broker_that_does_not_answer_is_one_clear_error(self, run: FakeRun) -> None:
        clean(run)
        with pytest.raises(BrokerUnreachableError, match="cannot browse the broker"):
            run.check(broker_url="stomp://127.0.0.1:1")
        with pytest.raises(ConfigError, match="not stomp://HOST:PORT"):
            run.check(broker_url="http://127.0.0.1:1")


@pytest.mark.broker
@pytest.mark.integration
class TestRealRun:
    def test_the_happy_path_passes_and_tampering_shows(
        self, broker_url: str, state_dir: StateDir, tmp_path: Path
    ) -> None:
        """A real run passes; a deleted ledger row is lost, a duplicated one double."""
        result = run_scenario(
            load_scenario(REPO / "scenarios" / "happy-path.yaml"),
            RunOptions(state=state_dir, broker_url=broker_url),
        )
        assert result.passed, result.to_json()
        queue = f"/queue/af.ka.outbound.run-{result.run_dir.name}"
        report = check_invariants(
            result.run_dir, broker_url=broker_url, queue=queue, faults_log=None
        )
        assert report.passed, report.violations
        assert (report.recorded, report.loaded, report.broker_browsed) == (9, 9, True)

        tampered = tmp_path / "tampered"
        shutil.copytree(result.run_dir, tampered)
        db = sqlite3.connect(tampered / "supplier-stub.sqlite")
        with db:
            (deleted,) = db.execute(
                "SELECT message_id FROM ledger ORDER BY position LIMIT 1 OFFSET 4"
            ).fetchone()
            db.execute("DELETE FROM ledger WHERE message_id = ?", (deleted,))
            (doubled,) = db.execute(
                "SELECT message_id FROM ledger ORDER BY position DESC LIMIT 1"
            ).fetchone()
            db.execute(
                "INSERT INTO ledger (org_number, envelope_id, message_id, message_type, "
                "document_id, produced_at_ms, sequence, received_at_ms, loaded_at_ms, late) "
                "SELECT org_number, envelope_id || '-again', message_id, message_type, "
                "document_id, produced_at_ms, sequence, received_at_ms, loaded_at_ms, late "
                "FROM ledger WHERE message_id = ?",
                (doubled,),
            )
        db.close()
        report = check_invariants(tampered, broker_url=broker_url, queue=queue, faults_log=None)
        assert not report.passed
        assert (report.lost, report.double_ingested) == (1, 1)
        assert ("lost", deleted) in kinds(report)
        assert ("double_ingested", doubled) in kinds(report)
