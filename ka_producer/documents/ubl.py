"""Building UBL 2.1 XML: namespaces, elements, and the parts every document shares.

The builders append children in the order the UBL 2.1 XSD requires; callers
add the parts of a document in that order too.
"""

from __future__ import annotations

from decimal import Decimal

from lxml import etree

from ka_producer.documents.draft import Draft
from ka_producer.documents.money import (
    CURRENCY,
    Line,
    TaxCategory,
    Totals,
    format_amount,
    format_number,
)
from ka_producer.documents.parties import F_TAX_TEXT, Address, Buyer, Seller
from simulator.vocabulary.identifiers import ORG_NUMBER_SCHEME
from simulator.vocabulary.ubl_names import CAC, CBC, ROOT_NAMESPACES

#: Peppol BIS Self-Billing 3.0 (invoice 389 and credit note 261).
SELF_BILLING_CUSTOMIZATION = (
    "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:selfbilling:3.0"
)
SELF_BILLING_PROFILE = "urn:fdc:peppol.eu:2017:poacc:selfbilling:01:1.0"
#: Peppol BIS Order 3.0, order only.
ORDER_CUSTOMIZATION = "urn:fdc:peppol.eu:poacc:trns:order:3"
ORDER_PROFILE = "urn:fdc:peppol.eu:poacc:bis:order_only:3"

Element = etree._Element
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def new_root(name: str) -> Element:
    """An empty ``Order``, ``Invoice`` or ``CreditNote`` root with the cac/cbc prefixes."""
    return etree.Element(
        f"{{{ROOT_NAMESPACES[name]}}}{name}",
        # lxml takes None as the default namespace's key; lxml-stubs do not know that.
        nsmap={None: ROOT_NAMESPACES[name], "cac": CAC, "cbc": CBC},  # type: ignore[dict-item]
    )


def serialise(root: Element) -> bytes:
    """The document as indented UTF-8 with an XML declaration."""
    etree.indent(root, space="  ")
    return _DECLARATION + etree.tostring(root, encoding="UTF-8") + b"\n"


def cac(parent: Element, tag: str) -> Element:
    """Append an aggregate ``cac:<tag>``."""
    return etree.SubElement(parent, f"{{{CAC}}}{tag}")


def cbc(parent: Element, tag: str, text: str, **attrs: str) -> Element:
    """Append a basic ``cbc:<tag>`` holding ``text``."""
    el = etree.SubElement(parent, f"{{{CBC}}}{tag}", attrs)
    el.text = text
    return el


def amount(parent: Element, tag: str, value: Decimal) -> Element:
    """Append an amount in SEK with 2 decimals."""
    return cbc(parent, tag, format_amount(value), currencyID=CURRENCY)


def header(root: Element, customization: str, profile: str, doc_id: str, issue: str) -> None:
    """CustomizationID, ProfileID, ID and IssueDate, the start of every document."""
    cbc(root, "CustomizationID", customization)
    cbc(root, "ProfileID", profile)
    cbc(root, "ID", doc_id)
    cbc(root, "IssueDate", issue)


def address(parent: Element, tag: str, addr: Address) -> None:
    """A postal address (BG-5 / BG-8)."""
    el = cac(parent, tag)
    if addr.street:
        cbc(el, "StreetName", addr.street)
    cbc(el, "CityName", addr.city)
    cbc(el, "PostalZone", addr.postal_zone)
    cbc(cac(el, "Country"), "IdentificationCode", addr.country)


def _scheme(parent: Element, company_id: str, scheme: str) -> None:
    el = cac(parent, "PartyTaxScheme")
    cbc(el, "CompanyID", company_id)
    cbc(cac(el, "TaxScheme"), "ID", scheme)


def _identity(party: Element, org_number: str, name: str) -> None:
    cbc(party, "EndpointID", org_number, schemeID=ORG_NUMBER_SCHEME)
    cbc(cac(party, "PartyIdentification"), "ID", org_number, schemeID=ORG_NUMBER_SCHEME)
    cbc(cac(party, "PartyName"), "Name", name)


def _legal_entity(party: Element, org_number: str, name: str) -> None:
    legal = cac(party, "PartyLegalEntity")
    cbc(legal, "RegistrationName", name)
    cbc(legal, "CompanyID", org_number, schemeID=ORG_NUMBER_SCHEME)


