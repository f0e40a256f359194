"""The live view in a real headless Chromium (Debian's), driven by Playwright, over real runs.

Each run is started the way ``b2bsim run --ui [--step]`` starts it
(:func:`simulator.views.ui_server.open_live_view`, :meth:`LiveView.wire`), in a
thread, against the session's broker.  Screenshots of every checked state go
to ``artifacts/ui/``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, expect, sync_playwright

from simulator.runs.runner import RunOptions, RunResult, run_scenario
from simulator.runs.scenario import load_scenario
from simulator.views.teaching import teaching
from simulator.views.ui_server import LiveView, open_live_view
from simulator.vocabulary.state import StateDir

pytestmark = pytest.mark.broker

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
HAPPY = ROOT / "scenarios" / "happy-path.yaml"
ARTIFACTS = ROOT / "artifacts" / "ui"
WAIT_MS = 45_000
LEDGER = '[data-station="ledger"] .chip'

FAULTS = """
name: ui-faults
description: The supplier answers 503 twice (the ICC retries), then 400 (dead-lettered at once).
seed: 3
timeout: 60
suppliers: {count: 1}
icc: {retry: {max_attempts: 10, initial_delay: 0.1, max_delay: 0.5}}
steps:
  - fault: {supplier: status, status: 503, first: 2}
  - produce: {type: order, count: 1}
  - wait: {timeout: 20}
  - fault: {supplier: clear}
  - fault: {supplier: status, status: 400, first: 1}
  - produce: {type: order, count: 1}
  - wait: {timeout: 20}
expect: {produced: 2, delivered: 1, ingested: 1, dead_lettered: 1}
"""

WALKTHROUGH = """
name: ui-step
description: Teaching mode, one purchase order, paused before each step.
seed: 5
timeout: 60
suppliers: {count: 1}
steps:
  - produce: {type: order, count: 1}
  - wait: {timeout: 20}
expect: {produced: 1, delivered: 1, ingested: 1}
"""


class LiveRun:
    """A scenario run in a thread, shown by a live view, as ``b2bsim run --ui`` wires it."""

    def __init__(self, scenario: Path, state: StateDir, broker_url: str, *, step: bool) -> None:
        loaded = load_scenario(scenario)
        said: list[str] = []
        view = open_live_view(0, step=step, say=said.append)
        assert view is not None, said
        self.view: LiveView = view
        if step:
            loaded = teaching(loaded)
        options = view.wire(RunOptions(state=state, broker_url=broker_url), loaded, step=step)
        self.result: RunResult | None = None
        self.error: BaseException | None = None

        def play() -> None:
            try:
                self.result = run_scenario(loaded, options)
            except BaseException as exc:  # handed to the test by join()
                self.error = exc

        self.thread = threading.Thread(target=play, name="test-run", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float = 60) -> RunResult:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def close(self) -> None:
        self.view.stop()
        self.thread.join(30)


@dataclass
class Watched:
    """A page open on a live view, with the console errors it logged."""

    page: Page
    errors: list[str]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Debian's Chromium, headless, with a fresh profile."""
    if not CHROMIUM.exists():
        pytest.fail(f"no {CHROMIUM}: run scripts/ensure-chromium.sh (apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1100},
        )
        yield context
        context.close()


def watch(browser: BrowserContext, url: str) -> Watched:
    """Open ``url``, recording console errors and uncaught exceptions."""
    page = browser.new_page()
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    expect(page.locator("#conn")).to_have_text(re.compile("live|run finished|connecting"))
    return Watched(page, errors)


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True, animations="disabled")


@pytest.fixture(scope="module")
def happy(
    browser: BrowserContext, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveRun, Watched]]:
    """The happy path, watched live from before it starts."""
    state = StateDir(tmp_path_factory.mktemp("ui-happy") / "state").ensure()
    run = LiveRun(HAPPY, state, broker_url, step=False)
    watched = watch(browser, run.view.url)
    run.start()
    try:
        yield run, watched
    finally:
        watched.page.close()
        run.close()


