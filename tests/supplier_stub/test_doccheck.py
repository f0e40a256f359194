"""The stub's document check: on by default with the shipped rule sets, off with --no-validate."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from lxml import etree

from ka_producer.documents import DocumentFactory, demo_sellers
from simulator.cli import build_parser
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.rulesets import SHIPPED_RULES_DIR
from simulator.vocabulary.validation import RULES_ENV
from supplier_stub import document_check_for

CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"


def order_xml(*, broken: bool) -> bytes:
    """A generated order; ``broken``: its line total no longer adds up (PEPPOL-T01-R008)."""
    xml = DocumentFactory(3).order(demo_sellers(1)[0]).xml
    if not broken:
        return xml
    root = etree.fromstring(xml)
    (total,) = root.iterfind(f"{{*}}AnticipatedMonetaryTotal/{{{CBC}}}LineExtensionAmount")
    total.text = "1.00"
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class TestDocumentCheckFor:
    def test_validates_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """No rules and no $B2BSIM_RULES_DIR: the shipped rules refuse a broken order."""
        monkeypatch.delenv(RULES_ENV, raising=False)
        check = document_check_for(None)
        assert check is not None

        async def both() -> tuple[list[str], list[str]]:
            return await check(order_xml(broken=False)), await check(order_xml(broken=True))

        good, bad = asyncio.run(both())
        assert good == []
        assert "PEPPOL-T01-R008" in bad

    def test_off_with_validate_false(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """validate=False (``--no-validate``) is no check at all, whatever the rules say."""
        monkeypatch.setenv(RULES_ENV, str(SHIPPED_RULES_DIR))
        assert document_check_for(None, validate=False) is None
        assert document_check_for(str(SHIPPED_RULES_DIR), validate=False) is None

    def test_rules_override(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An explicit rules directory is the one used: a broken copy is refused at start."""
        monkeypatch.delenv(RULES_ENV, raising=False)
        broken = tmp_path / "rules"
        shutil.copytree(SHIPPED_RULES_DIR, broken)
        (broken / "peppol" / "xslt" / "PEPPOLBIS-T01.xslt").unlink()
        with pytest.raises(ConfigError, match="PEPPOLBIS-T01"):
            document_check_for(str(broken))


class TestServeOptions:
    """`b2bsim serve supplier-stub`'s switches for the document rules."""

    def test_default_validates(self) -> None:
        """Without an option the stub validates, with the default rules."""
        args = build_parser().parse_args(["serve", "supplier-stub"])
        assert args.validate is True
        assert args.rules is None

    def test_no_validate(self) -> None:
        """--no-validate turns the check off."""
        args = build_parser().parse_args(["serve", "supplier-stub", "--no-validate"])
        assert args.validate is False

    def test_rules_and_no_validate_exclude_each_other(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--rules DIR with --no-validate is a usage error (exit 2) naming both."""
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(["serve", "supplier-stub", "--rules", "x", "--no-validate"])
        assert info.value.code == 2
        assert "--no-validate: not allowed with argument --rules" in capsys.readouterr().err
