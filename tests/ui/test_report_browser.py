"""The HTML report of ``b2bsim run --report`` in a real headless Chromium (Debian's), from file://.

Two real runs against the session's broker, one that passes and one that fails on
purpose (it expects a lost message on a happy path), are written as a report;
the page is opened from ``file://`` as a CI user would open the artifact.
Screenshots go to ``artifacts/report/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from simulator.runs.runner import RunOptions, run_scenario
from simulator.runs.scenario import load_scenario
from simulator.views.report import write_report
from simulator.vocabulary.state import StateDir

pytestmark = pytest.mark.broker

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "report"

SCENARIO = """
name: {name}
description: Three purchase orders to one supplier{why}.
seed: 11
timeout: 60
suppliers: {{count: 1}}
steps:
  - produce: {{type: order, count: 3}}
  - wait: {{timeout: 30}}
expect: {{produced: 3, delivered: 3, ingested: 3{extra}}}
"""


@pytest.fixture(scope="module")
def report(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of a passing run and of a failing one (it expects `lost: 1`)."""
    base = tmp_path_factory.mktemp("report-ui")
    state = StateDir(base / "state").ensure()
    results = []
    for name, why, extra in (
        ("three-orders", "", ""),
        ("three-orders-lost", ", expecting (wrongly) one lost", ", lost: 1"),
    ):
        path = base / f"{name}.yaml"
        path.write_text(SCENARIO.format(name=name, why=why, extra=extra))
        options = RunOptions(state=state, broker_url=broker_url)
        # In a thread of its own: Playwright's sync API may own this thread's event loop.
        with ThreadPoolExecutor(1) as pool:
            results.append(pool.submit(run_scenario, load_scenario(path), options).result())
    assert [r.passed for r in results] == [True, False]
    return write_report(results, base / "report")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"no {CHROMIUM}: run scripts/ensure-chromium.sh (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


def open_page(browser: Browser, url: str, width: int, errors: list[str]) -> Page:
    page = browser.new_page(viewport={"width": width, "height": 800})

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    return page


def shot(page: Page, name: str, *, full: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full, animations="disabled")


def overflow(page: Page) -> int:
    """How many pixels the page is wider than its window (0: no sideways scrolling)."""
    width: int = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return width


class TestFailuresFirst:
    def test_the_first_failed_expectation_is_on_the_first_screen(
        self, browser: Browser, report: Path
    ) -> None:
        """At 1280×800, without scrolling: the failed expectation, its fix and its re-run."""
        errors: list[str] = []
        page = open_page(browser, report.as_uri(), 1280, errors)
        first = page.locator(".failure .explain").first
        expect(first).to_contain_text("expected lost = 1, got 0")
        expect(first).to_contain_text("How to fix it")
        expect(first).to_contain_text("Re-run: b2bsim run ")
        expect(first).to_contain_text("three-orders-lost.yaml --seed 11")
        box = first.bounding_box()
        assert box is not None
        assert page.evaluate("window.scrollY") == 0
        assert box["y"] + box["height"] <= 800, box
        expect(page.locator("details.scenario").nth(0)).not_to_have_attribute("open", "open")
        expect(page.locator("details.scenario").nth(1)).to_have_attribute("open", "open")
        shot(page, "report-first-screen.png")
        assert errors == []
        page.close()


class TestMessages:
    def test_a_message_opens_from_file(self, browser: Browser, report: Path) -> None:
        """A click on a message id shows its envelope and document, offline, in a frame."""
        errors: list[str] = []
        page = open_page(browser, report.as_uri(), 1400, errors)
        link = page.locator('a.msg[target="detail-1"]').first
        full_id = link.get_attribute("title") or ""
        assert len(full_id) == 36  # a UUID, shown shortened
        expect(link).not_to_have_text(full_id)
        link.click()
        expect(page.locator("#detail-1")).to_be_visible()
        frame = page.frame_locator("#detail-1 iframe")
        expect(frame.locator("h1 code")).to_have_text(full_id)
        expect(frame.locator("#envelope")).to_contain_text("StandardBusinessDocumentHeader")
        expect(frame.locator("#document")).to_contain_text("<Order")
        shot(page, "report-message.png")
        assert errors == []
        page.close()

    def test_the_messages_page_finds_an_id(self, browser: Browser, report: Path) -> None:
        """The page of all messages finds one by its full id, and says so for an unknown one."""
        errors: list[str] = []
        page = open_page(browser, (report.parent / "s0" / "messages.html").as_uri(), 1280, errors)
        full_id = page.locator("a.msg").nth(2).get_attribute("title") or ""
        page.fill("input[name=q]", "no-such-id")
        page.click("#find button")
        expect(page.locator("#not-found")).to_contain_text("No message with id")
        page.fill("input[name=q]", full_id)
        page.click("#find button")
        frame = page.frame_locator("#detail iframe")
        expect(frame.locator("h1 code")).to_have_text(full_id)
        expect(frame.locator("#document")).to_contain_text("<Order")
        assert errors == []
        page.close()


class TestLayout:
    @pytest.mark.parametrize("width", [1280, 1400])
    def test_no_sideways_overflow(self, browser: Browser, report: Path, width: int) -> None:
        """Every scenario unfolded and a message open: nothing wider than the window."""
        errors: list[str] = []
        page = open_page(browser, report.as_uri(), width, errors)
        page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
        page.locator("table.messages a.msg").first.click()
        expect(page.frame_locator("iframe").first.locator("#document")).to_contain_text("<")
        assert overflow(page) == 0
        tallest = page.evaluate(
            "Math.max(...[...document.querySelectorAll('table.messages tr')]"
            ".map(r => r.getBoundingClientRect().height))"
        )
        assert tallest <= 80, tallest  # a row is one line, three with its flags; never six
        shot(page, f"report-{width}.png", full=True)
        assert errors == []
        page.close()
