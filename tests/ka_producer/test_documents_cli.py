"""``b2bsim documents generate``: files named by id, linked chains, same seed same bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from simulator import cli

NS = {"cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"}


def run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``b2bsim`` with only the documents command registered."""
    monkeypatch.setattr(cli, "COMMANDS", ["documents"])
    return cli.main(argv)


def generate(out: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    """Run ``documents generate --out OUT`` with ``extra`` options."""
    return run_cli(["documents", "generate", "--out", str(out), *extra], monkeypatch)


class TestGenerate:
    """Writing documents to a directory."""

    @pytest.mark.parametrize(
        ("doc_type", "root"), [("order", "Order"), ("invoice", "Invoice"), ("credit", "CreditNote")]
    )
    def test_one_file_per_document(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doc_type: str, root: str
    ) -> None:
        """N documents of the type, each in <id>.xml."""
        assert generate(tmp_path, monkeypatch, "--type", doc_type, "--count", "4") == 0
        files = sorted(tmp_path.iterdir())
        assert len(files) == 4
        for path in files:
            doc = etree.parse(str(path)).getroot()
            assert etree.QName(doc).localname == root
            assert path.name == f"{doc.findtext('cbc:ID', namespaces=NS)}.xml"

    def test_chain(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--type chain writes order, invoice and credit note per chain."""
        assert generate(tmp_path, monkeypatch, "--type", "chain", "--count", "2") == 0
        names = sorted(p.name for p in tmp_path.iterdir())
        assert len(names) == 6
        assert sum(n.startswith("AF-IO-") for n in names) == 2
        assert sum(n.startswith("AF-SF-") for n in names) == 2
        assert sum(n.startswith("AF-KR-") for n in names) == 2
        assert "wrote 6 documents" in capsys.readouterr().out

    def test_same_seed_same_bytes(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Two runs with one seed write identical files."""
        for sub in ("a", "b"):
            generate(tmp_path / sub, monkeypatch, "--type", "chain", "--count", "3", "--seed", "9")
        a = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
        b = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
        assert a == b

    def test_org_number(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """--org-number ORG=NAME makes documents for that seller."""
        generate(tmp_path, monkeypatch, "--type", "invoice", "--org-number", "556012-5790=Volvo AB")
        (path,) = tmp_path.iterdir()
        assert b"<cbc:RegistrationName>Volvo AB</cbc:RegistrationName>" in path.read_bytes()
        assert b"SE556012579001" in path.read_bytes()

    @pytest.mark.parametrize(
        "extra",
        [
            ["--count", "0"],
            ["--org-number", "5560125791"],
            ["--suppliers", "0"],
            ["--seed", "-3"],
        ],
    )
    def test_bad_input(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        extra: list[str],
    ) -> None:
        """Bad counts, organisation numbers and seeds exit 2 with a one-line error."""
        assert generate(tmp_path, monkeypatch, "--type", "order", *extra) == 2
        assert capsys.readouterr().err.startswith("error [CONFIG]")

    def test_unwritable_out(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An --out that is a file exits 2 saying so."""
        blocker = tmp_path / "file"
        blocker.write_text("x")
        assert generate(blocker, monkeypatch, "--type", "order") == 2
        assert "cannot write" in capsys.readouterr().err
