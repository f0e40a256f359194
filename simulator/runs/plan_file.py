"""Test plan files: one supplier's endpoint, schedule and cases, read and written as YAML.

``b2bsim plan init`` writes one (docs/plan.md); ``plan run``, ``plan status``
and ``plan evidence`` read it.  The JSON Schema ``simulator/data/plan.schema.json``
is the one statement of what a plan may say; a mistake is named by file,
line and key as in scenario files (:mod:`simulator.runs.scenario_file`), as a
:class:`~simulator.vocabulary.errors.PlanError`.  Paths in a plan (the
endpoint's CA, a puller's certificate, a scenario) are relative to the plan's
directory unless absolute.

A push plan's ``endpoint`` is the URL the ICC posts to; a pull plan's
(``mode: pull``) is the puller: the ``listen`` address it fetches from (the
kit's outbox and each scenario run's) and its client certificate's pin; its
:attr:`Plan.url` is then that outbox's URL.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from simulator.runs.scenario_file import ScenarioFile, strict_validator
from simulator.runs.schema_words import findings
from simulator.vocabulary.errors import PlanError, ScenarioError
from simulator.vocabulary.identifiers import is_valid_org_number

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = ["Plan", "PlanCase", "listen_url", "read_plan", "write_plan"]  # and the case kinds below

SCHEMA_RESOURCE = ("simulator", "data/plan.schema.json")
CONFORMANCE, SCENARIO = "conformance", "scenario"
_DOCS = "docs/plan.md"


@cache
def plan_schema() -> dict[str, Any]:
    """The JSON Schema of plan files, as shipped in the package."""
    package, name = SCHEMA_RESOURCE
    loaded: dict[str, Any] = json.loads(
        resources.files(package).joinpath(name).read_text(encoding="utf-8")
    )
    return loaded


@cache
def _validator() -> Validator:
    return strict_validator(plan_schema())


@dataclass(frozen=True)
class PlanCase:
    """One case of the plan: a conformance case or a library scenario."""

    id: str  # conformance/<case id> or scenario/<scenario name>
    kind: str  # CONFORMANCE | SCENARIO
    title: str
    applies: bool = True
    reason: str = ""  # why it does not apply, or which of its steps do not
    scenario: str | None = None  # a scenario's file

    @property
    def name(self) -> str:
        """The id without its kind: the kit's case id or the scenario's name."""
        return self.id.split("/", 1)[1]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "applies": self.applies,
        }
        if self.reason:
            data["reason"] = self.reason
        if self.scenario is not None:
            data["scenario"] = self.scenario
        return data


@dataclass(frozen=True)
class Plan:
    """A supplier's test plan, as its file says."""

    path: Path
    org_number: str
    name: str
    url: str  # push: the endpoint; pull: the outbox the puller fetches from (of ``listen``)
    ca: str | None  # push: the endpoint's CA; pull: the read-back's (None: the AF test CA)
    mode: str = "push"
    readback: str | None = None
    cert_sha256: str | None = None
    checked: str = ""
    start: str | None = None
    go_live: str | None = None
    cases: tuple[PlanCase, ...] = field(default_factory=tuple)
    listen: str | None = None  # pull: HOST:PORT
    puller_cert: str | None = None  # pull: the puller's certificate file, if given

    @property
    def runs_dir(self) -> Path:
        """The plan's history: one directory per run, beside the plan."""
        return self.path.with_name(self.path.name + ".runs")

    def resolve(self, path: str) -> Path:
        """A path of the plan, relative to the plan's directory unless absolute."""
        p = Path(path)
        return p if p.is_absolute() else self.path.parent / p

    @property
    def ca_path(self) -> Path | None:
        return None if self.ca is None else self.resolve(self.ca)

    @property
    def pulls(self) -> bool:
        return self.mode == "pull"

    def case(self, case_id: str) -> PlanCase | None:
        return next((c for c in self.cases if case_id in (c.id, c.name)), None)

    def to_json(self) -> dict[str, Any]:
        endpoint: dict[str, Any]
        if self.pulls:
            endpoint = {"mode": self.mode, "listen": self.listen, "cert": self.puller_cert}
            endpoint.update(cert_sha256=self.cert_sha256, ca=self.ca, readback=self.readback)
        else:
            endpoint = {"url": self.url, "ca": self.ca, "mode": self.mode}
            endpoint.update(readback=self.readback, cert_sha256=self.cert_sha256)
        if self.checked:
            endpoint["checked"] = self.checked
        return {
            "version": 1,
            "supplier": {"org_number": self.org_number, "name": self.name},
            "endpoint": endpoint,
            "schedule": {"start": self.start, "go_live": self.go_live},
            "cases": [c.to_json() for c in self.cases],
        }


