"""A purchase order (inköpsorder) as Peppol BIS Order 3.0 (UBL 2.1 ``Order``, type 220)."""

from __future__ import annotations

from ka_producer.documents import ubl
from ka_producer.documents.draft import Draft
from ka_producer.documents.money import CURRENCY, format_number
from ka_producer.documents.parties import AF_BUYER

ORDER_TYPE_CODE = "220"


def build_order(draft: Draft) -> bytes:
    """The order as UTF-8 XML."""
    root = ubl.new_root("Order")
    ubl.header(
        root, ubl.ORDER_CUSTOMIZATION, ubl.ORDER_PROFILE, draft.doc_id, draft.issue_date.isoformat()
    )
    ubl.cbc(root, "OrderTypeCode", ORDER_TYPE_CODE)
    ubl.cbc(root, "Note", draft.note)
    ubl.cbc(root, "DocumentCurrencyCode", CURRENCY)
    ubl.cbc(root, "CustomerReference", draft.buyer_reference)
    if draft.validity_end:
        ubl.cbc(ubl.cac(root, "ValidityPeriod"), "EndDate", draft.validity_end.isoformat())
    ubl.cbc(ubl.cac(root, "Contract"), "ID", draft.contract_id)
    ubl.buyer_party(root, "BuyerCustomerParty", AF_BUYER, draft.buyer_contact)
    ubl.seller_party(root, "SellerSupplierParty", draft.seller, billing=False)
    delivery = ubl.cac(root, "Delivery")
    ubl.period(
        delivery,
        "RequestedDeliveryPeriod",
        draft.period_start.isoformat(),
        draft.period_end.isoformat(),
    )
    totals = draft.totals
    ubl.tax_total(root, totals, breakdown=False)
    ubl.monetary_total(root, "AnticipatedMonetaryTotal", totals)
    for line in draft.lines:
        item = ubl.cac(ubl.cac(root, "OrderLine"), "LineItem")
        ubl.cbc(item, "ID", line.line_id)
        ubl.cbc(item, "Quantity", format_number(line.quantity), unitCode=line.unit)
        ubl.amount(item, "LineExtensionAmount", line.amount)
        ubl.price(item, line)
        ubl.item(item, line)
    return ubl.serialise(root)
