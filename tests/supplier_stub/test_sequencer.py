"""Tests of supplier_stub.sequencer: loading in the producer's order, holds, gaps, credits.

The ordering logic runs with an injected clock (milliseconds set by the test).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulator.vocabulary.envelope import Envelope
from simulator.vocabulary.messages import MessageMeta, MessageType
from simulator.vocabulary.xmlsafe import parse_xml
from supplier_stub.sequencer import (
    Item,
    MemoryHistory,
    ProblemKind,
    Sequencer,
    document_refs,
)

ORG = "5560000001"
OTHER = "5560000019"
CERT = "ab" * 32
URL = "https://127.0.0.1:9443/b2b/envelopes"
TIMEOUT_MS = 5_000
T0 = 1_700_000_000_000
_NS = (
    'xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2" '
    'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"'
)


def order_doc(doc_id: str) -> bytes:
    """A minimal UBL Order with the id ``doc_id``."""
    return (
        f'<Order xmlns="urn:oasis:names:specification:ubl:schema:xsd:Order-2" {_NS}>'
        f"<cbc:ID>{doc_id}</cbc:ID></Order>"
    ).encode()


def invoice_doc(doc_id: str) -> bytes:
    """A minimal UBL Invoice with the id ``doc_id``."""
    return (
        f'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" {_NS}>'
        f"<cbc:ID>{doc_id}</cbc:ID></Invoice>"
    ).encode()


def credit_doc(doc_id: str, *invoices: str) -> bytes:
    """A minimal UBL CreditNote with the id ``doc_id`` crediting ``invoices``."""
    refs = "".join(
        "<cac:BillingReference><cac:InvoiceDocumentReference>"
        f"<cbc:ID>{inv}</cbc:ID><cbc:IssueDate>2024-01-01</cbc:IssueDate>"
        "</cac:InvoiceDocumentReference></cac:BillingReference>"
        for inv in invoices
    )
    return (
        f'<CreditNote xmlns="urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2" {_NS}>'
        f"<cbc:ID>{doc_id}</cbc:ID><cac:OrderReference><cbc:ID>O-1</cbc:ID>"
        f"</cac:OrderReference>{refs}</CreditNote>"
    ).encode()


def envelope(
    seq: int,
    *,
    org: str = ORG,
    kind: MessageType = MessageType.INKOPSORDER,
    document: bytes | None = None,
    message_id: str | None = None,
) -> Envelope:
    """Supplier ``org``'s message number ``seq``, produced at T0 + seq ms."""
    return Envelope.create(
        MessageMeta.new(
            kind, org, seq, produced_at_ms=T0 + seq, message_id=message_id or f"{org}-m{seq}"
        ),
        document if document is not None else order_doc(f"O-{seq}"),
        receiver_cert_sha256=CERT,
        receiver_url=URL,
    )


def item(env: Envelope, received_at_ms: int) -> Item:
    """The sequencer's view of ``env`` stored at ``received_at_ms``."""
    return Item.of(env, received_at_ms)


def seqs(loads: list[Any]) -> list[int]:
    """The sequence numbers of ``loads``, in load order."""
    return [ld.item.sequence for ld in loads]


