"""KA's message headers: written once, read back strictly."""

from __future__ import annotations

import pytest

from simulator.vocabulary.errors import ConfigError, EnvelopeError, UnknownMessageTypeError
from simulator.vocabulary.identifiers import org_number_from_index
from simulator.vocabulary.messages import Header, MessageMeta, MessageType

ORG = org_number_from_index(3)


class TestMessageMeta:
    def test_headers_round_trip(self) -> None:
        """Every field survives headers() → from_headers()."""
        meta = MessageMeta.new(MessageType.KREDIT, ORG, 5, produced_at_ms=1_700_000_000_123)
        assert MessageMeta.from_headers(meta.headers()) == meta

    def test_group_key_is_org_number(self) -> None:
        """The message group (per-supplier order) is keyed by organisation number."""
        headers = MessageMeta.new(MessageType.INKOPSORDER, ORG, 1).headers()
        assert headers[Header.GROUP] == headers[Header.ORG_NUMBER] == ORG

    def test_missing_header(self) -> None:
        """A message without a required header is an EnvelopeError naming it."""
        headers = MessageMeta.new(MessageType.INKOPSORDER, ORG, 1).headers()
        del headers[Header.SEQUENCE]
        with pytest.raises(EnvelopeError, match=Header.SEQUENCE):
            MessageMeta.from_headers(headers)

    def test_unknown_type(self) -> None:
        """An unknown message type is refused with the known ones listed."""
        headers = MessageMeta.new(MessageType.INKOPSORDER, ORG, 1).headers()
        headers[Header.MESSAGE_TYPE] = "FAKTURA"
        with pytest.raises(UnknownMessageTypeError, match="SJALVFAKTURA"):
            MessageMeta.from_headers(headers)

    def test_non_numeric_sequence(self) -> None:
        """A sequence that is not a number is refused, not crashed on."""
        headers = MessageMeta.new(MessageType.INKOPSORDER, ORG, 1).headers()
        headers[Header.SEQUENCE] = "one"
        with pytest.raises(EnvelopeError, match="not a number"):
            MessageMeta.from_headers(headers)

    def test_bad_org_number(self) -> None:
        """An organisation number that fails Luhn is refused."""
        headers = MessageMeta.new(MessageType.INKOPSORDER, ORG, 1).headers()
        headers[Header.ORG_NUMBER] = "5560360794"
        with pytest.raises(EnvelopeError, match="not a Swedish organisation number"):
            MessageMeta.from_headers(headers)


def test_an_injected_clock_skew_shifts_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """$B2BSIM_CLOCK_SKEW_MS moves this process's clock: what a skewed component stamps."""
    import time

    from simulator.vocabulary import messages

    monkeypatch.setenv(messages.CLOCK_SKEW_ENV, "-3600000")
    messages.clock_skew_ms.cache_clear()
    try:
        skewed = messages.now_ms()
        assert abs(skewed - (time.time_ns() // 1_000_000 - 3_600_000)) < 1000
    finally:
        monkeypatch.delenv(messages.CLOCK_SKEW_ENV)
        messages.clock_skew_ms.cache_clear()
    assert abs(messages.now_ms() - time.time_ns() // 1_000_000) < 1000


def test_a_malformed_clock_skew_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from simulator.vocabulary import messages

    monkeypatch.setenv(messages.CLOCK_SKEW_ENV, "ten minutes")
    messages.clock_skew_ms.cache_clear()
    try:
        with pytest.raises(ConfigError, match="B2BSIM_CLOCK_SKEW_MS"):
            messages.now_ms()
    finally:
        monkeypatch.delenv(messages.CLOCK_SKEW_ENV)
        messages.clock_skew_ms.cache_clear()
