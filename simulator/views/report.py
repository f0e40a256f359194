"""The HTML report of ``b2bsim run --report DIR``: ``DIR/index.html`` and the pages beside it.

The index opens with what failed: each failed scenario's run error, if it
had one, and its failed expectations, each with what it means, how to fix it and the command that
re-runs it with the same seed, then the causes of its unexpected dead letters
(:mod:`simulator.views.explain`).  Below come an overview of all scenarios and
each scenario in a ``<details>`` block, open if it failed, folded if it passed:

* its expectations, figures, dead letters and attacks;
* the timeline of its messages across the hops KA → broker → ICC → supplier →
  ledger (:mod:`simulator.views.timeline`): latency percentiles for all, and a
  table of the first :data:`DETAIL_ROWS` (messages with problems first).

Each message's envelope and document are on a page of their own beside the
index (:mod:`simulator.views.report_pages`), opened in a frame on a click, so
the index stays small however many envelopes a run has.  Everything is plain
files, read from ``file://`` without a server and without the network: the
index inlines its CSS and script (``simulator/data/report.css`` and
``report.js``); the other pages link the copies written beside it.
"""

from __future__ import annotations

import functools
import shutil
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from lxml import etree, html

from simulator.runs.reconcile import read_jsonl
from simulator.runs.runner import Expectation, RunResult
from simulator.views.explain import (
    Explanation,
    dead_letter_explanations,
    explain_dead_letter,
    explain_error,
    explain_expectation,
)
from simulator.views.junit import rerun_command
from simulator.views.report_html import css_class, el, num_cell, verdict_cell
from simulator.views.report_pages import message_href, messages_href, write_scenario_pages
from simulator.views.report_timeline import timeline_section
from simulator.views.timeline import Timeline, build_timeline

__all__ = ["DETAIL_ROWS", "ENVELOPE_BUDGET", "render_index", "write_report"]

#: Messages shown as table rows per scenario in the index (all are on its messages page).
DETAIL_ROWS = 50
#: Characters of pretty-printed envelopes and documents written per report, at most.
ENVELOPE_BUDGET = 30_000_000
#: Dead letters listed per scenario in the index.
DEAD_LETTER_ROWS = 20


@functools.cache
def _asset(name: str) -> str:
    """``simulator/data/NAME`` (the page's CSS or script), inlined on lines of its own."""
    return "\n" + resources.files("simulator").joinpath(f"data/{name}").read_text("utf-8")


