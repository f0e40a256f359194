"""Tests for simulator.views.report: the self-contained HTML report of `b2bsim run --report`."""

from __future__ import annotations

import json
import re
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from simulator.runs.reconcile import Reconciliation
from simulator.runs.runner import Expectation, RunResult
from simulator.runs.scenario import Scenario
from simulator.views.report import render_report, write_report
from simulator.views.report_timeline import pretty_envelope
from simulator.vocabulary.envelope import Envelope, to_xml
from simulator.vocabulary.messages import MessageMeta, MessageType
from simulator.vocabulary.xmlsafe import serialize
from supplier_stub.ledger import LEDGER_SCHEMA
from supplier_stub.store import SCHEMA

ORG = "5520000000"
T0 = 1_767_225_600_000
EVIL_COMMENT = "</script><script>alert(1)</script>"
EVIL_ID = "</script><img src=x onerror=alert(2)>"
UBL = "urn:oasis:names:specification:ubl:schema:xsd:"


def document(n: int) -> bytes:
    """A small UBL invoice; the second one hides a script end tag in a comment and a note."""
    extra = f"<!-- {EVIL_COMMENT} --><cbc:Note>&lt;/script&gt;alert(3)</cbc:Note>" if n == 2 else ""
    return (
        f'<Invoice xmlns="{UBL}Invoice-2" xmlns:cbc="{UBL}CommonBasicComponents-2">'
        f"<cbc:ID>INV-{n}</cbc:ID>{extra}</Invoice>"
    ).encode()


def envelope(n: int) -> bytes:
    """The XML of message m<n>'s envelope, as the stub stores it (unsigned here)."""
    meta = MessageMeta.new(
        MessageType.SJALVFAKTURA, ORG, n, message_id=f"m{n}", produced_at_ms=T0 + n
    )
    env = Envelope.create(
        meta,
        document(n),
        receiver_cert_sha256="0f" * 32,
        receiver_url="https://127.0.0.1:9444/b2b/envelopes",
        envelope_id=f"e{n}",
        created_at_ms=T0 + 20,
    )
    return serialize(to_xml(env))


def fake_run(run_dir: Path, count: int = 3) -> Path:
    """KA produced ``count`` messages; all load except m3, dead-lettered; plus a poison message."""
    run_dir.mkdir(parents=True)
    lines = [
        {"message_id": f"m{n}", "message_type": "SJALVFAKTURA", "org_number": ORG}
        | {"produced_at_ms": T0 + n, "sequence": n}
        for n in range(1, count + 1)
    ]
    (run_dir / "produced.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    events: list[dict[str, Any]] = []
    for n in range(1, count + 1):
        base = {"envelope_id": f"e{n}", "message_id": f"m{n}", "org_number": ORG, "sequence": n}
        events.append(base | {"event": "consumed", "at_ms": T0 + n + 10})
        if n == 3:
            events.append(
                base
                | {"event": "dead_lettered", "at_ms": T0 + 50, "code": "DELIVERY_REFUSED"}
                | {"detail": "HTTP 403: WRONG_ADDRESSEE"}
            )
        else:
            events.append(base | {"event": "delivered", "at_ms": T0 + n + 40, "status": 200})
    events.append(
        {"event": "dead_lettered", "at_ms": T0, "envelope_id": "", "message_id": EVIL_ID}
        | {"code": "ENVELOPE_MALFORMED", "detail": "no headers"}
    )
    (run_dir / "icc-1.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    con = sqlite3.connect(run_dir / "supplier-stub.sqlite")
    con.executescript(SCHEMA + LEDGER_SCHEMA)
    for n in (k for k in range(1, count + 1) if k != 3):
        con.execute(
            "INSERT INTO envelopes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                f"e{n}",
                ORG,
                f"m{n}",
                "SJALVFAKTURA",
                "c",
                T0 + n,
                n,
                "0" * 64,
                T0 + n + 30,
                envelope(n),
            ),
        )
        con.execute(
            "INSERT INTO ledger (org_number, envelope_id, message_id, message_type, document_id, "
            "produced_at_ms, sequence, received_at_ms, loaded_at_ms, late) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (
                ORG,
                f"e{n}",
                f"m{n}",
                "SJALVFAKTURA",
                f"INV-{n}",
                T0 + n,
                n,
                T0 + n + 30,
                T0 + n + 35,
            ),
        )
    con.commit()
    con.close()
    return run_dir


def make_result(run_dir: Path, name: str, expectations: list[Expectation], **kw: Any) -> RunResult:
    scenario = Scenario(name, f"What {name} shows.", Path(f"scenarios/{name}.yaml"), seed=7)
    return RunResult(scenario, run_dir, kw.pop("figures", Reconciliation()), expectations, **kw)


