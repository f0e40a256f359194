"""Validating business documents: UBL 2.1 XSD, the official Schematron rule sets, Swedish checks.

A document is checked against the UBL 2.1 XSD of its root element first; if it
is schema-valid, the compiled Schematron of its type runs (EN 16931 plus
Peppol Self-Billing for ``Invoice`` and ``CreditNote``, Peppol T01 for
``Order``), and then this project's Swedish identifier checks (``AF-SE-*``),
which the self-billing rule set leaves out.

The schemas and stylesheets are read from a rules directory: by default the
copy of the official artefacts shipped in the package (``simulator/data/rules``,
see :mod:`simulator.vocabulary.rulesets` and docs/documents.md), else
``--rules DIR`` or ``$B2BSIM_RULES_DIR``.  Each is compiled once per process,
on first use, and shared by every validator.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from lxml import etree
from saxonche import PySaxonProcessor

from simulator.vocabulary.errors import ConfigError, DocumentValidationError, HostileXmlError
from simulator.vocabulary.identifiers import (
    is_valid_bankgiro,
    is_valid_org_number,
    is_valid_plusgiro,
    is_valid_vat_number,
)
from simulator.vocabulary.rulesets import SHIPPED_RULES_DIR
from simulator.vocabulary.ubl_names import PREFIXES, ROOT_NAMESPACES
from simulator.vocabulary.xmlsafe import parse_xml

__all__ = [
    "RULES_ENV",
    "SWEDISH_RULES",
    "DocumentValidator",
    "RuleFailure",
    "ValidationReport",
    "resolve_rules_dir",
    "rules_origin",
]

RULES_ENV = "B2BSIM_RULES_DIR"

_NS = PREFIXES
_SVRL = "http://purl.oclc.org/dsdl/svrl"


@dataclass(frozen=True, slots=True)
class _DocumentRules:
    namespace: str
    xsd: str
    stylesheets: tuple[str, ...]


_EN16931 = "peppol/xslt/CEN-EN16931-UBL.xslt"
_SELF_BILLING = "peppol/xslt/PEPPOL-EN16931-UBL-SB.xslt"
_ORDER = "peppol/xslt/PEPPOLBIS-T01.xslt"
#: Root element → namespace, XSD and Schematron stylesheets, relative to the rules directory.
RULES: dict[str, _DocumentRules] = {
    "Invoice": _DocumentRules(
        ROOT_NAMESPACES["Invoice"], "ubl-2.1/maindoc/UBL-Invoice-2.1.xsd", (_EN16931, _SELF_BILLING)
    ),
    "CreditNote": _DocumentRules(
        ROOT_NAMESPACES["CreditNote"],
        "ubl-2.1/maindoc/UBL-CreditNote-2.1.xsd",
        (_EN16931, _SELF_BILLING),
    ),
    "Order": _DocumentRules(
        ROOT_NAMESPACES["Order"], "ubl-2.1/maindoc/UBL-Order-2.1.xsd", (_ORDER,)
    ),
}

_SOURCES = (
    "ubl-2.1/ from the OASIS UBL 2.1 release (os-UBL-2.1, xsd/common and xsd/maindoc); "
    "peppol/xslt/ from the OpenPeppol 2026.5 release as compiled by phax/phive-rules "
    "(phive-rules-peppol/src/main/resources/external/schematron/openpeppol/2026.5/xslt/)"
)

#: This project's Swedish checks: id → what they require.
SWEDISH_RULES = {
    "AF-SE-001": "A Swedish VAT number is SE + a 10-digit organisation number with a valid "
    "Luhn check digit + 01 (14 characters).",
    "AF-SE-002": "A Swedish organisation number (scheme 0007, and a Swedish seller's legal "
    "registration id) is 10 digits with a valid Luhn check digit.",
    "AF-SE-003": "A Swedish seller's VAT number contains its organisation number.",
    "AF-SE-004": "A Swedish seller with a VAT number states 'Godkänd för F-skatt' on "
    "invoices and credit notes.",
    "AF-SE-005": "A Swedish seller uses only the standard VAT rates 25, 12 or 6 % for category S.",
    "AF-SE-006": "A bankgiro number (SE:BANKGIRO) is 7 or 8 digits with a valid Luhn check "
    "digit, paid by credit transfer (code 30).",
    "AF-SE-007": "A plusgiro number (SE:PLUSGIRO) is 2 to 8 digits with a valid Luhn check "
    "digit, paid by credit transfer (code 30).",
}


@dataclass(frozen=True, slots=True)
class RuleFailure:
    """One broken rule: its id, how bad (fatal, warning, xsd), what and where."""

    rule_id: str
    flag: str  # "fatal" | "warning" | "xsd"
    message: str
    location: str

    @property
    def blocking(self) -> bool:
        """True if this failure makes the document invalid (fatal or XSD)."""
        return self.flag in ("fatal", "xsd")


@dataclass
class ValidationReport:
    """What validating one document found."""

    document_type: str
    failures: list[RuleFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if no fatal or XSD failure (warnings are allowed)."""
        return not any(f.blocking for f in self.failures)

    @property
    def fatal(self) -> list[RuleFailure]:
        """The failures that make the document invalid."""
        return [f for f in self.failures if f.blocking]

    def rule_ids(self) -> list[str]:
        """Distinct ids of the blocking failures, in order of first appearance."""
        return list(dict.fromkeys(f.rule_id for f in self.fatal))

    def raise_if_invalid(self) -> None:
        """Raise DocumentValidationError naming the broken rules, if any is fatal."""
        if not self.ok:
            raise DocumentValidationError(
                f"the {self.document_type} breaks {', '.join(self.rule_ids())}",
                hint="run `b2bsim validate FILE` for each rule's message and location",
            )


