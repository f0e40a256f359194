"""The report's pages beside ``index.html``: one per message, and one of all of a scenario's.

``DIR/s<i>/m/<n>.html`` is message number ``n`` (from 1, in KA's order) of
scenario ``i``: its hops, and its envelope and document pretty-printed (parsed
with :func:`simulator.vocabulary.xmlsafe.parse_xml` only, shown as text).
``DIR/s<i>/messages.html`` is the table of all of the scenario's messages,
with a search by message id.  The index links to them, so it stays small
however many envelopes a run has; they are plain files, read from ``file://``
without a server (the index opens a message's page in a frame).  Their style
and script are ``DIR/report.css`` and ``DIR/report.js``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

from lxml import etree, html

from simulator.runs.runner import RunResult
from simulator.runs.stub_records import STUB_DB, stored_envelopes
from simulator.views.explain import explain_dead_letter
from simulator.views.report_html import css_class, duration, el, utc_time
from simulator.views.report_timeline import detail_frame, flags, message_table
from simulator.views.timeline import HOP_LABELS, HOPS, MessageTimeline, Timeline
from simulator.vocabulary.envelope import SBDH_NS
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.xmlsafe import parse_xml

__all__ = [
    "message_href",
    "messages_href",
    "pretty_envelope",
    "write_scenario_pages",
]


def messages_href(i: int) -> str:
    """The page of all of scenario ``i``'s messages, relative to the report's directory."""
    return f"s{i}/messages.html"


def message_href(i: int, n: int) -> str:
    """Message ``n``'s page of scenario ``i``, relative to the report's directory."""
    return f"s{i}/m/{n}.html"


def write_scenario_pages(
    out_dir: Path, i: int, result: RunResult, timeline: Timeline, *, budget: int
) -> int:
    """Write scenario ``i``'s message pages; return the characters of envelopes written.

    Envelopes and documents are written up to ``budget`` characters in all;
    past it, a message's page says where its envelope is stored.
    """
    name, run_dir = result.scenario.name, result.run_dir
    pages = out_dir / f"s{i}" / "m"
    pages.mkdir(parents=True, exist_ok=True)
    msgs = timeline.messages
    start = timeline.start_ms() or 0
    number = {m.envelope_id: n for n, m in enumerate(msgs, 1) if m.envelope_id}
    blobs = {e: b for e, b in stored_envelopes(run_dir) if e in number}
    used = 0
    for n, m in enumerate(msgs, 1):
        blob = blobs.get(m.envelope_id or "")
        if blob is not None and used < budget:
            envelope, document = pretty_envelope(blob)
            used += len(envelope) + len(document)
            shown: tuple[str, str] | str = (envelope, document)
        elif blob is not None:
            shown = _cut_note(m.envelope_id or "", run_dir)
        else:
            shown = _missing_note(m, run_dir)
        body = _message_body((i, n), name, m, start, shown)
        _write(pages / f"{n}.html", f"{name}: message {n}", body, depth=2)
    table = message_table(timeline, msgs, lambda n: f"m/{n}.html", target="detail")
    ids = {m.message_id: n for n, m in enumerate(msgs, 1)}
    body = el(
        "body",
        el("p", el("a", "← the report", href=f"../index.html#s-{i}")),
        el("h1", f"{name}: all {len(msgs)} messages"),
        el(
            "form",
            el("label", "Message id: ", el("input", name="q", type="text")),
            " ",
            el("button", "show", type="submit"),
            el("span", "", css_class("muted"), id="not-found"),
            id="find",
        ),
        detail_frame("detail"),
        *table,
        _json_block("message-numbers", ids),
    )
    _write(out_dir / messages_href(i), f"{name}: all messages", body, depth=1)
    return used


def _message_body(
    at: tuple[int, int], name: str, m: MessageTimeline, start: int, shown: tuple[str, str] | str
) -> etree._Element:
    """Message ``n`` of scenario ``i`` (``at``): its hops, then its envelope or a note."""
    i, _ = at
    body = el(
        "body",
        el(
            "p",
            el("a", "← the report", href=f"../../index.html#s-{i}", target="_top"),
            " · ",
            el("a", f"all messages of {name}", href="../messages.html", target="_top"),
        ),
        el("h1", "Message ", el("code", m.message_id)),
        el("pre", _summary(m, start)),
    )
    if isinstance(shown, str):
        body.append(el("p", shown, css_class("note")))
        return body
    envelope, document = shown
    body.extend(
        [
            el("h2", "Envelope (header and signature; the document follows)"),
            el("pre", envelope, id="envelope"),
            el("h2", "Document"),
            el("pre", document, id="document"),
        ]
    )
    return body


def _write(path: Path, title: str, body: etree._Element, *, depth: int) -> None:
    up = "../" * depth
    body.append(el("script", src=f"{up}report.js"))
    page = el(
        "html",
        el(
            "head",
            el("meta", charset="utf-8"),
            el("meta", name="viewport", content="width=device-width, initial-scale=1"),
            el("title", title),
            el("link", rel="stylesheet", href=f"{up}report.css"),
        ),
        body,
        lang="en",
    )
    text: str = html.tostring(page, doctype="<!DOCTYPE html>", encoding="unicode")
    path.write_text(text, encoding="utf-8")


def _json_block(block_id: str, data: dict[str, int]) -> etree._Element:
    """``data`` in a ``<script type="application/json">`` no text can end early."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(ch, esc)
    return el("script", text, type="application/json", id=block_id)


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
    return "\n".join(_summary_lines(m, start))


def _summary_lines(m: MessageTimeline, start: int) -> Iterator[str]:
    yield (
        f"{m.message_type or '?'} to {m.org_number or '?'}, sequence {m.sequence}, "
        f"envelope {m.envelope_id or '-'}, outcome {m.outcome}"
    )
    for stamp in ("produced", "consumed", "received", "delivered", "loaded"):
        v = m.stamp(stamp)
        when = "-" if v is None else f"{utc_time(v)}  (+{(v - start) / 1000:.3f} s)"
        yield f"  {stamp:<10} {when}"
    yield from (f"  {HOP_LABELS[h]:<30} {duration(m.hop(h))}" for h in HOPS)
    marks = flags(m)
    if marks:
        yield f"  {marks}"
    if m.dead_letter_code:
        x = explain_dead_letter(m.dead_letter_code, m.dead_letter_reason or "")
        yield f"  dead letter: {m.dead_letter_reason}"
        yield f"  {x.text()}"


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
        "Not written, to keep the report small. Read it with: sqlite3 "
        f"{run_dir / STUB_DB} \"{query}'{envelope_id}'\""
    )
