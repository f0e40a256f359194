"""The soak's fault schedule: every kind at least once, overlapping, from a seed.

Faults are laid out on *lanes*, one per thing they strike (the ICC workers,
the stub's process, KA, the broker, the stub's answers, the ICC's deliveries,
the stub's disk, the ICC→stub link, the broker link).  Faults on one lane
follow each other (a frozen process is not also killed); lanes run side by
side, so faults of different lanes overlap.  Each lane first places every
kind it holds once, in a seeded order, then fills the rest of the fault
window with more of its kinds at seeded times.  The same seed and length
give the same schedule (docs/reliability.md lists the kinds).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KINDS", "LANES", "FaultEvent", "Schedule", "build_schedule"]

#: ICC request timeout the soak runs with (s): a frozen or slow stub must exceed it.
ICC_REQUEST_TIMEOUT = 5.0
#: STOMP heart-beats are 10 s, read with a 2.5x grace: a frozen peer is noticed after 25 s.
HEARTBEAT_GRACE_S = 25.0
#: The supplier stub accepts envelopes made at most this far off its clock (s).
STUB_MAX_SKEW_S = 900.0


@dataclass(frozen=True)
class KindSpec:
    """One fault kind: its lane and the range of its duration (s)."""

    lane: str
    seconds: tuple[float, float]


_PAST_POST = ICC_REQUEST_TIMEOUT + 2  # a fault the ICC's POST must time out on

#: Every fault kind → where it strikes and for how long (docs/reliability.md).
KINDS: dict[str, KindSpec] = {
    "kill-icc": KindSpec("icc", (1, 2)),
    "freeze-icc": KindSpec("icc", (12, 16)),
    "clock-skew-within": KindSpec("icc", (6, 9)),
    "clock-skew-beyond": KindSpec("icc", (3, 5)),
    "kill-stub": KindSpec("stub", (1, 2)),
    "freeze-stub": KindSpec("stub", (_PAST_POST, _PAST_POST + 2)),
    "supplier-outage": KindSpec("stub", (4, 7)),
    "kill-ka": KindSpec("ka", (1, 2)),
    "freeze-ka": KindSpec("ka", (12, 16)),
    "kill-broker": KindSpec("broker", (1, 3)),
    "freeze-broker": KindSpec("broker", (HEARTBEAT_GRACE_S + 2, HEARTBEAT_GRACE_S + 4)),
    "supplier-5xx": KindSpec("answers", (4, 7)),
    "supplier-slow": KindSpec("answers", (4, 7)),
    "supplier-reset": KindSpec("answers", (3, 6)),
    "icc-reorder": KindSpec("deliveries", (6, 10)),
    "icc-duplicate": KindSpec("deliveries", (6, 10)),
    "stub-disk-full": KindSpec("disk", (4, 7)),
    "link-stub-delay": KindSpec("link-stub", (5, 8)),
    "link-stub-reset": KindSpec("link-stub", (1, 3)),
    "link-stub-blackhole": KindSpec(
        "link-stub", (ICC_REQUEST_TIMEOUT + 2, ICC_REQUEST_TIMEOUT + 5)
    ),
    "link-broker-delay": KindSpec("link-broker", (5, 8)),
    "link-broker-reset": KindSpec("link-broker", (1, 3)),
    "link-broker-blackhole": KindSpec("link-broker", (8, 12)),
}
#: Lanes in the order they are laid out (each draws from the one seeded generator).
LANES: tuple[str, ...] = tuple(dict.fromkeys(spec.lane for spec in KINDS.values()))
#: Seconds of steady load before the first fault.
WARMUP_S = 5.0
#: Pause on a lane between two faults of its first pass (s): seeded within this range.
GAP_S = (2.0, 10.0)
#: After the first pass, a lane rests this long (s, seeded) plus the last fault's own
#: length between two faults: at most half of a lane's time is under a fault, so the
#: chain has healthy spells in which to catch up (a broker frozen three quarters of the
#: time would measure only the freezes).
REST_S = (10.0, 30.0)


@dataclass(frozen=True)
class FaultEvent:
    """One fault: when (s after the load starts), what, on which target, for how long."""

    at_s: float
    kind: str
    target: str
    seconds: float
    params: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def lane(self) -> str:
        return KINDS[self.kind].lane

    @property
    def end_s(self) -> float:
        return self.at_s + self.seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "at_s": self.at_s,
            "kind": self.kind,
            "target": self.target,
            "seconds": self.seconds,
            "params": self.params,
        }

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.params.items())
        return (
            f"{self.at_s:7.1f} s  {self.kind:<22} {self.target:<12} "
            f"{self.seconds:5.1f} s  {extra}".rstrip()
        )


@dataclass(frozen=True)
class Schedule:
    seed: int
    minutes: float
    events: tuple[FaultEvent, ...]

    def kinds(self) -> dict[str, int]:
        """How many faults of each kind the schedule holds."""
        counts = dict.fromkeys(KINDS, 0)
        for e in self.events:
            counts[e.kind] += 1
        return counts

    @property
    def last_end_s(self) -> float:
        return max((e.end_s for e in self.events), default=0.0)

    def to_json(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.events]

    def text(self) -> str:
        head = f"fault schedule (seed {self.seed}, {self.minutes:g} min, {len(self.events)} faults)"
        return "\n".join([head, *(e.line() for e in self.events)])


def _params(kind: str, rng: random.Random) -> dict[str, Any]:
    """The kind's own knobs, drawn from the seed."""
    if kind == "clock-skew-within":
        return {"skew_ms": rng.choice((-1, 1)) * rng.randrange(30_000, 120_000, 1000)}
    if kind == "clock-skew-beyond":
        return {"skew_ms": rng.choice((-1, 1)) * int((STUB_MAX_SKEW_S + 300) * 1000)}
    if kind == "supplier-5xx":
        return {"status": rng.choice((500, 502, 503)), "probability": 0.5}
    if kind == "supplier-slow":
        return {"delay_s": ICC_REQUEST_TIMEOUT + 1, "probability": 0.3}
    if kind == "supplier-reset":
        return {"probability": 0.4}
    if kind in ("icc-reorder", "icc-duplicate"):
        return {"probability": round(rng.uniform(0.2, 0.5), 2)}
    if kind.endswith("-delay"):
        return {"delay_ms": rng.randrange(100, 800, 50)}
    return {}


