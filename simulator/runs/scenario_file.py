"""Scenario files: read with their lines, checked by the JSON Schema of the language.

The schema (``simulator/data/scenario.schema.json``, which editors can use too)
is the one statement of what a scenario file may say.  Only what a schema
cannot say, rules between fields (a supplier number within ``suppliers.count``,
a broker index within ``brokers``, an ordered network of brokers, a possible
retry policy), is code here: :func:`_rules`.

Every mistake is a :class:`Problem`: the file, the line where the key is
written, the key's path, what is wrong and what to do.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import yaml

from simulator.lab.network import order_problem
from simulator.vocabulary.errors import ConfigError, ScenarioError
from simulator.vocabulary.retry import RetryPolicy
from simulator.vocabulary.yamlfile import Location, load_located

if TYPE_CHECKING:
    from jsonschema import ValidationError
    from jsonschema.protocols import Validator

#: Where the schema ships, inside the installed package.
SCHEMA_RESOURCE = ("simulator", "data/scenario.schema.json")

#: (key path, what is wrong, what to do).
Finding = tuple[Location, str, str]


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of the scenario language, as shipped in the package."""
    package, name = SCHEMA_RESOURCE
    loaded: dict[str, Any] = json.loads(
        resources.files(package).joinpath(name).read_text(encoding="utf-8")
    )
    return loaded


@cache
def validator() -> Validator:
    """A 2020-12 validator of the schema that reads YAML's values as JSON would.

    YAML's ``2.0`` is a float and ``true`` a bool, neither a whole number; ``.nan``
    and ``.inf`` are no JSON numbers.
    """
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many(
        {
            "integer": lambda _c, v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda _c, v: (
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            ),
        }
    )
    # jsonschema's extend() is untyped; it returns a validator class like ``base``.
    strict = jsonschema.validators.extend(base, type_checker=checker)  # type: ignore[no-untyped-call]
    checked: Validator = strict(schema())
    return checked


@dataclass(frozen=True)
class Problem:
    """One mistake in a scenario file, at the line of its key."""

    file: Path
    line: int  # 0: the file as a whole
    at: Location
    what: str
    hint: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else str(self.file)

    @property
    def key(self) -> str:
        parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.at]
        return "".join(parts).lstrip(".") or "top level"

    def line_text(self) -> str:
        """``file:line: what is wrong; what to do (at key.path)``."""
        return f"{self.where}: {self.what}; {self.hint} (at {self.key})"

    def error(self) -> ScenarioError:
        return ScenarioError(f"{self.where}: {self.what} (at {self.key})", hint=self.hint)


@dataclass(frozen=True)
class ScenarioFile:
    """A scenario file's data and the line of each key; raises ScenarioError if not YAML."""

    path: Path
    data: Any
    lines: dict[Location, int]

    @classmethod
    def read(cls, path: Path) -> ScenarioFile:
        data, lines = load_located(path)
        return cls(path, data, lines)

    def problem(self, at: Location, what: str, hint: str) -> Problem:
        where = at
        while where and where not in self.lines:
            where = where[:-1]
        return Problem(self.path, self.lines.get(where, 0), at, what, hint)

    def schema_problems(self) -> list[Problem]:
        """Every way the file breaks the schema, in the order of its lines."""
        errors = list(validator().iter_errors(self.data))
        choices = {tuple(e.absolute_path) for e in errors if _is_key_choice(e)}
        found = {  # one problem once, though several branches of the schema see it
            self.problem(*finding): None
            for error in errors
            if not _explained_by_choice(error, choices)
            for finding in _explain(error)
        }
        return sorted(found, key=lambda p: p.line)

    def rule_problems(self) -> list[Problem]:
        """What the schema cannot say, for a file the schema accepts."""
        return sorted((self.problem(*f) for f in _rules(self.data)), key=lambda p: p.line)

    def problems(self) -> list[Problem]:
        return self.schema_problems() or self.rule_problems()


def read_scenario(path: Path) -> Any:
    """The checked data of a scenario file; ScenarioError names file, line and key."""
    scenario_file = ScenarioFile.read(path)
    problems = scenario_file.problems()
    if problems:
        raise problems[0].error()
    return scenario_file.data


# --- what a schema cannot say -------------------------------------------------------


def _rules(data: dict[str, Any]) -> Iterator[Finding]:
    suppliers = data.get("suppliers", {"count": 3})
    count, pull = suppliers["count"], suppliers.get("pull", 0)
    brokers = data.get("brokers", 1)
    if pull > count:
        yield (
            ("suppliers", "pull"),
            f"expected an integer from 0 to {count}, got {pull}",
            f"make it {count} or less: the last `pull` of the `count` suppliers pull",
        )
    retry = data.get("icc", {}).get("retry")
    if retry is not None:
        try:
            RetryPolicy(**retry)
        except ConfigError as exc:
            yield ("icc", "retry"), exc.message, exc.hint or "see docs/icc.md"
    for index, step in enumerate(data["steps"]):
        ((kind, body),) = step.items()
        yield from _step_rules(("steps", index, kind), body, count, brokers)
    longest_down = max(
        (s["fault"].get("down", 1.0) for s in data["steps"] if _kills_broker(s)), default=0.0
    )
    stub = data.get("stub", {})
    problem = order_problem(brokers, stub.get("gap_timeout", 5), longest_down)
    if problem is not None:
        at = ("stub", "gap_timeout") if "gap_timeout" in stub else ("brokers",)
        yield at, problem, "raise `stub: {gap_timeout: S}`, or use one broker"