class TestDocumentRefs:
    """Reading ids from the UBL document."""

    def test_credit_names_its_invoices(self) -> None:
        """A credit note's own id and each credited invoice id, without repeats."""
        refs = document_refs(MessageType.KREDIT, credit_doc("K-1", "F-1", "F-2", "F-1"))
        assert refs == ("K-1", ("F-1", "F-2"))

    def test_invoice_has_only_its_id(self) -> None:
        """An invoice gives its own id and credits nothing."""
        assert document_refs(MessageType.SJALVFAKTURA, invoice_doc("F-9")) == ("F-9", ())

    def test_unreadable_document_is_empty(self) -> None:
        """A document that does not parse gives no ids instead of an error."""
        assert document_refs(MessageType.KREDIT, b"<not closed") == ("", ())

    def test_tree_gives_the_ids_the_bytes_give(self) -> None:
        """Handed the parsed tree, document_refs reads the same ids as from the bytes."""
        doc = credit_doc("K-1", "F-1", "F-2", "F-1")
        assert document_refs(MessageType.KREDIT, parse_xml(doc)) == document_refs(
            MessageType.KREDIT, doc
        )

    def test_item_reads_a_given_tree_not_the_bytes(self) -> None:
        """Item.of with a tree takes the ids from it (the document is not parsed again)."""
        env = envelope(1, kind=MessageType.KREDIT, document=credit_doc("K-1", "F-1"))
        assert (item(env, T0).document_id, item(env, T0).credits) == ("K-1", ("F-1",))
        tree = parse_xml(credit_doc("K-2", "F-7"))
        from_tree = Item.of(env, T0, tree)
        assert (from_tree.document_id, from_tree.credits) == ("K-2", ("F-7",))


class TestSequencerOrder:
    """Holding and loading by sequence."""

    def test_in_order_arrival_loads_at_once(self) -> None:
        """Messages arriving in order each load on arrival, none late."""
        seq = Sequencer(TIMEOUT_MS)
        for n in (1, 2, 3):
            batch = seq.offer(item(envelope(n), T0), T0)
            assert seqs(batch.loads) == [n]
            assert not batch.loads[0].late
        assert seq.held == 0

    def test_3_1_2_loads_1_2_3(self) -> None:
        """3 is held; 1 loads; 2 then releases 2 and 3 in order."""
        seq = Sequencer(TIMEOUT_MS)
        assert seqs(seq.offer(item(envelope(3), T0), T0).loads) == []
        assert seqs(seq.offer(item(envelope(1), T0), T0).loads) == [1]
        batch = seq.offer(item(envelope(2), T0), T0)
        assert seqs(batch.loads) == [2, 3]
        assert not batch.problems
        assert seq.held == 0

    def test_suppliers_are_independent(self) -> None:
        """A gap for one supplier does not hold another supplier's messages."""
        seq = Sequencer(TIMEOUT_MS)
        assert seqs(seq.offer(item(envelope(2), T0), T0).loads) == []
        assert seqs(seq.offer(item(envelope(1, org=OTHER), T0), T0).loads) == [1]

    def test_missing_message_holds_until_timeout(self) -> None:
        """3 waits for the missing 2 until the gap timeout, then loads with a gap recorded."""
        seq = Sequencer(TIMEOUT_MS)
        seq.offer(item(envelope(1), T0), T0)
        assert seqs(seq.offer(item(envelope(3), T0 + 10), T0 + 10).loads) == []
        assert seqs(seq.expire(T0 + 10 + TIMEOUT_MS - 1).loads) == []
        batch = seq.expire(T0 + 10 + TIMEOUT_MS)
        assert seqs(batch.loads) == [3]
        assert not batch.loads[0].late
        (gap,) = batch.problems
        assert (gap.kind, gap.org_number, gap.missing) == (ProblemKind.GAP, ORG, (2, 2))
        assert seq.held == 0

    def test_late_message_loads_marked_late(self) -> None:
        """The missing message, arriving after the timeout, loads at once and is late."""
        seq = Sequencer(TIMEOUT_MS)
        seq.offer(item(envelope(1), T0), T0)
        seq.offer(item(envelope(3), T0), T0)
        seq.expire(T0 + TIMEOUT_MS)
        batch = seq.offer(item(envelope(2), T0 + 9_000), T0 + 9_000)
        assert seqs(batch.loads) == [2]
        assert batch.loads[0].late
        assert seqs(seq.offer(item(envelope(4), T0 + 9_000), T0 + 9_000).loads) == [4]

    def test_each_message_waits_its_own_timeout(self) -> None:
        """A message held behind a second gap waits its full timeout from its arrival."""
        seq = Sequencer(TIMEOUT_MS)
        seq.offer(item(envelope(2), T0), T0)
        seq.offer(item(envelope(5), T0 + 4_000), T0 + 4_000)
        first = seq.expire(T0 + TIMEOUT_MS)
        assert seqs(first.loads) == [2]
        assert [p.missing for p in first.problems] == [(1, 1)]
        second = seq.expire(T0 + 4_000 + TIMEOUT_MS)
        assert seqs(second.loads) == [5]
        assert [p.missing for p in second.problems] == [(3, 4)]

    def test_timeout_releases_what_follows_on(self) -> None:
        """When the head is forced, the contiguous messages behind it load too, in order."""
        seq = Sequencer(TIMEOUT_MS)
        seq.offer(item(envelope(4), T0 + 3_000), T0 + 3_000)
        seq.offer(item(envelope(3), T0), T0)
        seq.offer(item(envelope(2), T0 + 2_000), T0 + 2_000)
        batch = seq.expire(T0 + TIMEOUT_MS)
        assert seqs(batch.loads) == [2, 3, 4]
        assert [p.missing for p in batch.problems] == [(1, 1)]

    def test_zero_timeout_never_holds(self) -> None:
        """With a gap timeout of 0 a message behind a gap loads at once, gap recorded."""
        seq = Sequencer(0)
        batch = seq.offer(item(envelope(2), T0), T0)
        assert seqs(batch.loads) == [2]
        assert [p.kind for p in batch.problems] == [ProblemKind.GAP]

    def test_same_message_again_never_loads_twice(self) -> None:
        """A second envelope carrying a loaded (or held) message id is a duplicate."""
        seq = Sequencer(TIMEOUT_MS)
        seq.offer(item(envelope(1), T0), T0)
        again = seq.offer(item(envelope(1), T0 + 1), T0 + 1)
        assert again.loads == []
        assert len(again.duplicates) == 1
        seq.offer(item(envelope(3), T0), T0)
        assert seq.offer(item(envelope(3), T0), T0).duplicates
        assert seq.held == 1


