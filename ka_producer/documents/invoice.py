"""A self-billing invoice (självfaktura) as Peppol BIS Self-Billing 3.0 (UBL ``Invoice`` 389).

AF is the buyer and issues the invoice on the supplier's behalf; the invoice
refers to its order (OrderReference) and pays to the supplier's giro account.
"""

from __future__ import annotations

from ka_producer.documents import ubl
from ka_producer.documents.draft import Draft
from ka_producer.documents.money import CURRENCY
from ka_producer.documents.parties import AF_BUYER
from simulator.vocabulary.errors import DocumentChainError

INVOICE_TYPE_CODE = "389"
CREDIT_TRANSFER = "30"


def build_invoice(draft: Draft) -> bytes:
    """The invoice as UTF-8 XML."""
    if draft.order_id is None or draft.due_date is None:
        raise DocumentChainError("an invoice draft needs order_id and due_date")
    root = ubl.new_root("Invoice")
    ubl.header(
        root,
        ubl.SELF_BILLING_CUSTOMIZATION,
        ubl.SELF_BILLING_PROFILE,
        draft.doc_id,
        draft.issue_date.isoformat(),
    )
    ubl.cbc(root, "DueDate", draft.due_date.isoformat())
    ubl.cbc(root, "InvoiceTypeCode", INVOICE_TYPE_CODE)
    ubl.cbc(root, "Note", draft.note)
    ubl.cbc(root, "DocumentCurrencyCode", CURRENCY)
    ubl.cbc(root, "BuyerReference", draft.buyer_reference)
    ubl.period(root, "InvoicePeriod", draft.period_start.isoformat(), draft.period_end.isoformat())
    ubl.cbc(ubl.cac(root, "OrderReference"), "ID", draft.order_id)
    ubl.cbc(ubl.cac(root, "ContractDocumentReference"), "ID", draft.contract_id)
    ubl.seller_party(root, "AccountingSupplierParty", draft.seller, billing=True)
    ubl.buyer_party(root, "AccountingCustomerParty", AF_BUYER, draft.buyer_contact)
    means = ubl.cac(root, "PaymentMeans")
    ubl.cbc(means, "PaymentMeansCode", CREDIT_TRANSFER)
    ubl.cbc(means, "PaymentID", draft.doc_id)
    account = ubl.cac(means, "PayeeFinancialAccount")
    ubl.cbc(account, "ID", draft.seller.giro_number)
    ubl.cbc(account, "Name", draft.seller.name)
    ubl.cbc(ubl.cac(account, "FinancialInstitutionBranch"), "ID", draft.seller.giro_branch)
    ubl.cbc(ubl.cac(root, "PaymentTerms"), "Note", "30 dagar netto")
    ubl.billing_totals_and_lines(root, draft, line="InvoiceLine", quantity="InvoicedQuantity")
    return ubl.serialise(root)