def _kills_broker(step: dict[str, Any]) -> bool:
    return isinstance(step.get("fault"), dict) and step["fault"].get("kill") == "broker"


def _step_rules(at: Location, body: Any, count: int, brokers: int) -> Iterator[Finding]:
    """Supplier numbers within ``suppliers.count``, broker numbers within ``brokers``."""
    kind = at[-1]
    numbered = {"supplier": body.get("supplier", 1)} if kind == "attack" else {}
    if kind == "pki":
        numbered = {k: v for k, v in body.items() if k != "background"}
        if "swap" in body and body["swap"] == body["with"]:
            yield (*at, "with"), "a supplier cannot swap with itself", "name another supplier"
    for key, number in numbered.items():
        if isinstance(number, int) and number > count:
            yield (
                (*at, key),
                f"expected an integer from 1 to {count}, got {number}",
                f"suppliers are numbered from 1 to `suppliers.count` ({count})",
            )
    if kind == "fault" and body.get("kill") == "broker" and body["index"] > brokers:
        yield (
            (*at, "index"),
            f"expected an integer from 1 to {brokers}, got {body['index']}",
            f"brokers are numbered from 1 to `brokers` ({brokers})",
        )
    if kind == "fault" and "restart" in body and brokers > 1:
        yield (
            (*at, "restart"),
            f"`restart: broker` restarts the one embedded broker, but this run has "
            f"{brokers} brokers",
            "kill one broker of the network with `{kill: broker, index: K, down: S}`",
        )


# --- schema errors in words ---------------------------------------------------------


@dataclass(frozen=True)
class _Error:
    """A schema error and what its words need: where, the (sub)schema, the rule's value
    and the value found."""

    error: ValidationError
    at: Location
    sub: dict[str, Any]
    value: Any
    instance: Any


def _explain(error: ValidationError) -> Iterator[Finding]:
    """(where, what was wrong, what to do) for one schema error."""
    words = _WORDS.get(str(error.validator))
    if words is None:
        yield tuple(error.absolute_path), error.message, "see docs/scenarios.md"
        return
    found = _Error(
        error,
        tuple(error.absolute_path),
        error.schema if isinstance(error.schema, dict) else {},
        error.validator_value,
        error.instance,
    )
    yield from words(found)


def _choice(e: _Error) -> Iterator[Finding]:
    if _is_key_choice(e.error):
        what = _key_choice(str(e.error.validator), e.value, e.instance)
        yield e.at, what, _example(e.at, e.sub, "name one of them")
    elif e.error.context:
        best = _best_branch(e.error)
        title = e.sub.get("title")
        if title and best.validator in ("type", "enum", "const"):  # the choice in one word
            yield e.at, f"expected {title}, got {_kind(e.instance)}", _example(e.at, e.sub, "")
        else:
            yield from _explain(best)


def _unknown(e: _Error) -> Iterator[Finding]:
    allowed = list(e.sub.get("properties", {}))
    for key in e.instance:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(allowed)}"
            yield (*e.at, key), f"unknown key {key!r}", hint


def _missing(e: _Error) -> Iterator[Finding]:
    for key in e.value:
        if key not in e.instance:
            yield e.at, f"missing key {key!r}", f"add `{key}:`"


def _needs(e: _Error) -> Iterator[Finding]:
    for key, needs in e.value.items():
        for need in needs:
            if key in e.instance and need not in e.instance:
                yield e.at, f"`{key}` needs `{need}:`", _example(e.at, e.sub, f"add `{need}:`")


def _unknown_value(e: _Error) -> Iterator[Finding]:
    value = e.value
    choices = value if e.error.validator == "enum" else [value]
    title = e.sub.get("title")
    what = f"unknown {title} {e.instance!r}" if title else f"unexpected {e.instance!r}"
    yield e.at, what, f"use one of {', '.join(map(str, choices))}"


def _expected(e: _Error) -> Iterator[Finding]:
    """A value of the wrong type, or out of its range: the type and range it needs."""
    what = f"expected {_noun(e.sub)}{_range(e.sub)}, got {_kind(e.instance)}"
    kind, value = str(e.error.validator), e.value
    if kind == "minimum":
        yield e.at, what, f"make it {_num(value)} or more"
    elif kind == "maximum":
        yield e.at, what, f"make it {_num(value)} or less"
    else:
        yield e.at, what, _TYPE_HINTS.get(str(value), f"write {_noun(e.sub)}")


