"""JUnit XML for CI: one ``<testsuite>`` per scenario, one ``<testcase>`` per expectation.

Shape (the common JUnit schema that Jenkins, GitLab and GitHub read)::

    <testsuites name="b2bsim" tests= failures= errors="0" skipped="0" time=>
      <testsuite name="happy-path" tests= failures= errors="0" skipped="0" time= timestamp=>
        <properties><property name="seed" value="42"/> <property name="rerun" …/> …</properties>
        <testcase classname="b2bsim.happy-path" name="lost" time="0">
          <failure type="EXPECTATION" message="expected lost = 0, got 3">explanation…</failure>
        </testcase>
        …
        <testcase classname="b2bsim.happy-path" name="run" time="12.3"/>  (fails on a run error)
        <system-out>figures, dead letters, the run directory</system-out>
      </testsuite>
    </testsuites>

An expectation either held or it did not; only in a run against an external
supplier (``b2bsim run --endpoint``) is one ``<skipped>``, with its reason: **not
applicable** (a step the external supplier did not get) or **not graded (no
read-back)**, never passed; and so is its ``run`` testcase when the
scenario as a whole is not applicable or not graded.  A case the run gave
nothing to grade is skipped as **not exercised**.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree

from simulator.runs.reconcile import read_jsonl
from simulator.runs.runner import RunResult
from simulator.views.explain import (
    code_of_error,
    dead_letter_explanations,
    explain_error,
    explain_expectation,
)
from simulator.vocabulary.codes.errors import B2BSIM

__all__ = ["junit_tree", "rerun_command", "write_junit"]


def rerun_command(result: RunResult) -> str:
    """The command that re-runs ``result``'s scenario with the same seed."""
    return f"{result.to_json()['rerun']} --seed {result.scenario.seed}"


def write_junit(results: Sequence[RunResult], path: Path) -> None:
    """Write the JUnit XML of ``results`` to ``path`` (parent directories are created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        etree.tostring(
            junit_tree(results), encoding="UTF-8", xml_declaration=True, pretty_print=True
        )
    )


def junit_tree(results: Sequence[RunResult]) -> etree._Element:
    """The ``<testsuites>`` element of ``results``."""
    root = etree.Element("testsuites", name="b2bsim")
    totals = {"tests": 0, "failures": 0, "skipped": 0, "time": 0.0}
    for result in results:
        suite = _suite(result)
        root.append(suite)
        totals["tests"] += int(suite.get("tests", "0"))
        totals["failures"] += int(suite.get("failures", "0"))
        totals["skipped"] += int(suite.get("skipped", "0"))
        totals["time"] += float(suite.get("time", "0"))
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("skipped", str(totals["skipped"]))
    root.set("time", f"{totals['time']:.3f}")
    return root


def _suite(result: RunResult) -> etree._Element:
    name = result.scenario.name
    total = result.timings.get("total", 0.0)
    suite = etree.Element("testsuite", name=name)
    props = etree.SubElement(suite, "properties")
    for key, value in (
        ("seed", str(result.scenario.seed)),
        ("description", result.scenario.description),
        ("rerun", rerun_command(result)),
        ("run_dir", str(result.run_dir)),
    ):
        etree.SubElement(props, "property", name=key, value=_clean(value))
    classname = f"b2bsim.{name}"
    failures = skipped = 0
    for e in result.expectations:
        case = etree.SubElement(suite, "testcase", classname=classname, name=e.name, time="0")
        if e.status != "graded":
            skipped += 1
            etree.SubElement(case, "skipped", message=_clean(f"{e.status}: {e.reason}"))
        elif not e.passed:
            failures += 1
            failure = etree.SubElement(
                case,
                "failure",
                type="EXPECTATION",
                message=_clean(f"expected {e.name} = {e.expected}, got {e.actual}"),
            )
            failure.text = _clean(
                e.reason or _expectation_detail(result, e.name, e.expected, e.actual)
            )
    run = etree.SubElement(suite, "testcase", classname=classname, name="run", time=f"{total:.3f}")
    if result.error is None and result.verdict != "passed" and not failures:
        # Not applicable or not graded as a whole: the scenario is never a pass.
        skipped += 1
        etree.SubElement(run, "skipped", message=_clean(_why_not_passed(result)))
    if result.error:
        failures += 1
        failure = etree.SubElement(
            run,
            "failure",
            type=code_of_error(result.error) or B2BSIM,
            message=_clean(result.error),
        )
        failure.text = _clean(explain_error(result.error).text())
    out = etree.SubElement(suite, "system-out")
    out.text = _clean(_summary(result))
    suite.set("tests", str(len(result.expectations) + 1))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    suite.set("time", f"{total:.3f}")
    suite.set("timestamp", _timestamp(result))
    return suite


def _why_not_passed(result: RunResult) -> str:
    """The verdict of a scenario that neither passed nor failed, with the first reason."""
    wanted = (
        result.verdict if result.verdict in ("not applicable", "not exercised") else "not graded"
    )
    reasons = [e.reason for e in result.expectations if e.status == wanted and e.reason]
    return f"{result.verdict}: {reasons[-1] if reasons else 'see the expectations'}"


def _expectation_detail(result: RunResult, name: str, expected: int, actual: int) -> str:
    f = result.figures
    lines = [explain_expectation(name, expected, actual, f.dead_letters).text()]
    if name == "lost" and f.lost_ids:
        lines.append("Lost message ids: " + ", ".join(f.lost_ids[:20]))
    if name.startswith("refused."):
        for a in read_jsonl(result.run_dir / "attacks.jsonl"):
            lines.append(
                f"  attack {a.get('attack')}: got {a.get('code')} (HTTP {a.get('status')}), "
                f"expected {a.get('expected')}"
            )
    dead = name in ("dead_lettered", "delivered", "ingested") or name.startswith("dead_letter_")
    if dead and f.dead_letters:
        lines.append("Dead letters:")
        for d in f.dead_letters[:20]:
            lines.append(f"  {d.get('message_id')}: [{d.get('code')}] {d.get('reason')}")
        for x in dead_letter_explanations(f.dead_letters):
            lines.append(f"  {x.key}{f' ({x.cause})' if x.cause else ''}: {x.text()}")
    lines.append(f"Re-run: {rerun_command(result)}")
    return "\n".join(lines)


def _summary(result: RunResult) -> str:
    figures = ", ".join(f"{k} {v}" for k, v in result.figures.figures().items())
    return (
        f"{result.scenario.name} (seed {result.scenario.seed}): "
        f"{result.verdict.upper()}\n{figures}\n"
        f"run directory: {result.run_dir}\nre-run: {rerun_command(result)}\n"
    )


def _timestamp(result: RunResult) -> str:
    """When the run directory was made (ISO 8601, no zone, as JUnit wants)."""
    try:
        made = result.run_dir.stat().st_mtime
    except OSError:
        made = datetime.now(UTC).timestamp()
    return datetime.fromtimestamp(made, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _clean(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot carry (lxml refuses them)."""
    return "".join(
        ch
        if ch in "\t\n\r"
        or ("\x20" <= ch <= "\ud7ff")
        or ("\ue000" <= ch <= "\ufffd")
        or ch >= "\U00010000"
        else "\ufffd"
        for ch in text
    )
