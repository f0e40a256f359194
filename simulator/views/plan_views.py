"""A test plan's dashboard (HTML) and a plan run's JUnit XML, from their JSON.

:func:`plan_html` is one self-contained page (styles inline, no scripts, no
link outside it, so it opens offline, also from an evidence pack): the
supplier and its schedule, AF's seven onboarding steps with what is missing,
each case's last verdict, when and with which seed, and, for a run's report,
that run's verdicts.  :func:`plan_junit` is one ``<testcase>`` per case of a
run: ``<failure>`` when it failed, ``<skipped>`` with the reason when it was
not applicable, not graded or not run (never a pass).  Both take the plain
JSON of ``b2bsim plan status --json`` and ``run.json`` (docs/plan.md).
"""

from __future__ import annotations

from html import escape
from typing import Any

from lxml import etree

__all__ = ["plan_html", "plan_junit"]

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;
text-align:left;vertical-align:top}th{background:#f4f4f4}
.passed{color:#176d2b;font-weight:600}.failed{color:#b3261e;font-weight:600}
.other{color:#8a5a00;font-weight:600}.done{color:#176d2b}.todo{color:#b3261e}
code{background:#f4f4f4;padding:0 .2rem}.small{color:#666;font-size:.9em}
"""


def _cls(verdict: str) -> str:
    return verdict if verdict in ("passed", "failed") else "other"


def _cell(text: Any) -> str:
    return f"<td>{escape('' if text is None else str(text))}</td>"


def plan_html(status: dict[str, Any], run: dict[str, Any] | None = None) -> str:
    """The dashboard; with ``run``, that run's verdicts below it."""
    s = status
    sup, end, sched = s["supplier"], s["endpoint"], s["schedule"]
    ready = "ready for the decision meeting" if s["ready"] else "not ready for the decision meeting"
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Test plan of {escape(sup['name'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Test plan: {escape(sup['name'])} ({escape(sup['org_number'])})</h1>",
        f"<p>{'Puller fetching from' if end['mode'] == 'pull' else 'Endpoint'} "
        f"<code>{escape(end['url'])}</code> ({escape(end['mode'])}); read-back "
        f"{escape(end['readback'] or 'none')}. Schedule: start {escape(sched['start'] or '—')}, "
        f"go-live {escape(sched['go_live'] or '—')}. "
        f"<strong class={'done' if s['ready'] else 'todo'}>{escape(ready)}</strong>.</p>",
        "<h2>AF's onboarding steps</h2><table><tr><th>#</th><th>step</th><th>state</th>"
        "<th>commands</th></tr>",
    ]
    for step in s["checklist"]:
        state = (
            "<span class=done>done</span>"
            if step["done"]
            else "<span class=todo>missing: " + escape("; ".join(step["missing"])) + "</span>"
        )
        out.append(
            f"<tr>{_cell(step['step'])}{_cell(step['title'])}<td>{state}</td>"
            f"<td><code>{escape(step['commands'])}</code></td></tr>"
        )
    out.append(
        "</table><h2>Cases: the last verdict of each</h2><table><tr><th>case</th>"
        "<th>verdict</th><th>when</th><th>seed</th><th>reason</th></tr>"
    )
    for c in s["cases"]:
        out.append(
            f"<tr><td>{escape(c['id'])}<div class=small>{escape(c['title'])}</div></td>"
            f"<td class={_cls(c['verdict'])}>{escape(c['verdict'])}</td>"
            f"{_cell(c['at'])}{_cell(c['seed'])}{_cell(c['reason'])}</tr>"
        )
    out.append("</table>")
    if run is not None:
        out.append(_run_section(run))
    out.append("</body></html>\n")
    return "\n".join(out)


def _run_section(run: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for c in run["cases"]:
        counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    whose = "puller's client" if run["endpoint"].get("mode") == "pull" else "endpoint"
    rows = [
        f"<h2>Run {escape(run['run_id'])}</h2><p>seed {run['seed']}, "
        f"{escape(run['started_at'])} to {escape(run['finished_at'])}, b2bsim "
        f"{escape(run['tool_version'])}; {whose} certificate SHA-256 "
        f"<code>{escape(str(run['endpoint'].get('cert_sha256')))}</code>: {escape(summary)}</p>",
        "<table><tr><th>case</th><th>verdict</th><th>seconds</th><th>reason</th>"
        "<th>records</th></tr>",
    ]
    for c in run["cases"]:
        files = len(c.get("files", []))
        rows.append(
            f"<tr>{_cell(c['id'])}<td class={_cls(c['verdict'])}>{escape(c['verdict'])}</td>"
            f"{_cell(c.get('seconds', 0))}{_cell(c['reason'])}{_cell(f'{files} file(s)')}</tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def plan_junit(run: dict[str, Any]) -> bytes:
    """JUnit XML of one plan run: a testcase per case."""
    cases = run["cases"]
    failures = sum(c["verdict"] == "failed" for c in cases)
    skipped = sum(c["verdict"] not in ("passed", "failed") for c in cases)
    total = sum(float(c.get("seconds", 0)) for c in cases)
    suites = etree.Element("testsuites", name="b2bsim.plan")
    suite = etree.SubElement(
        suites,
        "testsuite",
        name=f"b2bsim.plan.{run['supplier']['org_number']}",
        tests=str(len(cases)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=f"{total:.3f}",
        timestamp=run["started_at"],
    )
    props = etree.SubElement(suite, "properties")
    for key in ("run_id", "seed", "tool_version"):
        etree.SubElement(props, "property", name=key, value=str(run[key]))
    etree.SubElement(props, "property", name="endpoint", value=run["endpoint"]["url"])
    for c in cases:
        case = etree.SubElement(
            suite,
            "testcase",
            classname=f"b2bsim.plan.{c['kind']}",
            name=c["id"],
            time=f"{float(c.get('seconds', 0)):.3f}",
        )
        if c["verdict"] == "failed":
            etree.SubElement(case, "failure", message=c["reason"][:1000], type="plan")
        elif c["verdict"] != "passed":
            etree.SubElement(case, "skipped", message=f"{c['verdict']}: {c['reason']}"[:1000])
        else:
            etree.SubElement(case, "system-out").text = c["reason"]
    return bytes(etree.tostring(suites, xml_declaration=True, encoding="UTF-8", pretty_print=True))
