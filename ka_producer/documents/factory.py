"""The document factory: orders, self-billing invoices and credit notes, reproducible per seed.

One :class:`DocumentFactory` per seed draws every random choice (lines,
quantities, dates, references) from its own generator, so the same seed and
the same sequence of calls give byte-identical documents.  Dates start from a
fixed epoch, never from today.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal

from ka_producer.documents.credit import build_credit
from ka_producer.documents.draft import Draft
from ka_producer.documents.invoice import build_invoice
from ka_producer.documents.lines import draw_lines
from ka_producer.documents.money import Line
from ka_producer.documents.order import build_order
from ka_producer.documents.parties import Seller, person_name
from ka_producer.documents.reader import read_draft
from simulator.vocabulary.errors import ConfigError, DocumentChainError
from simulator.vocabulary.messages import MessageType

#: The first possible order date; orders fall in the two years after it.
EPOCH = date(2024, 1, 1)
PAYMENT_DAYS = 30

_SELF_BILLING_NOTE = (
    "Självfaktura: fakturan är upprättad av köparen Arbetsförmedlingen för säljarens räkning."
)
_CREDIT_REASONS = (
    "deltagare avbröt insatsen",
    "felaktigt antal deltagarmånader",
    "resultat underkänt vid granskning",
    "dubbelregistrerad tjänst",
)


@dataclass(frozen=True, slots=True)
class GeneratedDocument:
    """One business document, ready to publish."""

    message_type: MessageType
    document_id: str
    xml: bytes  # UTF-8 with an XML declaration
    seller_org_number: str
    payable_amount: Decimal
    references: tuple[str, ...]  # the order an invoice follows, the invoice a credit note credits


def _first_of_next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _last_of_month(day: date) -> date:
    return _first_of_next_month(day) - timedelta(days=1)


def _weekday(day: date) -> date:
    """``day``, or the Monday after it if it falls on a weekend."""
    return day + timedelta(days=(7 - day.weekday()) % 7 if day.weekday() >= 5 else 0)


class DocumentFactory:
    """Makes orders, invoices and credit notes; the same seed gives the same documents."""

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ConfigError(f"seed {seed} is negative", hint="use a seed of 0 or more")
        self.seed = seed
        self._rng = random.Random(seed)  # noqa: S311 -- reproducible test data, not secrets
        self._counters = dict.fromkeys(MessageType, 0)

    def _next_id(self, message_type: MessageType) -> str:
        self._counters[message_type] += 1
        prefix = {"INKOPSORDER": "IO", "SJALVFAKTURA": "SF", "KREDIT": "KR"}[message_type]
        return f"AF-{prefix}-{self.seed}-{self._counters[message_type]:05d}"

    def order(self, seller: Seller) -> GeneratedDocument:
        """A purchase order from AF to ``seller`` for one to four employment services."""
        rng = self._rng
        issue = _weekday(EPOCH + timedelta(days=rng.randrange(730)))
        start = _first_of_next_month(issue)
        end = _last_of_month(start + timedelta(days=31 * rng.randrange(3)))
        contract = f"Af-{issue.year - rng.randint(1, 3)}/{rng.randrange(10**7):07d}"
        draft = Draft(
            doc_id=self._next_id(MessageType.INKOPSORDER),
            issue_date=issue,
            seller=seller,
            buyer_contact=person_name(rng.getrandbits(64)),
            buyer_reference=f"AF{rng.randrange(10**5, 10**6)}",
            contract_id=contract,
            period_start=start,
            period_end=end,
            lines=draw_lines(rng),
            note=f"Avrop enligt avtal {contract}.",
            validity_end=issue + timedelta(days=30),
        )
        return self._document(MessageType.INKOPSORDER, draft, build_order(draft), ())

    def invoice(self, seller: Seller, order: GeneratedDocument) -> GeneratedDocument:
        """The self-billing invoice for ``order``: what was delivered in the order's period."""
        self._expect(order, MessageType.INKOPSORDER)
        ordered = read_draft(order.xml, "Order", seller)
        rng = self._rng
        lines = tuple(
            replace(line, order_line_id=line.line_id, quantity=self._delivered(line))
            for line in ordered.lines
        )
        issue = ordered.period_end + timedelta(days=rng.randint(1, 10))
        draft = replace(
            ordered,
            doc_id=self._next_id(MessageType.SJALVFAKTURA),
            issue_date=issue,
            due_date=issue + timedelta(days=PAYMENT_DAYS),
            lines=lines,
            note=_SELF_BILLING_NOTE,
            order_id=ordered.doc_id,
            validity_end=None,
        )
        return self._document(
            MessageType.SJALVFAKTURA, draft, build_invoice(draft), (ordered.doc_id,)
        )

    def credit(self, seller: Seller, invoice: GeneratedDocument) -> GeneratedDocument:
        """A credit note for part of ``invoice``; it never credits more than was invoiced."""
        self._expect(invoice, MessageType.SJALVFAKTURA)
        billed = read_draft(invoice.xml, "Invoice", seller)
        rng = self._rng
        chosen = sorted(rng.sample(range(len(billed.lines)), rng.randint(1, len(billed.lines))))
        lines = tuple(
            replace(
                billed.lines[i],
                line_id=str(n),
                quantity=self._credited(billed.lines[i]),
            )
            for n, i in enumerate(chosen, start=1)
        )
        draft = replace(
            billed,
            doc_id=self._next_id(MessageType.KREDIT),
            issue_date=billed.issue_date + timedelta(days=rng.randint(3, 45)),
            lines=lines,
            note=f"Kreditering av faktura {billed.doc_id}: {rng.choice(_CREDIT_REASONS)}.",
            invoice_id=billed.doc_id,
            invoice_date=billed.issue_date,
            due_date=None,
        )
        if draft.totals.payable > invoice.payable_amount:  # pragma: no cover - by construction
            raise DocumentChainError(f"credit {draft.doc_id} would exceed its invoice")
        return self._document(MessageType.KREDIT, draft, build_credit(draft), (billed.doc_id,))

    def chain(
        self, seller: Seller
    ) -> tuple[GeneratedDocument, GeneratedDocument, GeneratedDocument]:
        """An order, its invoice and a credit note of that invoice."""
        order = self.order(seller)
        invoice = self.invoice(seller, order)
        return order, invoice, self.credit(seller, invoice)

    def _delivered(self, line: Line) -> Decimal:
        """Billed quantity: usually as ordered, sometimes fewer (a participant left early)."""
        whole = int(line.quantity)
        if whole >= 2 and self._rng.random() < 0.3:
            return Decimal(self._rng.randint(1, whole - 1))
        return line.quantity

    def _credited(self, line: Line) -> Decimal:
        """Credited quantity: all of the line or a whole part of it, never more."""
        whole = int(line.quantity)
        if whole >= 2 and self._rng.random() < 0.6:
            return Decimal(self._rng.randint(1, whole - 1))
        return line.quantity

    @staticmethod
    def _expect(document: GeneratedDocument, message_type: MessageType) -> None:
        if document.message_type is not message_type:
            raise DocumentChainError(
                f"expected {message_type.value}, got {document.message_type.value} "
                f"({document.document_id})",
                hint="an invoice follows an order, a credit note follows an invoice",
            )

    @staticmethod
    def _document(
        message_type: MessageType, draft: Draft, xml: bytes, references: tuple[str, ...]
    ) -> GeneratedDocument:
        return GeneratedDocument(
            message_type=message_type,
            document_id=draft.doc_id,
            xml=xml,
            seller_org_number=draft.seller.org_number,
            payable_amount=draft.totals.payable,
            references=references,
        )
