"""The pull conformance kit against pullers written here, from the docs, independently of our stub.

Each puller (tests/simulator/kits/pullers.py) is a small aiohttp client that
fetches from the kit's outbox over mutual TLS (docs/pull.md), verifies each
envelope with lxml, cryptography and signxml directly (not ``supplier_stub``,
not ``simulator.vocabulary.verifier``), acknowledges with the ``refused`` list
and serves its ledger as the read-back (docs/openapi.yaml).  The correct one
passes every pull case; each deliberately broken one fails exactly its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from simulator.kits.conformance import ConformanceReport, Grade
from simulator.kits.conformance_pull import PullSetup, run_pull_conformance
from simulator.kits.conformance_pull_cases import PULL_CASES, REFUSING
from simulator.kits.conformance_pull_kit import PullTarget
from simulator.lab.pki import init_pki, numbered_suppliers
from simulator.vocabulary.state import StateDir
from tests.simulator.kits.pullers import Flaws, Puller, free_port, readback


@dataclass(frozen=True)
class Setup:
    state: StateDir
    org_number: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    state = StateDir(tmp_path_factory.mktemp("pullers") / "state")
    (supplier,) = numbered_suppliers(1)
    init_pki(state, [supplier])
    return Setup(state, supplier.org_number)


async def run_kit(
    setup: Setup, flaws: Flaws | None = None, *, with_readback: bool = False, **changes: Any
) -> tuple[ConformanceReport, Puller]:
    """The kit on a free port and the puller it prints instructions for, until the report."""
    port = free_port()
    outbox = f"https://127.0.0.1:{port}/b2b/outbox"
    puller = Puller(setup.state, setup.org_number, outbox, flaws or Flaws())
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    def listening(info: PullSetup) -> None:
        assert info.url == puller.outbox
        tasks.append(asyncio.create_task(puller.run(stop)))

    options: dict[str, Any] = {"seed": 5, "burst": 40, "timeout": 5.0, **changes}
    try:
        async with readback(puller) as url:
            target = PullTarget(
                state=setup.state,
                org_number=setup.org_number,
                host="127.0.0.1",
                port=port,
                readback=url if with_readback else None,
                **options,
            )
            report = await run_pull_conformance(target, listening=listening)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return report, puller


def failed(report: ConformanceReport) -> set[str]:
    return {r.case_id for r in report.results if r.grade is Grade.FAILED}


#: The envelope cases whose envelopes must be listed as refused (docs/conformance.md).
MUST_REFUSE = {
    "conflict",
    "tampered",
    "unsigned",
    "untrusted-signer",
    "signer-foreign-ca",
    "signature-wrapping",
    "sha1-signature",
    "sha1-digest",
    "timestamp-future",
    "replay-after-a-day",
    "misaddressed-org",
    "misaddressed-cert",
    "misaddressed-url",
    "hostile-xml",
    "xxe-external-entity",
    "external-dtd",
    "oversized-body",
    "signer-revoked",
}


#: The cases whose envelopes only a signature check refuses.
SIGNATURE_CASES = {
    "tampered",
    "unsigned",
    "untrusted-signer",
    "signer-foreign-ca",
    "signature-wrapping",
    "sha1-signature",
    "sha1-digest",
    "signer-revoked",
}


def test_the_plan_sorts_every_envelope_case() -> None:
    """What must be refused is the guide's list; the rest of the envelope cases are acknowledged."""
    assert frozenset(MUST_REFUSE) == REFUSING


class TestCorrectPuller:
    async def test_passes_every_pull_case_with_the_readback(self, setup: Setup) -> None:
        """Written from the docs without our code, it passes the whole pull plan."""
        report, puller = await run_kit(setup, with_readback=True)
        assert [r.case_id for r in report.results] == [c.id for c in PULL_CASES]
        assert report.passed, [(r.case_id, r.reason) for r in report.results if not r.passed]
        by_id = {r.case_id: r for r in report.results}
        assert by_id["valid-order"].reason == "acknowledged, not listed as refused, loaded once"
        assert by_id["tampered"].reason.startswith("refused SIGNATURE_INVALID")
        assert by_id["signer-foreign-ca"].reason.startswith("refused SIGNER_UNTRUSTED")
        assert by_id["resigned-redelivery"].reason.startswith("acknowledged again (a duplicate)")
        assert "fetched it again" in by_id["lost-ack-503"].reason
        assert "fetched it again" in by_id["lost-ack-dropped"].reason
        burst = by_id["month-end-burst"]
        assert burst.metrics["envelopes"] == burst.metrics["acknowledged"] == 40
        assert 0 < burst.metrics["p50_ms"] <= burst.metrics["p99_ms"]
        # Loaded once each, whatever was fetched again.
        ids = [e["envelope_id"] for e in puller.ledger]
        assert len(ids) == len(set(ids))


