"""Scenarios: what a run does, read from YAML and checked before anything starts.

The language is documented in ``docs/scenarios.md``; in short::

    name: supplier-outage
    description: what the scenario shows and why it matters
    seed: 42                  # same seed → same documents and ids
    timeout: 120              # seconds for the whole run
    suppliers: {count: 3}
    brokers: 1                # more: a local network of brokers (docs/deploy.md)
    icc: {workers: 2, retry: {max_attempts: 40, max_delay: 2}}
    stub: {gap_timeout: 5}
    steps:
      - produce: {chains: 20, rate: 50, background: true}
      - fault: {supplier: down, seconds: 30}
      - fault: {kill: icc, times: 3, every: 1}
      - fault: {restart: broker}
      - fault: {kill: broker, index: 2, down: 3}   # kill -9 one broker of a network
      - fault: {supplier: status, status: 503, probability: 0.3}
      - clock: {ka_skew_ms: -2000}
      - sleep: 1
      - wait: {timeout: 60}
        say: Everything KA produced reaches a ledger.   # optional, any step: the live view's text
    expect: {lost: 0, double_ingested: 0}

Reading and checking a file is :mod:`simulator.runs.scenario_file`'s job (the
JSON Schema of the language, and the rules between fields a schema cannot say);
every error names the file, the line, the key and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from simulator.runs.attacks import ATTACKS
from simulator.runs.scenario_file import read_scenario
from simulator.vocabulary.retry import RetryPolicy

DOCUMENT_TYPES = ("order", "invoice", "credit")
#: Figures an ``expect`` block may name (all integers, from the reconciliation).
EXPECTABLE = (
    "produced",
    "delivered",
    "ingested",
    "lost",
    "double_ingested",
    "dead_lettered",
    "redelivered",
    "out_of_order",
)
#: Expectations that count by code: attack outcomes and dead letters.
CODED_EXPECTATIONS = ("refused", "dead_letter_codes")
#: Figures that must be 0 unless a scenario says otherwise.
ZERO_BY_DEFAULT = ("lost", "double_ingested", "out_of_order")
MAX_SUPPLIERS = 5000
SUPPLIER_FAULTS = ("down", "status", "delay", "reset", "clear")


@dataclass(frozen=True)
class StepBase:
    """What every step has: ``say``, the scenario's own words for it in the live view
    ("": the sentence :func:`simulator.views.teaching.describe_step` writes for its kind)."""

    say: str = field(default="", kw_only=True)


@dataclass(frozen=True)
class Produce(StepBase):
    """Publish for every supplier: ``chains`` full chains, or ``count`` of ``doc_type``."""

    chains: int = 0
    doc_type: str | None = None
    count: int = 0
    rate: float = 0.0  # messages per second; 0: as fast as possible
    background: bool = False

    @property
    def messages_per_supplier(self) -> int:
        return 3 * self.chains + self.count


@dataclass(frozen=True)
class Wait(StepBase):
    """Wait for background steps, then until everything produced is loaded or dead-lettered."""

    timeout: float


@dataclass(frozen=True)
class Sleep(StepBase):
    seconds: float


@dataclass(frozen=True)
class KillIcc(StepBase):
    """kill -9 an ICC worker ``times`` times, ``every`` seconds (or once ``after`` N loads).

    ``at``: ``any`` moment (the worker chosen by the seed), or ``receipt``: the worker
    that has just had supplier 1's receipt, before its broker ack, so that the message
    is redelivered, re-signed and re-sent to a supplier that already has it.
    """

    times: int = 1
    every: float = 1.0
    after: int = 0
    at: str = "any"
    background: bool = False


@dataclass(frozen=True)
class RestartBroker(StepBase):
    """Stop the embedded broker, keep it down ``down`` seconds, start it again."""

    down: float = 1.0
    background: bool = False


@dataclass(frozen=True)
class KillBroker(StepBase):
    """kill -9 broker ``index`` (from 1) of the run's brokers, keep it down ``down``
    seconds, start it again on the same ports."""

    index: int
    down: float = 1.0
    background: bool = False


@dataclass(frozen=True)
class SupplierFault(StepBase):
    """A fault at the supplier endpoint; ``down`` stops it for ``seconds``."""

    kind: str  # down | status | delay | reset | clear
    seconds: float = 0.0  # down: how long; delay: how long each answer waits
    status: int = 503
    retry_after: float | None = None
    probability: float = 1.0
    first: int | None = None  # only the first N requests
    duration: float | None = None  # the rule lasts this long (None: until cleared)
    background: bool = False


ICC_FAULTS = ("duplicate", "reorder", "clear")


@dataclass(frozen=True)
class IccFault(StepBase):
    """The ICC duplicates or reorders deliveries with ``probability`` (clear: stops)."""

    kind: str
    probability: float = 1.0
    background: bool = False


ATTACK_KINDS = tuple(ATTACKS)


@dataclass(frozen=True)
class Attack(StepBase):
    """Aim hostile or forged requests at supplier number ``supplier`` (from 1)."""

    kinds: tuple[str, ...]
    supplier: int = 1
    background: bool = False


PKI_ACTIONS = ("revoke", "expire", "rotate", "swap", "move")


@dataclass(frozen=True)
class PkiChange(StepBase):
    """Change a certificate mid-run: revoke, expire, rotate, or swap two suppliers'."""

    action: str
    supplier: int  # from 1; 0 means the ICC (revoke only)
    other: int = 0  # swap: supplier ``supplier`` presents supplier ``other``'s certificate
    background: bool = False


