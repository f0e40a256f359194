"""Document validation: XSD, the official rule sets, the Swedish checks and `b2bsim validate`."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from ka_producer.documents import DocumentFactory, GeneratedDocument, demo_sellers
from simulator import cli
from simulator.vocabulary import validation
from simulator.vocabulary.errors import ConfigError, DocumentValidationError
from simulator.vocabulary.rulesets import SHIPPED_RULES_DIR
from simulator.vocabulary.validation import (
    RULES_ENV,
    DocumentValidator,
    RuleFailure,
    ValidationReport,
    resolve_rules_dir,
    rules_origin,
)

NS = {
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}


def rules_dir() -> Path:
    """The official rule sets shipped in the package (simulator/data/rules)."""
    return SHIPPED_RULES_DIR


@pytest.fixture(scope="module")
def validator() -> DocumentValidator:
    """One validator for the module (stylesheets compile once per process anyway)."""
    return DocumentValidator(rules_dir())


@pytest.fixture(scope="module")
def chain() -> tuple[GeneratedDocument, GeneratedDocument, GeneratedDocument]:
    """An order, its invoice and a credit note from seed 7."""
    return DocumentFactory(7).chain(demo_sellers(1)[0])


def mutate(xml: bytes, change: Callable[[etree._Element], None]) -> bytes:
    """``xml`` after ``change`` edits its tree."""
    root = etree.fromstring(xml)
    change(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def set_text(path: str, value: str) -> Callable[[etree._Element], None]:
    """A change that sets the text of every element at ``path``."""

    def change(root: etree._Element) -> None:
        found = root.xpath(path, namespaces=NS)
        assert isinstance(found, list)
        assert found, f"nothing at {path}"
        for el in found:
            assert isinstance(el, etree._Element)
            el.text = value

    return change


def ids(report: ValidationReport) -> set[str]:
    """The rule ids of a report's blocking failures."""
    return set(report.rule_ids())


def copy_of_rules(dest: Path) -> Path:
    """A copy of the shipped rule sets in ``dest`` (another directory with the same files)."""
    shutil.copytree(SHIPPED_RULES_DIR, dest)
    return dest


