"""``b2bsim run --target FILE``: several external suppliers, read from a YAML/JSON list.

The file (docs/testing-your-endpoint.md) is a list; entry *i* puts the
scenario's supplier *i* at a real endpoint (push) or its own puller (pull)::

    - org_number: "5520000000"
      endpoint: https://localhost:8443/b2b/envelopes
      endpoint_ca: af-state/pki/ca.pem        # relative to this file
      endpoint_cert_sha256: 9f…               # optional: default, the one presented
      readback: https://localhost:8443/b2b/ledger   # optional
      mode: push                               # push (default) or pull
    - org_number: "5520000018"
      mode: pull                               # no endpoint: it fetches from the outbox
      endpoint_cert: my-puller.pem             # optional: the certificate it presents
      readback: https://localhost:8444/b2b/ledger   # optional; endpoint_ca optional too

Every puller fetches from the run's one outbox, ``https://127.0.0.1:P/b2b/outbox``
(``b2bsim run --pull-port P``, default 9443), which is not the file's to say: it is
the run's, not a supplier's.  For a puller ``endpoint_cert_sha256`` pins its client
certificate, and with neither that nor ``endpoint_cert`` its certificate in the
state directory is registered; ``endpoint_ca`` (the CA of its read-back's server
certificate) defaults to the AF test CA of the state directory.

It is checked by a JSON Schema (``simulator/data/target.schema.json``) and by
what a schema cannot say (Luhn, one entry per organisation number, the files
exist, https URLs, a pin of 64 hex digits, the keys of its mode, a puller's
certificate issued by the state's AF test CA for its number); every mistake
names the file, the line and the key, as scenario files do, and nothing starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from simulator.runs.endpoint import ExternalEndpoint
from simulator.runs.pull_endpoint import DEFAULT_PULL_PORT, pull_endpoint, puller_pin
from simulator.runs.scenario_file import ScenarioFile, strict_validator
from simulator.runs.schema_words import Finding, findings
from simulator.vocabulary.errors import ConfigError, EndpointError, ScenarioError
from simulator.vocabulary.identifiers import (
    is_valid_org_number,
    normalise_org_number,
    org_number_hint,
)
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import normalise_pin
from simulator.vocabulary.yamlfile import load_located

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = ["read_target"]

SCHEMA_RESOURCE = ("simulator", "data/target.schema.json")
#: What a puller's errors call its certificate, its number and its pin: the file's keys.
KEYS = ("endpoint_cert", "org_number", "endpoint_cert_sha256")
#: Keys of one mode only, with why the other has none and what to do.
PUSH_ONLY = {
    "endpoint": (
        "`endpoint` is the URL the ICC pushes to; a pulling supplier has none",
        "leave it out: its puller fetches from the run's outbox (b2bsim run --pull-port)",
    ),
}
PULL_ONLY = {
    "endpoint_cert": (
        "`endpoint_cert` is the certificate a puller presents; a push entry has none",
        "leave it out (pin the endpoint with endpoint_cert_sha256), or write `mode: pull`",
    ),
}


@cache
def validator() -> Validator:
    """A 2020-12 validator of the target schema (an integer org number is no bool)."""
    package, name = SCHEMA_RESOURCE
    return strict_validator(
        json.loads(resources.files(package).joinpath(name).read_text(encoding="utf-8"))
    )


def read_target(
    path: Path,
    state: StateDir,
    *,
    pull_port: int | None = None,
    pull_faults: bool = True,
) -> list[ExternalEndpoint]:
    """The external suppliers of a target file, in order (supplier 1 first).

    ``state`` is the one the external suppliers trust (a puller's certificate is
    checked against its AF test CA); every puller fetches from the outbox on
    ``pull_port`` (default :data:`DEFAULT_PULL_PORT`), and meets the pull faults
    unless ``pull_faults`` is False.  EndpointError naming file, line and key if the
    file is not a valid target.
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
        problems.update({located.problem(*f): None for f in _rules(data, path.parent, state)})
    if problems:
        first = min(problems, key=lambda p: p.line)
        raise EndpointError(
            f"--target {first.where}: {first.what} (at {first.key})", hint=first.hint
        )
    port = DEFAULT_PULL_PORT if pull_port is None else pull_port
    return [_endpoint(entry, path.parent, state, port, pull_faults) for entry in data]


