"""The official rule sets shipped in the package: manifest, NOTICE, packaging, and the reference."""

from __future__ import annotations

import glob
import hashlib
import os
import tomllib
from pathlib import Path

import pytest

from simulator.vocabulary.rulesets import (
    MANIFEST,
    RULE_SETS,
    SHIPPED_RULES_DIR,
    describe,
    read_manifest,
    sha256_of,
)

REPO = Path(__file__).resolve().parents[3]
#: The reference copy beside the clone (or beside a folder holding it, as for a git
#: worktree) on the project's machines; absent in a user's clone.
REFERENCE = next(
    (d / "shared" / "validation" for d in REPO.parents if (d / "shared" / "validation").is_dir()),
    REPO.parent / "shared" / "validation",
)
COMPOSE_SCHEMA_DIR = REPO / "tests" / "compose"
#: The folders of the reference that the package ships, in the same layout.
SHIPPED_FOLDERS = ("ubl-2.1/common", "ubl-2.1/maindoc", "peppol/xslt", "sbdh", "examples")
OURS = {"NOTICE", MANIFEST}


def files_under(folder: Path) -> set[str]:
    """Every file below ``folder``, as a path relative to it."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


class TestManifest:
    """SHA256SUMS lists every shipped artefact, with its real hash."""

    def test_every_file_is_listed_and_nothing_else(self) -> None:
        """The manifest names exactly the files of the folder (but NOTICE and itself)."""
        assert set(read_manifest()) == files_under(SHIPPED_RULES_DIR) - OURS

    def test_hashes_match(self) -> None:
        """Each file's SHA-256, recomputed, is the one in the manifest."""
        manifest = read_manifest()
        assert len(manifest) == 31
        wrong = [n for n, d in manifest.items() if sha256_of(SHIPPED_RULES_DIR / n) != d]
        assert wrong == []

    def test_the_check_catches_a_change(self, tmp_path: Path) -> None:
        """A file changed by one byte no longer matches its manifest line."""
        name = "peppol/xslt/PEPPOLBIS-T01.xslt"
        changed = tmp_path / "t01.xslt"
        changed.write_bytes((SHIPPED_RULES_DIR / name).read_bytes() + b" ")
        assert sha256_of(changed) != read_manifest()[name]

    def test_layout_is_the_reference_layout(self) -> None:
        """The same sub-folders as shared/validation, and every rule set's files are there."""
        folders = {str(Path(n).parent.as_posix()) for n in read_manifest()}
        assert folders == set(SHIPPED_FOLDERS)
        for rule_set in RULE_SETS:
            for name in rule_set.files:
                assert (SHIPPED_RULES_DIR / name).is_file(), name

    def test_compose_schema_manifest(self) -> None:
        """The compose schema the tests ship matches its own SHA256SUMS line."""
        (line,) = (COMPOSE_SCHEMA_DIR / MANIFEST).read_text(encoding="utf-8").splitlines()
        digest, name = line.split()
        assert name == "compose-spec.json"
        data = (COMPOSE_SCHEMA_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest


class TestNotice:
    """The NOTICE names the source, version and licence of each shipped folder."""

    def test_names_each_folder_source_commit_and_licence(self) -> None:
        """Every folder, its upstream repository and commit, and a licence paragraph."""
        notice = (SHIPPED_RULES_DIR / "NOTICE").read_text(encoding="utf-8")
        for needed in (
            "ubl-2.1/common/, ubl-2.1/maindoc/",
            "peppol/xslt/",
            "sbdh/",
            "examples/",
            "kduvekot/ubl-release-package",
            "69d9f20189fe7fa551dcc59f17d8480e70cda970",
            "phax/phive-rules",
            "432f0e9a8cff5c03d06625abe7a5fd8e7e346a64",
            "anskaffelser/ehf-schemas",
            "081194bcb18f5c6e8cde0cee9aac840104260aa7",
            "os-UBL-2.1",
            "OpenPeppol 2026.5",
            "SBDH) 1.3",
            "EUPL",
            "Copyright (c) OASIS Open 2013",
        ):
            assert needed in notice, needed
        assert notice.count("Licence:") == 4

    def test_every_shipped_file_is_named(self) -> None:
        """Each file of peppol/xslt and examples appears by name in the NOTICE."""
        notice = (SHIPPED_RULES_DIR / "NOTICE").read_text(encoding="utf-8")
        for name in read_manifest():
            if name.startswith(("peppol/", "examples/")):
                assert Path(name).name in notice, name

    def test_top_level_notice_points_to_it(self) -> None:
        """The repository's NOTICE names both shipped third-party folders."""
        top = (REPO / "NOTICE").read_text(encoding="utf-8")
        assert "simulator/data/rules/" in top
        assert "tests/compose/compose-spec.json" in top


class TestPackaging:
    """pyproject's package-data globs reach every shipped file (so a wheel has them)."""

    def test_globs_cover_every_data_file(self) -> None:
        """Each file under simulator/data/ matches a package-data pattern of `simulator`."""
        config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
        patterns = config["tool"]["setuptools"]["package-data"]["simulator"]
        package = REPO / "simulator"
        matched = {
            Path(p).relative_to(package).as_posix()
            for pattern in patterns
            for p in glob.glob(str(package / pattern), recursive=True)
            if Path(p).is_file()
        }
        data = {f"data/{n}" for n in files_under(package / "data")}
        assert {f"data/rules/{n}" for n in read_manifest()} <= data
        assert data - matched == set()


class TestDescribe:
    """What `b2bsim validate --version` prints for a directory."""

    def test_missing_rule_set(self, tmp_path: Path) -> None:
        """A directory without the SBDH says so instead of naming a release."""
        lines = describe(tmp_path)
        assert len(lines) == len(RULE_SETS)
        assert lines[-1].startswith(f"SBDH 1.3 XSD: not in {tmp_path}")


@pytest.fixture
def reference() -> Path:
    """../shared/validation: CI always has it beside the clone, so there its absence fails;
    a user's clone has none, and there the comparison has nothing to compare with."""
    if not REFERENCE.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but no reference copy at {REFERENCE} beside this clone")
        pytest.skip(f"no reference copy at {REFERENCE} beside this clone")
    return REFERENCE


@pytest.mark.usefixtures("reference")
class TestIdenticalToTheReference:
    """On the project's machines: the shipped copies are byte for byte ../shared/validation."""

    def test_rules_identical(self) -> None:
        """Same file names in the shipped folders, and the same bytes."""
        reference = {
            n
            for n in files_under(REFERENCE)
            if n.startswith(tuple(f + "/" for f in SHIPPED_FOLDERS))
        }
        assert set(read_manifest()) == reference
        differ = [
            n
            for n in reference
            if (REFERENCE / n).read_bytes() != (SHIPPED_RULES_DIR / n).read_bytes()
        ]
        assert differ == []

    def test_compose_schema_identical(self) -> None:
        """tests/compose/compose-spec.json is the reference's compose/compose-spec.json."""
        ours = (COMPOSE_SCHEMA_DIR / "compose-spec.json").read_bytes()
        assert ours == (REFERENCE / "compose" / "compose-spec.json").read_bytes()
