"""The document factory: determinism, chain links, credited ≤ invoiced, sellers and AF."""

from __future__ import annotations

from decimal import Decimal

import pytest
from lxml import etree

from ka_producer import documents
from ka_producer.documents import (
    AF_BUYER,
    DocumentChainError,
    DocumentFactory,
    GeneratedDocument,
    Seller,
    demo_sellers,
    seller_profile,
)
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.identifiers import (
    is_valid_bankgiro,
    is_valid_org_number,
    is_valid_plusgiro,
    is_valid_vat_number,
)
from simulator.vocabulary.messages import MessageType

NS = {
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}


def text(doc: GeneratedDocument, path: str) -> str:
    """The text at ``path`` in ``doc``."""
    found = etree.fromstring(doc.xml).findtext(path, namespaces=NS)
    assert found is not None, path
    return found


def quantities(doc: GeneratedDocument, line: str, qty: str) -> dict[str, Decimal]:
    """Order line id → quantity of each line of an invoice or credit note."""
    root = etree.fromstring(doc.xml)
    return {
        el.findtext("cac:OrderLineReference/cbc:LineID", namespaces=NS) or "": Decimal(
            el.findtext(qty, namespaces=NS) or ""
        )
        for el in root.iterfind(line, namespaces=NS)
    }


@pytest.fixture
def seller() -> Seller:
    """The first numbered test supplier."""
    return demo_sellers(1)[0]


class TestPublicApi:
    """The package's face."""

    def test_all(self) -> None:
        """__all__ lists exactly the documented names, all importable."""
        assert sorted(documents.__all__) == sorted(
            [
                "AF_BUYER",
                "Address",
                "Buyer",
                "DocumentChainError",
                "DocumentFactory",
                "GeneratedDocument",
                "Seller",
                "demo_sellers",
                "seller_profile",
            ]
        )
        for name in documents.__all__:
            assert getattr(documents, name) is not None


class TestSellers:
    """Seller profiles: deterministic, with valid Swedish identifiers."""

    def test_deterministic(self) -> None:
        """The same organisation number and name give the same profile."""
        seller_profile.cache_clear()
        first = seller_profile("5560125790", "Volvo AB")
        seller_profile.cache_clear()
        assert seller_profile("5560125790", "Volvo AB") == first
        assert seller_profile("5560125790", "Annat AB") != first

    @pytest.mark.parametrize("index", range(40))
    def test_valid_identifiers(self, index: int) -> None:
        """Organisation, VAT and giro numbers are valid Swedish formats; F-tax approved."""
        seller = demo_sellers(40)[index]
        assert is_valid_org_number(seller.org_number)
        assert is_valid_vat_number(seller.vat_number)
        assert seller.vat_number == f"SE{seller.org_number}01"
        check = is_valid_bankgiro if seller.giro_kind == "bankgiro" else is_valid_plusgiro
        assert check(seller.giro_number)
        assert seller.giro_branch in ("SE:BANKGIRO", "SE:PLUSGIRO")
        assert seller.f_tax
        assert seller.endpoint_id == f"0007:{seller.org_number}"
        assert len(seller.address.postal_zone) == 6
        assert seller.address.street

    def test_both_giro_kinds_occur(self) -> None:
        """Some sellers use bankgiro and some plusgiro."""
        assert {s.giro_kind for s in demo_sellers(40)} == {"bankgiro", "plusgiro"}

    def test_dash_form_accepted(self) -> None:
        """An organisation number with a dash is normalised."""
        assert seller_profile("556012-5790", "Volvo AB").org_number == "5560125790"

    def test_bad_org_number(self) -> None:
        """An invalid organisation number is a ConfigError."""
        with pytest.raises(ConfigError, match="organisation number"):
            seller_profile("5560125791", "Fel AB")

    def test_demo_sellers_range(self) -> None:
        """Zero sellers is a ConfigError; names follow `pki init`."""
        with pytest.raises(ConfigError):
            demo_sellers(0)
        assert demo_sellers(2)[1].name == "Leverantör 1 AB"

    def test_af_buyer(self) -> None:
        """AF is 202100-2114, endpoint 0007:2021002114, in Stockholm."""
        assert AF_BUYER.org_number == "2021002114"
        assert AF_BUYER.endpoint_id == "0007:2021002114"
        assert AF_BUYER.vat_number == "SE202100211401"
        assert AF_BUYER.address.city == "Stockholm"


class TestDeterminism:
    """The same seed gives byte-identical documents."""

    def test_same_seed_same_bytes(self, seller: Seller) -> None:
        """Two factories with one seed make identical chains; another seed differs."""
        a = [d.xml for _ in range(3) for d in DocumentFactory(42).chain(seller)]
        b = [d.xml for _ in range(3) for d in DocumentFactory(42).chain(seller)]
        c = [d.xml for _ in range(3) for d in DocumentFactory(43).chain(seller)]
        assert a == b
        assert a != c

    def test_interleaving_does_not_matter(self, seller: Seller) -> None:
        """Using another factory in between does not change a factory's documents."""
        alone = DocumentFactory(5).chain(seller)
        f, other = DocumentFactory(5), DocumentFactory(6)
        order = f.order(seller)
        other.chain(seller)
        invoice = f.invoice(seller, order)
        other.chain(seller)
        assert (order, invoice, f.credit(seller, invoice)) == alone

    def test_negative_seed(self) -> None:
        """A negative seed is a ConfigError."""
        with pytest.raises(ConfigError):
            DocumentFactory(-1)


