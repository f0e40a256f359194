"""``b2bsim soak --report DIR``: the soak's result as one self-contained HTML page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lxml import html

from simulator.kits.soak.run import SoakResult
from simulator.views.report_html import el

__all__ = ["write_soak_report"]

_CSS = (
    "body{font:18px/1.5 system-ui,sans-serif;max-width:90rem;margin:0 auto;padding:1rem 2rem}"
    "table{border-collapse:collapse}td,th{border:1px solid #8a8a8a;padding:.2rem .6rem;"
    "text-align:left}.pass{background:#d3f5dc;color:#0f5323}.fail{background:#ffe1e0;"
    "color:#8f0b1f}.badge{padding:.2rem .6rem;font-weight:bold}"
)


def _table(head: list[str], rows: list[list[Any]]) -> Any:
    return el(
        "table",
        el("tr", *(el("th", h) for h in head)),
        *(el("tr", *(el("td", str(c)) for c in row)) for row in rows),
    )


def write_soak_report(result: SoakResult, out_dir: Path) -> Path:
    """Write ``out_dir/index.html``: verdict, figures, faults by kind, schedule, violations."""
    d = result.to_json()
    verdict = "passed" if result.passed else "FAILED"
    figures = ["produced", "lost", "double_ingested", "out_of_order", "unexplained"]
    body = el(
        "body",
        el("h1", f"b2bsim soak — seed {d['seed']}, {d['minutes']:g} min"),
        el("p", el("span", verdict, {"class": "badge " + ("pass" if result.passed else "fail")})),
        el("h2", "Figures"),
        _table(["figure", "value"], [[k, d[k]] for k in figures]),
        el("h2", "Dead-lettered by reason"),
        _table(["reason", "messages"], [[k, v] for k, v in (d["dead_lettered"] or {}).items()]),
        el("h2", "Faults injected by kind"),
        _table(["kind", "injected"], [[k, v] for k, v in d["faults"].items()]),
        el("h2", "Schedule"),
        _table(
            ["at s", "kind", "target", "seconds", "params"],
            [
                [e["at_s"], e["kind"], e["target"], e["seconds"], json.dumps(e["params"])]
                for e in d["schedule"]
            ],
        ),
        el("h2", "Violations"),
        el("pre", json.dumps(d["violations"], indent=1, ensure_ascii=False)[:200_000]),
        el("p", f"run directory: {d['run_dir']}; rerun: {d['rerun']}"),
    )
    page = el(
        "html",
        el("head", el("meta", charset="utf-8"), el("title", f"soak {verdict}"), el("style", _CSS)),
        body,
        lang="en",
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    index.write_text(html.tostring(page, doctype="<!DOCTYPE html>", encoding="unicode"))
    return index