def _too_many(e: _Error) -> Iterator[Finding]:
    keys = ", ".join(map(str, e.instance))
    most = e.value
    what = f"expected {'one key' if most == 1 else f'at most {most} keys'}, got {keys}"
    yield e.at, what, _example(e.at, e.sub, "split it up")


def _empty(e: _Error) -> Iterator[Finding]:
    least = e.value
    if e.error.validator == "minItems":
        what = f"expected at least {least} item(s), got an empty list"
    else:
        what = f"expected at least {least} key(s), got an empty mapping"
    yield e.at, what, _example(e.at, e.sub, "add one")


def _blank(e: _Error) -> Iterator[Finding]:
    yield e.at, "expected text that is not blank", "write a short sentence"


_WORDS: dict[str, Callable[[_Error], Iterator[Finding]]] = {
    "oneOf": _choice,
    "anyOf": _choice,
    "additionalProperties": _unknown,
    "required": _missing,
    "dependentRequired": _needs,
    "enum": _unknown_value,
    "const": _unknown_value,
    "type": _expected,
    "minimum": _expected,
    "maximum": _expected,
    "maxProperties": _too_many,
    "minProperties": _empty,
    "minItems": _empty,
    "pattern": _blank,
}


def _is_key_choice(error: ValidationError) -> bool:
    """A oneOf/anyOf between sets of keys (every branch says ``required``) of a mapping."""
    branches = error.validator_value
    return (
        str(error.validator) in ("oneOf", "anyOf")
        and isinstance(error.instance, dict)
        and isinstance(branches, list)
        and all(isinstance(b, dict) and "required" in b for b in branches)
    )


def _explained_by_choice(error: ValidationError, choices: set[Location]) -> bool:
    """An error of a branch taken for a key (``if``/``then``) of a mapping whose choice
    of keys is itself the mistake (two fault targets): the choice says it."""
    at = tuple(error.absolute_path)
    return "then" in error.absolute_schema_path and any(at[: len(c)] == c for c in choices)


def _key_choice(kind: str, branches: list[dict[str, Any]], instance: dict[str, Any]) -> str:
    alternatives = [" with ".join(f"`{k}`" for k in b["required"]) for b in branches]
    choice = ", ".join(alternatives[:-1]) + f" or {alternatives[-1]}"
    keys = [k for b in branches for k in b["required"]]
    given = [k for k in instance if k in keys]
    got = f", got {', '.join(given)}" if given else ""
    return f"expected {'exactly ' if kind == 'oneOf' else ''}one of {choice}{got}"


def _best_branch(error: ValidationError) -> ValidationError:
    """Of a choice's branches, the one that fits the value best: the deepest error, and
    of those one whose type fits (an unknown attack, rather than 'not a list')."""
    depth = max(len(e.absolute_path) for e in error.context)
    deepest = [e for e in error.context if len(e.absolute_path) == depth]
    fitting = [e for e in deepest if e.validator != "type"]
    return (fitting or deepest)[0]


def _example(at: Location, sub: dict[str, Any], otherwise: str) -> str:
    """``e.g. `key: {…}``` from the schema's examples of the value at ``at``."""
    examples = sub.get("examples")
    if not examples:
        return otherwise
    item = bool(at) and isinstance(at[-1], int)
    shown = [_flow(x, "- " if item else f"{at[-1]}: " if at else "") for x in examples]
    return "e.g. " + " or ".join(f"`{x}`" for x in shown)


def _flow(value: Any, key: str) -> str:
    """``key: value`` in YAML's flow style; a list item of one key as ``- key: value``."""
    if key == "- " and isinstance(value, dict) and len(value) == 1:
        ((key, value),) = value.items()
        key = f"- {key}: "
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False)
    return key + text.removesuffix("...\n").strip()  # a scalar ends its document with ...


def _noun(sub: dict[str, Any]) -> str:
    wanted = sub.get("type")
    words = [
        _TYPE_WORDS.get(str(w), str(w)) for w in (wanted if isinstance(wanted, list) else [wanted])
    ]
    return " or ".join(words)


def _range(sub: dict[str, Any]) -> str:
    low, high = sub.get("minimum"), sub.get("maximum")
    if low is not None and high is not None:
        return f" from {_num(low)} to {_num(high)}"
    if low is not None:
        return f" of {_num(low)} or more"
    return f" of at most {_num(high)}" if high is not None else ""


def _num(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "text",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
    "None": "a value",
}

_TYPE_HINTS = {
    "object": "write `key: value` lines below it, or `{key: value}`",
    "array": "write a list: `- item` lines below it, or `[a, b]`",
    "string": "write a short sentence",
    "integer": "write a whole number",
    "number": "write a number",
    "boolean": "write true or false",
    "['object', 'null']": "write `key: value` lines below it, or nothing",
}
