"""Scenario files: read with their lines, checked by the JSON Schema of the language.

The schema (``simulator/data/scenario.schema.json``, which editors can use too)
is the one statement of what a scenario file may say.  Only what a schema
cannot say, rules between fields (a supplier number within ``suppliers.count``,
a broker index within ``brokers``, an ordered network of brokers, a possible
retry policy), is code here: :func:`_rules`.

Every mistake is a :class:`Problem`: the file, the line where the key is
written, the key's path, what is wrong and what to do (a schema error's words
come from :mod:`simulator.runs.schema_words`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema

from simulator.lab.network import order_problem
from simulator.runs.schema_words import Finding, findings
from simulator.vocabulary.errors import ConfigError, ScenarioError
from simulator.vocabulary.retry import RetryPolicy
from simulator.vocabulary.yamlfile import Location, load_located

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

#: Where the schema ships, inside the installed package.
SCHEMA_RESOURCE = ("simulator", "data/scenario.schema.json")


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
    """The scenario schema's validator (:func:`strict_validator`)."""
    return strict_validator(schema())


def strict_validator(of: dict[str, Any]) -> Validator:
    """A 2020-12 validator of the schema ``of`` that reads YAML's values as JSON would.

    YAML's ``2.0`` is a float and ``true`` a bool, neither a whole number; ``.nan``
    and ``.inf`` are no JSON numbers.  (Scenario, plan and target files.)
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
    checked: Validator = strict(of)
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
        errors = validator().iter_errors(self.data)
        # one problem once, though several branches of the schema see it
        found = {self.problem(*finding): None for finding in findings(errors)}
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
        ((kind, body),) = ((k, v) for k, v in step.items() if k != "say")
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
