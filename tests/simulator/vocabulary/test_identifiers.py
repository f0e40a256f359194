"""Swedish identifiers: organisation, VAT, bankgiro and plusgiro numbers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.identifiers import (
    AF_ORG_NUMBER,
    AF_PEPPOL_ID,
    bankgiro_from_number,
    is_valid_bankgiro,
    is_valid_org_number,
    is_valid_plusgiro,
    is_valid_vat_number,
    luhn_check_digit,
    normalise_giro,
    normalise_org_number,
    org_number_from_index,
    peppol_id,
    plusgiro_from_number,
    validate_bankgiro,
    validate_org_number,
    validate_plusgiro,
    validate_vat_number,
    vat_number,
    with_luhn,
)

# Published numbers: AF, Volvo AB, Spotify AB.
GOOD_ORG = ["2021002114", "5560125790", "5567037485"]
BAD_ORG = ["2021002115", "556012579", "55601257900", "556012-5790", "abcdefghij", ""]
# Skatteverket's bankgiro 5050-1055; Radiohjälpen's plusgiro 90 01 22-3.
GOOD_BANKGIRO = ["50501055", "1234566", "9020900"]
BAD_BANKGIRO = ["50501056", "123456", "123456789", "5050-1055", "0505105", ""]
GOOD_PLUSGIRO = ["9001223", "9020900", "18", "1234566"]
BAD_PLUSGIRO = ["9001224", "1", "123456789", "90 01 22-3", "05", ""]


class TestOrgNumber:
    """The existing organisation number functions keep their behaviour."""

    @pytest.mark.parametrize("value", GOOD_ORG)
    def test_known_good(self, value: str) -> None:
        """Real organisation numbers pass."""
        assert is_valid_org_number(value)
        assert validate_org_number(value) == value

    @pytest.mark.parametrize("value", BAD_ORG)
    def test_known_bad(self, value: str) -> None:
        """A wrong check digit, length or character is refused with ConfigError."""
        assert not is_valid_org_number(value)
        with pytest.raises(ConfigError, match="organisation number"):
            validate_org_number(value)

    @pytest.mark.parametrize(
        ("value", "example"),
        [
            ("5567891234", "5567891238"),  # the docs' old example: its check digit is 8
            ("2021002115", "2021002114"),
            ("556012-5790", "5560125790"),
        ],
    )
    def test_refusal_shows_a_valid_number(self, value: str, example: str) -> None:
        """The hint says what a valid number is and shows one made from the given digits."""
        with pytest.raises(ConfigError) as refused:
            validate_org_number(value)
        hint = str(refused.value.hint)
        assert "the Luhn check digit of the first nine" in hint
        assert f"e.g. {example}" in hint
        assert is_valid_org_number(example)

    @pytest.mark.parametrize("value", ["abcdefghij", "", "556012579"])
    def test_refusal_of_short_input_still_shows_a_valid_number(self, value: str) -> None:
        """Whatever was given, too short or no digits, the hint's example is a valid number."""
        with pytest.raises(ConfigError) as refused:
            validate_org_number(value)
        example = str(refused.value.hint).rsplit("e.g. ", 1)[1]
        assert is_valid_org_number(example)

    def test_af_constants(self) -> None:
        """AF's organisation number is valid and its Peppol id uses scheme 0007."""
        assert is_valid_org_number(AF_ORG_NUMBER)
        assert AF_PEPPOL_ID == "0007:2021002114" == peppol_id(AF_ORG_NUMBER)

    def test_normalise(self) -> None:
        """The dash form normalises to 10 digits."""
        assert normalise_org_number("202100-2114") == "2021002114"

    @given(st.integers(min_value=0, max_value=10**7 - 1))
    def test_generated_are_valid(self, index: int) -> None:
        """Every generated test organisation number is valid."""
        assert is_valid_org_number(org_number_from_index(index))


