"""The trading parties: AF as buyer, and each supplier as seller with Swedish identifiers.

A seller's profile is drawn deterministically from its organisation number and
name, so every component that knows a supplier sees the same address and giro.
Faker ``sv_SE`` supplies names and addresses; the identifiers are made here,
because Faker's Swedish VAT ids are not valid Swedish VAT numbers.
"""

from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import dataclass
from functools import lru_cache

from faker import Faker

from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.identifiers import (
    AF_NAME,
    AF_ORG_NUMBER,
    bankgiro_from_number,
    normalise_org_number,
    org_number_from_index,
    peppol_id,
    plusgiro_from_number,
    validate_org_number,
    vat_number,
)

F_TAX_TEXT = "Godkänd för F-skatt"
COUNTRY = "SE"


@dataclass(frozen=True, slots=True)
class Address:
    """A Swedish postal address."""

    street: str | None
    postal_zone: str  # "113 99"
    city: str
    country: str = COUNTRY


@dataclass(frozen=True, slots=True)
class Seller:
    """A supplier as it appears on AF's documents."""

    org_number: str
    name: str
    vat_number: str
    address: Address
    f_tax: bool  # approved for F-tax ("Godkänd för F-skatt")
    giro_kind: str  # "bankgiro" or "plusgiro"
    giro_number: str
    contact_name: str
    contact_phone: str
    contact_email: str

    @property
    def endpoint_id(self) -> str:
        """The seller's Peppol participant id, ``0007:<org_number>``."""
        return peppol_id(self.org_number)

    @property
    def giro_branch(self) -> str:
        """The FinancialInstitutionBranch id that names the giro: SE:BANKGIRO or SE:PLUSGIRO."""
        return f"SE:{self.giro_kind.upper()}"


@dataclass(frozen=True, slots=True)
class Buyer:
    """AF as the buyer on every document."""

    org_number: str
    name: str
    vat_number: str
    address: Address

    @property
    def endpoint_id(self) -> str:
        """AF's Peppol participant id, ``0007:2021002114``."""
        return peppol_id(self.org_number)


AF_BUYER = Buyer(
    org_number=AF_ORG_NUMBER,
    name=AF_NAME,
    vat_number=vat_number(AF_ORG_NUMBER),
    address=Address(street=None, postal_zone="113 99", city="Stockholm"),
)

_faker = Faker("sv_SE")
_faker_lock = threading.Lock()


def _seed_of(*parts: str) -> int:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def person_name(seed: int) -> str:
    """A Swedish person's name, the same for the same ``seed`` (one shared Faker, reseeded)."""
    with _faker_lock:
        _faker.seed_instance(seed)
        return _faker.name()


def postal_zone(digits: str) -> str:
    """Five postcode digits in the Swedish written form ``123 45``."""
    return f"{digits[:3]} {digits[3:5]}"


def phone_number(rng: random.Random) -> str:
    """A Swedish landline number such as ``08-123 45 67`` or ``031-12 34 56``."""
    area = rng.choice(("08", "031", "040", "018", "013", "090", "060"))
    if area == "08":
        digits = str(rng.randrange(2 * 10**6, 10**7))
        return f"{area}-{digits[:3]} {digits[3:5]} {digits[5:]}"
    digits = str(rng.randrange(10**5, 10**6))
    return f"{area}-{digits[:2]} {digits[2:4]} {digits[4:6]}"


@lru_cache(maxsize=4096)
def seller_profile(org_number: str, name: str) -> Seller:
    """The seller ``name`` with organisation number ``org_number``, the same every time.

    A bad organisation number is a ConfigError.
    """
    org_number = validate_org_number(normalise_org_number(org_number))
    seed = _seed_of(org_number, name)
    rng = random.Random(seed)  # noqa: S311 -- reproducible test data, not secrets
    with _faker_lock:
        _faker.seed_instance(seed)
        street = _faker.street_address()
        city = _faker.city()
        contact = _faker.name()
    giro_kind = "bankgiro" if rng.random() < 0.8 else "plusgiro"
    giro = (
        bankgiro_from_number(rng.randrange(9 * 10**6))
        if giro_kind == "bankgiro"
        else plusgiro_from_number(rng.randrange(10**3, 10**7))
    )
    slug = "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum()) or "leverantor"
    return Seller(
        org_number=org_number,
        name=name,
        vat_number=vat_number(org_number),
        address=Address(
            street=street, postal_zone=postal_zone(f"{rng.randrange(10000, 98500)}"), city=city
        ),
        f_tax=True,
        giro_kind=giro_kind,
        giro_number=giro,
        contact_name=contact,
        contact_phone=phone_number(rng),
        contact_email=f"faktura@{slug}.example",
    )


def demo_sellers(count: int) -> tuple[Seller, ...]:
    """The sellers of ``b2bsim pki init --suppliers N``: index i is "Leverantör i AB"."""
    if count < 1 or count > 1000:
        raise ConfigError(f"{count} sellers is out of range", hint="use 1 to 1000")
    return tuple(
        seller_profile(org_number_from_index(i), f"Leverantör {i} AB") for i in range(count)
    )
