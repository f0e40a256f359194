"""Tests of simulator.kits.soak.schedule: seeded, complete, lanes that do not collide."""

from __future__ import annotations

import itertools

import pytest

from simulator.kits.soak.schedule import (
    HEARTBEAT_GRACE_S,
    ICC_REQUEST_TIMEOUT,
    KINDS,
    LANES,
    STUB_MAX_SKEW_S,
    WARMUP_S,
    build_schedule,
)


def test_the_same_seed_gives_the_same_schedule() -> None:
    assert build_schedule(1, 3) == build_schedule(1, 3)
    assert build_schedule(1, 3).text() == build_schedule(1, 3).text()


def test_another_seed_gives_another_schedule() -> None:
    assert build_schedule(1, 3).events != build_schedule(2, 3).events


@pytest.mark.parametrize("minutes", [0.5, 1, 3, 30])
@pytest.mark.parametrize("seed", [1, 2, 77])
def test_every_kind_is_scheduled_at_least_once(seed: int, minutes: float) -> None:
    kinds = build_schedule(seed, minutes).kinds()
    assert set(kinds) == set(KINDS)
    assert all(n >= 1 for n in kinds.values()), kinds


def test_faults_of_one_lane_never_overlap_and_lanes_do() -> None:
    schedule = build_schedule(1, 3)
    for lane in LANES:
        events = [e for e in schedule.events if e.lane == lane]
        for a, b in itertools.pairwise(events):
            assert a.end_s <= b.at_s, (a, b)
    overlapping = {
        (a.lane, b.lane)
        for a in schedule.events
        for b in schedule.events
        if a.lane != b.lane and a.at_s < b.end_s and b.at_s < a.end_s
    }
    assert len(overlapping) >= 2 * len(LANES)  # faults of different kinds strike together


def test_a_longer_soak_has_more_faults_within_its_window() -> None:
    short, long = build_schedule(1, 3), build_schedule(1, 30)
    assert len(long.events) > 5 * len(short.events)
    assert long.last_end_s <= 30 * 60
    assert min(e.at_s for e in long.events) >= WARMUP_S


def test_freezes_outlast_the_timeouts_and_skews_are_on_each_side_of_the_limit() -> None:
    events = build_schedule(1, 30).events
    for e in events:
        if e.kind == "freeze-stub":
            assert e.seconds > ICC_REQUEST_TIMEOUT
        if e.kind == "freeze-broker":
            assert e.seconds > HEARTBEAT_GRACE_S
        if e.kind == "clock-skew-within":
            assert 0 < abs(e.params["skew_ms"]) < STUB_MAX_SKEW_S * 1000
        if e.kind == "clock-skew-beyond":
            assert abs(e.params["skew_ms"]) > STUB_MAX_SKEW_S * 1000


def test_icc_faults_name_a_worker_of_the_soak_and_a_skew_strikes_them_all() -> None:
    events = [e for e in build_schedule(1, 30, workers=3).events if e.lane == "icc"]
    assert {e.target for e in events if not e.kind.startswith("clock")} == {
        "icc-1",
        "icc-2",
        "icc-3",
    }
    assert {e.target for e in events if e.kind.startswith("clock")} == {"icc"}


def test_a_lane_rests_at_least_as_long_as_it_strikes_after_its_first_pass() -> None:
    """No lane is under a fault most of the time: the chain gets healthy spells."""
    schedule = build_schedule(1, 30)
    for lane in LANES:
        events = [e for e in schedule.events if e.lane == lane]
        first_pass = len({k for k, spec in KINDS.items() if spec.lane == lane})
        later = events[first_pass:]
        assert later, lane
        struck = sum(e.seconds for e in later)
        span = later[-1].end_s - later[0].at_s
        assert struck <= 0.55 * span, (lane, struck, span)
