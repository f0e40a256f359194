"""The scenario language's JSON Schema and `b2bsim scenario check` / `list`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from simulator import cli
from simulator.commands.scenario import check_file, schema, schema_errors
from simulator.runs import scenario
from simulator.vocabulary.errors import ScenarioError

REPO = Path(__file__).resolve().parents[3]
LIBRARY = sorted((REPO / "scenarios").glob("*.yaml"))

GOOD = """\
name: demo
description: one chain per supplier
seed: 7
suppliers: {count: 3}
steps:
  - produce: {chains: 1}
  - wait: {timeout: 10}
"""

#: (what is wrong, the text that replaces GOOD's steps and after)
BAD_STEPS = {
    "unknown step": "steps:\n  - dance: {}\n",
    "two actions in a step": "steps:\n  - sleep: 1\n    wait: {timeout: 1}\n",
    "empty steps": "steps: []\n",
    "steps not a list": "steps: {produce: {chains: 1}}\n",
    "chains and type": "steps:\n  - produce: {chains: 1, type: order, count: 1}\n",
    "unknown document type": "steps:\n  - produce: {type: invoic, count: 1}\n",
    "count not whole": "steps:\n  - produce: {type: order, count: 1.5}\n",
    "background not a flag": "steps:\n  - produce: {chains: 1, background: yes please}\n",
    "unknown produce key": "steps:\n  - produce: {chanes: 1}\n",
    "unknown wait key": "steps:\n  - wait: {timeout: 1, until: done}\n",
    "sleep is text": "steps:\n  - sleep: long\n",
    "clock without skew": "steps:\n  - clock: {}\n",
    "unknown fault": "steps:\n  - fault: {nothing: 1}\n",
    "down without seconds": "steps:\n  - fault: {supplier: down}\n",
    "unknown supplier fault": "steps:\n  - fault: {supplier: sleepy}\n",
    "probability above 1": "steps:\n  - fault: {icc: reorder, probability: 1.5}\n",
    "status out of range": "steps:\n  - fault: {supplier: status, status: 200}\n",
    "kill something else": "steps:\n  - fault: {kill: broker}\n",
    "two fault targets": "steps:\n  - fault: {kill: icc, supplier: reset}\n",
    "unknown poison": "steps:\n  - fault: {poison: [rotten]}\n",
    "unknown attack": "steps:\n  - attack: {kinds: [teleport]}\n",
    "attack without kinds": "steps:\n  - attack: {supplier: 1}\n",
    "two pki actions": "steps:\n  - pki: {revoke: 1, rotate: 2}\n",
    "swap without with": "steps:\n  - pki: {swap: 2}\n",
    "unknown expectation": "steps:\n  - sleep: 1\nexpect: {lots: 2}\n",
    "negative expectation": "steps:\n  - sleep: 1\nexpect: {lost: -1}\n",
    "empty coded expectation": "steps:\n  - sleep: 1\nexpect: {refused: {}}\n",
}

#: (what is wrong, a replacement of one line of GOOD)
BAD_LINES = {
    "unknown top-level key": ("seed: 7", "sed: 7"),
    "seed is text": ("seed: 7", "seed: seven"),
    "seed is a flag": ("seed: 7", "seed: true"),
    "seed is negative": ("seed: 7", "seed: -1"),
    "blank name": ("name: demo", "name: '  '"),
    "missing name": ("name: demo", "title: demo"),
    "suppliers not a mapping": ("suppliers: {count: 3}", "suppliers: 3"),
    "supplier count zero": ("suppliers: {count: 3}", "suppliers: {count: 0}"),
    "unknown suppliers key": ("suppliers: {count: 3}", "suppliers: {count: 3, push: 1}"),
    "unknown icc key": ("seed: 7", "icc: {workers: 2, threads: 4}"),
    "unknown retry key": ("seed: 7", "icc: {retry: {attempts: 3}}"),
    "too many workers": ("seed: 7", "icc: {workers: 99}"),
    "unknown stub key": ("seed: 7", "stub: {gap: 5}"),
}


def bad_texts() -> dict[str, str]:
    texts = {what: GOOD.split("steps:", maxsplit=1)[0] + steps for what, steps in BAD_STEPS.items()}
    for what, (old, new) in BAD_LINES.items():
        assert old in GOOD
        texts[what] = GOOD.replace(old, new)
    return texts


BAD = bad_texts()


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def enum_of(*path: str) -> list[Any]:
    node: Any = schema()
    for key in path:
        node = node[key]
    return list(node["enum"])


def b2bsim(*argv: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run the CLI in-process (the scenario command is registered)."""
    assert "scenario" in cli.COMMANDS
    return cli.main(list(argv))


