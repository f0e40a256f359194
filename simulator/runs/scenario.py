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
    expect: {lost: 0, double_ingested: 0}

Every error names the file, the line and what was expected.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.lab.network import MAX_BROKERS, order_problem
from simulator.runs.attacks import ATTACKS
from simulator.vocabulary.errors import ConfigError, ScenarioError
from simulator.vocabulary.retry import RetryPolicy
from simulator.vocabulary.yamlfile import Location, load_located

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
class Produce:
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
class Wait:
    """Wait for background steps, then until everything produced is loaded or dead-lettered."""

    timeout: float


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class KillIcc:
    """kill -9 an ICC worker ``times`` times, ``every`` seconds (or once ``after`` N loads)."""

    times: int = 1
    every: float = 1.0
    after: int = 0
    background: bool = False


@dataclass(frozen=True)
class RestartBroker:
    """Stop the embedded broker, keep it down ``down`` seconds, start it again."""

    down: float = 1.0
    background: bool = False


@dataclass(frozen=True)
class KillBroker:
    """kill -9 broker ``index`` (from 1) of the run's brokers, keep it down ``down``
    seconds, start it again on the same ports."""

    index: int
    down: float = 1.0
    background: bool = False


@dataclass(frozen=True)
class SupplierFault:
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
class IccFault:
    """The ICC duplicates or reorders deliveries with ``probability`` (clear: stops)."""

    kind: str
    probability: float = 1.0
    background: bool = False


ATTACK_KINDS = tuple(ATTACKS)


@dataclass(frozen=True)
class Attack:
    """Aim hostile or forged requests at supplier number ``supplier`` (from 1)."""

    kinds: tuple[str, ...]
    supplier: int = 1
    background: bool = False


PKI_ACTIONS = ("revoke", "expire", "rotate", "swap", "move")


@dataclass(frozen=True)
class PkiChange:
    """Change a certificate mid-run: revoke, expire, rotate, or swap two suppliers'."""

    action: str
    supplier: int  # from 1; 0 means the ICC (revoke only)
    other: int = 0  # swap: supplier ``supplier`` presents supplier ``other``'s certificate
    background: bool = False


POISON_KINDS = ("no-headers", "unknown-type", "unknown-supplier", "not-xml")


@dataclass(frozen=True)
class Poison:
    """Put messages on KA's queue that the ICC must dead-letter at once."""

    kinds: tuple[str, ...]
    background: bool = False


@dataclass(frozen=True)
class Clock:
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
    """Read and check a scenario file; ScenarioError names file and line."""
    data, lines = load_located(path)
    return _Checker(path, lines).scenario(data)


