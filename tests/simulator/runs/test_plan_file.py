"""Plan files: the schema's mistakes named by file, line and key; written and read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.runs.plan_file import Plan, PlanCase, read_plan, write_plan
from simulator.vocabulary.errors import PlanError

GOOD = """\
version: 1
supplier:
  org_number: '5520000000'
  name: Leverantör AB
endpoint:
  url: https://127.0.0.1:8443/b2b/envelopes
  ca: ca.pem
  mode: push
  readback: null
  cert_sha256: null
schedule:
  start: 2027-01
  go_live: 2027-03
cases:
- id: conformance/valid-order
  kind: conformance
  title: A purchase order is accepted
  applies: true
- id: scenario/happy-path
  kind: scenario
  title: happy
  applies: true
  scenario: scenarios/happy-path.yaml
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(PlanError) as info:
        read_plan(path)
    return str(info.value)


def test_good_plan(tmp_path: Path) -> None:
    plan = read_plan(write(tmp_path, GOOD))
    assert plan.org_number == "5520000000"
    assert plan.start == "2027-01"
    assert [c.id for c in plan.cases] == ["conformance/valid-order", "scenario/happy-path"]
    assert plan.ca_path == tmp_path / "ca.pem"
    assert plan.runs_dir == tmp_path / "plan.yaml.runs"
    assert plan.case("valid-order") is plan.cases[0]


def test_unknown_key_names_line_and_key(tmp_path: Path) -> None:
    text = GOOD.replace("  mode: push\n", "  mode: push\n  moed: pull\n")
    message = error_of(write(tmp_path, text))
    assert "plan.yaml:9:" in message
    assert "unknown key 'moed'" in message
    assert "(at endpoint.moed)" in message
    assert "did you mean 'mode'" in message


def test_wrong_type_names_line_and_key(tmp_path: Path) -> None:
    text = GOOD.replace("org_number: '5520000000'", "org_number: 5520000000")
    message = error_of(write(tmp_path, text))
    assert "plan.yaml:3:" in message
    assert "(at supplier.org_number)" in message
    assert "expected the organisation number as quoted text, got 5520000000" in message
    assert "in quotes" in message


def test_wrong_type_in_a_case(tmp_path: Path) -> None:
    text = GOOD.replace("  applies: true\n- id: scenario", "  applies: yes please\n- id: scenario")
    message = error_of(write(tmp_path, text))
    assert "plan.yaml:18:" in message
    assert "(at cases[0].applies)" in message


def test_bad_luhn_and_twice_listed_case(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, GOOD.replace("5520000000", "5520000001")))
    assert "(at supplier.org_number)" in message
    assert "Luhn" in message
    twice = GOOD.replace("scenario/happy-path", "conformance/valid-order", 1)
    assert "twice" in error_of(write(tmp_path, twice))


def test_yaml_syntax_and_missing_file(tmp_path: Path) -> None:
    assert "no such plan file" in error_of(tmp_path / "nope.yaml")
    assert "YAML syntax error" in error_of(write(tmp_path, "version: [1\n"))


def test_write_then_read_is_the_same(tmp_path: Path) -> None:
    plan = Plan(
        path=tmp_path / "sub" / "p.yaml",
        org_number="5520000000",
        name="Å AB",
        url="https://h:1/b2b/envelopes",
        ca="ca.pem",
        cert_sha256="ab" * 32,
        start="2027-01",
        cases=(
            PlanCase("scenario/x", "scenario", "t", applies=False, reason="r", scenario="x.yaml"),
        ),
    )
    write_plan(plan)
    assert read_plan(plan.path) == plan
    assert [p.name for p in plan.path.parent.iterdir()] == ["p.yaml"]  # no temporary left


def test_a_month_that_is_no_month(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, GOOD.replace("start: 2027-01", "start: 2027-13")))
    assert "plan.yaml:12:" in message
    assert "expected a month YYYY-MM, got '2027-13' (at schedule.start)" in message


PULL = GOOD.replace(
    """endpoint:
  url: https://127.0.0.1:8443/b2b/envelopes
  ca: ca.pem
  mode: push
  readback: null
  cert_sha256: null
""",
    """endpoint:
  mode: pull
  listen: 127.0.0.1:9443
  cert: puller.pem
  cert_sha256: '"""
    + "ab" * 32
    + """'
  ca: null
  readback: https://127.0.0.1:8443/b2b/ledger
""",
)


def test_a_pull_plan_names_its_puller(tmp_path: Path) -> None:
    plan = read_plan(write(tmp_path, PULL))
    assert plan.pulls
    assert plan.listen == "127.0.0.1:9443"
    assert plan.url == "https://127.0.0.1:9443/b2b/outbox"
    assert plan.puller_cert == "puller.pem"
    assert plan.ca_path is None
    write_plan(plan)
    assert read_plan(plan.path) == plan


def test_a_pull_plan_with_a_push_key_or_a_typo_names_line_and_key(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, PULL.replace("  ca: null\n", "  url: https://x/\n")))
    assert "plan.yaml:10:" in message
    assert "unknown key 'url' (at endpoint.url)" in message
    message = error_of(write(tmp_path, PULL.replace("  listen:", "  lisen:")))
    assert "unknown key 'lisen' (at endpoint.lisen)" in message
    assert "did you mean 'listen'" in message


def test_a_pull_plan_with_a_wrong_type_or_no_fixed_port(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, PULL.replace("listen: 127.0.0.1:9443", "listen: 9443")))
    assert "plan.yaml:7:" in message
    assert "(at endpoint.listen)" in message
    assert "expected HOST:PORT with a fixed port, got 9443" in message
    message = error_of(write(tmp_path, PULL.replace("127.0.0.1:9443", "127.0.0.1:0")))
    assert "expected HOST:PORT with a fixed port, got '127.0.0.1:0' (at endpoint.listen)" in (
        message
    )


def test_a_pull_plan_without_its_pin(tmp_path: Path) -> None:
    text = "".join(line for line in PULL.splitlines(True) if "cert_sha256" not in line)
    message = error_of(write(tmp_path, text))
    assert "missing key 'cert_sha256'" in message
    assert "(at endpoint)" in message
