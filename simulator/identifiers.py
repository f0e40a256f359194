"""Swedish and Peppol identifiers: organisation numbers and AF's own."""

from __future__ import annotations

import re

from simulator.errors import ConfigError

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


def validate_org_number(value: str) -> str:
    """Return ``value`` if it is a valid organisation number, else raise ConfigError."""
    if not is_valid_org_number(value):
        raise ConfigError(
            f"{value!r} is not a Swedish organisation number",
            hint="use 10 digits, no dash, whose last digit is the Luhn check digit",
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
