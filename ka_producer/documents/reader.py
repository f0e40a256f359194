"""Reading a generated order or invoice back, so the next document in the chain can follow it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from lxml import etree

from ka_producer.documents.draft import Draft
from ka_producer.documents.money import Line, tax_category
from ka_producer.documents.parties import Seller
from simulator.vocabulary.errors import DocumentChainError
from simulator.vocabulary.ubl_names import PREFIXES

_NS = PREFIXES
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
_LINES = {
    "Order": ("cac:OrderLine/cac:LineItem", "cbc:Quantity"),
    "Invoice": ("cac:InvoiceLine", "cbc:InvoicedQuantity"),
}


def _text(el: etree._Element, path: str) -> str:
    found = el.findtext(path, namespaces=_NS)
    if found is None:
        raise DocumentChainError(
            f"the document has no {path}",
            hint="pass a document made by DocumentFactory",
        )
    return found.strip()


def _optional(el: etree._Element, path: str) -> str | None:
    found = el.findtext(path, namespaces=_NS)
    return found.strip() if found is not None else None


def read_draft(xml: bytes, expected_root: str, seller: Seller) -> Draft:
    """The draft of an ``Order`` or ``Invoice`` made by this package.

    A different document type or seller is a DocumentChainError.
    """
    try:
        root = etree.fromstring(xml, parser=_PARSER)
    except etree.XMLSyntaxError as exc:
        raise DocumentChainError(f"the document is not XML: {exc}") from None
    name = etree.QName(root).localname
    if name != expected_root:
        raise DocumentChainError(
            f"expected an {expected_root} document, got {name}",
            hint="an invoice follows an order, a credit note follows an invoice",
        )
    party = "SellerSupplierParty" if name == "Order" else "AccountingSupplierParty"
    org = _text(root, f"cac:{party}/cac:Party/cac:PartyLegalEntity/cbc:CompanyID")
    if org != seller.org_number:
        raise DocumentChainError(
            f"the {name} is for seller {org}, not {seller.org_number}",
            hint="use the same seller for every document of a chain",
        )
    period = "cac:Delivery/cac:RequestedDeliveryPeriod" if name == "Order" else "cac:InvoicePeriod"
    reference = "cbc:CustomerReference" if name == "Order" else "cbc:BuyerReference"
    contract = "cac:Contract/cbc:ID" if name == "Order" else "cac:ContractDocumentReference/cbc:ID"
    due = _optional(root, "cbc:DueDate")
    buyer = "BuyerCustomerParty" if name == "Order" else "AccountingCustomerParty"
    return Draft(
        doc_id=_text(root, "cbc:ID"),
        issue_date=date.fromisoformat(_text(root, "cbc:IssueDate")),
        seller=seller,
        buyer_contact=_text(root, f"cac:{buyer}/cac:Party/cac:Contact/cbc:Name"),
        buyer_reference=_text(root, reference),
        contract_id=_text(root, contract),
        period_start=date.fromisoformat(_text(root, f"{period}/cbc:StartDate")),
        period_end=date.fromisoformat(_text(root, f"{period}/cbc:EndDate")),
        lines=_read_lines(root, *_LINES[name]),
        note=_text(root, "cbc:Note"),
        order_id=_optional(root, "cac:OrderReference/cbc:ID"),
        due_date=date.fromisoformat(due) if due else None,
    )


def _read_lines(root: etree._Element, path: str, quantity: str) -> tuple[Line, ...]:
    lines = []
    for el in root.iterfind(path, namespaces=_NS):
        qty = el.find(quantity, namespaces=_NS)
        if qty is None:
            raise DocumentChainError(f"a line has no {quantity}")
        try:
            lines.append(
                Line(
                    line_id=_text(el, "cbc:ID"),
                    item_code=_text(el, "cac:Item/cac:SellersItemIdentification/cbc:ID"),
                    name=_text(el, "cac:Item/cbc:Name"),
                    description=_text(el, "cac:Item/cbc:Description"),
                    classification=_text(
                        el, "cac:Item/cac:CommodityClassification/cbc:ItemClassificationCode"
                    ),
                    quantity=Decimal(qty.text or ""),
                    unit=qty.get("unitCode", ""),
                    price=Decimal(_text(el, "cac:Price/cbc:PriceAmount")),
                    tax=tax_category(
                        _text(el, "cac:Item/cac:ClassifiedTaxCategory/cbc:ID"),
                        Decimal(_text(el, "cac:Item/cac:ClassifiedTaxCategory/cbc:Percent")),
                    ),
                    order_line_id=_optional(el, "cac:OrderLineReference/cbc:LineID"),
                )
            )
        except (InvalidOperation, ValueError) as exc:
            if isinstance(exc, DocumentChainError):
                raise
            raise DocumentChainError(f"a line cannot be read: {exc}") from None
    if not lines:
        raise DocumentChainError("the document has no lines")
    return tuple(lines)