@pytest.fixture
def failing(tmp_path: Path) -> RunResult:
    """A failed run: a message dead-lettered where none should be, and a run error."""
    figures = Reconciliation(
        produced=3,
        delivered=2,
        ingested=2,
        dead_lettered=2,
        dead_letters=[
            {"message_id": "m3", "code": "DELIVERY_REFUSED", "reason": "HTTP 403"},
            {"message_id": EVIL_ID, "code": "ENVELOPE_MALFORMED", "reason": "no headers"},
        ],
    )
    return make_result(
        fake_run(tmp_path / "bad-run"),
        "poison-message",
        [Expectation("produced", 3, 3), Expectation("dead_lettered", 0, 2)],
        figures=figures,
        error="error [RUN_TIMEOUT]: did not finish within 5 s",
        timings={"total": 3.0},
    )


@pytest.fixture
def passing(tmp_path: Path) -> RunResult:
    """A passed run with nothing recorded in its directory."""
    run_dir = tmp_path / "good-run"
    run_dir.mkdir()
    return make_result(run_dir, "happy-path", [Expectation("lost", 0, 0)])


def page(results: list[RunResult], **kw: Any) -> tuple[str, Any]:
    text = render_report(results, **kw)
    return text, lxml.html.document_fromstring(text)


def data_of(tree: Any, i: int) -> dict[str, Any]:
    """The per-message JSON of scenario ``i``, as the browser's JSON.parse reads it."""
    (script,) = tree.xpath(f"//script[@id='data-{i}']")
    parsed: dict[str, Any] = json.loads(script.text)
    return parsed


class TestWriteReport:
    def test_writes_index_html(self, tmp_path: Path, failing: RunResult) -> None:
        """write_report creates the directory and returns its index.html."""
        index = write_report([failing], tmp_path / "out" / "report")
        assert index == tmp_path / "out" / "report" / "index.html"
        assert index.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

    def test_style_and_script_are_the_package_files(self, failing: RunResult) -> None:
        """The page inlines simulator/data/report.css and report.js as they are."""
        data = resources.files("simulator").joinpath("data")
        css = data.joinpath("report.css").read_text("utf-8")
        js = data.joinpath("report.js").read_text("utf-8")
        assert ".explain.note{" in css
        assert "JSON.parse" in js
        text, _ = page([failing])
        assert f"<style>\n{css}</style>" in text
        assert text.endswith(f"<script>\n{js}</script></body></html>")

    def test_no_external_references(self, failing: RunResult, passing: RunResult) -> None:
        """No src/href to the network, no @import, no url(http…), no web fonts."""
        text, tree = page([failing, passing])
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
        assert "@import" not in text
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", text, re.I)
        assert "@font-face" not in text
        assert tree.xpath("//link | //iframe | //img | //script[@src]") == []
        hrefs = [a.get("href") for a in tree.xpath("//a[@href]")]
        assert hrefs
        assert all(h.startswith("#") for h in hrefs)

    def test_well_formed_enough(self, failing: RunResult, passing: RunResult) -> None:
        """lxml.html reads it: head with title and style, a table per scenario, inline script."""
        _, tree = page([failing, passing])
        assert "1 of 2 scenario(s) passed" in tree.findtext(".//title")
        assert tree.xpath("//head/style")
        assert tree.xpath("//h2[@id='s-0']")
        assert tree.xpath("//h2[@id='s-1']")
        assert len(tree.xpath("//script[not(@type)]")) == 1


class TestPassFail:
    def test_expectation_table(self, failing: RunResult) -> None:
        """Each expectation is a row with expected, actual and pass/FAIL."""
        _, tree = page([failing])
        rows = {
            r[0].text_content(): [c.text_content() for c in r[1:]]
            for r in tree.xpath("//table[tr/th[.='expectation']]/tr[td]")
        }
        assert rows["produced"] == ["3", "3", "pass"]
        assert rows["dead_lettered"] == ["0", "2", "FAIL"]
        assert rows["run"][-1] == "FAIL"

    def test_seed_and_rerun(self, failing: RunResult) -> None:
        """The seed and the command to re-run with it are stated."""
        text, _ = page([failing])
        assert "b2bsim run scenarios/poison-message.yaml --seed 7" in text

    def test_explanations_of_failures(self, failing: RunResult) -> None:
        """The run error, the failed expectation and each dead-letter code are explained."""
        _, tree = page([failing])
        boxes = [d.text_content() for d in tree.xpath("//div[@class='explain']")]
        assert len(boxes) == 4
        joined = "\n".join(boxes)
        assert "The scenario did not finish in time" in joined
        assert "Another number of messages went to the dead-letter queue" in joined
        assert "The supplier refused the envelope" in joined
        assert all("How to fix it" in b for b in boxes)

    def test_expected_dead_letters_are_notes(self, tmp_path: Path) -> None:
        """Dead letters a scenario expects are explained as notes, not failures."""
        figures = Reconciliation(
            dead_lettered=1,
            dead_letters=[{"message_id": "m3", "code": "UNKNOWN_SUPPLIER", "reason": "x"}],
        )
        r = make_result(
            fake_run(tmp_path / "run"),
            "poison",
            [Expectation("dead_lettered", 1, 1)],
            figures=figures,
        )
        text, tree = page([r])
        assert "What went wrong" not in text
        (note,) = tree.xpath("//div[@class='explain note']")
        assert "not in the supplier registry" in note.text_content()
        assert "as the scenario expects" in text

    def test_passing_scenario_has_no_failures_section(self, passing: RunResult) -> None:
        """Nothing failed, nothing to explain."""
        text, _ = page([passing])
        assert "What went wrong" not in text
        assert "PASSED" in text