BROKEN = [
    (Flaws(ack_beyond=True), {"ack-only-fetched"}),
    (Flaws(no_refusals=True), MUST_REFUSE),
    (Flaws(ignore_retry_after=True), {"retry-after-429", "retry-after-503"}),
    (Flaws(forget_lost_ack=True), {"lost-ack-503", "lost-ack-dropped"}),
    (Flaws(no_signature_check=True), SIGNATURE_CASES),
]


class TestBrokenPullers:
    @pytest.mark.parametrize(
        ("flaws", "expected"),
        BROKEN,
        ids=[
            "acks-beyond-fetched",
            "never-lists-refusals",
            "ignores-retry-after",
            "no-refetch",
            "acks-bad-signatures",
        ],
    )
    async def test_fails_exactly_its_cases(
        self, setup: Setup, flaws: Flaws, expected: set[str]
    ) -> None:
        """Each flaw fails its case(s) and nothing else; each failure says what to change."""
        report, _ = await run_kit(setup, flaws)
        assert failed(report) == expected, [(r.case_id, r.reason) for r in report.failures]
        assert report.not_graded == []
        for result in report.failures:
            assert result.advice.startswith("fix: ")
            assert "; see docs/conformance.md#" in result.advice

    async def test_an_acknowledged_bad_signature_is_accepted_what_must_be_refused(
        self, setup: Setup
    ) -> None:
        report, _ = await run_kit(
            setup, Flaws(no_refusals=True), with_readback=True, case_ids=("tampered",)
        )
        (result,) = report.results
        assert result.reason == (
            "expected 403, got acknowledged, not listed as refused: the puller accepted what "
            "it must refuse, an envelope changed after it was signed"
        )
        assert 'list it in the acknowledgement\'s "refused" list' in result.fix

    async def test_acking_beyond_says_what_it_would_lose(self, setup: Setup) -> None:
        report, _ = await run_kit(setup, Flaws(ack_beyond=True), case_ids=("ack-only-fetched",))
        (result,) = report.results
        assert "acknowledged up to cursor 100, but the kit had served it only up to 1" in (
            result.reason
        )
        assert result.docs == "docs/conformance.md#acknowledge-only-what-you-fetched"

    async def test_a_puller_that_never_comes_is_not_exercised_never_passed(
        self, setup: Setup
    ) -> None:
        port = free_port()
        target = PullTarget(
            state=setup.state,
            org_number=setup.org_number,
            host="127.0.0.1",
            port=port,
            timeout=0.3,
            case_ids=("valid-order", "retry-after-429"),
        )
        report = await run_pull_conformance(target)
        assert failed(report) == {"valid-order", "retry-after-429"}
        for result in report.results:
            assert result.reason.startswith("not exercised: no puller fetched from https://")

    async def test_a_puller_that_stops_fails_the_rest_never_passes(self, setup: Setup) -> None:
        """The puller goes away after the first case: the rest fail, 'not exercised' once gone."""
        port = free_port()
        flaws = Flaws()
        puller = Puller(
            setup.state, setup.org_number, f"https://127.0.0.1:{port}/b2b/outbox", flaws
        )
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        ids = ("valid-order", "valid-credit", "duplicate", "retry-after-429")
        target = PullTarget(
            state=setup.state,
            org_number=setup.org_number,
            host="127.0.0.1",
            port=port,
            timeout=1.0,
            case_ids=ids,
        )
        report = await run_pull_conformance(
            target,
            listening=lambda _: tasks.append(asyncio.create_task(puller.run(stop))),
            progress=lambda _: stop.set(),
        )
        await asyncio.gather(*tasks)
        by_id = {r.case_id: r for r in report.results}
        assert by_id["valid-order"].grade is Grade.PASSED
        assert failed(report) == set(ids) - {"valid-order"}
        for case in ("duplicate", "retry-after-429"):
            assert by_id[case].reason == (
                "not exercised: the puller stopped fetching (no request for 1 s)"
            )
        assert report.to_json()["mode"] == "pull"