class TestDocuments:
    """Each document's header, parties and dates."""

    def test_kinds(self, seller: Seller) -> None:
        """Order, invoice 389 and credit note 261 with the Peppol ids and SEK."""
        order, invoice, credit = DocumentFactory(1).chain(seller)
        assert order.message_type is MessageType.INKOPSORDER
        assert invoice.message_type is MessageType.SJALVFAKTURA
        assert credit.message_type is MessageType.KREDIT
        assert text(order, "cbc:ProfileID") == "urn:fdc:peppol.eu:poacc:bis:order_only:3"
        assert text(invoice, "cbc:InvoiceTypeCode") == "389"
        assert text(credit, "cbc:CreditNoteTypeCode") == "261"
        for doc in (order, invoice, credit):
            assert doc.xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
            assert text(doc, "cbc:DocumentCurrencyCode") == "SEK"
            assert doc.seller_org_number == seller.org_number

    def test_af_is_buyer(self, seller: Seller) -> None:
        """AF is the buyer, with endpoint 0007:2021002114."""
        order, invoice, credit = DocumentFactory(2).chain(seller)
        assert text(order, "cac:BuyerCustomerParty/cac:Party/cbc:EndpointID") == "2021002114"
        for doc in (invoice, credit):
            party = "cac:AccountingCustomerParty/cac:Party/"
            assert text(doc, party + "cbc:EndpointID") == "2021002114"
            assert text(doc, party + "cac:PartyLegalEntity/cbc:RegistrationName") == (
                "Arbetsförmedlingen"
            )

    def test_invoice_pays_to_giro(self, seller: Seller) -> None:
        """The invoice pays by credit transfer to the seller's giro."""
        invoice = DocumentFactory(3).chain(seller)[1]
        assert text(invoice, "cac:PaymentMeans/cbc:PaymentMeansCode") == "30"
        assert text(invoice, "cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID") == (
            seller.giro_number
        )

    @pytest.mark.parametrize("seed", range(30))
    def test_dates_plausible(self, seller: Seller, seed: int) -> None:
        """Order before its period, invoice after it, due 30 days later, credit after invoice."""
        order, invoice, credit = DocumentFactory(seed).chain(seller)
        ordered = text(order, "cbc:IssueDate")
        start = text(order, "cac:Delivery/cac:RequestedDeliveryPeriod/cbc:StartDate")
        end = text(order, "cac:Delivery/cac:RequestedDeliveryPeriod/cbc:EndDate")
        issued = text(invoice, "cbc:IssueDate")
        assert "2024-01-01" <= ordered < start < end < issued < text(invoice, "cbc:DueDate")
        assert text(invoice, "cac:InvoicePeriod/cbc:StartDate") == start
        assert issued < text(credit, "cbc:IssueDate")

    def test_ids_unique(self, seller: Seller) -> None:
        """Ids are unique within a factory and across seeds."""
        seen = [d.document_id for seed in range(20) for d in DocumentFactory(seed).chain(seller)]
        f = DocumentFactory(0)
        seen += [d.document_id for _ in range(20) for d in f.chain(seller)][3:]
        assert len(seen) == len(set(seen))


class TestChain:
    """Order → invoice → credit note links, and credited never exceeds invoiced."""

    @pytest.mark.parametrize("seed", range(60))
    def test_links_and_amounts(self, seller: Seller, seed: int) -> None:
        """References point back; the credit's quantities and amount stay within the invoice's."""
        order, invoice, credit = DocumentFactory(seed).chain(seller)
        assert order.references == ()
        assert invoice.references == (order.document_id,)
        assert credit.references == (invoice.document_id,)
        assert text(invoice, "cac:OrderReference/cbc:ID") == order.document_id
        billing = "cac:BillingReference/cac:InvoiceDocumentReference/"
        assert text(credit, billing + "cbc:ID") == invoice.document_id
        assert text(credit, billing + "cbc:IssueDate") == text(invoice, "cbc:IssueDate")
        assert Decimal(0) < credit.payable_amount <= invoice.payable_amount
        billed = quantities(invoice, "cac:InvoiceLine", "cbc:InvoicedQuantity")
        credited = quantities(credit, "cac:CreditNoteLine", "cbc:CreditedQuantity")
        assert credited
        assert all(0 < q <= billed[line] for line, q in credited.items())
        assert text(credit, "cbc:Note").startswith(f"Kreditering av faktura {invoice.document_id}")

    def test_payable_matches_xml(self, seller: Seller) -> None:
        """payable_amount is the document's PayableAmount."""
        for doc in DocumentFactory(9).chain(seller)[1:]:
            assert Decimal(text(doc, "cac:LegalMonetaryTotal/cbc:PayableAmount")) == (
                doc.payable_amount
            )

    def test_invoice_needs_order(self, seller: Seller) -> None:
        """An invoice of an invoice is a DocumentChainError."""
        f = DocumentFactory(1)
        invoice = f.chain(seller)[1]
        with pytest.raises(DocumentChainError, match="expected INKOPSORDER, got SJALVFAKTURA"):
            f.invoice(seller, invoice)
        with pytest.raises(DocumentChainError, match="expected SJALVFAKTURA, got INKOPSORDER"):
            f.credit(seller, f.order(seller))

    def test_same_seller_required(self) -> None:
        """Invoicing another seller's order is a DocumentChainError."""
        one, two = demo_sellers(2)
        f = DocumentFactory(1)
        with pytest.raises(DocumentChainError, match="same seller"):
            f.invoice(two, f.order(one))

    def test_garbage_document(self, seller: Seller) -> None:
        """An order whose XML is broken is a DocumentChainError, not a traceback."""
        f = DocumentFactory(1)
        order = f.order(seller)
        broken = GeneratedDocument(
            order.message_type,
            order.document_id,
            b"<Order",
            order.seller_org_number,
            order.payable_amount,
            (),
        )
        with pytest.raises(DocumentChainError, match="not XML"):
            f.invoice(seller, broken)
