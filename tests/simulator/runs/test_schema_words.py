"""Schema errors in words, from the schema's own titles, examples and ranges."""

from __future__ import annotations

from typing import Any

import jsonschema

from simulator.runs.schema_words import Finding, findings

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "colour": {"title": "colour", "enum": ["red", "green"]},
        "size": {"type": "integer", "minimum": 1, "maximum": 9},
        "shape": {
            "type": "object",
            "examples": [{"round": True}, {"sides": 4}],
            "properties": {"round": {"type": "boolean"}, "sides": {"type": "integer"}},
            "oneOf": [{"required": ["round"]}, {"required": ["sides"]}],
        },
    },
}


def words(instance: Any) -> list[Finding]:
    return list(findings(jsonschema.Draft202012Validator(SCHEMA).iter_errors(instance)))


def test_a_misspelt_key_gets_the_nearest() -> None:
    """An unknown key is named at its own path, with the nearest known key."""
    assert words({"colur": "red"}) == [
        (("colur",), "unknown key 'colur'", "did you mean 'colour'?")
    ]


def test_a_title_names_the_kind_of_a_choice() -> None:
    """An enum with a title says what kind of value is unknown, and the choices."""
    assert words({"colour": "blue"}) == [
        (("colour",), "unknown colour 'blue'", "use one of red, green")
    ]


def test_a_range_is_told_with_the_bound_to_meet() -> None:
    """Out of range: the range, the value, and which bound to meet."""
    assert words({"size": 0}) == [
        (("size",), "expected an integer from 1 to 9, got 0", "make it 1 or more")
    ]
    assert words({"size": "big"}) == [
        (("size",), "expected an integer from 1 to 9, got 'big'", "write a whole number")
    ]


def test_a_choice_of_keys_suggests_the_examples() -> None:
    """A mapping with both of two exclusive keys is told so, with the schema's examples."""
    assert words({"shape": {"round": True, "sides": 4}}) == [
        (
            ("shape",),
            "expected exactly one of `round` or `sides`, got round, sides",
            "e.g. `shape: {round: true}` or `shape: {sides: 4}`",
        )
    ]
