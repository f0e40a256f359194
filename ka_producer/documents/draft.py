"""The content of one document before it becomes XML (and after it is read back)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ka_producer.documents.money import Line, Totals, totals
from ka_producer.documents.parties import Seller


@dataclass(frozen=True, slots=True)
class Draft:
    """What an order, a self-billing invoice or a credit note says.

    ``order_id`` is set on invoices and credit notes, ``invoice_id`` and
    ``invoice_date`` on credit notes, ``due_date`` on invoices and
    ``validity_end`` on orders.
    """

    doc_id: str
    issue_date: date
    seller: Seller
    buyer_contact: str
    buyer_reference: str
    contract_id: str
    period_start: date
    period_end: date
    lines: tuple[Line, ...]
    note: str
    order_id: str | None = None
    invoice_id: str | None = None
    invoice_date: date | None = None
    due_date: date | None = None
    validity_end: date | None = None

    @property
    def totals(self) -> Totals:
        """The document totals and VAT breakdown of the lines."""
        return totals(self.lines)