def rules_origin(explicit: str | os.PathLike[str] | None) -> str:
    """Where :func:`resolve_rules_dir` takes the rules from, in words."""
    if explicit is not None:
        return "from --rules"
    if os.environ.get(RULES_ENV):
        return f"from ${RULES_ENV}"
    return "shipped with b2bsim"


def resolve_rules_dir(explicit: str | os.PathLike[str] | None) -> Path:
    """The rules directory: ``explicit`` (``--rules``), else ``$B2BSIM_RULES_DIR``, else the
    copy shipped in the package.

    Missing, or lacking a schema or stylesheet, is a ConfigError that says
    where the official artefacts come from.
    """
    raw = explicit if explicit is not None else os.environ.get(RULES_ENV)
    path = Path(raw).expanduser() if raw else SHIPPED_RULES_DIR
    needed = sorted(
        {r.xsd for r in RULES.values()} | {s for r in RULES.values() for s in r.stylesheets}
    )
    missing = [rel for rel in needed if not (path / rel).is_file()]
    if missing and not raw:
        raise ConfigError(
            f"the rules shipped with b2bsim lack {', '.join(missing)} (in {path})",
            hint="reinstall b2bsim, or pass --rules DIR with a copy of the official "
            f"artefacts: {_SOURCES}",
        )
    if missing:
        raise ConfigError(
            f"rules directory {path} lacks {', '.join(missing)}",
            hint=f"point it at a copy of the official artefacts ({_SOURCES}), or unset "
            f"--rules and ${RULES_ENV} to use the copy shipped with b2bsim",
        )
    return path.resolve()


# --- compiled artefacts, once per process -----------------------------------

_lock = threading.RLock()
_schemas: dict[Path, etree.XMLSchema] = {}
_stylesheets: dict[Path, Any] = {}  # saxonche PyXsltExecutable (untyped)
_saxon: list[Any] = []  # the one PySaxonProcessor, created on first use


def _processor() -> Any:
    if not _saxon:
        _saxon.append(PySaxonProcessor(license=False))
    return _saxon[0]


def _schema(path: Path) -> etree.XMLSchema:
    schema = _schemas.get(path)
    if schema is None:
        try:
            schema = etree.XMLSchema(etree.parse(str(path)))
        except (etree.XMLSchemaParseError, etree.XMLSyntaxError, OSError) as exc:
            raise ConfigError(
                f"cannot load the schema {path}: {exc}", hint=f"restore it from {_SOURCES}"
            ) from None
        _schemas[path] = schema
    return schema