class TestTimeline:
    def test_rows_and_percentiles(self, failing: RunResult) -> None:
        """One row per message with its hops; percentiles per hop for all."""
        _, tree = page([failing])
        buttons = [b.get("data-msg") for b in tree.xpath("//button[@data-msg]")]
        assert buttons == ["m1", "m2", "m3", EVIL_ID]  # unstamped poison last
        (row,) = tree.xpath("//tr[td/button[@data-msg='m1']]")
        cells = [c.text_content() for c in row]
        assert "10 ms" in cells  # broker hop: produced +1, consumed +11
        assert "35 ms" in cells  # end to end: loaded +36
        assert tree.xpath("//div[@class='bar']/span[@class='broker']")
        hops = [r[0].text_content() for r in tree.xpath("//table[tr/th[.='p99']]/tr[td]")]
        assert "KA → ICC (broker)" in hops
        assert tree.xpath("//svg/rect")

    def test_detail_rows_are_capped(self, tmp_path: Path) -> None:
        """Past the cap only problem messages and the first rows show; data covers all."""
        r = make_result(fake_run(tmp_path / "big", count=40), "big", [])
        _, tree = page([r], detail_rows=5)
        shown = [b.get("data-msg") for b in tree.xpath("//button[@data-msg]")]
        assert shown == ["m1", "m2", "m3", "m4", EVIL_ID]
        assert "Showing 5 of 41 messages" in tree.text_content()
        assert len(data_of(tree, 0)) == 41

    def test_envelope_budget(self, tmp_path: Path) -> None:
        """Beyond the embedding budget a message says where to find its envelope."""
        r = make_result(fake_run(tmp_path / "big", count=6), "big", [])
        _, tree = page([r], embed_budget=1)
        data = data_of(tree, 0)
        embedded = [k for k, v in data.items() if "envelope" in v]
        assert len(embedded) == 1
        assert "SELECT envelope FROM envelopes" in data["m6"]["note"]


class TestMessageDetail:
    def test_envelope_and_document_embedded(self, failing: RunResult) -> None:
        """A delivered message carries its pretty-printed envelope and document."""
        _, tree = page([failing])
        m1 = data_of(tree, 0)["m1"]
        assert "<sbd:StandardBusinessDocumentHeader>" in m1["envelope"]
        assert "the business document: shown below" in m1["envelope"]
        assert "INV-1" not in m1["envelope"]
        assert m1["document"].startswith("<Invoice")
        assert "\n  <cbc:ID>INV-1</cbc:ID>" in m1["document"]
        assert "broker" in m1["summary"]

    def test_dead_letter_detail_explains(self, failing: RunResult) -> None:
        """A dead letter has no envelope; its note and summary say why."""
        m3 = data_of(page([failing])[1], 0)["m3"]
        assert "envelope" not in m3
        assert "DELIVERY_REFUSED" in m3["note"]
        assert "The supplier refused the envelope" in m3["summary"]

    def test_hostile_document_is_escaped(self, failing: RunResult) -> None:
        """`</script>` in a document or an id cannot end a script block or add markup."""
        text, tree = page([failing])
        assert "<script>alert" not in text
        assert "<img" not in text
        assert text.count("<script") == len(tree.xpath("//script")) == 2
        for block in re.findall(r"<script[^>]*>(.*?)</script>", text, re.S):
            assert "<" not in block or "JSON.parse" in block
        data = data_of(tree, 0)
        assert EVIL_COMMENT in data["m2"]["document"]  # the browser sees the real text
        assert EVIL_ID in data
        button = tree.xpath("(//button[@data-msg])[last()]")[0]
        assert button.get("data-msg") == EVIL_ID
        assert button.text == EVIL_ID


class TestPrettyEnvelope:
    def test_splits_envelope_and_document(self) -> None:
        """The document is taken out of the envelope and both are indented."""
        env, doc = pretty_envelope(envelope(1))
        assert env.startswith("<env:Envelope")
        assert "\n    <sbd:StandardBusinessDocumentHeader>" in env
        assert doc.startswith("<Invoice")
        assert "INV-1" in doc

    def test_hostile_xml_is_not_parsed(self) -> None:
        """A DOCTYPE is refused by the safe parser and shown as text with its code."""
        env, doc = pretty_envelope(
            b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
        )
        assert env.startswith("(not shown as XML: error [XML_DOCTYPE]")
        assert "/etc/passwd" in env  # the text as received, never resolved
        assert doc == ""

    def test_not_an_envelope(self) -> None:
        """XML without an SBDH document is shown whole, with no document."""
        env, doc = pretty_envelope(b"<a><b>1</b></a>")
        assert env == "<a>\n  <b>1</b>\n</a>"
        assert doc == ""