class TestSequencerMemory:
    """The sequencer keeps what it holds; what has loaded is the history's."""

    def test_loaded_messages_leave_the_sequencer(self) -> None:
        """After 500 in-order loads the supplier's state holds no message ids."""
        history = MemoryHistory()
        seq = Sequencer(TIMEOUT_MS, history)
        for n in range(1, 501):
            seq.offer(item(envelope(n), T0), T0)
        assert seq.held == 0
        assert seq._suppliers[ORG].held_ids == set()
        assert len(history.message_ids) == 500
        assert seq.offer(item(envelope(7), T0), T0).duplicates != []


class TestSequencerCredits:
    """A credit note never loads before the invoice it credits."""

    def test_credit_before_its_invoice_waits(self) -> None:
        """A credit (2) arriving first waits; the invoice (1) loads, then the credit."""
        seq = Sequencer(TIMEOUT_MS)
        credit = envelope(2, kind=MessageType.KREDIT, document=credit_doc("K-1", "F-1"))
        invoice = envelope(1, kind=MessageType.SJALVFAKTURA, document=invoice_doc("F-1"))
        assert seqs(seq.offer(item(credit, T0), T0).loads) == []
        batch = seq.offer(item(invoice, T0 + 5), T0 + 5)
        assert seqs(batch.loads) == [1, 2]
        assert not batch.problems

    def test_credit_waits_for_an_invoice_outside_the_sequence(self) -> None:
        """A credit in sequence still waits for an invoice that has not loaded, then times out."""
        seq = Sequencer(TIMEOUT_MS)
        credit = envelope(1, kind=MessageType.KREDIT, document=credit_doc("K-1", "F-0"))
        assert seqs(seq.offer(item(credit, T0), T0).loads) == []
        assert seqs(seq.offer(item(envelope(2), T0), T0).loads) == []
        batch = seq.expire(T0 + TIMEOUT_MS)
        assert seqs(batch.loads) == [1, 2]
        (problem,) = batch.problems
        assert problem.kind is ProblemKind.CREDIT_BEFORE_INVOICE
        assert problem.invoice_ids == ("F-0",)

    def test_late_credit_waits_for_late_invoice(self) -> None:
        """After a gap, a late credit waits for its late invoice and loads right after it."""
        seq = Sequencer(TIMEOUT_MS)
        seq.offer(item(envelope(3), T0), T0)
        seq.expire(T0 + TIMEOUT_MS)  # 1 and 2 given up
        credit = envelope(2, kind=MessageType.KREDIT, document=credit_doc("K-1", "F-1"))
        assert seqs(seq.offer(item(credit, T0 + 6_000), T0 + 6_000).loads) == []
        invoice = envelope(1, kind=MessageType.SJALVFAKTURA, document=invoice_doc("F-1"))
        batch = seq.offer(item(invoice, T0 + 6_001), T0 + 6_001)
        assert seqs(batch.loads) == [1, 2]
        assert all(ld.late for ld in batch.loads)

    def test_credit_for_a_loaded_invoice_loads_at_once(self) -> None:
        """A credit whose invoice loaded earlier is not held."""
        seq = Sequencer(TIMEOUT_MS)
        seq.offer(
            item(envelope(1, kind=MessageType.SJALVFAKTURA, document=invoice_doc("F")), T0), T0
        )
        credit = envelope(2, kind=MessageType.KREDIT, document=credit_doc("K", "F"))
        assert seqs(seq.offer(item(credit, T0), T0).loads) == [2]


