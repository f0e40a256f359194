"""The live view in a real headless Chromium (Debian's), driven by Playwright, over real runs.

Each run is started the way ``b2bsim run --ui [--step]`` starts it
(:func:`simulator.views.ui_server.open_live_view`, :meth:`LiveView.wire`), in a
thread, against the session's broker.  Screenshots of every checked state go
to ``artifacts/ui/``.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
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
WALKTHROUGH_FILE = ROOT / "scenarios" / "trainer-walkthrough.yaml"
OUT_OF_ORDER = ROOT / "scenarios" / "out-of-order.yaml"
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
        shown = options.on_start
        self.run_dir: Path | None = None

        def on_start(run_dir: Path) -> None:
            self.run_dir = run_dir
            if shown is not None:
                shown(run_dir)

        options = dataclasses.replace(options, on_start=on_start)
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

    def view_dir(self) -> Path:
        """The run's directory (known once it has started)."""
        assert self.run_dir is not None, "the run has not started"
        return self.run_dir

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


def ledger_in_db(run_dir: Path) -> list[str]:
    """The message ids of the stub's ledger table, in its order (position)."""
    db = run_dir / "supplier-stub.sqlite"
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        return [r[0] for r in con.execute("SELECT message_id FROM ledger ORDER BY position")]


def ledger_drawn(page: Page) -> list[str]:
    """The message ids of the chips drawn in the page's ledger column, top to bottom."""
    ids: list[str] = page.locator(LEDGER).evaluate_all(
        "els => els.map(e => e.getAttribute('data-msg'))"
    )
    return ids


def sideways(page: Page) -> int:
    """How many pixels the page is wider than its window (0: no horizontal overflow)."""
    extra: int = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return extra


#: A parameter dump, as the step bar used to show: ``kind=status``, ``SupplierFault:``.
DUMP = re.compile(r"\w=\S|\b[A-Z][a-z]+[A-Z]\w*:")


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


class TestLedgerOrder:
    def test_the_ledger_is_drawn_in_the_ledgers_order(
        self, browser: BrowserContext, broker_url: str, state_dir: StateDir
    ) -> None:
        """A reordered run: the chips stand in the order of the stub's ledger table."""
        run = LiveRun(OUT_OF_ORDER, state_dir, broker_url, step=False)
        w = watch(browser, run.view.url)
        try:
            run.start()
            page = w.page
            expect(page.locator("#c-held")).not_to_have_text("0", timeout=WAIT_MS)
            result = run.join(timeout=170)
            assert result.passed
            expect(page.locator("#conn")).to_have_text("run finished", timeout=WAIT_MS)
            order = ledger_in_db(result.run_dir)
            assert len(order) == 180
            assert ledger_drawn(page) == order
            expect(page.locator("#held-list li").first).to_be_visible()
            shot(page, "out-of-order-ledger.png")
            page.reload()
            expect(page.locator(LEDGER)).to_have_count(180, timeout=WAIT_MS)
            assert ledger_drawn(page) == order
            assert w.errors == []
        finally:
            w.page.close()
            run.close()


@pytest.fixture(scope="module")
def walkthrough(
    browser: BrowserContext, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveRun, Watched]]:
    """The trainer walkthrough in teaching mode, watched in a 1280 px window."""
    state = StateDir(tmp_path_factory.mktemp("ui-walkthrough") / "state").ensure()
    run = LiveRun(WALKTHROUGH_FILE, state, broker_url, step=True)
    watched = watch(browser, run.view.url)
    watched.page.set_viewport_size({"width": 1280, "height": 900})
    run.start()
    try:
        yield run, watched
    finally:
        watched.page.close()
        run.close()


