"""The UBL names: one namespace per document root, shared by every user."""

from __future__ import annotations

from simulator.vocabulary.envelope import UBL_NAMESPACES
from simulator.vocabulary.messages import MessageType
from simulator.vocabulary.ubl_names import CAC, CBC, PREFIXES, ROOT_NAMESPACES
from simulator.vocabulary.validation import RULES

UBL = "urn:oasis:names:specification:ubl:schema:xsd:"


def test_each_root_has_the_oasis_namespace_named_after_it() -> None:
    assert {
        name: f"{UBL}{name}-2" for name in ("Order", "Invoice", "CreditNote")
    } == ROOT_NAMESPACES


def test_the_component_prefixes() -> None:
    assert {
        "cac": f"{UBL}CommonAggregateComponents-2",
        "cbc": f"{UBL}CommonBasicComponents-2",
    } == PREFIXES
    assert (PREFIXES["cac"], PREFIXES["cbc"]) == (CAC, CBC)


def test_every_message_type_has_its_root_namespace() -> None:
    for mt in MessageType:
        assert UBL_NAMESPACES[mt] == ROOT_NAMESPACES[mt.document_root]


def test_the_validator_checks_each_root_in_its_namespace() -> None:
    assert {name: rules.namespace for name, rules in RULES.items()} == ROOT_NAMESPACES