class TestVatNumber:
    """Swedish VAT numbers: SE + organisation number + 01."""

    @pytest.mark.parametrize("org", GOOD_ORG)
    def test_made_from_org_number(self, org: str) -> None:
        """The VAT number of a valid organisation number is valid and 14 characters."""
        vat = vat_number(org)
        assert vat == f"SE{org}01"
        assert len(vat) == 14
        assert is_valid_vat_number(vat)
        assert validate_vat_number(vat) == vat

    @pytest.mark.parametrize(
        "value",
        [
            "SE202100211501",  # org number's check digit wrong
            "SE202100211402",  # suffix not 01
            "SE20210021140",  # too short
            "SE16202100211401",  # Faker sv_SE's 16-character form
            "GB202100211401",
            "202100211401",
            "se202100211401",
            "",
        ],
    )
    def test_known_bad(self, value: str) -> None:
        """Wrong check digit, suffix, length or prefix is refused."""
        assert not is_valid_vat_number(value)
        with pytest.raises(ConfigError, match="VAT number"):
            validate_vat_number(value)

    def test_bad_org_number_has_no_vat_number(self) -> None:
        """Making a VAT number from an invalid organisation number is a ConfigError."""
        with pytest.raises(ConfigError):
            vat_number("2021002115")


class TestGiro:
    """Bankgiro (7-8 digits) and plusgiro (2-8 digits) numbers with a Luhn check digit."""

    @pytest.mark.parametrize("value", GOOD_BANKGIRO)
    def test_bankgiro_good(self, value: str) -> None:
        """Known bankgiro numbers pass."""
        assert is_valid_bankgiro(value)
        assert validate_bankgiro(value) == value

    @pytest.mark.parametrize("value", BAD_BANKGIRO)
    def test_bankgiro_bad(self, value: str) -> None:
        """Wrong check digit, length, dash or leading zero is refused."""
        assert not is_valid_bankgiro(value)
        with pytest.raises(ConfigError, match="bankgiro"):
            validate_bankgiro(value)

    @pytest.mark.parametrize("value", GOOD_PLUSGIRO)
    def test_plusgiro_good(self, value: str) -> None:
        """Known plusgiro numbers pass."""
        assert is_valid_plusgiro(value)
        assert validate_plusgiro(value) == value

    @pytest.mark.parametrize("value", BAD_PLUSGIRO)
    def test_plusgiro_bad(self, value: str) -> None:
        """Wrong check digit, length, spaces or leading zero is refused."""
        assert not is_valid_plusgiro(value)
        with pytest.raises(ConfigError, match="plusgiro"):
            validate_plusgiro(value)

    def test_normalise_giro(self) -> None:
        """Printed forms normalise to digits that then validate."""
        assert is_valid_bankgiro(normalise_giro("5050-1055"))
        assert is_valid_plusgiro(normalise_giro("90 01 22-3"))

    @given(st.integers(min_value=0, max_value=9 * 10**6 - 1))
    def test_generated_bankgiro_valid(self, number: int) -> None:
        """Every generated bankgiro number is valid and 8 digits."""
        value = bankgiro_from_number(number)
        assert len(value) == 8
        assert is_valid_bankgiro(value)

    @given(st.integers(min_value=1, max_value=10**7 - 1))
    def test_generated_plusgiro_valid(self, number: int) -> None:
        """Every generated plusgiro number is valid."""
        assert is_valid_plusgiro(plusgiro_from_number(number))

    @pytest.mark.parametrize(
        ("make", "number"), [(bankgiro_from_number, -1), (plusgiro_from_number, 0)]
    )
    def test_generator_range(self, make: Callable[[int], str], number: int) -> None:
        """A seed out of range is a ConfigError."""
        with pytest.raises(ConfigError):
            make(number)

    def test_with_luhn(self) -> None:
        """with_luhn appends the check digit that luhn_check_digit computes."""
        assert with_luhn("505010") == "505010" + str(luhn_check_digit("505010"))
        assert with_luhn("5050105") == "50501055"
