"""EN 16931 arithmetic: line amounts, VAT breakdown, totals and öre rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ka_producer.documents.money import (
    EXEMPT_EDUCATION,
    STANDARD_25,
    Line,
    format_amount,
    format_number,
    round_amount,
    tax_category,
    totals,
)


def line(quantity: str, price: str, *, exempt: bool = False, line_id: str = "1") -> Line:
    """A line with the given quantity and price."""
    return Line(
        line_id=line_id,
        item_code="X",
        name="n",
        description="d",
        classification="79600000",
        quantity=Decimal(quantity),
        unit="C62",
        price=Decimal(price),
        tax=EXEMPT_EDUCATION if exempt else STANDARD_25,
    )


class TestRounding:
    """Half-up rounding to öre and number formats."""

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("0.005", "0.01"),
            ("0.004", "0.00"),
            ("2.675", "2.68"),
            ("-0.005", "-0.01"),
            ("7", "7.00"),
        ],
    )
    def test_round_half_up(self, value: str, expected: str) -> None:
        """Amounts round half away from zero to 2 decimals."""
        assert format_amount(Decimal(value)) == expected

    @pytest.mark.parametrize(
        ("value", "expected"), [("25", "25"), ("4000", "4000"), ("7.50", "7.5"), ("0.00", "0")]
    )
    def test_format_number(self, value: str, expected: str) -> None:
        """Quantities and prices lose trailing zeros but never become exponents."""
        assert format_number(Decimal(value)) == expected

    def test_line_amount(self) -> None:
        """The line amount is quantity × price rounded to öre."""
        assert line("7.5", "633.33").amount == Decimal("4749.98")  # 4749.975

    def test_unknown_category(self) -> None:
        """An unknown VAT category is a ValueError."""
        assert tax_category("S", Decimal("25.0")) is STANDARD_25
        with pytest.raises(ValueError, match="unknown VAT category"):
            tax_category("Z", Decimal(0))


class TestTotals:
    """Totals satisfy BR-CO-10 to BR-CO-16 by construction."""

    def test_example(self) -> None:
        """A mixed document: VAT per category, öre rounding of the amount due."""
        t = totals([line("3", "4637.33"), line("10", "2144", exempt=True, line_id="2")])
        assert t.line_extension == Decimal("35351.99")
        assert [(s.category.code, s.taxable, s.tax) for s in t.subtotals] == [
            ("S", Decimal("13911.99"), Decimal("3478.00")),
            ("E", Decimal("21440.00"), Decimal("0.00")),
        ]
        assert t.tax_inclusive == Decimal("38829.99")
        assert t.payable == Decimal("38830.00")
        assert t.rounding == Decimal("0.01")

    @given(
        st.lists(
            st.tuples(
                st.integers(min_value=1, max_value=500),
                st.decimals(min_value=1, max_value=100000, places=2),
                st.booleans(),
            ),
            min_size=1,
            max_size=6,
        )
    )
    def test_invariants(self, rows: list[tuple[int, Decimal, bool]]) -> None:
        """Sums, VAT and the amount due add up for any lines."""
        lines = [line(str(q), str(p), exempt=e, line_id=str(i)) for i, (q, p, e) in enumerate(rows)]
        t = totals(lines)
        assert t.line_extension == sum(x.amount for x in lines)  # BR-CO-10
        assert t.tax_total == sum(s.tax for s in t.subtotals)  # BR-CO-14
        assert t.tax_inclusive == t.tax_exclusive + t.tax_total  # BR-CO-15
        assert t.payable == t.tax_inclusive + t.rounding  # BR-CO-16
        assert t.payable == t.payable.to_integral_value()
        assert abs(t.rounding) <= Decimal("0.50")
        for s in t.subtotals:
            assert s.tax == round_amount(s.taxable * s.category.percent / 100)
