"""The report's timeline of one scenario, and each message's envelope and document.

The timeline (:mod:`simulator.views.timeline`) is shown as latency percentiles
per hop (a table and an inline SVG) and a table of messages with a bar of
their hops; a click on a message id shows its summary, envelope and document,
read from a ``<script type="application/json">`` block of the page whose
``<``, ``>`` and ``&`` are JSON escapes.  Stored envelopes are parsed with
:func:`simulator.vocabulary.xmlsafe.parse_xml` only.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lxml import etree

from simulator.runs.stub_records import STUB_DB, stored_envelopes
from simulator.views.explain import explain_code
from simulator.views.report_html import css_class, duration, el, msg_button, num_cell, utc_time
from simulator.views.timeline import HOP_LABELS, HOPS, MessageTimeline, Timeline
from simulator.vocabulary.envelope import SBDH_NS
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.xmlsafe import parse_xml

__all__ = ["data_block", "pretty_envelope", "timeline_section"]

_BAR_HOPS = ("broker", "delivery", "ledger")  # consecutive: they stack into one bar
_COLOURS = {
    "broker": "#0550ae",
    "delivery": "#8250df",
    "receipt": "#1a7f37",
    "ledger": "#b35900",
    "total": "#111111",
}


def timeline_section(i: int, timeline: Timeline, detail_rows: int) -> list[etree._Element]:
    """Scenario ``i``'s percentiles, its first ``detail_rows`` messages and the detail panel."""
    msgs = timeline.messages
    out: list[etree._Element] = [el("h3", f"Timeline of {len(msgs)} message(s)")]
    if not msgs:
        return [*out, el("p", "No message was recorded in this run's files.")]
    stats = timeline.stats()
    rows = [
        el(
            "tr",
            el("th", "hop"),
            *(el("th", h, css_class("num")) for h in ("messages", "p50", "p95")),
        )
    ]
    rows[0].extend([el("th", "p99", css_class("num")), el("th", "max", css_class("num"))])
    for name, st in stats.items():
        rows.append(
            el(
                "tr",
                el("td", HOP_LABELS[name]),
                num_cell(st.count),
                *(
                    el("td", duration(v), css_class("num"))
                    for v in (st.p50, st.p95, st.p99, st.max)
                ),
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
    legend = el("p", "Bars: ", *_legend(), css_class("muted"))
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
            css_class("muted"),
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
        "td", m.outcome.replace("_", "-"), css_class("pass" if m.outcome == "loaded" else "fail")
    )
    flags = _flags(m)
    if flags:
        outcome.append(el("br"))
        outcome.append(el("span", flags, css_class("warn")))
    bar = el("div", css_class("bar"))
    for hop in _BAR_HOPS:
        v = m.hop(hop)
        if v is not None and v > 0:
            bar.append(el("span", css_class(hop), title=f"{HOP_LABELS[hop]}: {duration(v)}"))
            bar[-1].set("style", f"width:{min(100.0, 100.0 * v / scale):.2f}%")
    produced = m.produced if m.produced is not None else None
    return el(
        "tr",
        num_cell(n),
        el("td", msg_button(i, m.message_id)),
        el("td", m.message_type),
        el("td", m.org_number),
        num_cell(m.sequence),
        outcome,
        el(
            "td",
            "" if produced is None else f"+{(produced - start) / 1000:.3f} s",
            css_class("num"),
        ),
        *(el("td", duration(m.hop(h)), css_class("num")) for h in HOPS),
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
        yield el("span", "", css_class(f"key {hop}"))
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
            etree.SubElement(svg, "text", at).text = duration(v)
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
        css_class("detail"),
        id=f"detail-{i}",
        hidden="hidden",
    )


def data_block(
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
        when = "-" if v is None else f"{utc_time(v)}  (+{(v - start) / 1000:.3f} s)"
        lines.append(f"  {stamp:<10} {when}")
    lines += [f"  {HOP_LABELS[h]:<30} {duration(m.hop(h))}" for h in HOPS]
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
