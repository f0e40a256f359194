"""The UBL 2.1 names: the namespaces of the document roots and of their parts.

One place for them, used by the producer's document builders and reader, the
envelope, the document validator and the supplier stub's ledger.
"""

from __future__ import annotations

__all__ = ["CAC", "CBC", "PREFIXES", "ROOT_NAMESPACES"]

#: Aggregate components (``cac:``): parties, references, lines, totals.
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
#: Basic components (``cbc:``): ids, dates, amounts, codes.
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
#: The ``cac``/``cbc`` prefixes, for XPath and ``find`` calls.
PREFIXES: dict[str, str] = {"cac": CAC, "cbc": CBC}
#: The namespace of each document root element.
ROOT_NAMESPACES: dict[str, str] = {
    "Order": "urn:oasis:names:specification:ubl:schema:xsd:Order-2",
    "Invoice": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "CreditNote": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
}