class TestSequencerStep:
    """A step that fails is undone (the Ledger's transaction failed: a full disk)."""

    def test_failed_step_leaves_the_sequencer_as_before(self) -> None:
        """Loads, releases and a new supplier of a failed step are undone; offered again,
        the same messages load as if the step had never run, none late."""
        history = MemoryHistory()
        seq = Sequencer(TIMEOUT_MS, history)
        seq.offer(item(envelope(1), T0), T0)
        seq.offer(item(envelope(3), T0), T0)  # held for 2
        recorded = set(history.message_ids)

        def step() -> None:
            assert seqs(seq.offer(item(envelope(2), T0), T0).loads) == [2, 3]
            assert seqs(seq.offer(item(envelope(1, org=OTHER), T0), T0).loads) == [1]
            assert seq.held == 0

        fail_in_a_step(seq, step)
        history.message_ids = recorded  # the caller undoes its history (the Ledger's: a table)
        assert seq.held == 1
        batch = seq.offer(item(envelope(2), T0 + 1), T0 + 1)
        assert [(ld.item.sequence, ld.late) for ld in batch.loads] == [(2, False), (3, False)]
        assert seqs(seq.offer(item(envelope(2, org=OTHER), T0), T0).loads) == []  # 1 first

    def test_failed_expire_keeps_what_was_due(self) -> None:
        """An expiry whose write fails loads nothing: the next one finds the same gap."""
        seq = Sequencer(TIMEOUT_MS)
        seq.offer(item(envelope(2), T0), T0)
        fail_in_a_step(seq, lambda: seq.expire(T0 + TIMEOUT_MS).loads)
        batch = seq.expire(T0 + TIMEOUT_MS)
        assert [p.missing for p in batch.problems] == [(1, 1)]
        assert seqs(batch.loads) == [2]

    def test_inner_step_is_part_of_the_outer(self) -> None:
        """What an inner step did is undone when the outer one fails."""
        seq = Sequencer(TIMEOUT_MS)

        def step() -> None:
            with seq.step():
                seq.offer(item(envelope(2), T0), T0)
            assert seq.held == 1

        fail_in_a_step(seq, step)
        assert seq.held == 0
        with seq.step():  # a step that succeeds keeps what it did
            seq.offer(item(envelope(2), T0), T0)
        assert seq.held == 1


def fail_in_a_step(seq: Sequencer, body: Callable[[], object]) -> None:
    """Run ``body`` in a step of ``seq`` that then fails, as a failed transaction would."""
    failed = False
    try:
        with seq.step():
            body()
            raise RuntimeError("the transaction failed")
    except RuntimeError:
        failed = True
    assert failed
