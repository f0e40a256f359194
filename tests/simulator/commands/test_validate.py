"""`b2bsim validate` with the rule sets shipped in the package: no option needed, --version."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from simulator import cli
from simulator.vocabulary.rulesets import SHIPPED_RULES_DIR
from simulator.vocabulary.validation import RULES_ENV


def b2bsim(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``b2bsim`` in-process, with only the documents and validate commands registered."""
    monkeypatch.setattr(cli, "COMMANDS", ["documents", "validate"])
    return cli.main(argv)


@pytest.fixture
def no_rules_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither --rules nor $B2BSIM_RULES_DIR: what a new user has."""
    monkeypatch.delenv(RULES_ENV, raising=False)


@pytest.mark.usefixtures("no_rules_env")
class TestGeneratedChainWithoutOptions:
    """`b2bsim documents generate --type chain --count 1 --seed 1` then `b2bsim validate`."""

    @pytest.fixture
    def docs(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> list[Path]:
        """The three documents of one generated chain, as files."""
        out = tmp_path / "d"
        argv = ["documents", "generate", "--type", "chain", "--count", "1", "--seed", "1"]
        assert b2bsim([*argv, "--out", str(out)], monkeypatch) == 0
        capsys.readouterr()
        files = sorted(out.glob("*.xml"))
        assert [f.name[:5] for f in files] == ["AF-IO", "AF-KR", "AF-SF"]
        return files

    def test_passes_with_no_option(
        self,
        docs: list[Path],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The order, invoice and credit note are valid against the shipped rules: exit 0."""
        code = b2bsim(["validate", *map(str, docs)], monkeypatch)
        out = capsys.readouterr().out
        assert code == 0, out
        assert "3 documents: 3 valid, 0 invalid (0 fatal failures, 0 warnings)" in out

    def test_changed_amount_fails_with_the_rule_id(
        self,
        docs: list[Path],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """One öre more to pay on the invoice breaks BR-CO-16: exit 1, the rule id printed."""
        invoice = docs[2]
        text = invoice.read_text(encoding="utf-8")
        payable = re.compile(r'(<cbc:PayableAmount currencyID="SEK">)(\d+)\.(\d\d)<')
        match = payable.search(text)
        assert match is not None
        more = f"{match.group(2)}.{int(match.group(3)) + 1:02d}"
        invoice.write_text(payable.sub(rf"\g<1>{more}<", text, count=1), encoding="utf-8")
        code = b2bsim(["validate", *map(str, docs)], monkeypatch)
        out = capsys.readouterr().out
        assert code == 1
        assert re.search(rf"{re.escape(str(invoice))}: Invoice INVALID \(1 fatal", out), out
        assert re.search(r"fatal\s+BR-CO-16\s+\[BR-CO-16\]", out)
        assert "3 documents: 2 valid, 1 invalid" in out


@pytest.mark.usefixtures("no_rules_env")
class TestVersion:
    """`b2bsim validate --version` names the rule sets in use and their directory."""

    def test_shipped_releases(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without FILE: the shipped directory and every release, exit 0."""
        assert b2bsim(["validate", "--version"], monkeypatch) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0] == f"rules: {SHIPPED_RULES_DIR} (shipped with b2bsim)"
        for expected in (
            "UBL 2.1 XSD: OASIS Standard os-UBL-2.1",
            "EN 16931 business rules: OpenPeppol 2026.5",
            "Peppol BIS Self-Billing 3.0: OpenPeppol 2026.5",
            "Peppol BIS Order T01: OpenPeppol 2026.5",
            "SBDH 1.3 XSD: Standard Business Document Header 1.3",
            "AF-SE-001 to AF-SE-007",
        ):
            assert expected in out, out
        assert "not the shipped" not in out

    def test_override_with_a_newer_rule_set(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """--rules DIR whose T01 differs: named as not the shipped release, with its own title."""
        other = tmp_path / "rules"
        shutil.copytree(SHIPPED_RULES_DIR, other)
        t01 = other / "peppol" / "xslt" / "PEPPOLBIS-T01.xslt"
        t01.write_bytes(
            t01.read_bytes().replace(
                b"Peppol Order transaction 3.7", b"Peppol Order transaction 3.8"
            )
        )
        assert b2bsim(["validate", "--version", "--rules", str(other)], monkeypatch) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0] == f"rules: {other.resolve()} (from --rules)"
        assert (
            "Peppol BIS Order T01: not the shipped OpenPeppol 2026.5 files "
            "(peppol/xslt/PEPPOLBIS-T01.xslt: Rules for Peppol Order transaction 3.8)"
        ) in out
        assert "Peppol BIS Self-Billing 3.0: OpenPeppol 2026.5, for" in out

    def test_version_then_files(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """--version with FILEs names the rules, then checks the files as usual."""
        doc = tmp_path / "order.xml"
        shutil.copy(SHIPPED_RULES_DIR / "examples" / "Order_Example.xml", doc)
        assert b2bsim(["validate", "--version", str(doc)], monkeypatch) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"rules: {SHIPPED_RULES_DIR}")
        assert "1 documents: 1 valid, 0 invalid" in out

    def test_no_file_is_a_usage_error(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Neither FILE nor --version: exit 2, one line saying what to pass."""
        assert b2bsim(["validate"], monkeypatch) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            "error [CONFIG]: no FILE to validate — name the XML documents to check "
            "(--version names the rule sets in use)"
        ]