class TestHappyPath:
    def test_page_loads_without_console_errors(self, happy: tuple[LiveRun, Watched]) -> None:
        """The page loads, connects to the stream, and logs no error."""
        _, w = happy
        expect(w.page.locator("#run-title")).to_contain_text("happy-path", timeout=WAIT_MS)
        expect(w.page.locator("#c-produced")).to_have_text("9", timeout=WAIT_MS)
        shot(w.page, "happy-live.png")
        assert w.errors == []

    def test_messages_reach_the_ledger(self, happy: tuple[LiveRun, Watched]) -> None:
        """All nine messages appear, coloured by type, and end in the ledger."""
        _, w = happy
        page = w.page
        expect(page.locator(LEDGER)).to_have_count(9, timeout=WAIT_MS)
        expect(page.locator("#c-loaded")).to_have_text("9")
        expect(page.locator("#c-delivered")).to_have_text("9")
        for mtype in ("INKOPSORDER", "SJALVFAKTURA", "KREDIT"):
            expect(page.locator(f'[data-station="ledger"] .chip.{mtype}')).to_have_count(3)
        expect(page.locator('#log li[data-kind="loaded"]')).to_have_count(9)
        shot(page, "happy-ledger.png")
        assert w.errors == []

    def test_clicking_a_message_shows_its_envelope_fields(
        self, happy: tuple[LiveRun, Watched]
    ) -> None:
        """A click opens the envelope with the five AF fields highlighted and explained."""
        _, w = happy
        page = w.page
        chip = page.locator('[data-station="ledger"] .chip.SJALVFAKTURA').first
        expect(chip).to_be_visible(timeout=WAIT_MS)
        chip.click()
        fields = page.locator("#detail-fields")
        expect(fields.locator('[data-field="ORG_NUMBER"] .field-value')).to_have_text(
            re.compile(r"^\d{10}$")
        )
        expect(fields.locator('[data-field="RECEIVER_CERT_SHA256"] .field-value')).to_have_text(
            re.compile(r"^[0-9a-f]{64}$")
        )
        expect(fields.locator('[data-field="RECEIVER_URL"] .field-value')).to_have_text(
            re.compile(r"^https://127\.0\.0\.1:\d+/")
        )
        expect(fields.locator('[data-field="MESSAGE_TYPE"] .field-value')).to_have_text(
            "SJALVFAKTURA"
        )
        expect(fields.locator('[data-field="PRODUCED_AT"] .field-value')).to_have_text(
            re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        )
        expect(fields).to_contain_text("Organisationsnummer")
        envelope = page.locator("#detail-envelope")
        for field in ("ORG_NUMBER", "RECEIVER_CERT_SHA256", "RECEIVER_URL", "MESSAGE_TYPE"):
            expect(envelope.locator(f'.hl[data-field="{field}"]').first).to_be_visible()
        expect(envelope.locator('.hl[data-field="PRODUCED_AT"]')).to_contain_text("PRODUCED_AT")
        expect(page.locator("#detail-document")).to_contain_text("<Invoice")
        shot(page, "message-detail.png")
        page.keyboard.press("Escape")
        expect(page.locator("#detail")).to_be_hidden()
        assert w.errors == []

    def test_after_the_run_the_timeline_shows_each_hop(
        self, happy: tuple[LiveRun, Watched]
    ) -> None:
        """When the run ends, the page shows every message's hops and the hop percentiles."""
        run, w = happy
        assert run.join().passed
        page = w.page
        expect(page.locator("#timeline")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator('#tl-msgs tr[data-outcome="loaded"]')).to_have_count(9)
        expect(page.locator("#tl-hops")).to_contain_text("KA → ledger")
        expect(page.locator("#c-lost")).to_have_text("0")
        expect(page.locator("#conn")).to_have_text("run finished")
        page.locator("#timeline").scroll_into_view_if_needed()
        shot(page, "timeline.png")
        assert w.errors == []


class TestFaults:
    def test_a_retry_and_a_dead_letter_are_shown(
        self, browser: BrowserContext, broker_url: str, state_dir: StateDir, tmp_path: Path
    ) -> None:
        """503s show as retries; a 400 sends the message to the dead letters with its code."""
        scenario = tmp_path / "ui-faults.yaml"
        scenario.write_text(FAULTS)
        run = LiveRun(scenario, state_dir, broker_url, step=False)
        w = watch(browser, run.view.url)
        try:
            run.start()
            page = w.page
            dead = page.locator('[data-station="dead"] .chip')
            expect(dead).to_have_count(1, timeout=WAIT_MS)
            expect(dead).to_contain_text("DELIVERY_REFUSED")
            expect(page.locator('#log li[data-kind="retry"]')).to_have_count(2)
            expect(page.locator('#log li[data-kind="dead_lettered"]')).to_contain_text("400")
            expect(page.locator("#c-retries")).to_have_text("2")
            expect(page.locator("#c-dead")).to_have_text("1")
            expect(page.locator(LEDGER)).to_have_count(1)
            expect(page.locator(LEDGER)).to_contain_text("↻2")
            shot(page, "faults.png")
            dead.click()
            explain = page.locator("#detail-explain")
            expect(explain).to_contain_text("dead-letter queue")
            expect(explain).to_contain_text("DELIVERY_REFUSED")
            expect(explain.locator('[lang="sv"]').first).to_contain_text("ICC gav upp")
            shot(page, "dead-letter-detail.png")
            assert run.join().passed
            assert w.errors == []
        finally:
            w.page.close()
            run.close()


class TestTeachingMode:
    def test_the_run_waits_for_next(
        self, browser: BrowserContext, broker_url: str, state_dir: StateDir, tmp_path: Path
    ) -> None:
        """Nothing is produced until Next is pressed; the button and the keyboard both go on."""
        scenario = tmp_path / "ui-step.yaml"
        scenario.write_text(WALKTHROUGH)
        run = LiveRun(scenario, state_dir, broker_url, step=True)
        w = watch(browser, run.view.url)
        try:
            run.start()
            page = w.page
            button = page.locator("#next")
            expect(button).to_be_enabled(timeout=WAIT_MS)
            expect(page.locator("#step-text")).to_contain_text("step 1 of 2")
            time.sleep(2)  # the run must stay where it is
            assert run.view.waiting
            assert run.thread.is_alive()
            expect(page.locator("#c-produced")).to_have_text("0")
            shot(page, "step-waiting.png")
            button.click()
            expect(page.locator("#c-produced")).to_have_text("1", timeout=WAIT_MS)
            expect(page.locator("#step-text")).to_contain_text("step 2 of 2", timeout=WAIT_MS)
            expect(button).to_be_enabled(timeout=WAIT_MS)
            page.evaluate("document.activeElement && document.activeElement.blur()")
            page.keyboard.press("Enter")
            expect(page.locator(LEDGER)).to_have_count(1, timeout=WAIT_MS)
            shot(page, "step-done.png")
            assert run.join().passed
            assert w.errors == []
        finally:
            w.page.close()
            run.close()
