"""`b2bsim run A B C --endpoint …`: per scenario passed, failed or not applicable, in the
output, the JUnit XML and the HTML report; against the reference stub started by hand."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import lxml.html
import pytest
from lxml import etree

from simulator.cli import main
from tests.simulator.runs.receivers import hand_started_stub

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.broker
@pytest.mark.integration
def test_several_scenarios_against_the_stub_started_by_hand(
    broker_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "happy-path-wrong.yaml"  # a scenario that fails: it expects too much
    wrong.write_text(
        (REPO / "scenarios" / "happy-path.yaml")
        .read_text()
        .replace("name: happy-path", "name: happy-path-wrong")
        .replace("produced: 9", "produced: 10")
    )
    scenarios = [
        REPO / "scenarios" / f"{name}.yaml"
        for name in ("happy-path", "out-of-order", "tampered-envelope", "cert-revoked")
    ]
    junit, report, out_json = tmp_path / "junit.xml", tmp_path / "report", tmp_path / "r.json"
    with hand_started_stub(tmp_path) as stub:
        code = main(
            [
                *("--state", str(stub.state), "run", *map(str, [*scenarios, wrong])),
                *("--broker", broker_url, *stub.endpoint_args()),
                *("--junit", str(junit), "--report", str(report), "--result-json", str(out_json)),
            ]
        )
    out = capsys.readouterr().out
    assert code == 1  # one failed
    assert "happy-path: PASSED" in out
    # Reordered and duplicated deliveries: each re-send answered `duplicate`, loaded in
    # order, because KA's sequences for the stub's supplier go on from the run before.
    assert "out-of-order: PASSED" in out
    # Attacks on supplier 2 borrow a key of the run's own suppliers, never the external one's.
    assert "tampered-envelope: PASSED" in out
    assert "cert-revoked: NOT APPLICABLE" in out
    assert "happy-path-wrong: FAILED" in out
    assert out.strip().splitlines()[-1].startswith("3 passed, ")
    assert "1 failed" in out.strip().splitlines()[-1]
    assert "1 not applicable" in out.strip().splitlines()[-1]
    # The step that does not apply says so, with its reason, while it runs and at the end;
    # the stub's suppliers still get it.
    assert (
        "not applicable to the external endpoint (the stub's suppliers get it): "
        "`pki: {revoke: icc}`" in out
    )
    assert "step 6: not applicable: `pki: {revoke: icc}`" in out

    suites = {s.get("name"): s for s in etree.parse(str(junit)).getroot()}
    run_case = {n: s.find("testcase[@name='run']") for n, s in suites.items()}
    assert run_case["happy-path"] is not None
    assert run_case["happy-path"].find("skipped") is None
    na = run_case["cert-revoked"]
    assert na is not None
    skipped = na.find("skipped")
    assert skipped is not None
    assert str(skipped.get("message")).startswith("not applicable: ")
    step = suites["cert-revoked"].find("testcase[@name='step 6']/skipped")
    assert step is not None
    assert "`pki: {revoke: icc}`" in str(step.get("message"))
    assert suites["cert-revoked"].get("failures") == "0"
    assert suites["happy-path-wrong"].get("failures") == "1"

    index = lxml.html.parse(str(report / "index.html")).getroot()
    text = index.text_content()
    assert "3 of 5 scenario(s) passed" in text
    cells = [td.text_content() for td in index.xpath("//td[@class='na']")]
    assert any(c.startswith("not applicable: `pki: {revoke: icc}`") for c in cells)
    assert "not applicable" in cells  # cert-revoked's verdict in the overview

    runs = [Path(r["run_dir"]) for r in json.loads(out_json.read_text())["scenarios"]]
    sequences = [
        [
            int(row["sequence"])
            for row in map(json.loads, (run / "produced.jsonl").read_text().splitlines())
            if row.get("org_number") == stub.org
        ]
        for run in runs
    ]
    for before, after in itertools.pairwise(sequences):
        assert min(after) == max(before) + 1