def _stylesheet(path: Path) -> Any:
    executable = _stylesheets.get(path)
    if executable is None:
        compiler = _processor().new_xslt30_processor()
        try:
            executable = compiler.compile_stylesheet(stylesheet_file=str(path))
        except Exception as exc:  # saxonche raises PySaxonApiError, not importable for typing
            raise ConfigError(
                f"cannot compile the rule set {path}: {exc}", hint=f"restore it from {_SOURCES}"
            ) from None
        if executable is None:
            raise ConfigError(
                f"cannot compile the rule set {path}", hint=f"restore it from {_SOURCES}"
            )
        _stylesheets[path] = executable
    return executable


_SAXON_STEP = re.compile(r"\*:([\w.-]+)\[namespace-uri\(\)='[^']*'\]")


def _short_path(location: str) -> str:
    """Saxon's ``/*:Invoice[namespace-uri()='…'][1]/*:ID[…][1]`` → ``/Invoice[1]/ID[1]``."""
    return _SAXON_STEP.sub(r"\1", location)


class DocumentValidator:
    """Validates orders, invoices and credit notes against one rules directory."""

    def __init__(self, rules_dir: Path) -> None:
        self.rules_dir = resolve_rules_dir(rules_dir)

    def warm_up(self) -> None:
        """Compile every schema and stylesheet now instead of on first use."""
        with _lock:
            for rules in RULES.values():
                _schema(self.rules_dir / rules.xsd)
                for sheet in rules.stylesheets:
                    _stylesheet(self.rules_dir / sheet)

    def validate(self, xml: bytes) -> ValidationReport:
        """Check ``xml`` (untrusted bytes); the type comes from its root element."""
        try:
            root = parse_xml(xml)
        except HostileXmlError as exc:
            return ValidationReport("unknown", [RuleFailure(exc.code, "fatal", str(exc), "/")])
        name = etree.QName(root)
        rules = RULES.get(name.localname)
        if rules is None or name.namespace != rules.namespace:
            known = ", ".join(f"{n} ({r.namespace})" for n, r in RULES.items())
            return ValidationReport(
                name.localname,
                [
                    RuleFailure(
                        "DOCUMENT_TYPE", "fatal", f"not a document we validate: use {known}", "/"
                    )
                ],
            )
        report = ValidationReport(name.localname)
        with _lock:
            schema = _schema(self.rules_dir / rules.xsd)
            if not schema.validate(root):
                # lxml-stubs declare _ErrorLog without its (documented) iteration.
                entries: Iterable[Any] = schema.error_log  # type: ignore[assignment]
                report.failures.extend(
                    RuleFailure("XSD", "xsd", e.message, f"{e.path} (line {e.line})")
                    for e in entries
                )
                return report
            text = etree.tostring(root, encoding="unicode")
            node = _processor().parse_xml(xml_text=text)
            for sheet in rules.stylesheets:
                svrl = _stylesheet(self.rules_dir / sheet).transform_to_string(xdm_node=node)
                report.failures.extend(_svrl_failures(svrl))
        report.failures.extend(swedish_failures(root))
        return report


def _svrl_failures(svrl: str) -> list[RuleFailure]:
    out = etree.fromstring(svrl.encode())
    failures = []
    for el in out.iter(f"{{{_SVRL}}}failed-assert", f"{{{_SVRL}}}successful-report"):
        text = " ".join((el.findtext(f"{{{_SVRL}}}text") or "").split())
        failures.append(
            RuleFailure(
                rule_id=el.get("id", "?"),
                flag=el.get("flag", "fatal"),
                message=text,
                location=_short_path(el.get("location", "")),
            )
        )
    return failures


# --- the Swedish checks ------------------------------------------------------


def _path(el: etree._Element) -> str:
    return el.getroottree().getpath(el)


def _fail(rule_id: str, el: etree._Element, value: str) -> RuleFailure:
    return RuleFailure(
        rule_id, "fatal", f"[{rule_id}]-{SWEDISH_RULES[rule_id]} Got {value!r}.", _path(el)
    )


def _xpath(el: etree._Element, path: str) -> list[etree._Element]:
    found = el.xpath(path, namespaces=_NS)
    assert isinstance(found, list)
    return [e for e in found if isinstance(e, etree._Element)]


