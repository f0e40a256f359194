"""JSON Schema errors in words: where, what is wrong, what to do.

A validator's messages (``'two' is not of type 'integer'``) are for
programmers; these are for someone editing a YAML file.  The words come from
the schema where it has them: a ``title`` names a value's kind ("unknown
document type 'receipt'"), ``examples`` give the hint ("e.g. `produce:
{chains: 2}`"), ``minimum``/``maximum`` the range.  A misspelt key gets the
nearest known one (difflib).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from simulator.vocabulary.yamlfile import Location

if TYPE_CHECKING:
    from jsonschema import ValidationError

#: (key path, what is wrong, what to do).
Finding = tuple[Location, str, str]


def findings(errors: Iterable[ValidationError]) -> Iterator[Finding]:
    """Every error in words; where a mapping's choice of keys is itself the mistake
    (a fault with two targets), not also what each chosen branch thinks of it."""
    errors = list(errors)
    choices = {tuple(e.absolute_path) for e in errors if _is_key_choice(e)}
    for error in errors:
        if not _explained_by_choice(error, choices):
            yield from explain(error)


@dataclass(frozen=True)
class _Error:
    """A schema error and what its words need: where, the (sub)schema, the rule's value
    and the value found."""

    error: ValidationError
    at: Location
    sub: dict[str, Any]
    value: Any
    instance: Any


def explain(error: ValidationError) -> Iterator[Finding]:
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
            yield (
                e.at,
                f"expected {title}, got {_kind(e.instance)}",
                _example(e.at, e.sub, f"write {title}"),
            )
        else:
            yield from explain(best)


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
