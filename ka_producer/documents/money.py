"""Amounts with EN 16931 rounding: line amounts, the VAT breakdown and document totals.

Every amount is a :class:`~decimal.Decimal` rounded half-up to öre (2 decimals)
at exactly the points EN 16931 rounds, so the totals satisfy BR-CO-10 to
BR-CO-17 and Peppol R120 by construction.  The amount due is rounded to whole
kronor (öresavrundning), the difference carried as the rounding amount.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CURRENCY = "SEK"
_ORE = Decimal("0.01")
_KRONA = Decimal("1")


def round_amount(value: Decimal) -> Decimal:
    """``value`` rounded half-up to 2 decimals (EN 16931 amounts)."""
    return value.quantize(_ORE, rounding=ROUND_HALF_UP)


def format_amount(value: Decimal) -> str:
    """An amount as XML text: always 2 decimals, ``1234.50``."""
    return str(round_amount(value))


def format_number(value: Decimal) -> str:
    """A quantity, price or percentage as XML text without trailing zeros: ``3``, ``7.5``."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


@dataclass(frozen=True, slots=True)
class TaxCategory:
    """A VAT category (UNCL 5305): standard ``S`` with a rate, or exempt ``E`` with a reason."""

    code: str
    percent: Decimal
    exemption_code: str | None = None
    exemption_reason: str | None = None


STANDARD_25 = TaxCategory("S", Decimal(25))
#: Labour-market training bought by AF is exempt from VAT as education.
EXEMPT_EDUCATION = TaxCategory(
    "E",
    Decimal(0),
    exemption_code="VATEX-EU-132-1I",
    exemption_reason="Undantagen från skatteplikt enligt mervärdesskattelagen (utbildning)",
)
CATEGORIES = {(c.code, c.percent): c for c in (STANDARD_25, EXEMPT_EDUCATION)}


def tax_category(code: str, percent: Decimal) -> TaxCategory:
    """The known category for (code, percent); an unknown pair is a ValueError."""
    try:
        return CATEGORIES[(code, percent)]
    except KeyError:
        raise ValueError(f"unknown VAT category {code} {percent} %") from None


@dataclass(frozen=True, slots=True)
class Line:
    """One document line: what, how many, at what price, with which VAT."""

    line_id: str
    item_code: str
    name: str
    description: str
    classification: str  # CPV code
    quantity: Decimal
    unit: str  # UN/ECE Rec 20
    price: Decimal
    tax: TaxCategory
    order_line_id: str | None = None

    @property
    def amount(self) -> Decimal:
        """Line net amount: quantity × price, rounded to öre (R120, BR-DEC-23)."""
        return round_amount(self.quantity * self.price)


@dataclass(frozen=True, slots=True)
class TaxSubtotal:
    """One row of the VAT breakdown (BG-23)."""

    category: TaxCategory
    taxable: Decimal
    tax: Decimal


@dataclass(frozen=True, slots=True)
class Totals:
    """Document totals (BG-22) and VAT breakdown of a set of lines."""

    line_extension: Decimal
    tax_exclusive: Decimal
    tax_total: Decimal
    tax_inclusive: Decimal
    rounding: Decimal
    payable: Decimal
    subtotals: tuple[TaxSubtotal, ...]


def totals(lines: Iterable[Line]) -> Totals:
    """Totals of ``lines`` with EN 16931 rounding (no document allowances or charges)."""
    by_category: dict[TaxCategory, Decimal] = {}
    line_extension = Decimal("0.00")
    for line in lines:
        line_extension += line.amount
        by_category[line.tax] = by_category.get(line.tax, Decimal("0.00")) + line.amount
    subtotals = tuple(
        TaxSubtotal(cat, taxable, round_amount(taxable * cat.percent / 100))
        for cat, taxable in sorted(by_category.items(), key=lambda kv: kv[0].code, reverse=True)
    )
    tax_total = sum((s.tax for s in subtotals), Decimal("0.00"))
    tax_inclusive = line_extension + tax_total
    payable = tax_inclusive.quantize(_KRONA, rounding=ROUND_HALF_UP)
    return Totals(
        line_extension=line_extension,
        tax_exclusive=line_extension,
        tax_total=tax_total,
        tax_inclusive=tax_inclusive,
        rounding=payable - tax_inclusive,
        payable=round_amount(payable),
        subtotals=subtotals,
    )
