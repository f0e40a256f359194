"""``b2bsim validate FILE...``: check documents against the UBL XSD, the Peppol rules and ours."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.rulesets import describe
from simulator.vocabulary.validation import (
    RULES_ENV,
    SWEDISH_RULES,
    DocumentValidator,
    resolve_rules_dir,
    rules_origin,
)


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Declare ``validate``."""
    parser = subparsers.add_parser(
        "validate",
        help="validate orders, invoices and credit notes against the official rules",
        description=(
            "Validate each FILE against the UBL 2.1 XSD, then the official Schematron "
            "(EN 16931 + Peppol Self-Billing for Invoice/CreditNote, Peppol T01 for Order) "
            "and the Swedish identifier checks AF-SE-*. Exit 1 if any file has a fatal failure."
        ),
    )
    parser.add_argument(
        "--rules",
        metavar="DIR",
        help=f"directory with ubl-2.1/ and peppol/xslt/ (default: ${RULES_ENV}, "
        "else the official rule sets shipped with b2bsim)",
    )
    parser.add_argument("--no-warnings", action="store_true", help="do not list warnings")
    parser.add_argument(
        "--version",
        action="store_true",
        help="name the rule sets in use (releases and directory), then check any FILE",
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="XML documents to check")
    parser.set_defaults(func=run)


def print_versions(rules: str | None) -> None:
    """The rules directory in use, and each rule set's release in it."""
    rules_dir = resolve_rules_dir(rules)
    print(f"rules: {rules_dir} ({rules_origin(rules)})")
    for line in describe(rules_dir):
        print(f"  {line}")
    first, *_, last = SWEDISH_RULES
    print(f"  {first} to {last}: this project's Swedish identifier checks")


def run(args: argparse.Namespace) -> int:
    """Validate every file; print each failure's rule id, message and location."""
    if args.version:
        print_versions(args.rules)
        if not args.files:
            return 0
    if not args.files:
        raise ConfigError(
            "no FILE to validate",
            hint="name the XML documents to check (--version names the rule sets in use)",
        )
    validator = DocumentValidator(resolve_rules_dir(args.rules))
    paths = [Path(f) for f in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"no such file: {', '.join(missing)}", hint="pass XML files to validate")
    invalid = fatal = warnings = 0
    for path in paths:
        report = validator.validate(path.read_bytes())
        shown = [f for f in report.failures if f.blocking or not args.no_warnings]
        n_fatal = len(report.fatal)
        n_warn = len(report.failures) - n_fatal
        verdict = "valid" if report.ok else "INVALID"
        print(f"{path}: {report.document_type} {verdict} ({n_fatal} fatal, {n_warn} warnings)")
        for f in shown:
            print(f"  {f.flag:<7} {f.rule_id}  {f.message}\n          at {f.location}")
        invalid += not report.ok
        fatal += n_fatal
        warnings += n_warn
    print(
        f"{len(paths)} documents: {len(paths) - invalid} valid, {invalid} invalid "
        f"({fatal} fatal failures, {warnings} warnings)"
    )
    return 1 if invalid else 0