def swedish_failures(root: etree._Element) -> list[RuleFailure]:
    """The ``AF-SE-*`` checks of Swedish identifiers, VAT rates and giro accounts."""
    failures: list[RuleFailure] = []
    for el in _xpath(root, "//cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='VAT']/cbc:CompanyID"):
        value = (el.text or "").strip()
        if value.startswith("SE") and not is_valid_vat_number(value):
            failures.append(_fail("AF-SE-001", el, value))
    for el in _xpath(root, "//*[@schemeID='0007']"):
        value = (el.text or "").strip()
        if not is_valid_org_number(value):
            failures.append(_fail("AF-SE-002", el, value))
    sellers = _xpath(
        root,
        "(cac:AccountingSupplierParty|cac:SellerSupplierParty)"
        "/cac:Party[cac:PostalAddress/cac:Country/cbc:IdentificationCode='SE']",
    )
    billing = etree.QName(root).localname in ("Invoice", "CreditNote")
    for party in sellers:
        failures.extend(_seller_failures(party, billing=billing))
    if sellers:
        failures.extend(_rate_failures(root))
        failures.extend(_giro_failures(root))
    return failures


def _seller_failures(party: etree._Element, *, billing: bool) -> list[RuleFailure]:
    failures = []
    legal = _xpath(party, "cac:PartyLegalEntity/cbc:CompanyID")
    org = (legal[0].text or "").strip() if legal else ""
    if legal and legal[0].get("schemeID") != "0007" and not is_valid_org_number(org):
        failures.append(_fail("AF-SE-002", legal[0], org))
    vats = _xpath(party, "cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='VAT']/cbc:CompanyID")
    for vat in vats:
        value = (vat.text or "").strip()
        if legal and value.startswith("SE") and value[2:12] != org:
            failures.append(_fail("AF-SE-003", vat, value))
    if billing and vats:
        f_tax = _xpath(party, "cac:PartyTaxScheme[cac:TaxScheme/cbc:ID!='VAT']/cbc:CompanyID")
        if not any(
            " ".join((e.text or "").split()).upper() == "GODKÄND FÖR F-SKATT" for e in f_tax
        ):
            failures.append(_fail("AF-SE-004", party, "no F-tax statement"))
    return failures


_SWEDISH_RATES = {Decimal(25), Decimal(12), Decimal(6)}


def _rate_failures(root: etree._Element) -> list[RuleFailure]:
    failures = []
    for cat in _xpath(
        root, "//cac:TaxCategory[cbc:ID='S']|//cac:ClassifiedTaxCategory[cbc:ID='S']"
    ):
        percent = _xpath(cat, "cbc:Percent")
        value = (percent[0].text or "").strip() if percent else ""
        try:
            ok = Decimal(value) in _SWEDISH_RATES
        except InvalidOperation:
            ok = False
        if not ok:
            failures.append(_fail("AF-SE-005", percent[0] if percent else cat, value))
    return failures


def _giro_failures(root: etree._Element) -> list[RuleFailure]:
    failures = []
    for means in _xpath(root, "//cac:PaymentMeans"):
        branch_id = means.findtext(
            "cac:PayeeFinancialAccount/cac:FinancialInstitutionBranch/cbc:ID", namespaces=_NS
        )
        branch = " ".join((branch_id or "").split())
        if branch not in ("SE:BANKGIRO", "SE:PLUSGIRO"):
            continue
        rule, check = (
            ("AF-SE-006", is_valid_bankgiro)
            if branch == "SE:BANKGIRO"
            else ("AF-SE-007", is_valid_plusgiro)
        )
        accounts = _xpath(means, "cac:PayeeFinancialAccount/cbc:ID")
        value = (accounts[0].text or "").strip() if accounts else ""
        if not check(value):
            failures.append(_fail(rule, accounts[0] if accounts else means, value))
        code = (means.findtext("cbc:PaymentMeansCode", namespaces=_NS) or "").strip()
        if code != "30":
            failures.append(_fail(rule, means, f"PaymentMeansCode {code}"))
    return failures