def write_report(
    results: Sequence[RunResult],
    out_dir: Path,
    *,
    detail_rows: int = DETAIL_ROWS,
    envelope_budget: int = ENVELOPE_BUDGET,
) -> Path:
    """Write the report of ``results`` into ``out_dir``; return its ``index.html``.

    Pages of an earlier report in ``out_dir`` are replaced.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("report.css", "report.js"):
        (out_dir / name).write_text(_asset(name), encoding="utf-8")
    for old in out_dir.glob("s[0-9]*"):
        if old.is_dir():
            shutil.rmtree(old)
    timelines = [build_timeline(r.run_dir) for r in results]
    left = envelope_budget
    for i, (result, timeline) in enumerate(zip(results, timelines, strict=True)):
        share = left // max(1, len(results) - i)
        left -= write_scenario_pages(out_dir, i, result, timeline, budget=share)
    index = out_dir / "index.html"
    index.write_text(render_index(results, timelines, detail_rows=detail_rows), encoding="utf-8")
    return index


def render_index(
    results: Sequence[RunResult],
    timelines: Sequence[Timeline] | None = None,
    *,
    detail_rows: int = DETAIL_ROWS,
) -> str:
    """The report's ``index.html`` (its message links point to :func:`write_report`'s pages)."""
    if timelines is None:
        timelines = [build_timeline(r.run_dir) for r in results]
    passed = sum(r.passed for r in results)
    verdict = f"{passed} of {len(results)} scenario(s) passed"
    body = el(
        "body",
        el("h1", "AF B2B chain simulator — run report"),
        el(
            "p",
            el(
                "span",
                verdict,
                css_class("badge " + ("pass" if passed == len(results) else "fail")),
            ),
            " ",
            el("span", f"written {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC", css_class("muted")),
        ),
        *_failed_first(results),
        el("h2", "All scenarios", css_class("all")),
        _overview(results),
    )
    for i, (result, timeline) in enumerate(zip(results, timelines, strict=True)):
        body.append(_scenario(i, result, timeline, detail_rows))
    body.append(el("script", _asset("report.js")))
    page = el(
        "html",
        el(
            "head",
            el("meta", charset="utf-8"),
            el("meta", name="viewport", content="width=device-width, initial-scale=1"),
            el("title", f"b2bsim report — {verdict}"),
            el("style", _asset("report.css")),
        ),
        body,
        lang="en",
    )
    text: str = html.tostring(page, doctype="<!DOCTYPE html>", encoding="unicode")
    return text


def _failed_first(results: Sequence[RunResult]) -> list[etree._Element]:
    """Each failed scenario: its failures explained, each with the command that re-runs it."""
    # What did not pass and is not merely not applicable (a step that does not apply
    # to an external supplier is no failure).
    failed = [
        (i, r) for i, r in enumerate(results) if r.verdict == "failed" or _not_graded_verdict(r)
    ]
    if not failed:
        return []
    out = [el("h2", "What went wrong and how to fix it", css_class("failed"), id="failed")]
    for i, r in failed:
        rerun = rerun_command(r)
        section = el(
            "section",
            el(
                "h3",
                el("a", r.scenario.name, href=f"#s-{i}"),
                el("span", r.verdict.upper(), css_class("badge " + _verdict_class(r))),
            ),
            css_class("failure"),
        )
        for what, x in _failures(r):
            section.append(_explain_box(what, x, "explain", rerun=rerun))
        if not _dead_letters_expected(r):
            for what, x in _causes(r):
                section.append(_explain_box(what, x, "explain"))
        out.append(section)
    return out


def _failures(result: RunResult) -> list[tuple[str, Explanation]]:
    """The run's error (the cause of the rest, when there is one), then the failed
    expectations, then those that could not be graded (never a pass), each with its reason."""
    items = [(result.error, explain_error(result.error))] if result.error else []
    for e in result.expectations:
        if e.status == "graded" and not e.passed:
            items.append((f"expected {e.name} = {e.expected}, got {e.actual}", _expl(e, result)))
        elif e.status == "not graded":
            items.append((f"not graded: {e.name}", _not_graded(e)))
    return items


def _causes(result: RunResult) -> list[tuple[str, Explanation]]:
    """The distinct causes of the run's dead letters: how many, one reason, the explanation."""
    counts: Counter[tuple[str, str]] = Counter()
    reasons: dict[tuple[str, str], str] = {}
    for d in result.figures.dead_letters:
        reason = str(d.get("reason") or "")
        x = explain_dead_letter(str(d.get("code") or ""), reason)
        counts[(x.key, x.cause)] += 1
        reasons.setdefault((x.key, x.cause), reason)
    return [
        (
            f"{counts[(x.key, x.cause)]} dead letter(s) with code {x.key or '(none)'}, "
            f"reason: {reasons[(x.key, x.cause)][:300] or '(none)'}",
            x,
        )
        for x in dead_letter_explanations(result.figures.dead_letters)
    ]


def _dead_letters_expected(result: RunResult) -> bool:
    return all(
        e.passed
        for e in result.expectations
        if e.name == "dead_lettered" or e.name.startswith("dead_letter_codes.")
    )


def _overview(results: Sequence[RunResult]) -> etree._Element:
    head = ["scenario", "result", "seed", "produced", "delivered", "ingested", "lost"]
    head += ["dead-lettered", "time"]
    rows = []
    for i, r in enumerate(results):
        f = r.figures
        rows.append(
            el(
                "tr",
                el("td", el("a", r.scenario.name, href=f"#s-{i}")),
                _verdict_cell(r.verdict),
                *(
                    num_cell(v)
                    for v in (r.scenario.seed, f.produced, f.delivered, f.ingested, f.lost)
                ),
                num_cell(f.dead_lettered),
                el("td", f"{r.timings.get('total', 0.0):.1f} s", css_class("num")),
            )
        )
    return el("table", el("tr", *(el("th", h) for h in head)), *rows)


def _scenario(i: int, result: RunResult, timeline: Timeline, detail_rows: int) -> etree._Element:
    s = result.scenario
    block = el(
        "details",
        el(
            "summary",
            el(
                "h2",
                s.name,
                el(
                    "span",
                    result.verdict.upper(),
                    css_class("badge " + _verdict_class(result)),
                ),
                id=f"s-{i}",
            ),
        ),
        el("p", s.description),
        el(
            "table",
            el("tr", el("th", "seed"), el("td", str(s.seed))),
            el("tr", el("th", "re-run"), el("td", el("code", rerun_command(result)))),
            el("tr", el("th", "run directory"), el("td", el("code", str(result.run_dir)))),
        ),
        el("h3", "Expectations"),
        _expectations(result),
        el(
            "p",
            "Figures: ",
            ", ".join(f"{k} {v}" for k, v in result.figures.figures().items()),
        ),
        css_class("scenario"),
    )
    if not result.passed:
        block.set("open", "open")
    block.extend(_dead_letters(i, result))
    block.extend(_attacks(result.run_dir))
    link = functools.partial(message_href, i)
    block.extend(timeline_section(i, timeline, detail_rows, link, messages_href(i)))
    return block