class _Checker:
    def __init__(self, path: Path, lines: dict[Location, int]) -> None:
        self.path, self.lines = path, lines
        self.supplier_count = MAX_SUPPLIERS
        self.brokers = MAX_BROKERS

    def fail(self, at: Location, what: str, hint: str) -> ScenarioError:
        line = self.lines.get(at)
        while line is None and at:
            at = at[:-1]
            line = self.lines.get(at)
        where = f"{self.path}:{line}" if line else str(self.path)
        dotted = ".".join(str(p) for p in at if not isinstance(p, int)) or "top level"
        return ScenarioError(f"{where}: {what} (at {dotted})", hint=hint)

    def mapping(
        self, value: Any, at: Location, allowed: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(
                at, f"expected a mapping, got {_kind(value)}", f"keys: {', '.join(allowed)}"
            )
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
                raise self.fail((*at, key), f"unknown key {key!r}", hint)
        for key in required:
            if key not in value:
                raise self.fail(at, f"missing key {key!r}", f"add `{key}:`")
        return value

    def integer(self, value: Any, at: Location, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(
                at,
                f"expected an integer from {low} to {high}, got {value!r}",
                "write a whole number",
            )
        return value

    def number(
        self, value: Any, at: Location, low: float, high: float, what: str = "seconds"
    ) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise self.fail(
                at, f"expected {what} from {low:g} to {high:g}, got {value!r}", f"write {what}"
            )
        return float(value)

    def flag(self, value: Any, at: Location) -> bool:
        if not isinstance(value, bool):
            raise self.fail(at, f"expected true or false, got {value!r}", "write true or false")
        return value

    def text(self, value: Any, at: Location) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(at, f"expected text, got {_kind(value)}", "write a short sentence")
        return value.strip()

    def scenario(self, data: Any) -> Scenario:
        top = self.mapping(
            data,
            (),
            (
                "name",
                "description",
                "seed",
                "timeout",
                "suppliers",
                "brokers",
                "icc",
                "stub",
                "steps",
                "expect",
            ),
            ("name", "description", "steps"),
        )
        suppliers = self.mapping(
            top.get("suppliers", {"count": 3}), ("suppliers",), ("count", "pull"), ("count",)
        )
        icc = self.mapping(top.get("icc", {}), ("icc",), ("workers", "retry", "request_timeout"))
        stub = self.mapping(top.get("stub", {}), ("stub",), ("gap_timeout",))
        retry = None
        if "retry" in icc:
            try:
                retry = RetryPolicy.from_json(icc["retry"], "icc.retry")
            except ConfigError as exc:
                raise self.fail(("icc", "retry"), exc.message, exc.hint or "") from None
        steps_raw = top["steps"]
        if not isinstance(steps_raw, list) or not steps_raw:
            raise self.fail(
                ("steps",), "expected a non-empty list of steps", "e.g. `- produce: {chains: 1}`"
            )
        self.supplier_count = self.integer(
            suppliers["count"], ("suppliers", "count"), 1, MAX_SUPPLIERS
        )
        self.brokers = self.integer(top.get("brokers", 1), ("brokers",), 1, MAX_BROKERS)
        steps = tuple(self.step(s, ("steps", i)) for i, s in enumerate(steps_raw))
        gap_timeout = self.number(stub.get("gap_timeout", 5), ("stub", "gap_timeout"), 0, 3600)
        self.check_order(steps, gap_timeout, "gap_timeout" in stub)
        expect_raw = self.mapping(
            top.get("expect", {}), ("expect",), (*EXPECTABLE, *CODED_EXPECTATIONS)
        )
        expect: dict[str, int] = {}
        for key, value in expect_raw.items():
            if key not in CODED_EXPECTATIONS:
                expect[key] = self.integer(value, ("expect", key), 0, 10**9)
                continue
            if not isinstance(value, dict) or not value:
                raise self.fail(
                    ("expect", key),
                    "expected a mapping of code: count",
                    "e.g. `refused: {XML_DOCTYPE: 2}`",
                )
            for code, count in value.items():
                where = ("expect", key, code)
                expect[f"{key}.{code}"] = self.integer(count, where, 0, 10**9)
        return Scenario(
            name=self.text(top["name"], ("name",)),
            description=self.text(top["description"], ("description",)),
            path=self.path,
            seed=self.integer(top.get("seed", 1), ("seed",), 0, 2**31 - 1),
            timeout=self.number(top.get("timeout", 60), ("timeout",), 1, 24 * 3600),
            supplier_count=self.integer(
                suppliers["count"], ("suppliers", "count"), 1, MAX_SUPPLIERS
            ),
            pull_count=self.integer(
                suppliers.get("pull", 0), ("suppliers", "pull"), 0, suppliers["count"]
            ),
            icc_workers=self.integer(icc.get("workers", 1), ("icc", "workers"), 1, 16),
            request_timeout=self.number(
                icc.get("request_timeout", 10), ("icc", "request_timeout"), 0.1, 600
            ),
            retry=retry,
            gap_timeout=gap_timeout,
            brokers=self.brokers,
            steps=steps,
            expect=expect,
        )

    def check_order(self, steps: tuple[Step, ...], gap_timeout: float, explicit: bool) -> None:
        """Refuse a network of brokers that cannot keep each supplier's order."""
        longest = max((s.down for s in steps if isinstance(s, KillBroker)), default=0.0)
        problem = order_problem(self.brokers, gap_timeout, longest)
        if problem is not None:
            at: Location = ("stub", "gap_timeout") if explicit else ("brokers",)
            raise self.fail(at, problem, "raise `stub: {gap_timeout: S}`, or use one broker")

    def step(self, raw: Any, at: Location) -> Step:
        step = self.mapping(
            raw, at, ("produce", "wait", "sleep", "fault", "clock", "attack", "pki")
        )
        if len(step) != 1:
            raise self.fail(
                at, "a step has exactly one action", "write `- produce: …`, `- fault: …`, …"
            )
        ((kind, body),) = step.items()
        at = (*at, kind)
        if kind == "wait":
            wait = self.mapping(body or {}, at, ("timeout",))
            return Wait(
                timeout=self.number(wait.get("timeout", 60), (*at, "timeout"), 0.1, 24 * 3600)
            )
        if kind == "sleep":
            return Sleep(self.number(body, at, 0, 3600))
        if kind == "clock":
            clock = self.mapping(body, at, ("ka_skew_ms",), ("ka_skew_ms",))
            return Clock(self.integer(clock["ka_skew_ms"], (*at, "ka_skew_ms"), -(10**9), 10**9))
        if kind == "fault":
            return self.fault(body, at)
        if kind == "attack":
            return self.attack(body, at)
        if kind == "pki":
            return self.pki(body, at)
        return self.produce(body, at)

    def supplier_index(self, value: Any, at: Location) -> int:
        """A supplier named by its number in the scenario, from 1."""
        return self.integer(value, at, 1, self.supplier_count)

    def attack(self, body: Any, at: Location) -> Attack:
        f = self.mapping(body, at, ("kinds", "supplier", "background"), ("kinds",))
        kinds = f["kinds"] if isinstance(f["kinds"], list) else [f["kinds"]]
        for i, k in enumerate(kinds):
            self._choice(k, (*at, "kinds", i), ATTACK_KINDS, "attack")
        return Attack(
            kinds=tuple(kinds),
            supplier=self.supplier_index(f.get("supplier", 1), (*at, "supplier")),
            background=self.flag(f.get("background", False), (*at, "background")),
        )

    def pki(self, body: Any, at: Location) -> PkiChange:
        f = self.mapping(body, at, (*PKI_ACTIONS, "with", "background"))
        actions = [a for a in PKI_ACTIONS if a in f]
        if len(actions) != 1:
            raise self.fail(
                at,
                "name exactly one of revoke, expire, rotate, swap, move",
                "e.g. `pki: {revoke: 2}` or `pki: {swap: 2, with: 3}`",
            )
        action = actions[0]
        background = self.flag(f.get("background", False), (*at, "background"))
        if action == "revoke" and f[action] == "icc":
            return PkiChange(action, 0, background=background)
        who = self.supplier_index(f[action], (*at, action))
        if action == "swap":
            if "with" not in f:
                raise self.fail(at, "`swap` needs `with:`", "e.g. `pki: {swap: 2, with: 3}`")
            other = self.supplier_index(f["with"], (*at, "with"))
            if other == who:
                raise self.fail((*at, "with"), "a supplier cannot swap with itself", "name another")
            return PkiChange(action, who, other, background=background)
        if "with" in f:
            raise self.fail((*at, "with"), "`with` goes with `swap` only", "remove it")
        return PkiChange(action, who, background=background)

    def produce(self, body: Any, at: Location) -> Produce:
        produce = self.mapping(body, at, ("chains", "type", "count", "rate", "background"))
        rate = self.number(produce.get("rate", 0), (*at, "rate"), 0, 1e6, "messages per second")
        background = self.flag(produce.get("background", False), (*at, "background"))
        what = set(produce) - {"rate", "background"}
        if what == {"chains"}:
            chains = self.integer(produce["chains"], (*at, "chains"), 1, 100_000)
            return Produce(chains=chains, rate=rate, background=background)
        if what != {"type", "count"}:
            raise self.fail(
                at,
                "expected `chains: N` or `type:` with `count:`",
                "e.g. `produce: {type: order, count: 2}`",
            )
        doc_type = produce["type"]
        if doc_type not in DOCUMENT_TYPES:
            raise self.fail(
                (*at, "type"),
                f"unknown document type {doc_type!r}",
                f"use one of {', '.join(DOCUMENT_TYPES)}",
            )
        count = self.integer(produce["count"], (*at, "count"), 1, 100_000)
        return Produce(doc_type=doc_type, count=count, rate=rate, background=background)

    def fault(self, body: Any, at: Location) -> Step:
        """A fault step: the key naming the target decides which kind it is."""
        if not isinstance(body, dict):
            raise self.fail(at, "expected a mapping", "e.g. `fault: {supplier: down, seconds: 30}`")
        background = self.flag(body.get("background", False), (*at, "background"))
        parsers = {
            "kill": self._kill,
            "restart": self._restart,
            "supplier": self._supplier,
            "icc": self._icc,
            "poison": self._poison,
        }
        for key, parse in parsers.items():
            if key in body:
                return parse(body, at, background)
        raise self.fail(
            at,
            "unknown fault",
            "use `kill: icc`, `kill: broker`, `restart: broker`, `supplier: …`, `icc: …` "
            "or `poison: …`",
        )

    def _choice(self, value: Any, at: Location, choices: tuple[str, ...], what: str) -> str:
        if value not in choices:
            raise self.fail(at, f"unknown {what} {value!r}", f"use one of {', '.join(choices)}")
        return str(value)

    def _kill(self, body: dict[str, Any], at: Location, background: bool) -> Step:
        what = self._choice(body["kill"], (*at, "kill"), ("icc", "broker"), "component to kill")
        if what == "broker":
            return self._kill_broker(body, at, background)
        f = self.mapping(body, at, ("kill", "times", "every", "after", "background"))
        return KillIcc(
            times=self.integer(f.get("times", 1), (*at, "times"), 1, 1000),
            every=self.number(f.get("every", 1.0), (*at, "every"), 0, 3600),
            after=self.integer(f.get("after", 0), (*at, "after"), 0, 10**9),
            background=background,
        )

    def _kill_broker(self, body: dict[str, Any], at: Location, background: bool) -> Step:
        f = self.mapping(body, at, ("kill", "index", "down", "background"), ("index",))
        return KillBroker(
            index=self.integer(f["index"], (*at, "index"), 1, self.brokers),
            down=self.number(f.get("down", 1.0), (*at, "down"), 0, 3600),
            background=background,
        )

    def _restart(self, body: dict[str, Any], at: Location, background: bool) -> Step:
        f = self.mapping(body, at, ("restart", "down", "background"))
        self._choice(f["restart"], (*at, "restart"), ("broker",), "component to restart")
        if self.brokers > 1:
            raise self.fail(
                (*at, "restart"),
                f"`restart: broker` restarts the one embedded broker, but this run has "
                f"{self.brokers} brokers",
                "kill one broker of the network with `{kill: broker, index: K, down: S}`",
            )
        down = self.number(f.get("down", 1.0), (*at, "down"), 0, 3600)
        return RestartBroker(down=down, background=background)

    def _supplier(self, body: dict[str, Any], at: Location, background: bool) -> Step:
        keys = ("supplier", "seconds", "status", "retry_after", "probability", "first", "for")
        f = self.mapping(body, at, (*keys, "background"))
        kind = self._choice(f["supplier"], (*at, "supplier"), SUPPLIER_FAULTS, "supplier fault")
        if kind in ("down", "delay") and "seconds" not in f:
            raise self.fail(at, f"`supplier: {kind}` needs `seconds:`", "e.g. `seconds: 30`")

        def optional(key: str, low: float, high: float) -> float | None:
            return self.number(f[key], (*at, key), low, high) if key in f else None

        return SupplierFault(
            kind=kind,
            seconds=self.number(f.get("seconds", 0), (*at, "seconds"), 0, 3600),
            status=self.integer(f.get("status", 503), (*at, "status"), 400, 599),
            retry_after=optional("retry_after", 0, 3600),
            probability=self.number(
                f.get("probability", 1.0), (*at, "probability"), 0, 1, "a probability"
            ),
            first=self.integer(f["first"], (*at, "first"), 1, 10**9) if "first" in f else None,
            duration=optional("for", 0, 24 * 3600),
            background=background,
        )

    def _icc(self, body: dict[str, Any], at: Location, background: bool) -> Step:
        f = self.mapping(body, at, ("icc", "probability", "background"))
        kind = self._choice(f["icc"], (*at, "icc"), ICC_FAULTS, "ICC fault")
        p = self.number(f.get("probability", 1.0), (*at, "probability"), 0, 1, "a probability")
        return IccFault(kind=kind, probability=p, background=background)

    def _poison(self, body: dict[str, Any], at: Location, background: bool) -> Step:
        f = self.mapping(body, at, ("poison", "background"))
        kinds = f["poison"] if isinstance(f["poison"], list) else [f["poison"]]
        for i, k in enumerate(kinds):
            self._choice(k, (*at, "poison", i), POISON_KINDS, "poison")
        return Poison(kinds=tuple(kinds), background=background)


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
