"""A self-billing credit note (kredit) as Peppol BIS Self-Billing 3.0 (UBL ``CreditNote`` 261).

The credit note refers to the invoice it credits (BillingReference) and to
the order behind it; its lines never credit more than the invoice billed.
"""

from __future__ import annotations

from ka_producer.documents import ubl
from ka_producer.documents.draft import Draft
from ka_producer.documents.money import CURRENCY
from ka_producer.documents.parties import AF_BUYER
from simulator.vocabulary.errors import DocumentChainError

CREDIT_NOTE_TYPE_CODE = "261"


def build_credit(draft: Draft) -> bytes:
    """The credit note as UTF-8 XML."""
    if draft.order_id is None or draft.invoice_id is None or draft.invoice_date is None:
        raise DocumentChainError("a credit note draft needs order_id, invoice_id and invoice_date")
    root = ubl.new_root("CreditNote")
    ubl.header(
        root,
        ubl.SELF_BILLING_CUSTOMIZATION,
        ubl.SELF_BILLING_PROFILE,
        draft.doc_id,
        draft.issue_date.isoformat(),
    )
    ubl.cbc(root, "CreditNoteTypeCode", CREDIT_NOTE_TYPE_CODE)
    ubl.cbc(root, "Note", draft.note)
    ubl.cbc(root, "DocumentCurrencyCode", CURRENCY)
    ubl.cbc(root, "BuyerReference", draft.buyer_reference)
    ubl.period(root, "InvoicePeriod", draft.period_start.isoformat(), draft.period_end.isoformat())
    ubl.cbc(ubl.cac(root, "OrderReference"), "ID", draft.order_id)
    billing = ubl.cac(ubl.cac(root, "BillingReference"), "InvoiceDocumentReference")
    ubl.cbc(billing, "ID", draft.invoice_id)
    ubl.cbc(billing, "IssueDate", draft.invoice_date.isoformat())
    ubl.cbc(ubl.cac(root, "ContractDocumentReference"), "ID", draft.contract_id)
    ubl.seller_party(root, "AccountingSupplierParty", draft.seller, billing=True)
    ubl.buyer_party(root, "AccountingCustomerParty", AF_BUYER, draft.buyer_contact)
    ubl.billing_totals_and_lines(root, draft, line="CreditNoteLine", quantity="CreditedQuantity")
    return ubl.serialise(root)