def seller_party(parent: Element, tag: str, seller: Seller, *, billing: bool) -> None:
    """The seller: on an invoice or credit note with VAT and F-tax, on an order without."""
    party = cac(cac(parent, tag), "Party")
    _identity(party, seller.org_number, seller.name)
    address(party, "PostalAddress", seller.address)
    if billing:
        _scheme(party, seller.vat_number, "VAT")
        if seller.f_tax:
            _scheme(party, F_TAX_TEXT, "TAX")
    _legal_entity(party, seller.org_number, seller.name)
    contact = cac(party, "Contact")
    cbc(contact, "Name", seller.contact_name)
    cbc(contact, "Telephone", seller.contact_phone)
    cbc(contact, "ElectronicMail", seller.contact_email)


def buyer_party(parent: Element, tag: str, buyer: Buyer, contact_name: str) -> None:
    """AF as the buyer, with its VAT number and a named contact (the case officer)."""
    party = cac(cac(parent, tag), "Party")
    _identity(party, buyer.org_number, buyer.name)
    address(party, "PostalAddress", buyer.address)
    _scheme(party, buyer.vat_number, "VAT")
    _legal_entity(party, buyer.org_number, buyer.name)
    cbc(cac(party, "Contact"), "Name", contact_name)


def tax_category(parent: Element, tag: str, cat: TaxCategory, *, reason: bool) -> None:
    """A VAT category; ``reason`` adds the exemption reason (only in the VAT breakdown)."""
    el = cac(parent, tag)
    cbc(el, "ID", cat.code)
    cbc(el, "Percent", format_number(cat.percent))
    if reason and cat.exemption_code:
        cbc(el, "TaxExemptionReasonCode", cat.exemption_code)
    if reason and cat.exemption_reason:
        cbc(el, "TaxExemptionReason", cat.exemption_reason)
    cbc(cac(el, "TaxScheme"), "ID", "VAT")


def tax_total(parent: Element, totals: Totals, *, breakdown: bool) -> None:
    """TaxTotal with the VAT breakdown (invoice, credit note) or the amount only (order)."""
    el = cac(parent, "TaxTotal")
    amount(el, "TaxAmount", totals.tax_total)
    if not breakdown:
        return
    for sub in totals.subtotals:
        row = cac(el, "TaxSubtotal")
        amount(row, "TaxableAmount", sub.taxable)
        amount(row, "TaxAmount", sub.tax)
        tax_category(row, "TaxCategory", sub.category, reason=True)


def monetary_total(parent: Element, tag: str, totals: Totals) -> None:
    """LegalMonetaryTotal or AnticipatedMonetaryTotal (BG-22)."""
    el = cac(parent, tag)
    amount(el, "LineExtensionAmount", totals.line_extension)
    amount(el, "TaxExclusiveAmount", totals.tax_exclusive)
    amount(el, "TaxInclusiveAmount", totals.tax_inclusive)
    if totals.rounding:
        amount(el, "PayableRoundingAmount", totals.rounding)
    amount(el, "PayableAmount", totals.payable)


def item(parent: Element, line: Line) -> None:
    """The item of a line: name, seller's code, CPV classification and VAT category."""
    el = cac(parent, "Item")
    cbc(el, "Description", line.description)
    cbc(el, "Name", line.name)
    cbc(cac(el, "SellersItemIdentification"), "ID", line.item_code)
    classification = cac(el, "CommodityClassification")
    cbc(classification, "ItemClassificationCode", line.classification, listID="STI")
    tax_category(el, "ClassifiedTaxCategory", line.tax, reason=False)


def price(parent: Element, line: Line) -> None:
    """The item net price (BT-146), per one unit."""
    el = cac(parent, "Price")
    cbc(el, "PriceAmount", format_number(line.price), currencyID=CURRENCY)


def period(parent: Element, tag: str, start: str, end: str) -> None:
    """A period with start and end dates (InvoicePeriod, RequestedDeliveryPeriod)."""
    el = cac(parent, tag)
    cbc(el, "StartDate", start)
    cbc(el, "EndDate", end)


def billing_totals_and_lines(root: Element, draft: Draft, *, line: str, quantity: str) -> None:
    """Totals, then one line per service: the shared tail of an invoice and a credit note.

    ``line`` is ``InvoiceLine`` or ``CreditNoteLine``; ``quantity`` is
    ``InvoicedQuantity`` or ``CreditedQuantity``.
    """
    totals = draft.totals
    tax_total(root, totals, breakdown=True)
    monetary_total(root, "LegalMonetaryTotal", totals)
    for service in draft.lines:
        el = cac(root, line)
        cbc(el, "ID", service.line_id)
        cbc(el, quantity, format_number(service.quantity), unitCode=service.unit)
        amount(el, "LineExtensionAmount", service.amount)
        if service.order_line_id:
            cbc(cac(el, "OrderLineReference"), "LineID", service.order_line_id)
        item(el, service)
        price(el, service)