def _target(kind: str, lane: str, workers: int, rng: random.Random) -> str:
    """What a fault strikes: an ICC worker chosen by the seed, or the lane's one.  A
    skewed clock is the ICC's, every worker's: message groups may leave a restarted
    worker idle, and a clock that no message meets proves nothing."""
    if kind.startswith("clock-skew"):
        return "icc"
    if lane == "icc":
        return f"icc-{rng.randrange(workers) + 1}"
    return {"deliveries": "icc", "answers": "supplier-stub", "disk": "supplier-stub"}.get(
        lane, "supplier-stub" if lane == "stub" else lane
    )


def build_schedule(seed: int, minutes: float, *, workers: int = 2) -> Schedule:
    """The fault schedule of a soak of ``minutes`` with ``seed`` (pure: no clock, no I/O)."""
    rng = random.Random(seed)  # noqa: S311 - a fault schedule, not security
    window = max(minutes * 60.0, WARMUP_S + 1)
    events: list[FaultEvent] = []
    for lane in LANES:
        kinds = [k for k, spec in KINDS.items() if spec.lane == lane]
        rng.shuffle(kinds)
        t = WARMUP_S + rng.uniform(0, GAP_S[1])
        # Every kind once (even past the window: a short soak still strikes with each),
        # then more of the lane's kinds while they end inside the window.
        extra = (rng.choice(kinds) for _ in range(10_000))  # bounded
        for n, kind in enumerate([*kinds, *extra]):
            lo, hi = KINDS[kind].seconds
            seconds = round(rng.uniform(lo, hi), 1)
            if n >= len(kinds) and t + seconds > window:
                break
            target = _target(kind, lane, workers, rng)
            events.append(FaultEvent(round(t, 1), kind, target, seconds, _params(kind, rng)))
            rest = rng.uniform(*GAP_S) if n < len(kinds) else rng.uniform(*REST_S) + seconds
            t += seconds + rest
    events.sort(key=lambda e: (e.at_s, e.kind))
    return Schedule(seed, minutes, tuple(events))
