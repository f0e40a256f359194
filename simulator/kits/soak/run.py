"""``b2bsim soak``: a steady load for M minutes under a seeded schedule of faults.

The run, in order: suppliers, a PKI and a registry of its own in a run
directory; the broker, the stub, the ICC workers and KA as processes behind
fault proxies (:mod:`simulator.kits.soak.chain`); the schedule printed
(:mod:`simulator.kits.soak.schedule`) and played lane by lane while KA
produces (:mod:`simulator.kits.soak.faults`); then every fault stopped, KA
stopped, the chain left to drain (bounded), every component stopped, and the
invariant checker (:mod:`simulator.kits.invariants`) run over the run's
files and the broker's queues.  Every wait is bounded; the run always stops
what it started.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.kits.invariants import check_invariants
from simulator.kits.soak.chain import ChainOptions, SoakChain
from simulator.kits.soak.faults import Injector
from simulator.kits.soak.schedule import ICC_REQUEST_TIMEOUT, KINDS, Schedule, build_schedule
from simulator.lab.suppliers import make_suppliers
from simulator.runs.reconcile import reconcile
from simulator.runs.run_setup import init_run_suppliers, new_run_dir
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.messages import KA_QUEUE
from simulator.vocabulary.state import StateDir

__all__ = ["SoakOptions", "SoakResult", "run_soak"]

Say = Callable[[str], None]

#: Seconds a fault's lane may run past the load's end before its rest is skipped.
OVERRUN_S = 60.0
#: The supplier's gap timeout in a soak (s): long enough that a fault's delay does not
#: look like a gap, short enough that a dead-lettered predecessor does not stall the drain.
GAP_TIMEOUT_S = 30.0


@dataclass
class SoakOptions:
    state: StateDir
    minutes: float
    seed: int
    rate: float = 10.0
    suppliers: int = 3
    workers: int = 2
    drain_timeout: float = 180.0
    progress: Say | None = None

    def check(self) -> None:
        """Refuse options that cannot make a soak, before anything starts."""
        if not 0 < self.minutes <= 24 * 60:
            raise ConfigError(f"--minutes {self.minutes:g}", hint="give 0 < minutes ≤ 1440")
        if not 0 < self.rate <= 500:
            raise ConfigError(f"--rate {self.rate:g}", hint="give 0 < messages per second ≤ 500")
        if not 1 <= self.suppliers <= 200:
            raise ConfigError(f"--suppliers {self.suppliers}", hint="give 1 to 200 suppliers")
        if not 1 <= self.workers <= 8:
            raise ConfigError(f"--workers {self.workers}", hint="give 1 to 8 ICC workers")
        if self.drain_timeout <= 0:
            raise ConfigError(f"--drain-timeout {self.drain_timeout:g}", hint="give seconds > 0")


@dataclass
class SoakResult:
    options: SoakOptions
    schedule: Schedule
    run_dir: Path
    faults: dict[str, int]  # kind → injected, every kind listed
    produced: int = 0
    figures: dict[str, Any] = field(default_factory=dict)  # the checker's (or reconciliation's)
    invariants: dict[str, Any] | None = None
    invariants_passed: bool = False
    failed_injections: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    component_exits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    drained: bool = False
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def missing_kinds(self) -> list[str]:
        return [k for k, n in self.faults.items() if n == 0]

    @property
    def passed(self) -> bool:
        return self.error is None and self.invariants_passed and not self.missing_kinds

    def to_json(self) -> dict[str, Any]:
        o = self.options
        f = self.figures
        return {
            "passed": self.passed,
            "seed": o.seed,
            "minutes": o.minutes,
            "rate": o.rate,
            "suppliers": o.suppliers,
            "workers": o.workers,
            "faults": self.faults,
            "missing_kinds": self.missing_kinds,
            "produced": self.produced,
            "lost": f.get("lost"),
            "double_ingested": f.get("double_ingested"),
            "out_of_order": f.get("out_of_order"),
            "unexplained": f.get("unexplained"),
            "dead_lettered": f.get("dead_lettered", {}),
            "violations": f.get("violations", []),
            "drained": self.drained,
            "failed_injections": self.failed_injections,
            "skipped": self.skipped,
            "component_exits": self.component_exits,
            "error": self.error,
            "invariants": self.invariants,
            "schedule": self.schedule.to_json(),
            "run_dir": str(self.run_dir),
            "timings_s": {k: round(v, 1) for k, v in self.timings.items()},
            "rerun": f"b2bsim soak --minutes {o.minutes:g} --seed {o.seed} --rate {o.rate:g} "
            f"--suppliers {o.suppliers}",
        }


def run_soak(options: SoakOptions) -> SoakResult:
    """Run the soak; always stops what it started."""
    options.check()
    say = options.progress or (lambda _msg: None)
    state = options.state.ensure()
    schedule = build_schedule(options.seed, options.minutes, workers=options.workers)
    say(schedule.text())
    run_dir = new_run_dir(state, "soak")
    (run_dir / "schedule.json").write_text(json.dumps(schedule.to_json(), indent=1) + "\n")
    t0 = time.monotonic()
    identities = make_suppliers(options.suppliers, options.seed)
    run_state, _ = init_run_suppliers(run_dir, identities)
    result = SoakResult(options, schedule, run_dir, faults=dict.fromkeys(KINDS, 0))
    result.timings["setup"] = time.monotonic() - t0
    chain = SoakChain(
        ChainOptions(
            state=run_state,
            run_dir=run_dir,
            queue=f"{KA_QUEUE}.soak-{run_dir.name}",
            seed=options.seed,
            rate=options.rate,
            workers=options.workers,
            request_timeout=ICC_REQUEST_TIMEOUT,
            gap_timeout=GAP_TIMEOUT_S,
        ),
        say,
    )
    try:
        asyncio.run(_soak(options, schedule, chain, result, say))
        if result.error is None:
            t0 = time.monotonic()
            _check(chain, result, say)
            result.timings["check"] = time.monotonic() - t0
    finally:
        chain.stop_broker()
    (run_dir / "soak-result.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


async def _soak(
    options: SoakOptions, schedule: Schedule, chain: SoakChain, result: SoakResult, say: Say
) -> None:
    faults_log = chain.o.run_dir / "faults.jsonl"
    injector = Injector(chain, faults_log, say)
    injector.start_files()
    try:
        t0 = time.monotonic()
        await chain.start()
        result.timings["start"] = time.monotonic() - t0
        t0 = time.monotonic()
        load_s = options.minutes * 60
        lanes: dict[str, list[Any]] = defaultdict(list)
        for event in schedule.events:
            lanes[event.lane].append(event)
        last_start = max(load_s, schedule.last_end_s) + OVERRUN_S
        plays = [injector.play(lane, t0, last_start) for lane in lanes.values()]
        await asyncio.wait_for(
            asyncio.gather(asyncio.sleep(load_s), *plays), last_start + OVERRUN_S
        )
        result.timings["load"] = time.monotonic() - t0
        say("load over: every fault stopped, KA stopped; draining")
        await injector.clear()
        await chain.stop_ka()
        t0 = time.monotonic()
        result.drained = await _drain(chain, options.drain_timeout, say)
        result.timings["drain"] = time.monotonic() - t0
    except TimeoutError:
        result.error = "the fault schedule did not finish in time (a fault hung)"
    finally:
        await injector.clear()
        result.component_exits = {s.name: s.exits for s in chain.supervised() if s.exits}
        await chain.stop()
        result.faults.update(injector.injected)
        result.failed_injections = injector.failed
        result.skipped = injector.skipped


async def _drain(chain: SoakChain, timeout: float, say: Say) -> bool:
    """Wait until every message KA recorded is loaded or dead-lettered (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + 10
    while True:
        r = await asyncio.to_thread(reconcile, chain.produced_log, chain.events_files(), chain.db)
        if r.lost == 0 and r.produced > 0:
            say(f"drained: {r.ingested} loaded, {r.dead_lettered} dead-lettered of {r.produced}")
            return True
        now = time.monotonic()
        if now > deadline:
            say(
                f"not drained after {timeout:g} s: {r.lost} of {r.produced} neither loaded nor "
                "dead-lettered"
            )
            return False
        if now >= next_report:
            say(f"draining: {r.lost} of {r.produced} still on their way")
            next_report = now + 10
        await asyncio.sleep(2.0)


def _check(chain: SoakChain, result: SoakResult, say: Say) -> None:
    """The figures: the reconciliation's, then the invariant checker's (the verdict)."""
    rec = reconcile(chain.produced_log, chain.events_files(), chain.db)
    result.produced = rec.produced
    by_reason: dict[str, int] = defaultdict(int)
    for d in rec.dead_letters:
        by_reason[d.get("code") or "?"] += 1
    result.figures = {**rec.figures(), "dead_lettered": dict(by_reason), "unexplained": None}
    report = check_invariants(
        chain.o.run_dir,
        broker_url=chain.broker_url,
        queue=chain.o.queue,
        faults_log=chain.o.run_dir / "faults.jsonl",
    )
    result.invariants = report.to_json()
    violations = result.invariants.get("violations", [])
    result.invariants_passed = bool(report.passed)
    result.figures = {
        "lost": report.lost,
        "double_ingested": report.double_ingested,
        "out_of_order": report.out_of_order,
        "unexplained": report.unexplained,
        "dead_lettered": dict(report.dead_lettered),
        "violations": violations[:100] if isinstance(violations, list) else [],
    }
    verdict = "hold" if report.passed else "VIOLATED"
    say(f"invariants {verdict}: {len(report.violations)} violation(s)")