class TestTrainerWalkthrough:
    """``b2bsim run scenarios/trainer-walkthrough.yaml --ui --step``, step by step.

    Its screenshots (artifacts/ui/walkthrough-*.png) are linked from docs/tutorial.md.
    """

    def test_each_step_is_a_sentence_and_a_held_item_stays_until_next(
        self, walkthrough: tuple[LiveRun, Watched]
    ) -> None:
        """Every step says what happens and what to watch; the reordered invoice shows as
        held (how long, for what) and stays on screen until Next; the ledger column is
        in the ledger's order at that moment."""
        run, w = walkthrough
        page = w.page
        text, button = page.locator("#step-text"), page.locator("#next")
        total = len(load_scenario(WALKTHROUGH_FILE).steps)
        for index in range(total):
            expect(text).to_contain_text(f"Next: step {index + 1} of {total}.", timeout=WAIT_MS)
            expect(button).to_be_enabled()
            said = text.inner_text()
            assert not DUMP.search(said), said
            assert "Watch " in said, said
            if index == 0:
                shot(page, "walkthrough-1-first-step.png")
            if index == 7:  # the busy supplier's two 503 answers have been retried
                expect(page.locator("#c-retries")).to_have_text("2")
                expect(page.locator(f"{LEDGER} .b.retry").first).to_be_visible()
                shot(page, "walkthrough-2-retries.png")
            if index == 10:  # after the reordered deliveries
                held = page.locator("#held-list li")
                expect(held.first).to_be_visible()
                expect(held.first).to_contain_text(
                    re.compile(r"held back \d+ ms until (PO|INV|CR) \d{4} #\d+ arrived")
                )
                expect(page.locator("#held-list li.new").first).to_be_visible()
                expect(page.locator(f"{LEDGER} .b.held").first).to_be_visible()
                assert ledger_drawn(page) == ledger_in_db(run.view_dir())
                shot(page, "walkthrough-3-held.png")
                time.sleep(1.5)  # it stays, however short the hold was
                expect(page.locator("#held-list li.new").first).to_be_visible()
            if index == 13:  # the poison message is in the dead letters
                expect(page.locator('[data-station="dead"] .chip')).to_have_count(1)
                shot(page, "walkthrough-4-dead-letter.png")
            button.click()
            if index == 10:
                expect(page.locator("#held-list li.new")).to_have_count(0, timeout=WAIT_MS)
        assert run.join(timeout=120).passed
        assert w.errors == []

    def test_at_the_end_the_page_fits_its_window(
        self, walkthrough: tuple[LiveRun, Watched]
    ) -> None:
        """1280 px: no sideways scrolling, the envelope's table fits, a poison message's
        chip reads as what it is, and the description is not repeated advice."""
        run, w = walkthrough
        page = w.page
        expect(page.locator("#timeline")).to_be_visible(timeout=WAIT_MS)
        assert ledger_drawn(page) == ledger_in_db(run.view_dir())
        assert sideways(page) <= 0
        poison = page.locator('[data-station="dead"] .chip[data-msg="poison-unknown-supplier"]')
        expect(poison).to_contain_text("poison-unknown-supplier")
        expect(poison).not_to_contain_text("#1000000000")
        expect(page.locator("#run-desc")).not_to_contain_text("--ui")
        page.locator(f"{LEDGER}.SJALVFAKTURA").first.click()
        fields = page.locator("#detail-fields")
        expect(fields.locator('[data-field="ORG_NUMBER"] .field-value')).to_have_text(
            re.compile(r"^\d{10}$")
        )
        expect(page.locator('#detail-history tr[data-kind="loaded"]')).to_have_count(1)
        fits = page.evaluate(
            """() => {
              const d = document.getElementById('detail').getBoundingClientRect();
              const width = document.documentElement.clientWidth;
              return [...document.querySelectorAll('#detail table')].every(t => {
                const r = t.getBoundingClientRect();
                return r.right <= d.right + 0.5 && d.right <= width
                  && t.scrollWidth <= t.clientWidth + 1;
              });
            }"""
        )
        assert fits
        assert sideways(page) <= 0
        page.locator("#detail").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "walkthrough-6-envelope.png"), animations="disabled")
        page.keyboard.press("Escape")
        assert w.errors == []

    def test_the_verdict_is_shown_and_the_end_is_clear(
        self, walkthrough: tuple[LiveRun, Watched]
    ) -> None:
        """PASSED with the expectations, as the terminal says; no "Running step 16 of 16";
        when the server stops, the page says so, without reconnecting or console errors."""
        run, w = walkthrough
        page = w.page
        result = run.join()
        verdict = page.locator("#verdict")
        expect(verdict).to_be_visible(timeout=WAIT_MS)
        expect(verdict.locator("h2")).to_have_text("PASSED — trainer-walkthrough")
        rows = verdict.locator('tr[data-passed="yes"]')
        expect(rows).to_have_count(len(result.expectations))
        expect(verdict).to_contain_text("dead_letter_codes.UNKNOWN_SUPPLIER")
        expect(page.locator("#step-text")).to_have_text(
            "The run has finished: all 16 steps played."
        )
        expect(page.locator("#next")).to_be_hidden()
        shot(page, "walkthrough-5-verdict.png")
        run.view.stop()
        expect(page.locator("#conn")).to_have_text("run finished, server stopped")
        time.sleep(2)  # a page that tried to reconnect would log errors by now
        expect(page.locator("#conn")).to_have_text("run finished, server stopped")
        expect(verdict).to_be_visible()
        assert w.errors == []
