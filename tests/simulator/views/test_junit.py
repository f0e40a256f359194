"""Tests for simulator.views.junit: JUnit XML with one testcase per scenario expectation."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from simulator.runs.reconcile import Reconciliation
from simulator.runs.runner import Expectation, RunResult
from simulator.runs.scenario import Scenario
from simulator.views.junit import junit_tree, rerun_command, write_junit


def result(
    tmp_path: Path,
    name: str,
    expectations: list[Expectation],
    *,
    error: str | None = None,
    figures: Reconciliation | None = None,
) -> RunResult:
    """A RunResult as the runner makes one, without running anything."""
    scenario = Scenario(name, f"{name}: what it shows", Path(f"scenarios/{name}.yaml"), seed=42)
    run_dir = tmp_path / name
    run_dir.mkdir()
    return RunResult(
        scenario,
        run_dir,
        figures or Reconciliation(produced=3, delivered=3, ingested=3),
        expectations,
        error=error,
        timings={"total": 1.5},
    )


def failing(tmp_path: Path) -> RunResult:
    """Two expectations fail, dead letters exist and the run timed out."""
    figures = Reconciliation(
        produced=3,
        delivered=1,
        ingested=1,
        lost=1,
        dead_lettered=1,
        lost_ids=["m2"],
        dead_letters=[{"message_id": "m3", "code": "DELIVERY_REFUSED", "reason": "HTTP 403"}],
    )
    return result(
        tmp_path,
        "supplier-outage",
        [
            Expectation("produced", 3, 3),
            Expectation("lost", 0, 1),
            Expectation("dead_lettered", 0, 1),
            Expectation("refused.XML_DOCTYPE", 1, 1),
        ],
        error="error [RUN_TIMEOUT]: scenario 'supplier-outage' did not finish within 5 s",
        figures=figures,
    )


def passing(tmp_path: Path) -> RunResult:
    """Every expectation holds."""
    return result(
        tmp_path, "happy-path", [Expectation("produced", 9, 9), Expectation("lost", 0, 0)]
    )


def cases(suite: etree._Element) -> dict[str, etree._Element]:
    return {c.get("name", ""): c for c in suite.iter("testcase")}


class TestWriteJunit:
    def test_counts(self, tmp_path: Path) -> None:
        """One suite per scenario; tests = expectations + the run case; failures counted."""
        path = tmp_path / "out" / "junit.xml"
        write_junit([failing(tmp_path), passing(tmp_path)], path)
        root = etree.parse(str(path)).getroot()
        assert root.tag == "testsuites"
        assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("8", "3", "0")
        bad, good = root.findall("testsuite")
        assert (bad.get("name"), bad.get("tests"), bad.get("failures")) == (
            "supplier-outage",
            "5",
            "3",
        )
        assert (good.get("tests"), good.get("failures"), good.get("skipped")) == ("3", "0", "0")
        assert list(cases(good)) == ["produced", "lost", "run"]

    def test_no_case_is_skipped(self, tmp_path: Path) -> None:
        """There is no <skipped> element anywhere."""
        root = junit_tree([failing(tmp_path), passing(tmp_path)])
        assert root.find(".//skipped") is None
        assert all(s.get("skipped") == "0" for s in root.iter("testsuite"))

    def test_failure_message_and_explanation(self, tmp_path: Path) -> None:
        """A failed expectation says expected and actual, what it means and how to fix it."""
        suite = junit_tree([failing(tmp_path)])[0]
        failure = cases(suite)["lost"].find("failure")
        assert failure is not None
        assert failure.get("message") == "expected lost = 0, got 1"
        assert failure.get("type") == "EXPECTATION"
        assert "Messages were lost" in (failure.text or "")
        assert "How to fix it" in (failure.text or "")
        assert "m2" in (failure.text or "")

    def test_dead_letters_listed_with_their_codes(self, tmp_path: Path) -> None:
        """The dead_lettered failure lists each dead letter and explains its code."""
        failure = cases(junit_tree([failing(tmp_path)])[0])["dead_lettered"].find("failure")
        assert failure is not None
        assert "m3: [DELIVERY_REFUSED] HTTP 403" in (failure.text or "")
        assert "The supplier refused the envelope" in (failure.text or "")

    def test_dead_letter_advice_follows_the_reason(self, tmp_path: Path) -> None:
        """An expired certificate is advised as such: not 'bring the supplier back'."""
        expired = (
            "certificate refused: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
            "certificate has expired (_ssl.c:1006)"
        )
        figures = Reconciliation(
            produced=2,
            delivered=1,
            ingested=1,
            dead_lettered=1,
            dead_letters=[{"message_id": "m2", "code": "DELIVERY_GAVE_UP", "reason": expired}],
        )
        r = result(tmp_path, "cert-expired", [Expectation("dead_lettered", 0, 1)], figures=figures)
        failure = cases(junit_tree([r])[0])["dead_lettered"].find("failure")
        assert failure is not None
        text = failure.text or ""
        assert "DELIVERY_GAVE_UP (cert-expired)" in text
        assert "certificate has expired" in text
        assert "renew its certificate" in text
        assert "Bring the supplier back" not in text

    def test_passing_cases_have_no_children(self, tmp_path: Path) -> None:
        """A held expectation is a bare testcase."""
        suite = junit_tree([failing(tmp_path)])[0]
        assert len(cases(suite)["produced"]) == 0
        assert len(cases(suite)["refused.XML_DOCTYPE"]) == 0

    def test_run_case_fails_with_the_run_error(self, tmp_path: Path) -> None:
        """The run case carries the error's code as type and its explanation."""
        run = cases(junit_tree([failing(tmp_path)])[0])["run"]
        failure = run.find("failure")
        assert failure is not None
        assert failure.get("type") == "RUN_TIMEOUT"
        assert "did not finish within 5 s" in (failure.get("message") or "")
        assert "raise `timeout:`" in (failure.text or "")
        assert run.get("time") == "1.500"

    def test_seed_and_rerun_in_properties(self, tmp_path: Path) -> None:
        """The suite states the seed and the command that re-runs it."""
        r = passing(tmp_path)
        suite = junit_tree([r])[0]
        props = {p.get("name"): p.get("value") for p in suite.iter("property")}
        assert props["seed"] == "42"
        assert (
            props["rerun"] == rerun_command(r) == "b2bsim run scenarios/happy-path.yaml --seed 42"
        )

    def test_control_characters_are_made_safe(self, tmp_path: Path) -> None:
        """An error text with characters XML cannot carry still gives a parseable file."""
        r = passing(tmp_path)
        r.error = "error [BROKER]: bad \x00 byte \x1b[31m"
        path = tmp_path / "j.xml"
        write_junit([r], path)
        failure = etree.parse(str(path)).find(".//testcase[@name='run']/failure")
        assert failure is not None
        assert failure.get("type") == "BROKER"
        assert "\x00" not in (failure.get("message") or "")

    def test_every_case_has_the_common_schema_attributes(self, tmp_path: Path) -> None:
        """testcase: name and classname; failure: message and type; suites: the counts."""
        root = junit_tree([failing(tmp_path), passing(tmp_path)])
        for suite in root.iter("testsuite"):
            assert {"name", "tests", "failures", "errors", "skipped", "time"} <= set(suite.keys())
        for case in root.iter("testcase"):
            assert case.get("classname", "").startswith("b2bsim.")
            assert case.get("name")
        for failure in root.iter("failure"):
            assert failure.get("message")
            assert failure.get("type")


