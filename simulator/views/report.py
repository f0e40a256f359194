"""The HTML report of ``b2bsim run --report DIR``: one self-contained file, ``index.html``.

It holds, for every scenario run:

* a pass/fail table of the expectations, the figures, the seed and how to re-run;
* for every failure, what it means and how to fix it (:mod:`simulator.views.explain`);
* the timeline of every message across the hops KA → broker → ICC → supplier →
  ledger (:mod:`simulator.views.timeline`): latency percentiles for all messages, and
  a table with bars for the first :data:`DETAIL_ROWS` (messages with problems
  first);
* any message's envelope and document, pretty-printed, on a click.

The file has no external assets: CSS and JavaScript are inline, fonts are the
system's.  Per-message data sits in ``<script type="application/json">``
blocks with ``<``, ``>`` and ``&`` written as JSON escapes, so no document
text can end the block; the script renders it with ``textContent`` only.
Stored envelopes are parsed with :func:`simulator.vocabulary.xmlsafe.parse_xml` only.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree, html
from lxml.html import builder

from simulator.runs.reconcile import read_jsonl
from simulator.runs.runner import RunResult
from simulator.runs.stub_records import STUB_DB, stored_envelopes
from simulator.views.explain import Explanation, explain_code, explain_error, explain_expectation
from simulator.views.junit import rerun_command
from simulator.views.timeline import HOP_LABELS, HOPS, MessageTimeline, Timeline, build_timeline
from simulator.vocabulary.envelope import SBDH_NS
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.xmlsafe import parse_xml

__all__ = ["DETAIL_ROWS", "EMBED_BUDGET", "render_report", "write_report"]

#: Messages shown as table rows per scenario (percentiles always cover all of them).
DETAIL_ROWS = 500
#: Characters of pretty-printed envelopes and documents embedded per report, at most.
EMBED_BUDGET = 30_000_000
_BAR_HOPS = ("broker", "delivery", "ledger")  # consecutive: they stack into one bar
_COLOURS = {
    "broker": "#0550ae",
    "delivery": "#8250df",
    "receipt": "#1a7f37",
    "ledger": "#b35900",
    "total": "#111111",
}
_MAKER: Any = builder.E  # lxml.html's ElementMaker (untyped)


def el(tag: str, *children: Any, **attrs: str) -> etree._Element:
    """An HTML element: strings become (escaped) text, dicts attributes, elements children."""
    made: etree._Element = _MAKER(tag, *children, **attrs)
    return made


def _class(name: str) -> dict[str, str]:
    return {"class": name}


_CSS = """
:root{--ok:#0f5323;--okbg:#d3f5dc;--bad:#8f0b1f;--badbg:#ffe1e0;--warn:#6b4500;
--warnbg:#fff1c2;--ink:#111;--muted:#3d3d3d;--line:#8a8a8a;--broker:#0550ae;
--delivery:#8250df;--ledger:#b35900;--receipt:#1a7f37}
*{box-sizing:border-box}
body{font:20px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
background:#fff;margin:0 auto;padding:1rem 2rem;max-width:110rem}
h1{font-size:2rem;margin:.5rem 0}h2{font-size:1.6rem;margin-top:2.5rem;
border-top:4px solid var(--ink);padding-top:1rem}h3{font-size:1.25rem;margin-top:1.5rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}
th,td{border:1px solid var(--line);padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#ececec}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}
pre{font-size:16px;background:#f4f4f4;border:1px solid var(--line);padding:.75rem;
white-space:pre-wrap;overflow-wrap:anywhere;max-height:40rem;overflow:auto}
.pass{color:var(--ok);background:var(--okbg);font-weight:700}
.fail{color:var(--bad);background:var(--badbg);font-weight:700}
.warn{color:var(--warn);background:var(--warnbg)}
.badge{padding:.1rem .6rem;border-radius:.3rem;margin-left:.5rem}
.explain{border-left:8px solid var(--bad);background:var(--badbg);padding:.5rem 1rem;
margin:.75rem 0}.explain p{margin:.25rem 0}
.explain.note{border-left-color:var(--broker);background:#eef4fc}
.bar{display:flex;width:18rem;height:1.1rem;background:#eee;border:1px solid var(--line)}
.bar span{display:block;height:100%}.broker{background:var(--broker)}
.delivery{background:var(--delivery)}.ledger{background:var(--ledger)}
.receipt{background:var(--receipt)}
.key{display:inline-block;width:1rem;height:1rem;vertical-align:middle;margin:0 .3rem 0 1rem}
button.msg{font:inherit;font-size:18px;font-family:ui-monospace,monospace;background:none;
border:0;color:var(--broker);text-decoration:underline;cursor:pointer;padding:0;
text-align:left;overflow-wrap:anywhere}
.detail{border:3px solid var(--ink);padding:.5rem 1rem;margin:1rem 0}
input{font:inherit;width:32rem;max-width:100%}form button{font:inherit}
.muted{color:var(--muted)}
"""

_JS = """
(function () {
  "use strict";
  var cache = {};
  function data(s) {
    if (!cache[s]) {
      cache[s] = JSON.parse(document.getElementById("data-" + s).textContent);
    }
    return cache[s];
  }
  function show(s, id) {
    var panel = document.getElementById("detail-" + s);
    var m = Object.prototype.hasOwnProperty.call(data(s), id) ? data(s)[id] : null;
    function put(name, text) {
      panel.querySelector("[data-field=" + name + "]").textContent = text;
    }
    panel.hidden = false;
    put("title", m ? id : "No message with id " + JSON.stringify(id) + " in this run");
    put("hops", m ? m.summary : "");
    put("envelope", m ? (m.envelope || m.note) : "");
    put("document", m ? (m.document || m.note) : "");
    panel.scrollIntoView({block: "start"});
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button[data-msg]");
    if (b) { show(b.getAttribute("data-scenario"), b.getAttribute("data-msg")); }
  });
  document.addEventListener("submit", function (ev) {
    var f = ev.target;
    if (f.hasAttribute("data-scenario")) {
      ev.preventDefault();
      show(f.getAttribute("data-scenario"), f.elements.q.value.trim());
    }
  });
})();
"""


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
                _class("badge " + ("pass" if passed == len(results) else "fail")),
            ),
            " ",
            el("span", f"written {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC", _class("muted")),
        ),
        _overview(results),
    )
    share = embed_budget // max(1, len(results))
    for i, result in enumerate(results):
        body.extend(_scenario(i, result, detail_rows, share))
    body.append(el("script", _JS))
    page = el(
        "html",
        el(
            "head",
            el("meta", charset="utf-8"),
            el("meta", name="viewport", content="width=device-width, initial-scale=1"),
            el("title", f"b2bsim report — {verdict}"),
            el("style", _CSS),
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
                _verdict_cell(r.passed),
                *(_num(v) for v in (r.scenario.seed, f.produced, f.delivered, f.ingested, f.lost)),
                _num(f.dead_lettered),
                el("td", f"{r.timings.get('total', 0.0):.1f} s", _class("num")),
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
                "PASSED" if result.passed else "FAILED",
                _class("badge " + _verdict_class(result)),
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
    out.extend(_timeline(i, timeline, detail_rows))
    out.append(_data_block(i, result.run_dir, timeline, detail_rows, budget))
    return out


def _expectations(result: RunResult) -> etree._Element:
    rows = [el("tr", el("th", "expectation"), el("th", "expected", _class("num")))]
    rows[0].extend([el("th", "actual", _class("num")), el("th", "result")])
    for e in result.expectations:
        rows.append(
            el("tr", el("td", e.name), _num(e.expected), _num(e.actual), _verdict_cell(e.passed))
        )
    rows.append(
        el(
            "tr",
            el("td", "run"),
            el("td", "no error"),
            el("td", result.error or "no error"),
            _verdict_cell(result.error is None),
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
        if not e.passed:
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
        _class(cls),
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
            el("tr", *(el("td", str(c)) for c in (*cells, a.get("expected"))), _verdict_cell(ok))
        )
    return [el("h3", f"Attacks ({len(attacks)})"), el("table", *rows)]


def _expl(e: Any) -> Explanation:
    return explain_expectation(e.name, e.expected, e.actual)


def _timeline(i: int, timeline: Timeline, detail_rows: int) -> list[etree._Element]:
    msgs = timeline.messages
    out: list[etree._Element] = [el("h3", f"Timeline of {len(msgs)} message(s)")]
    if not msgs:
        return [*out, el("p", "No message was recorded in this run's files.")]
    stats = timeline.stats()
    rows = [
        el("tr", el("th", "hop"), *(el("th", h, _class("num")) for h in ("messages", "p50", "p95")))
    ]
    rows[0].extend([el("th", "p99", _class("num")), el("th", "max", _class("num"))])
    for name, st in stats.items():
        rows.append(
            el(
                "tr",
                el("td", HOP_LABELS[name]),
                _num(st.count),
                *(el("td", _ms(v), _class("num")) for v in (st.p50, st.p95, st.p99, st.max)),
            )
        )
    out += [el("table", *rows), _percentile_svg(stats)]
    shown = _pick_rows(msgs, detail_rows)
    start = timeline.start_ms() or 0
    scale = max((_bar_total(m) for m in shown), default=0) or 1
    head = ["#", "message", "type", "supplier", "seq", "outcome", "produced"]
    head += [HOP_LABELS[h].split(" (")[0] for h in HOPS] + ["hops"]
    table = el("table", el("tr", *(el("th", h) for h in head)))
    number = {m.message_id: n for n, m in enumerate(msgs, 1)}
    for m in shown:
        table.append(_row(i, number[m.message_id], m, start, scale))
    legend = el("p", "Bars: ", *_legend(), _class("muted"))
    note = (
        f"Showing {len(shown)} of {len(msgs)} messages: those with problems first, then "
        "KA's order. Percentiles cover all. Click a message id for its envelope and document."
    )
    out += [
        el("p", note),
        legend,
        el(
            "p",
            "Hop times: produced is KA's clock (a scenario may skew it); the supplier stores an "
            "envelope before answering, so the receipt hop starts where delivery ends.",
            _class("muted"),
        ),
        table,
        el(
            "form",
            el("label", "Any message id: ", el("input", name="q", type="text")),
            " ",
            el("button", "show", type="submit"),
            **{"data-scenario": str(i)},
        ),
        _detail_panel(i),
    ]
    return out


def _pick_rows(msgs: list[MessageTimeline], limit: int) -> list[MessageTimeline]:
    """Up to ``limit`` messages in KA's order, those with problems chosen first."""
    chosen = {id(m) for m in [m for m in msgs if m.notable][:limit]}
    for m in msgs:
        if len(chosen) >= limit:
            break
        chosen.add(id(m))
    return [m for m in msgs if id(m) in chosen]


def _row(i: int, n: int, m: MessageTimeline, start: int, scale: int) -> etree._Element:
    outcome = el(
        "td", m.outcome.replace("_", "-"), _class("pass" if m.outcome == "loaded" else "fail")
    )
    flags = _flags(m)
    if flags:
        outcome.append(el("br"))
        outcome.append(el("span", flags, _class("warn")))
    bar = el("div", _class("bar"))
    for hop in _BAR_HOPS:
        v = m.hop(hop)
        if v is not None and v > 0:
            bar.append(el("span", _class(hop), title=f"{HOP_LABELS[hop]}: {_ms(v)}"))
            bar[-1].set("style", f"width:{min(100.0, 100.0 * v / scale):.2f}%")
    produced = m.produced if m.produced is not None else None
    return el(
        "tr",
        _num(n),
        el("td", _msg_button(i, m.message_id)),
        el("td", m.message_type),
        el("td", m.org_number),
        _num(m.sequence),
        outcome,
        el("td", "" if produced is None else f"+{(produced - start) / 1000:.3f} s", _class("num")),
        *(el("td", _ms(m.hop(h)), _class("num")) for h in HOPS),
        el("td", bar),
    )


def _flags(m: MessageTimeline) -> str:
    flags = []
    if m.retries:
        flags.append(f"{m.retries} retries")
    if m.consumed_times > 1:
        flags.append(f"consumed {m.consumed_times}×")
    flags += [name for name, on in (("duplicated", m.duplicated), ("reordered", m.reordered)) if on]
    if m.pulled:
        flags.append("pulled")
    if m.late:
        flags.append("loaded late")
    if m.ledger_rows > 1:
        flags.append(f"loaded {m.ledger_rows}×")
    if m.dead_letter_code:
        flags.append(m.dead_letter_code)
    return ", ".join(flags)


def _bar_total(m: MessageTimeline) -> int:
    return sum(max(0, m.hop(h) or 0) for h in _BAR_HOPS)


def _legend() -> Iterator[Any]:
    for hop in (*_BAR_HOPS, "receipt"):
        yield el("span", "", _class(f"key {hop}"))
        yield HOP_LABELS[hop]


def _percentile_svg(stats: dict[str, Any]) -> etree._Element:
    """Horizontal bars of p50/p95/p99 per hop (an inline SVG)."""
    hops = [h for h in HOPS if stats[h].count]
    top = max((stats[h].p99 or 0 for h in hops), default=0) or 1
    label_w, width, line = 360, 1000, 26
    height = max(1, len(hops)) * (3 * line + 16) + 10
    svg = etree.Element(
        "svg", width=str(width), height=str(height), viewBox=f"0 0 {width} {height}", role="img"
    )
    etree.SubElement(svg, "title").text = "Latency percentiles per hop"
    y = 5
    for hop in hops:
        for p in ("p50", "p95", "p99"):
            v = getattr(stats[hop], p) or 0
            w = (width - label_w - 120) * max(0, v) / top
            label = etree.SubElement(svg, "text", {"x": "0", "y": str(y + 19), "font-size": "18"})
            label.text = f"{HOP_LABELS[hop].split(' (')[0]} {p}"
            rect = {"x": str(label_w), "y": str(y + 3), "width": f"{w:.1f}"}
            rect |= {"height": str(line - 6), "fill": _COLOURS[hop]}
            etree.SubElement(svg, "rect", rect)
            at = {"x": f"{label_w + w + 8:.1f}", "y": str(y + 19), "font-size": "18"}
            etree.SubElement(svg, "text", at).text = _ms(v)
            y += line
        y += 16
    return el("div", svg)


def _detail_panel(i: int) -> etree._Element:
    return el(
        "div",
        el("h3", "Message ", el("span", **{"data-field": "title"})),
        el("pre", **{"data-field": "hops"}),
        el("h3", "Envelope (header and signature; the document follows)"),
        el("pre", **{"data-field": "envelope"}),
        el("h3", "Document"),
        el("pre", **{"data-field": "document"}),
        _class("detail"),
        id=f"detail-{i}",
        hidden="hidden",
    )


def _data_block(
    i: int, run_dir: Path, timeline: Timeline, detail_rows: int, budget: int
) -> etree._Element:
    """Every message's summary, plus envelopes and documents within ``budget`` characters."""
    msgs = timeline.messages
    wanted = [m for m in msgs if m.notable] + _pick_rows(msgs, detail_rows) + msgs
    by_envelope = {m.envelope_id: m for m in msgs if m.envelope_id}
    order = {id(m): n for n, m in reversed(list(enumerate(wanted)))}
    blobs = sorted(
        (
            (order.get(id(by_envelope[e]), len(wanted)), e, b)
            for e, b in stored_envelopes(run_dir)
            if e in by_envelope
        ),
        key=lambda t: t[0],
    )
    start = timeline.start_ms() or 0
    data: dict[str, dict[str, Any]] = {
        m.message_id: {"summary": _summary(m, start), "note": _missing_note(m, run_dir)}
        for m in msgs
    }
    used = 0
    for _, envelope_id, blob in blobs:
        entry = data[by_envelope[envelope_id].message_id]
        if used >= budget:
            entry["note"] = _cut_note(envelope_id, run_dir)
            continue
        envelope, document = pretty_envelope(blob)
        entry["envelope"], entry["document"] = envelope, document
        used += len(envelope) + len(document)
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(ch, esc)
    return el("script", text, type="application/json", id=f"data-{i}")


def pretty_envelope(raw: bytes) -> tuple[str, str]:
    """The envelope (its document replaced by a note) and the document, each indented.

    Unparseable input is shown as text with the reason, never trusted further.
    """
    try:
        root = parse_xml(raw)
    except B2BSimError as exc:
        return f"(not shown as XML: {exc.one_line()})\n\n{raw.decode('utf-8', 'replace')}", ""
    sbd = root.find(f"{{{SBDH_NS}}}StandardBusinessDocument")
    payload = None
    if sbd is not None:
        payload = next(
            (c for c in sbd if isinstance(c.tag, str) and not c.tag.startswith(f"{{{SBDH_NS}}}")),
            None,
        )
    document = ""
    envelope = copy.deepcopy(root)
    if payload is not None:
        doc = copy.deepcopy(payload)
        etree.indent(doc, space="  ")
        document = etree.tostring(doc, encoding="unicode")
        sbd_copy = envelope.find(f"{{{SBDH_NS}}}StandardBusinessDocument")
        assert sbd_copy is not None
        assert sbd is not None
        placeholder = sbd_copy[sbd.index(payload)]
        note = etree.Comment(" the business document: shown below ")
        note.tail = placeholder.tail
        sbd_copy.replace(placeholder, note)
    etree.indent(envelope, space="  ")
    return etree.tostring(envelope, encoding="unicode"), document


def _summary(m: MessageTimeline, start: int) -> str:
    lines = [
        f"{m.message_type or '?'} to {m.org_number or '?'}, sequence {m.sequence}, "
        f"envelope {m.envelope_id or '-'}, outcome {m.outcome}",
    ]
    for stamp in ("produced", "consumed", "received", "delivered", "loaded"):
        v = m.stamp(stamp)
        when = "-" if v is None else f"{_iso(v)}  (+{(v - start) / 1000:.3f} s)"
        lines.append(f"  {stamp:<10} {when}")
    lines += [f"  {HOP_LABELS[h]:<30} {_ms(m.hop(h))}" for h in HOPS]
    flags = _flags(m)
    if flags:
        lines.append(f"  {flags}")
    if m.dead_letter_code:
        x = explain_code(m.dead_letter_code)
        lines += [f"  dead letter: {m.dead_letter_reason}", f"  {x.text()}"]
    return "\n".join(lines)


def _missing_note(m: MessageTimeline, run_dir: Path) -> str:
    if m.dead_letter_code:
        return (
            f"Not delivered: dead-lettered with {m.dead_letter_code}. No envelope was stored; "
            "see the message on the broker with `b2bsim dlq show "
            f"{m.message_id}`."
        )
    return f"No stored envelope for this message in {run_dir}."


def _cut_note(envelope_id: str, run_dir: Path) -> str:
    query = "SELECT envelope FROM envelopes WHERE envelope_id = "  # shown, never run
    return (
        "Not embedded, to keep the report small. Read it with: sqlite3 "
        f"{run_dir / STUB_DB} \"{query}'{envelope_id}'\""
    )


def _msg_button(i: int, message_id: str) -> etree._Element:
    return el(
        "button",
        message_id,
        type="button",
        **{"class": "msg", "data-scenario": str(i), "data-msg": message_id},
    )


def _verdict_cell(ok: bool) -> etree._Element:
    return el("td", "pass" if ok else "FAIL", _class("pass" if ok else "fail"))


def _verdict_class(result: RunResult) -> str:
    return "pass" if result.passed else "fail"


def _num(v: int | None) -> etree._Element:
    return el("td", "" if v is None else str(v), _class("num"))


def _ms(v: int | None) -> str:
    if v is None:
        return "–"
    return f"{v / 1000:.2f} s" if abs(v) >= 10_000 else f"{v} ms"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
