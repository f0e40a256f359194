"""The official rule sets b2bsim ships, and which of them a rules directory holds.

The package carries an unchanged copy of the OASIS UBL 2.1 XSD, the OpenPeppol
2026.5 compiled Schematron, the SBDH 1.3 XSD and the official examples under
``simulator/data/rules/`` (its ``NOTICE`` names the source, version and
licence of each; ``SHA256SUMS`` lists every file's SHA-256).  ``--rules DIR``
or ``$B2BSIM_RULES_DIR`` replace it, for instance by a newer OpenPeppol
release; :func:`describe` then says which files are still the shipped ones.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MANIFEST",
    "RULE_SETS",
    "SHIPPED_RULES_DIR",
    "RuleSet",
    "describe",
    "read_manifest",
    "sha256_of",
]

#: The copy of the official artefacts inside the package.
SHIPPED_RULES_DIR = Path(__file__).resolve().parent.parent / "data" / "rules"
#: ``sha256sum`` format: one ``<hex digest>  <path relative to the folder>`` a line.
MANIFEST = "SHA256SUMS"


@dataclass(frozen=True, slots=True)
class RuleSet:
    """One official rule set: its name and release, and its files in a rules directory."""

    name: str
    release: str
    files: tuple[str, ...]
    used_for: str


RULE_SETS = (
    RuleSet(
        "UBL 2.1 XSD",
        "OASIS Standard os-UBL-2.1, 4 November 2013",
        (
            "ubl-2.1/maindoc/UBL-Order-2.1.xsd",
            "ubl-2.1/maindoc/UBL-Invoice-2.1.xsd",
            "ubl-2.1/maindoc/UBL-CreditNote-2.1.xsd",
        ),
        "the schema of orders, invoices and credit notes",
    ),
    RuleSet(
        "EN 16931 business rules",
        "OpenPeppol 2026.5",
        ("peppol/xslt/CEN-EN16931-UBL.xslt",),
        "invoices and credit notes",
    ),
    RuleSet(
        "Peppol BIS Self-Billing 3.0",
        "OpenPeppol 2026.5",
        ("peppol/xslt/PEPPOL-EN16931-UBL-SB.xslt",),
        "invoices and credit notes",
    ),
    RuleSet(
        "Peppol BIS Order T01",
        "OpenPeppol 2026.5",
        ("peppol/xslt/PEPPOLBIS-T01.xslt",),
        "orders",
    ),
    RuleSet(
        "SBDH 1.3 XSD",
        "Standard Business Document Header 1.3",
        ("sbdh/StandardBusinessDocumentHeader.xsd",),
        "the envelope's header (checked by the tests)",
    ),
)


def read_manifest(folder: Path = SHIPPED_RULES_DIR) -> dict[str, str]:
    """``folder``'s manifest: relative path → SHA-256 (hex)."""
    entries = {}
    for line in (folder / MANIFEST).read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            entries[name.lstrip("*")] = digest
    return entries


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


_TITLE = re.compile(rb'<svrl:schematron-output[^>]*\btitle="([^"]*)"')


def _title(path: Path) -> str:
    """A compiled Schematron's own title (what a newer release calls itself)."""
    found = _TITLE.search(path.read_bytes())
    return found.group(1).decode("utf-8", "replace") if found else "no title"


def describe(rules_dir: Path) -> list[str]:
    """One line per rule set: what ``rules_dir`` holds, and whether it is the shipped release."""
    shipped = read_manifest()
    lines = []
    for rule_set in RULE_SETS:
        present = [f for f in rule_set.files if (rules_dir / f).is_file()]
        if not present:
            lines.append(f"{rule_set.name}: not in {rules_dir} ({rule_set.used_for})")
            continue
        changed = [f for f in present if sha256_of(rules_dir / f) != shipped.get(f)]
        if changed:
            titles = "; ".join(
                f"{f}: {_title(rules_dir / f)}" if f.endswith(".xslt") else f for f in changed
            )
            release = f"not the shipped {rule_set.release} files ({titles})"
        else:
            release = rule_set.release
        lines.append(f"{rule_set.name}: {release}, for {rule_set.used_for}")
    return lines
