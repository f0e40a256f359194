"""The ordering logic of the supplier's ledger, alone: no I/O, the time passed in.

Delivery may reorder messages (retries, competing workers, replays), so the
stub does what the AF description asks of a supplier: it sorts each
supplier's messages back into KA's order before loading them.  KA numbers
each supplier's messages 1, 2, 3, … (``sequence``) and stamps them
(``produced_at_ms``); with KA's clock running forwards, sequence order is
(timestamp, sequence) order, and the sequence is what shows a gap.

* A message loads when its predecessor (``sequence - 1``) has loaded; a
  message that arrives early is **held**, and when the predecessor arrives
  everything now contiguous loads, in order.
* A credit note also waits for the invoice(s) it credits (its
  ``BillingReference/InvoiceDocumentReference/ID``), of the same supplier.
* Nothing waits longer than the gap timeout: then the held messages load in
  order and each problem is reported (missing sequence numbers, or a credit
  loaded before its invoice).  A message that arrives after its place was
  given up loads at once, marked ``late``.
* A message (KA message id) loads once, whatever envelopes carry it.

:class:`Sequencer` decides; what has loaded before is asked of a
:class:`History` (the ledger's table, for :class:`~supplier_stub.ledger.Ledger`,
which persists the decisions).
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from lxml import etree

from simulator.vocabulary.envelope import Envelope
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.messages import MessageType
from simulator.vocabulary.ubl_names import PREFIXES
from simulator.vocabulary.xmlsafe import parse_xml

__all__ = [
    "Batch",
    "History",
    "Item",
    "Load",
    "MemoryHistory",
    "Problem",
    "ProblemKind",
    "Sequencer",
    "document_refs",
]

_NS = PREFIXES
_CREDITED = "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID"


class ProblemKind(StrEnum):
    GAP = "gap"  # messages missing when the gap timeout ran out
    CREDIT_BEFORE_INVOICE = "credit_before_invoice"  # its invoice had not loaded in time


@dataclass(frozen=True, slots=True)
class Item:
    """What the ledger needs of one stored envelope."""

    envelope_id: str
    message_id: str
    org_number: str
    message_type: MessageType
    document_id: str  # the UBL document's own cbc:ID ("" if it has none)
    credits: tuple[str, ...]  # a credit note: the invoice ids it credits
    produced_at_ms: int
    sequence: int
    received_at_ms: int  # when the stub stored it: the hold starts here

    @classmethod
    def of(
        cls, envelope: Envelope, received_at_ms: int, document: etree._Element | None = None
    ) -> Item:
        """``envelope``'s item; ``document``: its document's tree, if already parsed."""
        parsed = envelope.document if document is None else document
        document_id, credits = document_refs(envelope.message_type, parsed)
        return cls(
            envelope_id=envelope.envelope_id,
            message_id=envelope.message_id,
            org_number=envelope.org_number,
            message_type=envelope.message_type,
            document_id=document_id,
            credits=credits,
            produced_at_ms=envelope.produced_at_ms,
            sequence=envelope.sequence,
            received_at_ms=received_at_ms,
        )


@dataclass(frozen=True, slots=True)
class Load:
    item: Item
    late: bool  # loaded after a later message of its supplier


@dataclass(frozen=True, slots=True)
class Problem:
    org_number: str
    kind: ProblemKind
    envelope_id: str  # the message loaded despite the problem
    missing: tuple[int, int] | None = None  # GAP: first and last missing sequence
    invoice_ids: tuple[str, ...] = ()  # CREDIT_BEFORE_INVOICE: invoices not loaded


@dataclass(slots=True)
class Batch:
    """What one step of the sequencer decided, in load order."""

    loads: list[Load] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    duplicates: list[Item] = field(default_factory=list)  # messages already loaded or held

    def extend(self, other: Batch) -> None:
        self.loads += other.loads
        self.problems += other.problems
        self.duplicates += other.duplicates


def document_refs(
    message_type: MessageType, document: bytes | etree._Element
) -> tuple[str, tuple[str, ...]]:
    """A document's own id and, for a credit note, the ids of the invoices it credits.

    ``document`` is the parsed tree (as the envelope's reader hands it over)
    or the bytes, parsed here.  Lenient: what is not there is ``""`` or ``()``
    (the stub has already checked the envelope; the document rules are optional).
    """
    if isinstance(document, bytes):
        try:
            root = parse_xml(document)
        except B2BSimError:
            return "", ()
    else:
        root = document
    own = (root.findtext("cbc:ID", default="", namespaces=_NS) or "").strip()
    credits: tuple[str, ...] = ()
    if message_type is MessageType.KREDIT:
        ids = ((el.text or "").strip() for el in root.findall(_CREDITED, _NS))
        credits = tuple(dict.fromkeys(i for i in ids if i))
    return own, credits


def _seq_key(item: Item) -> tuple[int, int]:
    return (item.sequence, item.produced_at_ms)


class History(Protocol):
    """What loaded before: the sequencer keeps only what it holds, so its memory
    does not grow with the messages loaded.

    Asked once per offered message that is not held (by message id, so a
    replay under any sequence number is caught) and about invoices only for
    credit notes.
    """

    def loaded(self, org_number: str, message_id: str) -> bool:
        """Whether this message has loaded."""
        ...

    def invoice_loaded(self, org_number: str, invoice_id: str) -> bool:
        """Whether a self-billing invoice with this document id has loaded."""
        ...

    def record(self, load: Load) -> None:
        """A message has just loaded (called in load order)."""
        ...


@dataclass(slots=True)
class MemoryHistory:
    """A History in memory (for the sequencer alone and its tests): grows with every load."""

    message_ids: set[tuple[str, str]] = field(default_factory=set)
    invoices: set[tuple[str, str]] = field(default_factory=set)

    def loaded(self, org_number: str, message_id: str) -> bool:
        return (org_number, message_id) in self.message_ids

    def invoice_loaded(self, org_number: str, invoice_id: str) -> bool:
        return (org_number, invoice_id) in self.invoices

    def record(self, load: Load) -> None:
        item = load.item
        self.message_ids.add((item.org_number, item.message_id))
        if item.message_type is MessageType.SJALVFAKTURA and item.document_id:
            self.invoices.add((item.org_number, item.document_id))


@dataclass(slots=True)
class _Supplier:
    next_seq: int = 1  # the sequence that loads next
    held: list[Item] = field(default_factory=list)  # sequence >= next_seq, sorted
    late_credits: list[Item] = field(default_factory=list)  # late, waiting for an invoice
    held_ids: set[str] = field(default_factory=set)  # message ids in held and late_credits

    def copy(self) -> _Supplier:
        held, credits, ids = list(self.held), list(self.late_credits), set(self.held_ids)
        return _Supplier(self.next_seq, held, credits, ids)


class Sequencer:
    """Per-supplier ordering; every method takes the time and returns what to load.

    Memory: what is held, and one small record per supplier; what has loaded
    is asked of ``history`` (the ledger's table, for the Ledger).

    A caller that persists the decisions runs each step in :meth:`step`: if
    persisting fails, the step is undone, as if it had never been offered.
    """

    def __init__(self, gap_timeout_ms: int, history: History | None = None) -> None:
        self.gap_timeout_ms = gap_timeout_ms
        self.history: History = history if history is not None else MemoryHistory()
        self._suppliers: dict[str, _Supplier] = {}
        self._holding: set[str] = set()  # suppliers with something held
        # During a step: each supplier touched, as it was before (None: it was new).
        self._undo: dict[str, _Supplier | None] | None = None

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """All or nothing: if the block raises, every supplier it touched is put back.

        The Ledger decides and writes in the block, so that a failed SQLite
        transaction (a full disk) leaves the sequencer as it was before: the
        ICC's retry of the same envelope, or the timer's next tick, then
        decides again as if the failed attempt had never happened.  What
        ``history`` recorded in the block is the caller's to undo (the
        Ledger's is the table, rolled back with the transaction).  A step
        inside a step is part of the outer one.
        """
        if self._undo is not None:
            yield
            return
        undo: dict[str, _Supplier | None] = {}
        self._undo = undo
        try:
            yield
        except BaseException:
            for org, before in undo.items():
                if before is None:
                    self._suppliers.pop(org, None)
                    self._holding.discard(org)
                else:
                    self._suppliers[org] = before
                    self._mark(org, before)
            raise
        finally:
            self._undo = None

    def restore(self, org_number: str, *, next_seq: int) -> None:
        """Set a supplier's next sequence from what the ledger already holds (after a restart)."""
        s = self._supplier(org_number)
        s.next_seq = max(s.next_seq, next_seq)

    @property
    def held(self) -> int:
        """How many messages wait, over all suppliers."""
        suppliers = list(self._suppliers.values())  # may be read from another thread
        return sum(len(s.held) + len(s.late_credits) for s in suppliers)

    def offer(self, item: Item, now: int) -> Batch:
        """A newly stored message: load it and what it unblocks, or hold it."""
        out = Batch()
        s = self._supplier(item.org_number)
        if item.message_id in s.held_ids or self.history.loaded(item.org_number, item.message_id):
            out.duplicates.append(item)
            return out
        s.held_ids.add(item.message_id)  # until it loads
        if item.sequence < s.next_seq:
            if self._waits_for_invoice(s, item):
                s.late_credits.append(item)
            else:
                self._load(s, item, out, late=True)
        else:
            bisect.insort(s.held, item, key=_seq_key)
        self._drain(s, out)
        self._expire_supplier(s, now, out)
        self._mark(item.org_number, s)
        return out

    def expire(self, now: int) -> Batch:
        """Load what has waited ``gap_timeout`` or longer, recording each problem."""
        out = Batch()
        for org in sorted(self._holding):
            s = self._supplier(org)
            self._expire_supplier(s, now, out)
            self._mark(org, s)
        return out

    def _supplier(self, org_number: str) -> _Supplier:
        """The supplier's state, to change: within a step, kept first as it was."""
        s = self._suppliers.get(org_number)
        if self._undo is not None and org_number not in self._undo:
            self._undo[org_number] = None if s is None else s.copy()
        if s is None:
            s = self._suppliers[org_number] = _Supplier()
        return s

    def _mark(self, org: str, s: _Supplier) -> None:
        if s.held or s.late_credits:
            self._holding.add(org)
        else:
            self._holding.discard(org)

    def _missing_invoices(self, s: _Supplier, item: Item) -> tuple[str, ...]:
        return tuple(i for i in item.credits if not self.history.invoice_loaded(item.org_number, i))

    def _waits_for_invoice(self, s: _Supplier, item: Item) -> bool:
        return bool(self._missing_invoices(s, item))

    def _due(self, item: Item, now: int) -> bool:
        return now - item.received_at_ms >= self.gap_timeout_ms

    def _load(self, s: _Supplier, item: Item, out: Batch, *, late: bool) -> None:
        load = Load(item, late)
        out.loads.append(load)
        s.held_ids.discard(item.message_id)
        self.history.record(load)
        if item.message_type is MessageType.SJALVFAKTURA and item.document_id:
            waiting = [c for c in s.late_credits if not self._waits_for_invoice(s, c)]
            for credit in waiting:
                s.late_credits.remove(credit)
                self._load(s, credit, out, late=True)

    def _drain(self, s: _Supplier, out: Batch) -> None:
        """Load the held messages that now follow on, in order."""
        while s.held:
            head = s.held[0]
            if head.sequence > s.next_seq or self._waits_for_invoice(s, head):
                return
            s.held.pop(0)
            self._load(s, head, out, late=head.sequence < s.next_seq)
            s.next_seq = max(s.next_seq, head.sequence + 1)

    def _expire_supplier(self, s: _Supplier, now: int, out: Batch) -> None:
        for credit in [c for c in s.late_credits if self._due(c, now)]:
            s.late_credits.remove(credit)
            missing = self._missing_invoices(s, credit)
            out.problems.append(
                Problem(
                    credit.org_number,
                    ProblemKind.CREDIT_BEFORE_INVOICE,
                    credit.envelope_id,
                    invoice_ids=missing,
                )
            )
            self._load(s, credit, out, late=True)
        last_due = max((i for i, it in enumerate(s.held) if self._due(it, now)), default=-1)
        if last_due < 0:
            return
        forced, s.held = s.held[: last_due + 1], s.held[last_due + 1 :]
        for item in forced:
            if item.sequence > s.next_seq:
                out.problems.append(
                    Problem(
                        item.org_number,
                        ProblemKind.GAP,
                        item.envelope_id,
                        missing=(s.next_seq, item.sequence - 1),
                    )
                )
            missing = self._missing_invoices(s, item)
            if missing:
                out.problems.append(
                    Problem(
                        item.org_number,
                        ProblemKind.CREDIT_BEFORE_INVOICE,
                        item.envelope_id,
                        invoice_ids=missing,
                    )
                )
            self._load(s, item, out, late=item.sequence < s.next_seq)
            s.next_seq = max(s.next_seq, item.sequence + 1)
        self._drain(s, out)