#: The text values of a plan with a shape: what they must look like, and an example.
_TEXT_SHAPES: dict[tuple[str, ...], tuple[str, str]] = {
    ("supplier", "org_number"): (
        "the organisation number as quoted text",
        "write its 10 digits in quotes, e.g. org_number: '5560125790'",
    ),
    ("schedule", "start"): ("a month YYYY-MM", "e.g. start: '2027-01'"),
    ("schedule", "go_live"): ("a month YYYY-MM", "e.g. go_live: '2027-03'"),
    ("endpoint", "url"): ("an https URL", "e.g. https://supplier.example:8443/b2b/envelopes"),
    ("endpoint", "readback"): ("an https URL or null", "e.g. https://host:8443/b2b/ledger"),
    ("endpoint", "cert_sha256"): (
        "64 lower-case hex digits or null",
        "the SHA-256 of the endpoint certificate's DER, or null to take it at the next run",
    ),
    ("endpoint", "listen"): (
        "HOST:PORT with a fixed port",
        "the address the puller fetches from, e.g. listen: 127.0.0.1:9443",
    ),
    ("cases", "*", "id"): ("conformance/ID or scenario/NAME", "e.g. conformance/valid-order"),
}


def _value(data: Any, at: tuple[str | int, ...]) -> Any:
    for key in at:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def read_plan(path: Path) -> Plan:
    """The plan at ``path``; PlanError naming file, line and key if it is wrong."""
    if not path.is_file():
        raise PlanError(
            f"{path}: no such plan file", hint="write one with `b2bsim plan init ... --out FILE`"
        )
    try:
        located = ScenarioFile.read(path)
    except ScenarioError as exc:  # YAML syntax, duplicate keys, not UTF-8
        raise PlanError(exc.message, hint=exc.hint) from None
    if not isinstance(located.data, dict):
        raise PlanError(f"{path}: not a plan (a YAML mapping)", hint=f"see {_DOCS}")
    # An unknown key first: a misspelt key is also a missing one, and the typo is the news.
    problems = sorted(
        {located.problem(*f): None for f in findings(_validator().iter_errors(located.data))},
        key=lambda p: (not p.what.startswith("unknown key"), p.line),
    )
    data = located.data
    if not problems:
        org = data["supplier"]["org_number"]
        if not is_valid_org_number(org):
            problems.append(
                located.problem(
                    ("supplier", "org_number"),
                    f"{org!r} is not a valid organisation number (its Luhn check digit)",
                    "give the supplier's 10-digit number",
                )
            )
        ids = [c["id"] for c in data["cases"]]
        for index, case_id in enumerate(ids):
            if ids.index(case_id) != index:
                problems.append(
                    located.problem(("cases", index, "id"), f"case {case_id!r} twice", "keep one")
                )
    if problems:
        p = problems[0]
        what, hint = p.what, p.hint.replace("docs/scenarios.md", _DOCS)
        shape = _TEXT_SHAPES.get(tuple("*" if isinstance(k, int) else k for k in p.at))
        if shape is not None and what.startswith("expected text"):
            got = what.split(", got ", 1)[1] if ", got " in what else repr(_value(data, p.at))
            what, hint = f"expected {shape[0]}, got {got}", shape[1]
        raise PlanError(f"{p.where}: {what} (at {p.key})", hint=hint)
    endpoint, schedule = data["endpoint"], data["schedule"]
    listen = endpoint.get("listen")
    return Plan(
        path=path,
        org_number=data["supplier"]["org_number"],
        name=data["supplier"]["name"],
        url=endpoint["url"] if listen is None else listen_url(listen),
        ca=endpoint.get("ca"),
        mode=endpoint["mode"],
        readback=endpoint.get("readback"),
        cert_sha256=endpoint.get("cert_sha256"),
        checked=endpoint.get("checked", ""),
        start=schedule.get("start"),
        go_live=schedule.get("go_live"),
        cases=tuple(
            PlanCase(
                id=c["id"],
                kind=c["kind"],
                title=c["title"],
                applies=c["applies"],
                reason=c.get("reason", ""),
                scenario=c.get("scenario"),
            )
            for c in data["cases"]
        ),
        listen=listen,
        puller_cert=endpoint.get("cert"),
    )


def listen_url(listen: str) -> str:
    """The outbox URL a puller configured with ``HOST:PORT`` fetches from."""
    return f"https://{listen}/b2b/outbox"


HEADER = (
    "# b2bsim test plan (docs/plan.md); checked by simulator/data/plan.schema.json.\n"
    "# `b2bsim plan run` runs its cases, `plan status` shows progress, "
    "`plan evidence` packs it.\n"
)


def write_plan(plan: Plan) -> None:
    """Write ``plan`` to ``plan.path`` atomically (a temporary file, then a rename)."""
    text = HEADER + yaml.safe_dump(plan.to_json(), sort_keys=False, allow_unicode=True, width=100)
    target = plan.path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        raise PlanError(
            f"cannot write {target}: {exc.strerror}", hint="choose a writable --out"
        ) from None
