"""Scenarios: what a run does, read from YAML and checked before anything starts.

The language (``docs/scenarios.md``)::

    name: happy-path
    description: what the scenario shows and why it matters
    seed: 42                # same seed → same documents and ids
    timeout: 60             # seconds for the whole run
    suppliers:
      count: 3
    steps:
      - produce: {chains: 1}             # per supplier: order → invoice → credit
      - produce: {type: order, count: 2} # per supplier
      - wait: {timeout: 30}              # until all is delivered or dead-lettered
    expect:                 # the run passes when every figure matches
      ingested: 9
      lost: 0

Every error names the file, the line and what was expected.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.errors import ScenarioError
from simulator.yamlfile import Location, load_located

DOCUMENT_TYPES = ("order", "invoice", "credit")
#: Figures an ``expect`` block may name (all integers, from the reconciliation).
EXPECTABLE = (
    "produced",
    "delivered",
    "ingested",
    "lost",
    "double_ingested",
    "dead_lettered",
)
MAX_SUPPLIERS = 5000


@dataclass(frozen=True)
class Produce:
    """Publish documents for every supplier: ``chains`` full chains, or ``count`` of ``type``."""

    chains: int = 0
    doc_type: str | None = None
    count: int = 0

    @property
    def messages_per_supplier(self) -> int:
        return 3 * self.chains + self.count


@dataclass(frozen=True)
class Wait:
    """Wait until everything produced so far is ingested or dead-lettered."""

    timeout: float


Step = Produce | Wait


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: Path
    seed: int = 1
    timeout: float = 60.0
    supplier_count: int = 3
    steps: tuple[Step, ...] = ()
    expect: Mapping[str, int] = field(default_factory=dict)

    @property
    def expected_messages(self) -> int:
        return self.supplier_count * sum(
            s.messages_per_supplier for s in self.steps if isinstance(s, Produce)
        )


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file; ScenarioError names file and line."""
    data, lines = load_located(path)
    return _Checker(path, lines).scenario(data)


class _Checker:
    def __init__(self, path: Path, lines: dict[Location, int]) -> None:
        self.path, self.lines = path, lines

    def fail(self, at: Location, what: str, hint: str) -> ScenarioError:
        line = self.lines.get(at)
        while line is None and at:
            at = at[:-1]
            line = self.lines.get(at)
        where = f"{self.path}:{line}" if line else str(self.path)
        dotted = ".".join(str(p) for p in at if not isinstance(p, int)) or "top level"
        return ScenarioError(f"{where}: {what} (at {dotted})", hint=hint)

    def mapping(
        self, value: Any, at: Location, allowed: tuple[str, ...], required: tuple[str, ...]
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

    def number(self, value: Any, at: Location, low: float, high: float) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise self.fail(
                at,
                f"expected seconds from {low} to {high}, got {value!r}",
                "write a number of seconds",
            )
        return float(value)

    def text(self, value: Any, at: Location) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(at, f"expected text, got {_kind(value)}", "write a short sentence")
        return value.strip()

    def scenario(self, data: Any) -> Scenario:
        top = self.mapping(
            data,
            (),
            ("name", "description", "seed", "timeout", "suppliers", "steps", "expect"),
            ("name", "description", "steps"),
        )
        suppliers = self.mapping(
            top.get("suppliers", {"count": 3}), ("suppliers",), ("count",), ("count",)
        )
        steps_raw = top["steps"]
        if not isinstance(steps_raw, list) or not steps_raw:
            raise self.fail(
                ("steps",), "expected a non-empty list of steps", "e.g. `- produce: {chains: 1}`"
            )
        steps = tuple(self.step(s, ("steps", i)) for i, s in enumerate(steps_raw))
        expect_raw = self.mapping(top.get("expect", {}), ("expect",), EXPECTABLE, ())
        expect = {k: self.integer(v, ("expect", k), 0, 10**9) for k, v in expect_raw.items()}
        return Scenario(
            name=self.text(top["name"], ("name",)),
            description=self.text(top["description"], ("description",)),
            path=self.path,
            seed=self.integer(top.get("seed", 1), ("seed",), 0, 2**31 - 1),
            timeout=self.number(top.get("timeout", 60), ("timeout",), 1, 24 * 3600),
            supplier_count=self.integer(
                suppliers["count"], ("suppliers", "count"), 1, MAX_SUPPLIERS
            ),
            steps=steps,
            expect=expect,
        )

    def step(self, raw: Any, at: Location) -> Step:
        step = self.mapping(raw, at, ("produce", "wait"), ())
        if len(step) != 1:
            raise self.fail(
                at, "a step has exactly one action", "write `- produce: …` or `- wait: …`"
            )
        ((kind, body),) = step.items()
        at = (*at, kind)
        if kind == "wait":
            wait = self.mapping(body or {}, at, ("timeout",), ())
            return Wait(
                timeout=self.number(wait.get("timeout", 60), (*at, "timeout"), 0.1, 24 * 3600)
            )
        produce = self.mapping(body, at, ("chains", "type", "count"), ())
        if "chains" in produce:
            if set(produce) != {"chains"}:
                raise self.fail(at, "`chains` stands alone", "use either chains or type+count")
            return Produce(chains=self.integer(produce["chains"], (*at, "chains"), 1, 100_000))
        if set(produce) != {"type", "count"}:
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
        return Produce(
            doc_type=doc_type, count=self.integer(produce["count"], (*at, "count"), 1, 100_000)
        )


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