POISON_KINDS = ("no-headers", "unknown-type", "unknown-supplier", "not-xml")


@dataclass(frozen=True)
class Poison(StepBase):
    """Put messages on KA's queue that the ICC must dead-letter at once."""

    kinds: tuple[str, ...]
    background: bool = False


@dataclass(frozen=True)
class Clock(StepBase):
    """Skew KA's clock by ``ka_skew_ms`` from now on."""

    ka_skew_ms: int


Step = (
    Produce
    | Wait
    | Sleep
    | KillIcc
    | RestartBroker
    | KillBroker
    | SupplierFault
    | IccFault
    | Poison
    | Clock
    | Attack
    | PkiChange
)


#: The scenario's supplier that ``b2bsim run --endpoint`` puts at an external endpoint.
EXTERNAL_SUPPLIER = 1
_STUB_ONLY = (
    "it needs the reference stub's internals (its process or its faults file); the other "
    "suppliers get it, the external endpoint does not"
)


def not_applicable_to_endpoint(step: Step, externals: int = EXTERNAL_SUPPLIER) -> str | None:
    """Why ``step`` does not apply to an external supplier, or None if it does.

    The one place that says it: ICC- and broker-side faults (kill -9 of an ICC
    worker and its redeliveries, reorder, duplicate, broker restarts and kills, a
    network of brokers, bursts, poison messages, certificate changes and CRL
    publications for the other suppliers) apply; supplier faults, attacks or
    certificate changes aimed at the external supplier (its key and process are
    not ours), and revoking the ICC's certificate (the supplier reads another
    CRL), do not.  ``externals``: suppliers 1 to this are external (``--target``).
    """

    def external(number: int) -> bool:
        return 1 <= number <= externals

    if isinstance(step, SupplierFault):
        return f"`fault: {{supplier: {step.kind}}}`: {_STUB_ONLY}"
    if isinstance(step, Attack) and external(step.supplier):
        return (
            f"`attack` on supplier {step.supplier}: the attacks are graded against the "
            "reference stub; `b2bsim conformance` sends them to your endpoint"
        )
    if isinstance(step, PkiChange) and external(step.supplier):
        return (
            f"`pki: {{{step.action}: {step.supplier}}}`: the external supplier's key and "
            "certificate are its own, not the run's"
        )
    if isinstance(step, PkiChange) and step.action == "revoke" and step.supplier == 0:
        return (
            "`pki: {revoke: icc}`: the run revokes its own copy of the ICC's certificate "
            "and publishes RUN_DIR/pki/crl.pem, which the external supplier does not read "
            "(it checks the CRL of its state directory, which a run never changes); our "
            "stub's suppliers get it"
        )
    if isinstance(step, PkiChange) and external(step.other):
        return f"`pki: {{swap: {step.supplier}, with: {step.other}}}`: that key is not the run's"
    return None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: Path
    seed: int = 1
    timeout: float = 60.0
    supplier_count: int = 3
    pull_count: int = 0  # the last this many suppliers fetch from the ICC's outbox
    icc_workers: int = 1
    request_timeout: float = 10.0
    retry: RetryPolicy | None = None
    gap_timeout: float = 5.0
    brokers: int = 1  # more than 1: a local network of brokers
    steps: tuple[Step, ...] = ()
    expect: Mapping[str, int] = field(default_factory=dict)

    @property
    def expected_messages(self) -> int:
        return self.supplier_count * sum(
            s.messages_per_supplier for s in self.steps if isinstance(s, Produce)
        )

    @property
    def needs_embedded_broker(self) -> bool:
        """A run that restarts or kills a broker, or runs a network, starts its own."""
        return self.brokers > 1 or any(
            isinstance(s, RestartBroker | KillBroker) for s in self.steps
        )


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file (ScenarioError names file, line and key), then
    build it: the checks are the schema's and :mod:`simulator.runs.scenario_file`'s."""
    data = read_scenario(path)
    suppliers = data.get("suppliers", {"count": 3})
    icc, stub = data.get("icc", {}), data.get("stub", {})
    retry = icc.get("retry")
    return Scenario(
        name=data["name"].strip(),
        description=data["description"].strip(),
        path=path,
        seed=data.get("seed", 1),
        timeout=float(data.get("timeout", 60)),
        supplier_count=suppliers["count"],
        pull_count=suppliers.get("pull", 0),
        icc_workers=icc.get("workers", 1),
        request_timeout=float(icc.get("request_timeout", 10)),
        retry=None if retry is None else RetryPolicy.from_json(retry, "icc.retry"),
        gap_timeout=float(stub.get("gap_timeout", 5)),
        brokers=data.get("brokers", 1),
        steps=tuple(_step(step) for step in data["steps"]),
        expect=_expectations(data.get("expect", {})),
    )


def _expectations(raw: dict[str, Any]) -> dict[str, int]:
    expect: dict[str, int] = {}
    for key, value in raw.items():
        if key in CODED_EXPECTATIONS:
            expect.update({f"{key}.{code}": count for code, count in value.items()})
        else:
            expect[key] = value
    return expect


def _step(raw: dict[str, Any]) -> Step:
    """A step from its checked mapping: the one key besides ``say`` names the action."""
    ((kind, body),) = ((k, v) for k, v in raw.items() if k != "say")
    step = _action(kind, body)
    say = str(raw.get("say") or "").strip()
    return replace(step, say=say) if say else step


def _action(kind: str, body: Any) -> Step:
    if kind == "wait":
        return Wait(timeout=float((body or {}).get("timeout", 60)))
    if kind == "sleep":
        return Sleep(float(body))
    if kind == "clock":
        return Clock(body["ka_skew_ms"])
    background: bool = body.get("background", False)
    if kind == "produce":
        rate = float(body.get("rate", 0))
        if "chains" in body:
            return Produce(chains=body["chains"], rate=rate, background=background)
        return Produce(doc_type=body["type"], count=body["count"], rate=rate, background=background)
    if kind == "attack":
        kinds = tuple(_as_list(body["kinds"]))
        return Attack(kinds=kinds, supplier=body.get("supplier", 1), background=background)
    if kind == "pki":
        action = next(a for a in PKI_ACTIONS if a in body)
        if body[action] == "icc":
            return PkiChange(action, 0, background=background)
        return PkiChange(action, body[action], body.get("with", 0), background=background)
    return _fault(body, background)


def _fault(body: dict[str, Any], background: bool) -> Step:
    """A fault from its checked mapping: the key naming the target decides the kind."""
    down = float(body.get("down", 1.0))
    if body.get("kill") == "broker":
        return KillBroker(index=body["index"], down=down, background=background)
    if "kill" in body:
        return KillIcc(
            times=body.get("times", 1),
            every=float(body.get("every", 1.0)),
            after=body.get("after", 0),
            at=body.get("at", "any"),
            background=background,
        )
    if "restart" in body:
        return RestartBroker(down=down, background=background)
    probability = float(body.get("probability", 1.0))
    if "supplier" in body:
        return SupplierFault(
            kind=body["supplier"],
            seconds=float(body.get("seconds", 0)),
            status=body.get("status", 503),
            retry_after=_seconds(body.get("retry_after")),
            probability=probability,
            first=body.get("first"),
            duration=_seconds(body.get("for")),
            background=background,
        )
    if "icc" in body:
        return IccFault(kind=body["icc"], probability=probability, background=background)
    return Poison(kinds=tuple(_as_list(body["poison"])), background=background)


def _as_list(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def _seconds(value: float | None) -> float | None:
    return None if value is None else float(value)
