"""The plan's dashboard and a plan run's JUnit XML, from their JSON."""

from __future__ import annotations

from typing import Any

from lxml import etree

from simulator.views.plan_views import plan_html, plan_junit

RUN: dict[str, Any] = {
    "run_id": "20270101T000000Z-seed1",
    "seed": 1,
    "started_at": "2027-01-01T00:00:00+00:00",
    "finished_at": "2027-01-01T00:01:00+00:00",
    "tool_version": "0.1.0",
    "supplier": {"org_number": "5520000000"},
    "endpoint": {"url": "https://h:1/b2b/envelopes", "cert_sha256": "ab" * 32},
    "cases": [
        {"id": "conformance/a", "kind": "conformance", "verdict": "passed", "reason": "ok"},
        {"id": "conformance/b", "kind": "conformance", "verdict": "failed", "reason": "<bad>"},
        {"id": "scenario/c", "kind": "scenario", "verdict": "not run", "reason": "pull"},
        {"id": "scenario/d", "kind": "scenario", "verdict": "not applicable", "reason": "x"},
    ],
}


def test_junit_fails_the_failed_and_skips_what_was_not_passed() -> None:
    root = etree.fromstring(plan_junit(RUN))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "2")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["conformance/b"].find("failure") is not None
    skipped = cases["scenario/c"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "not run: pull"
    assert cases["conformance/a"].find("failure") is None
    assert cases["conformance/a"].find("skipped") is None


def test_the_dashboard_escapes_and_shows_the_checklist() -> None:
    status = {
        "supplier": {"name": "A & B <AB>", "org_number": "5520000000"},
        "endpoint": {"url": "https://h:1/b2b/envelopes", "mode": "push", "readback": None},
        "schedule": {"start": "2027-01", "go_live": None},
        "ready": False,
        "checklist": [
            {
                "step": 7,
                "title": "Decision meeting",
                "done": False,
                "missing": ["step(s) 5"],
                "commands": "b2bsim plan evidence",
            },
        ],
        "cases": [
            {
                "id": "conformance/b",
                "title": "t",
                "verdict": "failed",
                "at": "",
                "seed": 1,
                "reason": "<bad>",
            },
        ],
    }
    html = plan_html(status, RUN)
    assert "A &amp; B &lt;AB&gt;" in html
    assert "<bad>" not in html
    assert "missing: step(s) 5" in html
    assert "not ready for the decision meeting" in html
    assert "Run 20270101T000000Z-seed1" in html
