"""docs/openapi.yaml: OpenAPI 3.1 in shape, and every problem code documented with its status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from simulator.commands.health import HEALTH_PATH
from simulator.vocabulary.problems import PROBLEMS, problem

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
OPERATIONS = [
    ("/b2b/envelopes", "post"),
    ("/b2b/outbox", "get"),
    ("/b2b/outbox/ack", "post"),
]

#: The structure this project relies on (a minimal subset of the OpenAPI 3.1 schema).
SHAPE: dict[str, Any] = {
    "type": "object",
    "required": ["openapi", "info", "paths", "components"],
    "properties": {
        "openapi": {"type": "string", "pattern": r"^3\.1\.\d+$"},
        "info": {
            "type": "object",
            "required": ["title", "version"],
            "properties": {"title": {"type": "string"}, "version": {"type": "string"}},
        },
        "paths": {
            "type": "object",
            "patternProperties": {
                "^/": {
                    "type": "object",
                    "patternProperties": {
                        "^(get|post|put|delete|patch)$": {
                            "type": "object",
                            "required": ["operationId", "responses"],
                            "properties": {
                                "responses": {
                                    "type": "object",
                                    "minProperties": 1,
                                    "propertyNames": {"pattern": "^[1-5][0-9]{2}$"},
                                }
                            },
                        }
                    },
                }
            },
            "additionalProperties": False,
        },
        "components": {
            "type": "object",
            "required": ["schemas", "responses", "securitySchemes"],
            "properties": {
                "schemas": {"type": "object", "required": ["Problem", "ProblemCode"]},
            },
        },
    },
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    doc = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref (``#/components/...``)."""
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def documented(spec: dict[str, Any]) -> dict[str, set[int]]:
    """code → the HTTP statuses of the responses that list it (``x-problem-codes``)."""
    out: dict[str, set[int]] = {}
    for path, method in OPERATIONS:
        for status, response in spec["paths"][path][method]["responses"].items():
            for code in resolve(spec, response).get("x-problem-codes", []):
                out.setdefault(code, set()).add(int(status))
    return out


class TestOpenApi:
    def test_is_openapi_31_of_the_expected_shape(self, spec: dict[str, Any]) -> None:
        """The file is YAML, says openapi 3.1.x, and has the structure the project relies on."""
        jsonschema.Draft202012Validator(SHAPE).validate(spec)

    def test_describes_push_and_pull(self, spec: dict[str, Any]) -> None:
        """Both APIs are there: the supplier's push endpoint and the ICC's outbox and ack."""
        for path, method in OPERATIONS:
            assert method in spec["paths"][path], f"{method.upper()} {path} is missing"

    def test_health_is_documented_as_optional(self, spec: dict[str, Any]) -> None:
        """The path `b2bsim health supplier-stub` probes is there, marked optional, with its 200."""
        health = spec["paths"][HEALTH_PATH]["get"]
        assert health["x-optional"] is True
        assert "optional" in health["description"].lower()
        ok = resolve(spec, health["responses"]["200"])
        schema = resolve(spec, ok["content"]["application/json"]["schema"])
        jsonschema.Draft202012Validator(schema).validate({"status": "ok", "suppliers": 2})

    def test_schemas_are_valid_json_schema(self, spec: dict[str, Any]) -> None:
        """Every component schema is itself a valid JSON Schema 2020-12."""
        for name, schema in spec["components"]["schemas"].items():
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as exc:
                pytest.fail(f"schema {name}: {exc.message}")

    def test_every_problem_code_is_documented_with_its_status(self, spec: dict[str, Any]) -> None:
        """Each code of vocabulary.problems is in ProblemCode with its status, and never drifts."""
        listed = {
            entry["const"]: entry["x-status"]
            for entry in spec["components"]["schemas"]["ProblemCode"]["oneOf"]
        }
        assert listed == {code: p.status for code, p in PROBLEMS.items()}
        for entry in spec["components"]["schemas"]["ProblemCode"]["oneOf"]:
            assert entry.get("description"), f"{entry['const']} has no meaning"

    def test_every_problem_code_is_a_response_of_an_operation(self, spec: dict[str, Any]) -> None:
        """Each code appears under an operation's response of exactly its own status."""
        found = documented(spec)
        missing = sorted(set(PROBLEMS) - set(found))
        assert missing == [], f"codes no response lists: {missing}"
        wrong = {c: s for c, s in found.items() if c not in PROBLEMS or s != {PROBLEMS[c].status}}
        assert wrong == {}

    def test_problem_example_validates(self, spec: dict[str, Any]) -> None:
        """A problem as vocabulary.problems makes it validates against the Problem schema."""
        _, body = problem("CURSOR_INVALID", "cursor 9 was never issued")
        schemas = spec["components"]["schemas"]
        schema = {**schemas["Problem"], "$defs": schemas}
        schema = yaml.safe_load(yaml.safe_dump(schema).replace("#/components/schemas/", "#/$defs/"))
        jsonschema.Draft202012Validator(schema).validate(json.loads(body))