def _not_graded_verdict(result: RunResult) -> bool:
    return result.verdict.startswith("not graded")


def _verdict_cell(verdict: str, reason: str = "") -> etree._Element:
    """pass, FAIL, or (against an external supplier) not applicable / not graded / not
    exercised, with the reason when there is one (never a pass)."""
    if verdict in ("passed", "failed"):
        return verdict_cell(verdict == "passed")
    shown = reason if reason.startswith(verdict) else f"{verdict}: {reason}" if reason else verdict
    return el("td", shown, css_class("na"))


def _expectations(result: RunResult) -> etree._Element:
    rows = [el("tr", el("th", "expectation"), el("th", "expected", css_class("num")))]
    rows[0].extend([el("th", "actual", css_class("num")), el("th", "result")])
    for e in result.expectations:
        rows.append(
            el(
                "tr",
                el("td", e.name),
                num_cell(e.expected),
                num_cell(e.actual),
                verdict_cell(e.passed)
                if e.status == "graded"
                else _verdict_cell(e.status, e.reason),
            )
        )
    rows.append(
        el(
            "tr",
            el("td", "run"),
            el("td", "no error"),
            el("td", result.error or "no error"),
            verdict_cell(result.error is None),
        )
    )
    return el("table", *rows)


def _dead_letters(i: int, result: RunResult) -> list[etree._Element]:
    """The lost ids; the dead letters (each cause explained as a note if they are expected)."""
    out: list[etree._Element] = []
    f = result.figures
    if f.lost_ids:
        out.append(el("p", "Lost message ids: ", el("code", ", ".join(f.lost_ids[:50]))))
    if not f.dead_letters:
        return out
    expected = _dead_letters_expected(result)
    out.append(
        el(
            "h3",
            f"Dead letters ({len(f.dead_letters)})",
            " — as the scenario expects" if expected else " — not expected (explained above)",
        )
    )
    if expected:
        for what, x in _causes(result):
            out.append(_explain_box(what, x, "explain note"))
    rows = [el("tr", el("th", "message"), el("th", "code"), el("th", "reason"))]
    rows += [
        el("tr", *(el("td", str(d.get(k))) for k in ("message_id", "code", "reason")))
        for d in f.dead_letters[:DEAD_LETTER_ROWS]
    ]
    out.append(el("div", el("table", *rows), css_class("scroll")))
    if len(f.dead_letters) > DEAD_LETTER_ROWS:
        more = f"{len(f.dead_letters) - DEAD_LETTER_ROWS} more: see "
        out.append(el("p", more, el("a", "all messages", href=messages_href(i))))
    return out


def _explain_box(what: str, x: Explanation, cls: str, *, rerun: str = "") -> etree._Element:
    box = el(
        "div",
        el("p", el("code", what), " ", el("strong", x.title)),
        el("p", el("strong", "What it means: "), x.meaning),
        el("p", el("strong", "How to fix it: "), x.fix),
        css_class(cls),
    )
    if rerun:
        box.append(el("p", el("strong", "Re-run: "), el("code", rerun, css_class("rerun"))))
    return box


def _attacks(run_dir: Path) -> list[etree._Element]:
    """The attacks a scenario made (attacks.jsonl), each with its answer."""
    attacks = read_jsonl(run_dir / "attacks.jsonl")
    if not attacks:
        return []
    head = el("tr", *(el("th", t) for t in ("attack", "supplier", "HTTP", "answer", "expected")))
    head.append(el("th", "result"))
    rows = [head]
    for a in attacks:
        ok = a.get("code") == a.get("expected")
        cells = (a.get("attack"), a.get("org_number"), a.get("status"), a.get("code"))
        rows.append(
            el("tr", *(el("td", str(c)) for c in (*cells, a.get("expected"))), verdict_cell(ok))
        )
    return [el("h3", f"Attacks ({len(attacks)})"), el("table", *rows)]


def _expl(e: Expectation, result: RunResult) -> Explanation:
    if e.reason:  # a case of an external endpoint: its reason says it
        return Explanation(
            e.name,
            e.reason,
            "Graded from what the supplier's endpoint answered and loaded (docs/files.md).",
            "See docs/testing-your-endpoint.md and docs/supplier.md for the rule it broke.",
        )
    return explain_expectation(e.name, e.expected, e.actual, result.figures.dead_letters)


def _not_graded(e: Expectation) -> Explanation:
    return Explanation(
        e.name,
        e.reason or "not graded",
        "Only a read-back of what the supplier loaded can prove this; it is not a pass.",
        "Implement GET /b2b/ledger (docs/openapi.yaml) and run with --readback URL.",
    )


def _verdict_class(result: RunResult) -> str:
    return {"passed": "pass", "failed": "fail"}.get(result.verdict, "na")
