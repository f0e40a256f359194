"""Business documents KA sends: orders, self-billing invoices and credit notes.

Peppol BIS Order 3.0 and Peppol BIS Self-Billing 3.0 (invoice 389, credit
note 261), with AF as buyer and valid Swedish identifiers for every seller.
"""

from ka_producer.documents.factory import DocumentFactory, GeneratedDocument
from ka_producer.documents.parties import (
    AF_BUYER,
    Address,
    Buyer,
    Seller,
    demo_sellers,
    seller_profile,
)
from simulator.vocabulary.errors import DocumentChainError

__all__ = [
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
