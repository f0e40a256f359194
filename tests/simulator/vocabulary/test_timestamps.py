"""Tests of simulator.vocabulary.timestamps: the envelope's time format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.vocabulary.errors import EnvelopeError
from simulator.vocabulary.timestamps import format_timestamp, parse_timestamp


class TestTimestamps:
    """Timestamps are ISO 8601 UTC with milliseconds, exact to the millisecond."""

    def test_format(self) -> None:
        """Epoch ms formats as ISO 8601 with a Z and three decimals."""
        assert format_timestamp(1_767_225_600_123) == "2026-01-01T00:00:00.123Z"
        assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
        assert format_timestamp(253_402_300_799_999) == "9999-12-31T23:59:59.999Z"
        assert parse_timestamp("2024-02-29T12:34:56.789Z") == 1_709_210_096_789

    @given(st.integers(min_value=0, max_value=253_402_300_799_999))
    def test_round_trip(self, ms: int) -> None:
        """parse_timestamp(format_timestamp(ms)) == ms for every representable instant."""
        assert parse_timestamp(format_timestamp(ms)) == ms

    @pytest.mark.parametrize(
        "text",
        [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.123+01:00",
            "2026-01-01 00:00:00.123Z",
            "2026-02-30T00:00:00.000Z",
            "2025-02-29T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-01-01T24:00:00.000Z",
            "2026-01-01T00:60:00.000Z",
            "2026-01-01T00:00:60.000Z",
            "0000-01-01T00:00:00.000Z",
            "1767225600123",
        ],
    )
    def test_refuses_other_forms(self, text: str) -> None:
        """Anything but YYYY-MM-DDTHH:MM:SS.mmmZ of a real date is an EnvelopeError."""
        with pytest.raises(EnvelopeError):
            parse_timestamp(text)
