"""The report's timeline of one scenario: hop percentiles and a table of messages.

The timeline (:mod:`simulator.views.timeline`) is shown as latency percentiles
per hop (a table and an inline SVG) and a table of messages with a bar of
their hops; each message id links to the message's own page
(:mod:`simulator.views.report_pages`), shown in a frame of the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from lxml import etree

from simulator.views.report_html import css_class, duration, el, msg_link, num_cell
from simulator.views.timeline import HOP_LABELS, HOPS, MessageTimeline, Timeline

__all__ = ["detail_frame", "flags", "message_table", "pick_rows", "timeline_section"]

#: The page of message number N (from 1, in KA's order), relative to where it is linked from.
Link = Callable[[int], str]

_BAR_HOPS = ("broker", "delivery", "ledger")  # consecutive: they stack into one bar
_COLOURS = {
    "broker": "#0550ae",
    "delivery": "#8250df",
    "receipt": "#1a7f37",
    "ledger": "#b35900",
    "total": "#111111",
}


def timeline_section(
    i: int, timeline: Timeline, detail_rows: int, link: Link, all_messages: str
) -> list[etree._Element]:
    """Scenario ``i``'s percentiles, its first ``detail_rows`` messages and their detail frame.

    ``link`` gives each message's page; ``all_messages`` is the page of all of them.
    """
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
    shown = pick_rows(msgs, detail_rows)
    note = (
        f"Showing {len(shown)} of {len(msgs)} messages: those with problems first, then "
        "KA's order. Percentiles cover all. Click a message id for its envelope and document; "
    )
    out += [
        el("p", note, el("a", f"all {len(msgs)} messages, and a search by id", href=all_messages)),
        *message_table(timeline, shown, link, target=f"detail-{i}"),
        detail_frame(f"detail-{i}"),
    ]
    return out


def message_table(
    timeline: Timeline, shown: list[MessageTimeline], link: Link, target: str | None
) -> list[etree._Element]:
    """The legend and the table of the ``shown`` messages, each id linked to its page."""
    start = timeline.start_ms() or 0
    scale = max((_bar_total(m) for m in shown), default=0) or 1
    head = ["#", "message", "type", "supplier", "seq", "outcome", "produced"]
    head += [HOP_LABELS[h].split(" (")[0] for h in HOPS] + ["hops"]
    table = el("table", el("tr", *(el("th", h) for h in head)), css_class("messages"))
    number = {id(m): n for n, m in enumerate(timeline.messages, 1)}
    for m in shown:
        n = number[id(m)]
        table.append(_row(n, msg_link(link(n), m.message_id, target), m, start, scale))
    return [
        el("p", "Bars: ", *_legend(), css_class("muted")),
        el(
            "p",
            "Hop times: produced is KA's clock (a scenario may skew it); the supplier stores an "
            "envelope before answering, so the receipt hop starts where delivery ends.",
            css_class("muted"),
        ),
        el("div", table, css_class("scroll")),
    ]


def detail_frame(name: str) -> etree._Element:
    """Where a clicked message's page opens (hidden until a message is clicked)."""
    return el(
        "div",
        el("iframe", name=name, title="the message's envelope and document"),
        css_class("detail"),
        id=name,
        hidden="hidden",
    )


def pick_rows(msgs: list[MessageTimeline], limit: int) -> list[MessageTimeline]:
    """Up to ``limit`` messages in KA's order, those with problems chosen first."""
    chosen = {id(m) for m in [m for m in msgs if m.notable][:limit]}
    for m in msgs:
        if len(chosen) >= limit:
            break
        chosen.add(id(m))
    return [m for m in msgs if id(m) in chosen]


def _row(
    n: int, link: etree._Element, m: MessageTimeline, start: int, scale: int
) -> etree._Element:
    outcome = el(
        "td", m.outcome.replace("_", "-"), css_class("pass" if m.outcome == "loaded" else "fail")
    )
    marks = flags(m)
    if marks:
        outcome.append(el("br"))
        outcome.append(el("span", marks, css_class("warn")))
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
        el("td", link, css_class("id")),
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


def flags(m: MessageTimeline) -> str:
    """What happened to ``m`` on the way, in a few words (retries, duplicates, …)."""
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