class TestSchema:
    def test_is_a_valid_draft_2020_12_schema(self) -> None:
        """The shipped schema is itself valid JSON Schema 2020-12 and documents itself."""
        jsonschema.Draft202012Validator.check_schema(schema())
        assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema()["description"]

    @pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
    def test_library_scenario_validates(self, path: Path) -> None:
        """Every scenario of the library passes the schema and the loader."""
        assert schema_errors(path) == []
        assert check_file(path) == []

    def test_plain_validator_accepts_library(self) -> None:
        """An editor's stock 2020-12 validator accepts the library too."""
        validator = jsonschema.Draft202012Validator(schema())
        for path in LIBRARY:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            assert list(validator.iter_errors(data)) == [], path.name

    def test_choices_match_the_loader(self) -> None:
        """The schema's enums are the loader's: a kind added to one is added to the other."""
        defs = ("$defs",)
        assert enum_of(*defs, "produce", "properties", "type") == list(scenario.DOCUMENT_TYPES)
        assert enum_of(*defs, "supplier_fault", "properties", "supplier") == list(
            scenario.SUPPLIER_FAULTS
        )
        assert enum_of(*defs, "icc_fault", "properties", "icc") == list(scenario.ICC_FAULTS)
        assert enum_of(*defs, "poison_kind") == list(scenario.POISON_KINDS)
        assert enum_of(*defs, "attack_kind") == list(scenario.ATTACK_KINDS)
        pki = schema()["$defs"]["pki"]["properties"]
        assert [a for a in pki if a not in ("with", "background")] == list(scenario.PKI_ACTIONS)
        expect = list(schema()["properties"]["expect"]["properties"])
        assert expect == [*scenario.EXPECTABLE, *scenario.CODED_EXPECTATIONS]

    @pytest.mark.parametrize("what", sorted(BAD))
    def test_bad_snippet_rejected_by_schema_and_loader(self, what: str, tmp_path: Path) -> None:
        """A structural mistake is refused by the schema and by load_scenario alike."""
        path = write(tmp_path, BAD[what])
        errors = schema_errors(path)
        assert errors, f"the schema accepted: {what}"
        assert all(e.startswith(f"{path}:") for e in errors), errors
        with pytest.raises(ScenarioError):
            scenario.load_scenario(path)

    def test_all_errors_reported_with_their_lines(self, tmp_path: Path) -> None:
        """Every schema error of a file is reported, each at its own line, with a suggestion."""
        text = GOOD.replace("seed: 7", "sed: 7").replace("{chains: 1}", "{chains: one}")
        errors = schema_errors(write(tmp_path, text))
        assert len(errors) == 2
        assert errors[0].endswith("s.yaml:3: unknown key 'sed'; did you mean 'seed'? (at sed)")
        assert (
            ":6: expected an integer from 1 to 100000, got 'one'; write a whole number "
            "(at steps[0].produce.chains)"
        ) in errors[1]


class TestScenarioCheck:
    def test_good_file_passes(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A library file is ok and the exit code is 0."""
        path = REPO / "scenarios" / "happy-path.yaml"
        assert b2bsim("scenario", "check", str(path), monkeypatch=monkeypatch) == 0
        assert capsys.readouterr().out == f"{path}: ok\n"

    def test_yaml_syntax_error_names_file_and_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A YAML syntax error is printed with the file and the line, and exits 2."""
        path = write(tmp_path, GOOD.replace("{chains: 1}", "{chains: 1"))
        assert b2bsim("scenario", "check", str(path), monkeypatch=monkeypatch) == 2
        out = capsys.readouterr().out
        assert out.startswith(f"{path}:7: YAML syntax error")

    def test_unknown_key_names_file_line_and_suggestion(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unknown key is printed with the file, the line and the nearest known key."""
        path = write(tmp_path, GOOD.replace("{timeout: 10}", "{timeuot: 10}"))
        assert b2bsim("scenario", "check", str(path), monkeypatch=monkeypatch) == 2
        out = capsys.readouterr().out
        assert f"{path}:7: unknown key 'timeuot'; did you mean 'timeout'?" in out

    def test_loader_only_error_is_reported(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """What the schema cannot see (more pull suppliers than suppliers) is still reported."""
        path = write(tmp_path, GOOD.replace("{count: 3}", "{count: 3, pull: 4}"))
        assert schema_errors(path) == []
        assert b2bsim("scenario", "check", str(path), monkeypatch=monkeypatch) == 2
        assert f"{path}:4: expected an integer from 0 to 3" in capsys.readouterr().out

    def test_several_files_each_reported(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each file is checked; one bad file makes the exit code 2; a missing one is named."""
        good = write(tmp_path, GOOD, "good.yaml")
        missing = tmp_path / "missing.yaml"
        assert b2bsim("scenario", "check", str(good), str(missing), monkeypatch=monkeypatch) == 2
        out = capsys.readouterr().out
        assert f"{good}: ok" in out
        assert f"{missing}: no such scenario file" in out


class TestScenarioList:
    def test_lists_the_library(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Every library scenario is listed with its suppliers and messages."""
        code = b2bsim("scenario", "list", "--dir", str(REPO / "scenarios"), monkeypatch=monkeypatch)
        assert code == 0
        rows = capsys.readouterr().out.splitlines()
        assert len(rows) == 1 + len(LIBRARY)
        happy = next(r for r in rows if r.startswith("happy-path "))
        assert happy.split()[1:3] == ["3", "9"]
        assert "Three suppliers each receive" in happy

    def test_broken_file_fails_the_listing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A file that does not load is named with its line, and the exit code is non-zero."""
        write(tmp_path, GOOD, "good.yaml")
        bad = write(tmp_path, GOOD.replace("seed: 7", "sed: 7"), "bad.yaml")
        assert b2bsim("scenario", "list", "--dir", str(tmp_path), monkeypatch=monkeypatch) != 0
        captured = capsys.readouterr()
        assert "demo" in captured.out
        assert f"{bad}:3: unknown key 'sed'" in captured.err

    def test_missing_directory_is_a_usage_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A directory that does not exist is reported, exit 2, no traceback."""
        code = b2bsim("scenario", "list", "--dir", str(tmp_path / "nope"), monkeypatch=monkeypatch)
        assert code == 2
        assert "no such directory of scenarios" in capsys.readouterr().err
