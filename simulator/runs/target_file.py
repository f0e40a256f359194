"""``b2bsim run --target FILE``: several external suppliers, read from a YAML/JSON list.

The file (docs/testing-your-endpoint.md) is a list; entry *i* puts the
scenario's supplier *i* at a real endpoint::

    - org_number: "5520000000"
      endpoint: https://localhost:8443/b2b/envelopes
      endpoint_ca: af-state/pki/ca.pem        # relative to this file
      endpoint_cert_sha256: 9f…               # optional: default, the one presented
      readback: https://localhost:8443/b2b/ledger   # optional
      mode: push                               # push (default) or pull

It is checked by a JSON Schema (``simulator/data/target.schema.json``) and by
what a schema cannot say (Luhn, one entry per organisation number, the CA file
exists, https URLs, a pin of 64 hex digits); every mistake names the file, the
line and the key, as scenario files do, and nothing starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jsonschema

from simulator.runs.endpoint import ExternalEndpoint
from simulator.runs.scenario_file import ScenarioFile
from simulator.runs.schema_words import Finding, findings
from simulator.vocabulary.errors import ConfigError, EndpointError, ScenarioError
from simulator.vocabulary.identifiers import (
    is_valid_org_number,
    normalise_org_number,
    org_number_hint,
)
from simulator.vocabulary.tls import normalise_pin
from simulator.vocabulary.yamlfile import load_located

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = ["PULL_NOT_YET", "read_target"]

SCHEMA_RESOURCE = ("simulator", "data/target.schema.json")
PULL_NOT_YET = (
    "`mode: pull` is not yet supported by --target in this version",
    "use `mode: push`, or test a puller with --endpoint-mode pull (docs/pull.md)",
)


@cache
def validator() -> Validator:
    """A 2020-12 validator of the target schema (an integer org number is no bool)."""
    package, name = SCHEMA_RESOURCE
    schema = json.loads(resources.files(package).joinpath(name).read_text(encoding="utf-8"))
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _c, v: isinstance(v, int) and not isinstance(v, bool)
    )
    # jsonschema's extend() is untyped; it returns a validator class like ``base``.
    strict = jsonschema.validators.extend(base, type_checker=checker)  # type: ignore[no-untyped-call]
    checked: Validator = strict(schema)
    return checked


def read_target(path: Path) -> list[ExternalEndpoint]:
    """The external suppliers of a target file, in order (supplier 1 first).

    EndpointError naming file, line and key if the file is not a valid target.
    """
    if not path.is_file():
        raise EndpointError(
            f"--target {path}: no such file",
            hint="write the list of external suppliers (docs/testing-your-endpoint.md)",
        )
    try:
        data, lines = load_located(path)
    except ScenarioError as exc:  # not YAML (nor JSON): its line is in the message
        raise EndpointError(str(exc), hint=exc.hint) from None
    located = ScenarioFile(path, data, lines)
    problems = {located.problem(*f): None for f in findings(validator().iter_errors(data))}
    if not problems:
        problems.update({located.problem(*f): None for f in _rules(data, path.parent)})
    if problems:
        first = min(problems, key=lambda p: p.line)
        raise EndpointError(
            f"--target {first.where}: {first.what} (at {first.key})", hint=first.hint
        )
    return [_endpoint(entry, path.parent) for entry in data]


def _org(entry: dict[str, Any]) -> str:
    return normalise_org_number(str(entry["org_number"]))


def _ca(entry: dict[str, Any], base: Path) -> Path:
    ca = Path(entry["endpoint_ca"])
    return ca if ca.is_absolute() else base / ca


def _rules(data: list[dict[str, Any]], base: Path) -> Iterator[Finding]:
    seen: dict[str, int] = {}
    for i, entry in enumerate(data):
        org = _org(entry)
        if not is_valid_org_number(org):
            yield (
                (i, "org_number"),
                f"{entry['org_number']!r} is not a valid organisation number",
                org_number_hint(org),
            )
        elif org in seen:
            yield (
                (i, "org_number"),
                f"supplier {org} is listed twice (also entry {seen[org] + 1})",
                "list each external supplier once",
            )
        seen.setdefault(org, i)
        if not _ca(entry, base).is_file():
            yield (
                (i, "endpoint_ca"),
                f"no CA file {_ca(entry, base)}",
                "give the PEM file of the CA that issued the endpoint's certificate, "
                "relative to the target file",
            )
        for key in ("endpoint", "readback"):
            url = entry.get(key)
            if url is not None and (urlsplit(url).scheme != "https" or not urlsplit(url).hostname):
                yield (i, key), f"{url!r} is not an https URL", "give https://HOST:PORT/PATH"
        pin = entry.get("endpoint_cert_sha256")
        if pin is not None:
            try:
                normalise_pin(pin)
            except ConfigError as exc:
                yield (i, "endpoint_cert_sha256"), str(exc), exc.hint or ""
        if entry.get("mode", "push") == "pull":
            yield ((i, "mode"), *PULL_NOT_YET)


def _endpoint(entry: dict[str, Any], base: Path) -> ExternalEndpoint:
    return ExternalEndpoint(
        url=entry["endpoint"],
        ca=_ca(entry, base),
        org_number=_org(entry),
        cert_sha256=entry.get("endpoint_cert_sha256"),
        readback=entry.get("readback"),
    )
