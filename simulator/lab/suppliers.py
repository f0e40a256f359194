"""The test suppliers of a run: valid organisation numbers and Swedish names."""

from __future__ import annotations

from faker import Faker

from simulator.lab.pki import SupplierIdentity
from simulator.vocabulary.identifiers import org_number_from_index


def make_suppliers(count: int, seed: int) -> list[SupplierIdentity]:
    """``count`` suppliers; the same seed gives the same names.

    Organisation numbers come from :func:`org_number_from_index` (valid Luhn,
    stable across seeds, so certificates issued once are reused); names come
    from Faker ``sv_SE``, seeded per instance.
    """
    fake = Faker("sv_SE")
    fake.seed_instance(seed)
    return [
        SupplierIdentity(org_number_from_index(i), f"{fake.last_name()} Arbetsmarknadstjänst AB")
        for i in range(count)
    ]
