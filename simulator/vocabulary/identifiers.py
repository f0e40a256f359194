"""Swedish and Peppol identifiers: organisation numbers and AF's own."""

from __future__ import annotations

import re

from simulator.vocabulary.errors import ConfigError

#: Arbetsförmedlingen: the buyer and the sender of every envelope.
AF_ORG_NUMBER = "2021002114"
AF_NAME = "Arbetsförmedlingen"
#: ISO 6523 scheme 0007 is the Swedish organisation number.
ORG_NUMBER_SCHEME = "0007"
AF_PEPPOL_ID = f"{ORG_NUMBER_SCHEME}:{AF_ORG_NUMBER}"

_TEN_DIGITS = re.compile(r"\d{10}")


def luhn_check_digit(digits: str) -> int:
    """The Luhn check digit for ``digits`` (the number without its last digit)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # doubled: the rightmost digit of the payload first
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def is_valid_org_number(value: str) -> bool:
    """True if ``value`` is 10 digits whose last is the Luhn check digit."""
    return bool(_TEN_DIGITS.fullmatch(value)) and luhn_check_digit(value[:9]) == int(value[9])


def normalise_org_number(value: str) -> str:
    """``556789-1234`` or ``5567891234`` → ``5567891234`` (not yet validated)."""
    return value.replace("-", "").strip()


#: The first nine digits of the example a refusal shows when the input has fewer.
_EXAMPLE_BODY = "556789123"


def org_number_hint(value: str) -> str:
    """What a valid organisation number is, with one made from ``value``'s first nine digits."""
    digits = "".join(ch for ch in value if ch.isdigit())
    body = digits[:9] if len(digits) >= 9 else _EXAMPLE_BODY
    return (
        "use 10 digits, no dash, whose last digit is the Luhn check digit of the first nine, "
        f"e.g. {body + str(luhn_check_digit(body))}"
    )


def validate_org_number(value: str) -> str:
    """Return ``value`` if it is a valid organisation number, else raise ConfigError."""
    if not is_valid_org_number(value):
        raise ConfigError(
            f"{value!r} is not a Swedish organisation number", hint=org_number_hint(value)
        )
    return value


def peppol_id(org_number: str) -> str:
    """The Peppol participant id of an organisation: ``0007:<org_number>``."""
    return f"{ORG_NUMBER_SCHEME}:{org_number}"


def org_number_from_index(index: int, prefix: str = "55") -> str:
    """A deterministic valid organisation number for the ``index``-th test supplier.

    Swedish limited companies start with 55; the third digit is at least 2
    for legal entities.  Index 0 gives ``5520000001``-like numbers.
    """
    if index < 0 or index >= 10**7:
        raise ConfigError(f"supplier index {index} is out of range", hint="use 0 to 9,999,999")
    body = f"{prefix}{2 + index // 10**6 % 8}{index % 10**6:06d}"
    return body + str(luhn_check_digit(body))


# --- VAT numbers, bankgiro and plusgiro -------------------------------------

_SWEDISH_VAT = re.compile(r"SE(\d{10})01")
_BANKGIRO = re.compile(r"\d{7,8}")
_PLUSGIRO = re.compile(r"\d{2,8}")


def with_luhn(body: str) -> str:
    """``body`` followed by its Luhn check digit."""
    return body + str(luhn_check_digit(body))


def _luhn_ok(digits: str) -> bool:
    return luhn_check_digit(digits[:-1]) == int(digits[-1])


def vat_number(org_number: str) -> str:
    """The Swedish VAT number of an organisation: ``SE`` + the 10 digits + ``01``."""
    return f"SE{validate_org_number(org_number)}01"


def is_valid_vat_number(value: str) -> bool:
    """True if ``value`` is ``SE`` + a valid organisation number + ``01`` (14 characters)."""
    match = _SWEDISH_VAT.fullmatch(value)
    return match is not None and is_valid_org_number(match.group(1))


def validate_vat_number(value: str) -> str:
    """Return ``value`` if it is a valid Swedish VAT number, else raise ConfigError."""
    if not is_valid_vat_number(value):
        raise ConfigError(
            f"{value!r} is not a Swedish VAT number",
            hint="use SE + the 10-digit organisation number + 01, e.g. SE202100211401",
        )
    return value


def normalise_giro(value: str) -> str:
    """``5050-1055`` or ``90 01 22-3`` → digits only (not yet validated)."""
    return value.replace("-", "").replace(" ", "").strip()


def is_valid_bankgiro(value: str) -> bool:
    """True if ``value`` is 7 or 8 digits whose last is the Luhn check digit."""
    return bool(_BANKGIRO.fullmatch(value)) and value[0] != "0" and _luhn_ok(value)


def validate_bankgiro(value: str) -> str:
    """Return ``value`` if it is a valid bankgiro number, else raise ConfigError."""
    if not is_valid_bankgiro(value):
        raise ConfigError(
            f"{value!r} is not a bankgiro number",
            hint="use 7 or 8 digits, no dash, whose last digit is the Luhn check digit",
        )
    return value


def is_valid_plusgiro(value: str) -> bool:
    """True if ``value`` is 2 to 8 digits whose last is the Luhn check digit."""
    return bool(_PLUSGIRO.fullmatch(value)) and value[0] != "0" and _luhn_ok(value)


def validate_plusgiro(value: str) -> str:
    """Return ``value`` if it is a valid plusgiro number, else raise ConfigError."""
    if not is_valid_plusgiro(value):
        raise ConfigError(
            f"{value!r} is not a plusgiro number",
            hint="use 2 to 8 digits, no spaces or dash, whose last digit is the Luhn check digit",
        )
    return value


def bankgiro_from_number(number: int) -> str:
    """A valid 8-digit bankgiro number for any ``number`` (deterministic, 1 to 9,999,999).

    The body is 7 digits starting 1-9, so the result never starts with 0.
    """
    if number < 0 or number >= 9 * 10**6:
        raise ConfigError(f"bankgiro seed {number} is out of range", hint="use 0 to 8,999,999")
    return with_luhn(str(10**6 + number))


def plusgiro_from_number(number: int) -> str:
    """A valid plusgiro number (2 to 8 digits) for any ``number`` from 1 to 9,999,999."""
    if number < 1 or number >= 10**7:
        raise ConfigError(f"plusgiro seed {number} is out of range", hint="use 1 to 9,999,999")
    return with_luhn(str(number))
