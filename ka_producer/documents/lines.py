"""What AF buys: the catalogue of employment services and the order lines drawn from it."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from ka_producer.documents.money import EXEMPT_EDUCATION, STANDARD_25, Line, TaxCategory


@dataclass(frozen=True, slots=True)
class Service:
    """One employment service AF buys, with its unit, price range and VAT."""

    code: str
    name: str
    description: str
    classification: str  # CPV code (listID "STI")
    unit: str  # UN/ECE Rec 20: MON month, C62 one, HUR hour, DAY day
    price_range: tuple[int, int]  # whole kronor
    quantity_range: tuple[int, int]
    tax: TaxCategory
    half_units: bool = False  # quantity may end in .5 (hours)


CATALOGUE: tuple[Service, ...] = (
    Service(
        "RoM-GRUND",
        "Rusta och matcha, grundersättning",
        "Månadsersättning per deltagare i Rusta och matcha",
        "79600000",
        "MON",
        (3800, 7900),
        (1, 25),
        STANDARD_25,
    ),
    Service(
        "RoM-RES-A",
        "Rusta och matcha, resultatersättning arbete",
        "Resultatbaserad ersättning när deltagaren har fått arbete",
        "79600000",
        "C62",
        (9000, 28000),
        (1, 6),
        STANDARD_25,
    ),
    Service(
        "RoM-RES-S",
        "Rusta och matcha, resultatersättning studier",
        "Resultatbaserad ersättning när deltagaren har börjat studera",
        "79600000",
        "C62",
        (7000, 18000),
        (1, 4),
        STANDARD_25,
    ),
    Service(
        "IAT-MAN",
        "Introduktion till arbete, deltagarmånad",
        "Ersättning per deltagare och påbörjad månad",
        "85312320",
        "MON",
        (5200, 9800),
        (1, 15),
        STANDARD_25,
    ),
    Service(
        "TOLK-TIM",
        "Tolkstöd",
        "Tolk vid kartläggning och handledning, per timme",
        "79540000",
        "HUR",
        (450, 950),
        (1, 40),
        STANDARD_25,
        half_units=True,
    ),
    Service(
        "AMU-YRK",
        "Arbetsmarknadsutbildning, yrkesinriktad",
        "Kursavgift per deltagare och utbildningsdag",
        "80530000",
        "DAY",
        (900, 2400),
        (5, 60),
        EXEMPT_EDUCATION,
    ),
)

_BY_CODE = {s.code: s for s in CATALOGUE}


def service(code: str) -> Service:
    """The catalogue entry with ``code``; an unknown code is a KeyError."""
    return _BY_CODE[code]


def draw_lines(rng: random.Random) -> tuple[Line, ...]:
    """One to four order lines of different services, with quantities and prices."""
    chosen = rng.sample(CATALOGUE, rng.randint(1, 4))
    lines = []
    for number, svc in enumerate(chosen, start=1):
        quantity = Decimal(rng.randint(*svc.quantity_range))
        if svc.half_units and rng.random() < 0.3:
            quantity += Decimal("0.5")
        # Prices in whole kronor, now and then with öre (e.g. an indexed tariff).
        price = Decimal(rng.randint(*svc.price_range))
        if rng.random() < 0.25:
            price += Decimal(rng.randint(1, 99)) / 100
        lines.append(
            Line(
                line_id=str(number),
                item_code=svc.code,
                name=svc.name,
                description=svc.description,
                classification=svc.classification,
                quantity=quantity,
                unit=svc.unit,
                price=price,
                tax=svc.tax,
            )
        )
    return tuple(lines)