def test_an_external_endpoints_not_graded_and_not_applicable_cases_are_skipped(
    tmp_path: Path,
) -> None:
    """Against an external endpoint: what is not graded or not applicable is <skipped>
    with its reason, never passed; a failing case carries its own reason."""
    res = result(
        tmp_path,
        "bridge-crash",
        [
            Expectation("produced", 3, 3),
            Expectation("ingested", 3, 3, "not graded", "not graded (no read-back)"),
            Expectation("step 4", 0, 0, "not applicable", "`fault: {supplier: down}`: stub only"),
            Expectation("endpoint.redelivery_not_conflict", 0, 1, reason="redelivery-after-crash"),
        ],
    )
    assert res.verdict == "failed"
    suite = junit_tree([res])[0]
    assert suite.get("skipped") == "2"
    assert suite.get("failures") == "1"
    skipped = [c.get("name") for c in suite.iter("testcase") if c.find("skipped") is not None]
    assert skipped == ["ingested", "step 4"]
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert "no read-back" in str(cases["ingested"].find("skipped").get("message"))  # type: ignore[union-attr]
    failure = cases["endpoint.redelivery_not_conflict"].find("failure")
    assert failure is not None
    assert failure.text == "redelivery-after-crash"


def test_a_run_with_only_not_applicable_steps_is_not_applicable(tmp_path: Path) -> None:
    na = Expectation("step 2", 0, 0, "not applicable", "attack on supplier 1")
    res = result(tmp_path, "hostile-xml", [Expectation("lost", 0, 0), na])
    assert res.verdict == "not applicable"
    assert not res.passed
    no_readback = Expectation("endpoint.out_of_order", 0, 0, "not graded", "no read-back")
    assert result(tmp_path, "b", [no_readback]).verdict == "not graded (no read-back)"


def test_a_not_applicable_scenario_is_never_counted_as_passed(tmp_path: Path) -> None:
    """Its `run` case is <skipped> with the verdict and the reason; its summary says so."""
    na = Expectation("step 2", 0, 0, "not applicable", "`attack` on supplier 1: stub only")
    unexercised = Expectation("endpoint.resend_duplicate", 0, 0, "not exercised", "no re-send")
    res = result(tmp_path, "hostile-xml", [Expectation("lost", 0, 0), na, unexercised])
    suite = junit_tree([res])[0]
    run = cases(suite)["run"].find("skipped")
    assert run is not None
    assert run.get("message") == "not applicable: `attack` on supplier 1: stub only"
    assert suite.get("skipped") == "3"  # the step, the case not exercised, the run
    assert suite.get("failures") == "0"
    message = cases(suite)["endpoint.resend_duplicate"].find("skipped")
    assert message is not None
    assert message.get("message") == "not exercised: no re-send"
    out = suite.find("system-out")
    assert out is not None
    assert "NOT APPLICABLE" in str(out.text)
    assert "PASSED" not in str(out.text)


def test_a_passed_scenario_has_no_skipped_run_case(tmp_path: Path) -> None:
    suite = junit_tree([passing(tmp_path)])[0]
    assert cases(suite)["run"].find("skipped") is None
