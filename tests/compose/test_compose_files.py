"""The compose files: valid Compose, and every b2bsim command they run exists.

No Docker engine runs on the project's machines, so this is as far as the
files can be checked here (docs/deploy.md says so).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from simulator.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILES = sorted((REPO / "compose").glob("*.yml"))
#: The Compose Specification's JSON Schema, shipped beside this test (see NOTICE here).
COMPOSE_SPEC = Path(__file__).resolve().parent / "compose-spec.json"


def b2bsim_commands(compose: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(service, argv after 'b2bsim') for every b2bsim command in the file."""
    found = []
    for name, service in compose["services"].items():
        for key in ("command", "entrypoint"):
            argv = service.get(key)
            if isinstance(argv, list) and argv and argv[0] == "b2bsim":
                found.append((f"{name}.{key}", [str(a) for a in argv[1:]]))
        test = service.get("healthcheck", {}).get("test", [])
        if len(test) > 1 and test[0] == "CMD" and test[1] == "b2bsim":
            found.append((f"{name}.healthcheck", [str(a) for a in test[2:]]))
    return found


class TestComposeFiles:
    def test_there_is_a_compose_file(self) -> None:
        """compose/ holds at least the single-broker file."""
        assert REPO / "compose" / "docker-compose.yml" in COMPOSE_FILES

    @pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
    def test_matches_compose_spec(self, path: Path) -> None:
        """Each file validates against the official Compose Specification schema."""
        schema = json.loads(COMPOSE_SPEC.read_text(encoding="utf-8"))
        jsonschema.Draft7Validator(schema).validate(yaml.safe_load(path.read_text()))

    @pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
    def test_every_b2bsim_command_exists(self, path: Path) -> None:
        """Each b2bsim command line in the file parses with the real CLI parser."""
        commands = b2bsim_commands(yaml.safe_load(path.read_text()))
        assert commands, "the file runs no b2bsim command"
        parser = build_parser()
        parser.exit_on_error = False
        for where, argv in commands:
            try:
                _parse_strict(parser, argv)
            except (argparse.ArgumentError, SystemExit) as exc:
                pytest.fail(f"{path.name} {where}: `b2bsim {' '.join(argv)}` does not parse: {exc}")

    def test_checker_catches_an_unknown_option(self) -> None:
        """The check would fail on an option b2bsim does not have."""
        with pytest.raises((argparse.ArgumentError, SystemExit)):
            _parse_strict(build_parser(), ["serve", "icc", "--no-such-option"])

    def test_dockerfile_builds_every_package(self) -> None:
        """The one Dockerfile copies every package the components need."""
        text = (REPO / "Dockerfile").read_text()
        for package in ("simulator", "ka_producer", "icc_bridge", "supplier_stub"):
            assert f"COPY {package} {package}" in text


def _parse_strict(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    # argparse exits (SystemExit) on errors inside sub-parsers; both count as failure.
    ns, extra = parser.parse_known_args(argv)
    if extra:
        raise SystemExit(f"unrecognised arguments: {' '.join(extra)}")
    return ns