def _org(entry: dict[str, Any]) -> str:
    return normalise_org_number(str(entry["org_number"]))


def _path(value: str, base: Path) -> Path:
    given = Path(value)
    return given if given.is_absolute() else base / given


def _pulls(entry: dict[str, Any]) -> bool:
    return bool(entry.get("mode", "push") == "pull")


def _rules(data: list[dict[str, Any]], base: Path, state: StateDir) -> Iterator[Finding]:
    seen: dict[str, int] = {}
    for i, entry in enumerate(data):
        org = _org(entry)
        if org in seen and is_valid_org_number(org):
            yield (
                (i, "org_number"),
                f"supplier {org} is listed twice (also entry {seen[org] + 1})",
                "list each external supplier once",
            )
        seen.setdefault(org, i)
        found = list(_entry_rules(i, entry, base))
        yield from found
        if _pulls(entry) and not found:  # its certificate, once the rest holds
            yield from _puller(i, entry, base, state)


def _entry_rules(i: int, entry: dict[str, Any], base: Path) -> Iterator[Finding]:
    org = _org(entry)
    if not is_valid_org_number(org):
        yield (
            (i, "org_number"),
            f"{entry['org_number']!r} is not a valid organisation number",
            org_number_hint(org),
        )
    yield from _files(i, entry, base)
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
    wrong = PUSH_ONLY if _pulls(entry) else PULL_ONLY
    yield from (((i, key), *wrong[key]) for key in entry if key in wrong)


def _files(i: int, entry: dict[str, Any], base: Path) -> Iterator[Finding]:
    if "endpoint_ca" in entry and not _path(entry["endpoint_ca"], base).is_file():
        yield (
            (i, "endpoint_ca"),
            f"no CA file {_path(entry['endpoint_ca'], base)}",
            "give the PEM file of the CA that issued the endpoint's (or read-back's) "
            "certificate, relative to the target file",
        )
    if "endpoint_cert" in entry and not _path(entry["endpoint_cert"], base).is_file():
        yield (
            (i, "endpoint_cert"),
            f"no certificate file {_path(entry['endpoint_cert'], base)}",
            "give the PEM file of the certificate the puller presents, relative to the target file",
        )


def _puller(i: int, entry: dict[str, Any], base: Path, state: StateDir) -> Iterator[Finding]:
    """A puller's certificate: issued by the state's AF test CA for its number, as pinned."""
    key = "endpoint_cert" if "endpoint_cert" in entry else "mode"
    try:
        _puller_pin(entry, base, state)
    except EndpointError as exc:
        yield (i, key), str(exc), exc.hint or ""


def _puller_pin(entry: dict[str, Any], base: Path, state: StateDir) -> str:
    """The pin the run registers for a puller (its client certificate's SHA-256)."""
    org, pin = _org(entry), entry.get("endpoint_cert_sha256")
    if "endpoint_cert" in entry:
        return puller_pin(state, org, _path(entry["endpoint_cert"], base), pin, names=KEYS)
    if pin is not None:
        return normalise_pin(pin)
    cert = state.supplier_cert(org)
    if not cert.is_file():
        raise EndpointError(
            f"no certificate of the puller of {org} is known (none in {state.root})",
            hint="add `endpoint_cert: FILE` (the certificate it presents) or "
            "`endpoint_cert_sha256: HEX`",
        )
    return puller_pin(state, org, cert, names=KEYS)


def _endpoint(
    entry: dict[str, Any], base: Path, state: StateDir, port: int, pull_faults: bool
) -> ExternalEndpoint:
    ca = _path(entry["endpoint_ca"], base) if "endpoint_ca" in entry else None
    if _pulls(entry):
        return pull_endpoint(
            state,
            org_number=_org(entry),
            cert_sha256_hex=_puller_pin(entry, base, state),
            pull_port=port,
            readback=entry.get("readback"),
            ca=ca,
            pull_faults=pull_faults,
        )
    assert ca is not None  # the schema requires it of a push entry
    return ExternalEndpoint(
        url=entry["endpoint"],
        ca=ca,
        org_number=_org(entry),
        cert_sha256=entry.get("endpoint_cert_sha256"),
        readback=entry.get("readback"),
    )
