"""Every generated document passes the XSD, every fatal official rule and the Swedish checks.

The loop covers ``$B2BSIM_DOC_SEEDS`` seeds per type (default: the CI count,
about 60 s for all three types): ``B2BSIM_DOC_SEEDS=1000 pytest`` runs 1000.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ka_producer.documents import DocumentFactory, GeneratedDocument, Seller, demo_sellers
from simulator.vocabulary.rulesets import SHIPPED_RULES_DIR
from simulator.vocabulary.validation import DocumentValidator

SEEDS_ENV = "B2BSIM_DOC_SEEDS"
#: One seed of all three types takes about 55 ms to make and validate (900: ~50 s).
CI_SEEDS = 900
SELLERS = demo_sellers(25)


def seed_count() -> int:
    """Seeds per type: $B2BSIM_DOC_SEEDS, else the CI count."""
    raw = os.environ.get(SEEDS_ENV, "")
    if not raw:
        return CI_SEEDS
    if not raw.isdigit() or int(raw) < 1:
        raise pytest.UsageError(f"${SEEDS_ENV} must be a positive integer, not {raw!r}")
    return int(raw)


def rules_dir() -> Path:
    """The official rule sets shipped in the package."""
    return SHIPPED_RULES_DIR


def make_order(seed: int, seller: Seller) -> GeneratedDocument:
    """A purchase order."""
    return DocumentFactory(seed).order(seller)


def make_invoice(seed: int, seller: Seller) -> GeneratedDocument:
    """A self-billing invoice of a fresh order."""
    f = DocumentFactory(seed)
    return f.invoice(seller, f.order(seller))


def make_credit(seed: int, seller: Seller) -> GeneratedDocument:
    """A credit note of a fresh invoice."""
    return DocumentFactory(seed).chain(seller)[2]


@pytest.fixture(scope="module")
def validator() -> DocumentValidator:
    """A warmed-up validator, so compiling is not charged to the first type."""
    v = DocumentValidator(rules_dir())
    v.warm_up()
    return v


class TestEverySeedValid:
    """The seeded loop over each document type."""

    @pytest.mark.timeout(600)
    @pytest.mark.parametrize(
        "make", [make_order, make_invoice, make_credit], ids=["order", "invoice", "credit"]
    )
    def test_seeds(
        self, validator: DocumentValidator, make: Callable[[int, Seller], GeneratedDocument]
    ) -> None:
        """No seed gives a document with an XSD or fatal failure."""
        bad: list[str] = []
        for seed in range(seed_count()):
            doc = make(seed, SELLERS[seed % len(SELLERS)])
            report = validator.validate(doc.xml)
            if not report.ok:
                bad.append(f"seed {seed} {doc.document_id}: {report.fatal[:3]}")
        assert not bad, f"{len(bad)} invalid, first: {bad[:3]}"
