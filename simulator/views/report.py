"""The HTML report of ``b2bsim run --report DIR``: one self-contained file, ``index.html``.

It holds, for every scenario run:

* a pass/fail table of the expectations, the figures, the seed and how to re-run;
* for every failure, what it means and how to fix it (:mod:`simulator.views.explain`);
* the timeline of every message across the hops KA → broker → ICC → supplier →
  ledger (:mod:`simulator.views.timeline`): latency percentiles for all messages, and
  a table with bars for the first :data:`DETAIL_ROWS` (messages with problems
  first);
* any message's envelope and document, pretty-printed, on a click.

The file has no external assets: CSS and JavaScript are inline (written in
``simulator/data/report.css`` and ``report.js``), fonts are the system's.
Per-message data sits in ``<script type="application/json">`` blocks with
``<``, ``>`` and ``&`` written as JSON escapes, so no document text can end the
block; the script renders it with ``textContent`` only.  Stored envelopes are
parsed with :func:`simulator.vocabulary.xmlsafe.parse_xml` only.  The timeline
and the messages' details are built in :mod:`simulator.views.report_timeline`,
from the HTML pieces of :mod:`simulator.views.report_html`.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from lxml import etree, html

from simulator.runs.reconcile import read_jsonl
from simulator.runs.runner import RunResult
from simulator.views.explain import Explanation, explain_code, explain_error, explain_expectation
from simulator.views.junit import rerun_command
from simulator.views.report_html import css_class, el, num_cell, verdict_cell
from simulator.views.report_timeline import data_block, timeline_section
from simulator.views.timeline import build_timeline

__all__ = ["DETAIL_ROWS", "EMBED_BUDGET", "render_report", "write_report"]

#: Messages shown as table rows per scenario (percentiles always cover all of them).
DETAIL_ROWS = 500
#: Characters of pretty-printed envelopes and documents embedded per report, at most.
EMBED_BUDGET = 30_000_000


@functools.cache
def _asset(name: str) -> str:
    """``simulator/data/NAME`` (the page's CSS or script), inlined on lines of its own."""
    return "\n" + resources.files("simulator").joinpath(f"data/{name}").read_text("utf-8")


def write_report(results: Sequence[RunResult], out_dir: Path) -> Path:
    """Write the report of ``results`` into ``out_dir``; return its ``index.html``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    index.write_text(render_report(results), encoding="utf-8")
    return index


def render_report(
    results: Sequence[RunResult],
    *,
    detail_rows: int = DETAIL_ROWS,
    embed_budget: int = EMBED_BUDGET,
) -> str:
    """The report as one HTML document."""
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
        _overview(results),
    )
    share = embed_budget // max(1, len(results))
    for i, result in enumerate(results):
        body.extend(_scenario(i, result, detail_rows, share))
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


def _scenario(i: int, result: RunResult, detail_rows: int, budget: int) -> list[etree._Element]:
    s = result.scenario
    timeline = build_timeline(result.run_dir)
    out: list[etree._Element] = [
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
    ]
    out.extend(_failures(result))
    out.extend(_attacks(result.run_dir))
    out.extend(timeline_section(i, timeline, detail_rows))
    out.append(data_block(i, result.run_dir, timeline, detail_rows, budget))
    return out


def _verdict_cell(verdict: str) -> etree._Element:
    """pass, FAIL, or (against an external supplier) not applicable / not graded."""
    if verdict in ("passed", "failed"):
        return verdict_cell(verdict == "passed")
    return el("td", verdict, css_class("na"))


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
                verdict_cell(e.passed) if e.status == "graded" else _verdict_cell(e.status),
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


def _failures(result: RunResult) -> list[etree._Element]:
    """Each failure explained; then the dead letters, their codes explained too.

    Dead letters a scenario expects (its dead-letter expectations held) are
    shown as notes, not as failures.
    """
    items: list[tuple[str, Explanation]] = []
    if result.error:
        items.append((result.error, explain_error(result.error)))
    for e in result.expectations:
        if e.status == "graded" and not e.passed:
            items.append((f"expected {e.name} = {e.expected}, got {e.actual}", _expl(e)))
    out: list[etree._Element] = []
    if items:
        out.append(el("h3", "What went wrong and how to fix it"))
        out += [_explain_box(what, x, "explain") for what, x in items]
    f = result.figures
    if f.lost_ids:
        out.append(el("p", "Lost message ids: ", el("code", ", ".join(f.lost_ids[:50]))))
    if not f.dead_letters:
        return out
    expected = all(
        e.passed
        for e in result.expectations
        if e.name == "dead_lettered" or e.name.startswith("dead_letter_codes.")
    )
    out.append(
        el(
            "h3",
            f"Dead letters ({len(f.dead_letters)})",
            " — as the scenario expects" if expected else " — not expected",
        )
    )
    codes = Counter(str(d.get("code", "")) for d in f.dead_letters)
    for code, n in sorted(codes.items()):
        what = f"{n} dead letter(s) with code {code or '(none)'}"
        out.append(
            _explain_box(what, explain_code(code), "explain note" if expected else "explain")
        )
    rows = [el("tr", el("th", "message"), el("th", "code"), el("th", "reason"))]
    rows += [
        el("tr", *(el("td", str(d.get(k))) for k in ("message_id", "code", "reason")))
        for d in f.dead_letters[:100]
    ]
    out.append(el("table", *rows))
    return out


def _explain_box(what: str, x: Explanation, cls: str) -> etree._Element:
    return el(
        "div",
        el("p", el("strong", x.title)),
        el("p", el("code", what)),
        el("p", el("strong", "What it means: "), x.meaning),
        el("p", el("strong", "How to fix it: "), x.fix),
        css_class(cls),
    )


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


def _expl(e: Any) -> Explanation:
    if getattr(e, "reason", ""):  # a case of an external endpoint: its reason says it
        return Explanation(
            e.name,
            e.reason,
            "Graded from what the supplier's endpoint answered and loaded (docs/files.md).",
            "See docs/testing-your-endpoint.md and docs/supplier.md for the rule it broke.",
        )
    return explain_expectation(e.name, e.expected, e.actual)


def _verdict_class(result: RunResult) -> str:
    return {"passed": "pass", "failed": "fail"}.get(result.verdict, "na")
