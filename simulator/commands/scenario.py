"""``b2bsim scenario check FILE...`` and ``b2bsim scenario list``: the scenario library's checks.

``check`` reads each file twice: against the JSON Schema of the language
(``simulator/data/scenario.schema.json``, which editors can use too) and with
:func:`simulator.runs.scenario.load_scenario`, which also checks what a schema
cannot.  Every error is printed as ``file:line: what was expected``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable, Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.runs.scenario import Scenario, load_scenario
from simulator.vocabulary.errors import ConfigError, ScenarioError
from simulator.vocabulary.yamlfile import Location, load_located

if TYPE_CHECKING:
    from jsonschema import ValidationError
    from jsonschema.protocols import Validator

EXIT_OK = 0
EXIT_USAGE = 2
#: Where the schema ships, inside the installed package.
SCHEMA_RESOURCE = ("simulator", "data/scenario.schema.json")


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
    listing.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.scenario_command == "check":
        return check_files(args.files)
    return list_library(args.dir)


# --- the schema -----------------------------------------------------------------


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of the scenario language, as shipped in the package."""
    package, name = SCHEMA_RESOURCE
    loaded: dict[str, Any] = json.loads(
        resources.files(package).joinpath(name).read_text(encoding="utf-8")
    )
    return loaded


def _validator() -> Validator:
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema ships with b2bsim
        raise ConfigError(
            "checking against the scenario schema needs the jsonschema package",
            hint="pip install jsonschema",
        ) from None
    base = jsonschema.Draft202012Validator
    # YAML's 2.0 is a float and the loader refuses it where a whole number is due; so do we.
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _c, v: isinstance(v, int) and not isinstance(v, bool)
    )
    # jsonschema's extend() is untyped; it returns a validator class like ``base``.
    strict = jsonschema.validators.extend(base, type_checker=checker)  # type: ignore[no-untyped-call]
    validator: Validator = strict(schema())
    return validator


def schema_errors(path: Path) -> list[str]:
    """Every way ``path`` breaks the schema, as ``file:line: what was expected (at key)``.

    A file that is not YAML raises :class:`ScenarioError` (with its line) instead.
    """
    data, lines = load_located(path)
    found = []
    for error in _validator().iter_errors(data):
        for at, what in _explain(error):
            found.append((_line(lines, at), _where(path, lines, at), what, _dotted(at)))
    found.sort(key=lambda item: item[0])
    return [f"{where}: {what} (at {dotted})" for _, where, what, dotted in found]


def check_file(path: Path) -> list[str]:
    """Every error of one scenario file, schema first, then the loader's own checks."""
    try:
        errors = schema_errors(path)
    except ScenarioError as exc:  # not YAML, or no such file: the loader says the same
        return [_with_hint(exc)]
    try:
        load_scenario(path)
    except ScenarioError as exc:
        if not errors:
            errors.append(_with_hint(exc))
    return errors


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
            broken.append(_with_hint(exc))
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


def first_sentence(scenario: Scenario, limit: int = 100) -> str:
    """The description's first sentence, on one line and at most ``limit`` characters."""
    text = " ".join(scenario.description.split())
    end = text.find(". ")
    sentence = text if end < 0 else text[: end + 1]
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


# --- turning schema errors into located messages -----------------------------------


def _explain(error: ValidationError) -> Iterator[tuple[Location, str]]:
    """(where, what was expected) for one schema error; a choice explains its best branch."""
    at: Location = tuple(error.absolute_path)
    kind = str(error.validator)
    value: Any = error.validator_value
    instance: Any = error.instance
    if kind in ("oneOf", "anyOf"):
        keys = _required_keys(value)
        if keys:
            many = "exactly one" if kind == "oneOf" else "one"
            yield at, f"expected {many} of the keys {', '.join(keys)}"
            return
        if isinstance(instance, dict) and at and at[-1] == "produce":
            yield at, "expected `chains: N`, or `type:` with `count:`, not both"
            return
        if error.context:
            from jsonschema.exceptions import best_match

            deepest = max(error.context, key=lambda e: len(e.absolute_path))
            deeper = len(deepest.absolute_path) > len(error.absolute_path)
            yield from _explain(deepest if deeper else best_match(error.context))
            return
    if kind == "additionalProperties" and isinstance(instance, dict):
        schema_: Any = error.schema
        allowed = [str(k) for k in schema_.get("properties", {})]
        for key in instance:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"expected {', '.join(allowed)}"
                yield (*at, key), f"unknown key {key!r}; {hint}"
        return
    explain = _MESSAGES.get(kind)
    yield at, explain(value, instance) if explain else error.message


def _required_keys(subschemas: Any) -> list[str]:
    """The keys of a choice between ``{required: [key]}`` schemas (else empty)."""
    if not isinstance(subschemas, list):
        return []
    keys = [s["required"][0] for s in subschemas if isinstance(s, dict) and list(s) == ["required"]]
    return keys if len(keys) == len(subschemas) else []


def _missing(value: Any, instance: Any) -> str:
    missing = [k for k in value if isinstance(instance, dict) and k not in instance]
    return f"missing key {', '.join(map(repr, missing))}"


def _one_action(value: Any, instance: Any) -> str:
    if value == 1 and isinstance(instance, dict):
        return f"expected exactly one action in a step, got {', '.join(map(str, instance))}"
    return f"expected at most {value} key(s)"


def _type(value: Any, instance: Any) -> str:
    wanted = " or ".join(value) if isinstance(value, list) else str(value)
    return f"expected {_TYPE_WORDS.get(wanted, wanted)}, got {_kind(instance)}"


def _missing_dependent(value: Any, instance: Any) -> str:
    for key, needs in value.items():
        if isinstance(instance, dict) and key in instance:
            missing = [n for n in needs if n not in instance]
            if missing:
                return f"`{key}` needs {', '.join(f'`{n}:`' for n in missing)}"
    return "a key is missing"


_MESSAGES: dict[str, Callable[[Any, Any], str]] = {
    "required": _missing,
    "dependentRequired": _missing_dependent,
    "maxProperties": _one_action,
    "minProperties": lambda v, i: f"expected at least {v} key(s), got an empty mapping",
    "type": _type,
    "enum": lambda v, i: f"expected one of {', '.join(map(str, v))}, got {i!r}",
    "const": lambda v, i: f"expected {v!r}, got {i!r}",
    "minimum": lambda v, i: f"expected a value at least {v}, got {i!r}",
    "maximum": lambda v, i: f"expected a value at most {v}, got {i!r}",
    "pattern": lambda v, i: "expected non-blank text",
    "minItems": lambda v, i: f"expected at least {v} item(s)",
}


_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object or null": "a mapping (or nothing)",
}


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _line(lines: dict[Location, int], at: Location) -> int:
    while at not in lines and at:
        at = at[:-1]
    return lines.get(at, 0)


def _where(path: Path, lines: dict[Location, int], at: Location) -> str:
    line = _line(lines, at)
    return f"{path}:{line}" if line else str(path)


def _dotted(at: Location) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in at]
    return "".join(parts).lstrip(".") or "top level"


def _with_hint(exc: ScenarioError) -> str:
    return f"{exc.message} — {exc.hint}" if exc.hint else exc.message
