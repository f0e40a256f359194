"""``b2bsim scenario check FILE...`` and ``b2bsim scenario list``: the scenario library's checks.

``check`` reads each file against the JSON Schema of the language
(``simulator/data/scenario.schema.json``, which editors can use too) and the
rules between fields that a schema cannot say (:mod:`simulator.runs.scenario_file`).
Every error is printed as ``file:line: what is wrong; what to do (at key.path)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulator.runs.scenario import (
    EXTERNAL_SUPPLIER,
    Scenario,
    load_scenario,
    not_applicable_to_endpoint,
)
from simulator.runs.scenario_file import ScenarioFile, schema
from simulator.vocabulary.errors import ConfigError, ScenarioError

__all__ = ["add_parser", "check_file", "check_files", "list_library", "schema", "schema_errors"]

EXIT_OK = 0
EXIT_USAGE = 2


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("scenario", help="check scenario files, list the scenario library")
    actions = p.add_subparsers(dest="scenario_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="check scenario files against the schema and the loader; exit 2 on errors"
    )
    check.add_argument("files", type=Path, nargs="+", metavar="FILE", help="scenario files")
    check.set_defaults(func=run)
    listing = actions.add_parser("list", help="list the scenarios of a directory")
    listing.add_argument(
        "--dir",
        type=Path,
        default=Path("scenarios"),
        help="directory of scenario files (default: scenarios)",
    )
    listing.add_argument(
        "--endpoint",
        action="store_true",
        help="show, per scenario, which steps apply to an external supplier (b2bsim run "
        "--endpoint) and why the others do not",
    )
    listing.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.scenario_command == "check":
        return check_files(args.files)
    if getattr(args, "endpoint", False):
        return list_for_endpoint(args.dir)
    return list_library(args.dir)


# --- the checks -----------------------------------------------------------------


def schema_errors(path: Path) -> list[str]:
    """Every way ``path`` breaks the schema, as ``file:line: what; what to do (at key)``.

    A file that is not YAML raises :class:`ScenarioError` (with its line) instead.
    """
    return [p.line_text() for p in ScenarioFile.read(path).schema_problems()]


def check_file(path: Path) -> list[str]:
    """Every error of one scenario file: the schema's, else the rules between fields."""
    try:
        problems = ScenarioFile.read(path).problems()
    except ScenarioError as exc:  # not YAML, or no such file
        return [_with_hint(exc)]
    return [p.line_text() for p in problems]


def check_files(paths: list[Path]) -> int:
    """Print each file's errors (or that it is fine); 0 if all are fine, else 2."""
    failed = 0
    for path in paths:
        errors = check_file(path)
        for line in errors:
            print(line)
        if errors:
            failed += 1
        else:
            print(f"{path}: ok")
    if failed:
        print(f"{failed} of {len(paths)} scenario file(s) have errors", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


# --- the library ------------------------------------------------------------------


def list_library(directory: Path) -> int:
    """Print name, one-line description, suppliers and messages of every scenario in it."""
    if not directory.is_dir():
        raise ConfigError(
            f"{directory}: no such directory of scenarios",
            hint="run it from the repository, or pass --dir DIR",
        )
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ConfigError(f"{directory}: no *.yaml scenario files", hint="pass --dir DIR")
    rows: list[tuple[str, str, str, str]] = []
    broken: list[str] = []
    for path in files:
        try:
            s = load_scenario(path)
        except ScenarioError as exc:
            broken.append((check_file(path) or [_with_hint(exc)])[0])  # as `check` says it
            continue
        rows.append((s.name, first_sentence(s), str(s.supplier_count), str(s.expected_messages)))
    width = max(len(r[0]) for r in rows) if rows else 0
    print(f"{'name':<{width}}  {'suppliers':>9}  {'messages':>8}  description")
    for name, description, suppliers, messages in rows:
        print(f"{name:<{width}}  {suppliers:>9}  {messages:>8}  {description}")
    for line in broken:
        print(line, file=sys.stderr)
    if broken:
        print(f"{len(broken)} scenario file(s) do not load", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def list_for_endpoint(directory: Path) -> int:
    """Per scenario: does every step apply to an external supplier, and if not, why not."""
    files = sorted(directory.glob("*.yaml")) if directory.is_dir() else []
    if not files:
        raise ConfigError(f"{directory}: no *.yaml scenario files", hint="pass --dir DIR")
    for path in files:
        try:
            s = load_scenario(path)
        except ScenarioError as exc:
            print((check_file(path) or [_with_hint(exc)])[0], file=sys.stderr)
            continue
        reasons = [
            (i, why)
            for i, step in enumerate(s.steps, 1)
            if (why := not_applicable_to_endpoint(step)) is not None
        ]
        verdict = "every step applies" if not reasons else f"{len(reasons)} step(s) not applicable"
        print(f"{s.name}: {verdict} (to supplier {EXTERNAL_SUPPLIER} at your endpoint)")
        for i, why in reasons:
            print(f"  step {i}: not applicable: {why}")
    return EXIT_OK


def first_sentence(scenario: Scenario, limit: int = 100) -> str:
    """The description's first sentence, on one line and at most ``limit`` characters."""
    text = " ".join(scenario.description.split())
    end = text.find(". ")
    sentence = text if end < 0 else text[: end + 1]
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def _with_hint(exc: ScenarioError) -> str:
    return f"{exc.message}; {exc.hint}" if exc.hint else exc.message