class TestResolveRulesDir:
    """Where the rule sets come from: --rules, else $B2BSIM_RULES_DIR, else the shipped copy."""

    def test_default_is_the_shipped_copy(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With neither --rules nor $B2BSIM_RULES_DIR, the package's own copy is used."""
        monkeypatch.delenv(RULES_ENV, raising=False)
        assert resolve_rules_dir(None) == SHIPPED_RULES_DIR.resolve()
        assert rules_origin(None) == "shipped with b2bsim"
        assert SHIPPED_RULES_DIR.parts[-3:] == ("simulator", "data", "rules")

    def test_explicit(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An explicit directory with every artefact wins over the variable and the default."""
        other = copy_of_rules(tmp_path / "other")
        monkeypatch.setenv(RULES_ENV, str(SHIPPED_RULES_DIR))
        assert resolve_rules_dir(other) == other.resolve()
        assert rules_origin(other) == "from --rules"

    def test_env(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without --rules, $B2BSIM_RULES_DIR wins over the shipped copy."""
        other = copy_of_rules(tmp_path / "other")
        monkeypatch.setenv(RULES_ENV, str(other))
        assert resolve_rules_dir(None) == other.resolve()
        assert rules_origin(None) == f"from ${RULES_ENV}"

    def test_incomplete(self, tmp_path: Path) -> None:
        """A directory without the artefacts is a ConfigError listing what is missing."""
        with pytest.raises(ConfigError, match=r"CEN-EN16931-UBL\.xslt") as info:
            resolve_rules_dir(tmp_path)
        assert "OASIS UBL 2.1" in str(info.value)
        assert "phive-rules" in str(info.value)
        assert "shipped with b2bsim" in str(info.value)

    def test_shipped_copy_damaged(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A shipped copy that lost a file says so, and to reinstall."""
        broken = copy_of_rules(tmp_path / "rules")
        (broken / "peppol" / "xslt" / "PEPPOLBIS-T01.xslt").unlink()
        monkeypatch.setattr(validation, "SHIPPED_RULES_DIR", broken)
        monkeypatch.delenv(RULES_ENV, raising=False)
        with pytest.raises(ConfigError, match=r"shipped with b2bsim lack .*PEPPOLBIS-T01") as info:
            resolve_rules_dir(None)
        assert "reinstall b2bsim" in str(info.value)


class TestOfficialExamples:
    """The official OpenPeppol examples pass the official rules."""

    def test_order_example_valid(self, validator: DocumentValidator) -> None:
        """Order_Example.xml has no fatal failure."""
        report = validator.validate((rules_dir() / "examples" / "Order_Example.xml").read_bytes())
        assert report.document_type == "Order"
        assert report.ok, report.failures

    @pytest.mark.parametrize("name", ["SB-base-example.xml", "SB-base-creditnote-correction.xml"])
    def test_self_billing_examples_only_fail_swedish_vat(
        self, validator: DocumentValidator, name: str
    ) -> None:
        """The SB examples pass every Peppol rule; only our check refuses their fake SE VAT id."""
        report = validator.validate((rules_dir() / "examples" / name).read_bytes())
        assert ids(report) == {"AF-SE-001"}
        (failure,) = report.fatal
        assert "SE4598375937" in failure.message
        assert "AccountingCustomerParty" in failure.location


class TestGeneratedDocuments:
    """Generated documents pass; deliberately broken ones fail with the right rule id."""

    def test_chain_valid(
        self,
        validator: DocumentValidator,
        chain: tuple[GeneratedDocument, GeneratedDocument, GeneratedDocument],
    ) -> None:
        """Order, invoice and credit note have no fatal failure."""
        for doc in chain:
            report = validator.validate(doc.xml)
            assert report.ok, (doc.document_id, report.failures)
            assert report.document_type == doc.message_type.document_root

    @pytest.mark.parametrize(
        "case",
        [
            (1, "cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount", "1.00", "BR-CO-15"),
            (2, "cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount", "1.00", "BR-CO-15"),
            (1, "cac:LegalMonetaryTotal/cbc:LineExtensionAmount", "1.00", "BR-CO-10"),
            (1, "cac:TaxTotal/cbc:TaxAmount", "1.00", "BR-CO-14"),
            (1, "cac:InvoiceLine[1]/cbc:LineExtensionAmount", "1.00", "PEPPOL-EN16931-R120"),
            (0, "cac:AnticipatedMonetaryTotal/cbc:LineExtensionAmount", "1.00", "PEPPOL-T01-R008"),
            (1, "cbc:InvoiceTypeCode", "380", "PEPPOL-EN16931-P0100"),
            (2, "cbc:CreditNoteTypeCode", "381", "PEPPOL-EN16931-P0101"),
            (
                1,
                "cac:AccountingSupplierParty/cac:Party/cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='VAT']"
                "/cbc:CompanyID",
                "SE556012579101",
                "AF-SE-001",
            ),
            (
                2,
                "cac:AccountingSupplierParty/cac:Party/cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='VAT']"
                "/cbc:CompanyID",
                "SE202100211401",
                "AF-SE-003",
            ),
            (
                0,
                "cac:SellerSupplierParty/cac:Party/cbc:EndpointID",
                "5520000002",
                "AF-SE-002",
            ),
            (
                1,
                "cac:AccountingSupplierParty/cac:Party/cac:PartyLegalEntity/cbc:CompanyID",
                "5520000002",
                "PEPPOL-COMMON-R049",
            ),
            (
                1,
                "cac:AccountingSupplierParty/cac:Party/cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='TAX']"
                "/cbc:CompanyID",
                "Innehar F-skatt",
                "AF-SE-004",
            ),
            (1, "cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID", "50501056", "AF-SE-006"),
            (1, "cac:PaymentMeans/cbc:PaymentMeansCode", "31", "AF-SE-006"),
        ],
    )
    def test_broken_document_refused(
        self,
        validator: DocumentValidator,
        chain: tuple[GeneratedDocument, GeneratedDocument, GeneratedDocument],
        case: tuple[int, str, str, str],
    ) -> None:
        """One wrong value makes the document invalid with the named rule id."""
        index, path, value, rule = case
        report = validator.validate(mutate(chain[index].xml, set_text(path, value)))
        assert not report.ok
        assert rule in ids(report), report.failures

    def test_plusgiro_checked(
        self,
        validator: DocumentValidator,
        chain: tuple[GeneratedDocument, GeneratedDocument, GeneratedDocument],
    ) -> None:
        """A plusgiro account with a wrong check digit fails AF-SE-007."""
        xml = mutate(
            chain[1].xml,
            set_text("cac:PaymentMeans//cac:FinancialInstitutionBranch/cbc:ID", "SE:PLUSGIRO"),
        )
        xml = mutate(xml, set_text("cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID", "9001224"))
        assert ids(validator.validate(xml)) == {"AF-SE-007"}

    def test_non_swedish_rate(
        self,
        validator: DocumentValidator,
        chain: tuple[GeneratedDocument, GeneratedDocument, GeneratedDocument],
    ) -> None:
        """A standard rate other than 25, 12 or 6 % fails AF-SE-005 (and the VAT arithmetic)."""
        xml = mutate(
            chain[1].xml,
            set_text("//cac:ClassifiedTaxCategory[cbc:ID='S']/cbc:Percent", "20"),
        )
        xml = mutate(xml, set_text("//cac:TaxCategory[cbc:ID='S']/cbc:Percent", "20"))
        assert "AF-SE-005" in ids(validator.validate(xml))

    def test_xsd_failure(
        self,
        validator: DocumentValidator,
        chain: tuple[GeneratedDocument, GeneratedDocument, GeneratedDocument],
    ) -> None:
        """An element in the wrong place fails the XSD, with a location, and stops there."""

        def misplace(root: etree._Element) -> None:
            issue = root.find("cbc:IssueDate", NS)
            assert issue is not None
            root.append(issue)

        report = validator.validate(mutate(chain[1].xml, misplace))
        assert {f.flag for f in report.failures} == {"xsd"}
        assert ids(report) == {"XSD"}
        assert "IssueDate" in report.failures[0].message
        assert "line" in report.failures[0].location

    def test_hostile_xml(self, validator: DocumentValidator) -> None:
        """A DOCTYPE is refused by the hardened parser, as a failure, not a traceback."""
        xml = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><Invoice>&a;</Invoice>'
        report = validator.validate(xml)
        assert not report.ok
        assert ids(report) == {"XML_DOCTYPE"}

    def test_unknown_document_type(self, validator: DocumentValidator) -> None:
        """A root element that is not Order, Invoice or CreditNote is DOCUMENT_TYPE."""
        report = validator.validate(b"<Catalogue/>")
        assert ids(report) == {"DOCUMENT_TYPE"}
        assert "Invoice" in report.failures[0].message


class TestReport:
    """ValidationReport's verdict."""

    def test_warnings_are_ok(self) -> None:
        """Warnings alone leave a document valid; fatal and XSD failures do not."""
        warn = RuleFailure("X-1", "warning", "w", "/")
        assert ValidationReport("Invoice", [warn]).ok
        assert not ValidationReport("Invoice", [warn, RuleFailure("XSD", "xsd", "x", "/")]).ok
        assert not ValidationReport("Invoice", [RuleFailure("BR-1", "fatal", "f", "/")]).ok

    def test_raise_if_invalid(self) -> None:
        """An invalid report raises DocumentValidationError naming the rule ids."""
        report = ValidationReport("Invoice", [RuleFailure("BR-CO-15", "fatal", "f", "/")])
        with pytest.raises(DocumentValidationError, match="BR-CO-15"):
            report.raise_if_invalid()
        ValidationReport("Invoice", []).raise_if_invalid()


class TestCompileOnce:
    """Stylesheets and schemas compile once per process, shared by every validator."""

    def test_second_validator_reuses(
        self,
        validator: DocumentValidator,
        chain: tuple[GeneratedDocument, GeneratedDocument, GeneratedDocument],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """After one validation, a new validator compiles nothing and reuses the executables."""
        validator.validate(chain[0].xml)
        validator.validate(chain[1].xml)
        compiled = dict(validation._stylesheets)

        def no_compile(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("compiled again")

        monkeypatch.setattr(validation, "PySaxonProcessor", no_compile)
        monkeypatch.setattr(etree, "XMLSchema", no_compile)
        again = DocumentValidator(rules_dir())
        assert again.validate(chain[1].xml).ok
        assert again.validate(chain[0].xml).ok
        assert all(validation._stylesheets[p] is exe for p, exe in compiled.items())


def run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``b2bsim`` with only the validate and documents commands registered."""
    monkeypatch.setattr(cli, "COMMANDS", ["documents", "validate"])
    return cli.main(argv)


class TestValidateCommand:
    """``b2bsim validate FILE...``."""

    def test_valid_files(
        self,
        tmp_path: Path,
        chain: tuple[GeneratedDocument, GeneratedDocument, GeneratedDocument],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Valid documents exit 0 with a summary line."""
        files = []
        for doc in chain:
            files.append(tmp_path / f"{doc.document_id}.xml")
            files[-1].write_bytes(doc.xml)
        code = run_cli(["validate", "--rules", str(rules_dir()), *map(str, files)], monkeypatch)
        out = capsys.readouterr().out
        assert code == 0
        assert "3 documents: 3 valid, 0 invalid" in out

    def test_invalid_file(
        self,
        tmp_path: Path,
        chain: tuple[GeneratedDocument, GeneratedDocument, GeneratedDocument],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A fatal failure exits 1 and prints rule id, message and location."""
        bad = tmp_path / "bad.xml"
        bad.write_bytes(
            mutate(
                chain[1].xml,
                set_text("cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount", "1.00"),
            )
        )
        monkeypatch.delenv(RULES_ENV, raising=False)
        code = run_cli(["validate", str(bad)], monkeypatch)
        out = capsys.readouterr().out
        assert code == 1
        assert re.search(r"fatal\s+BR-CO-15\s+\[BR-CO-15\]", out)
        assert "at /Invoice[1]/LegalMonetaryTotal[1]" in out
        assert "1 documents: 0 valid, 1 invalid" in out

    def test_rules_dir_override(
        self,
        tmp_path: Path,
        chain: tuple[GeneratedDocument, GeneratedDocument, GeneratedDocument],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """$B2BSIM_RULES_DIR replaces the shipped rules: an incomplete one exits 2 naming it."""
        doc = tmp_path / "order.xml"
        doc.write_bytes(chain[0].xml)
        monkeypatch.setenv(RULES_ENV, str(tmp_path / "empty"))
        code = run_cli(["validate", str(doc)], monkeypatch)
        assert code == 2
        err = capsys.readouterr().err
        assert "error [CONFIG]" in err
        assert str(tmp_path / "empty") in err

    def test_missing_file(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A file that does not exist exits 2 naming it."""
        code = run_cli(
            ["validate", "--rules", str(rules_dir()), str(tmp_path / "no.xml")], monkeypatch
        )
        assert code == 2
        assert "no.xml" in capsys.readouterr().err
