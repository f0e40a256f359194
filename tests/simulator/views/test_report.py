"""Tests for simulator.views.report: the HTML report of `b2bsim run --report DIR`."""

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
from simulator.views.report import write_report
from simulator.views.report_pages import pretty_envelope
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
    """The index.html written for ``results`` (beside their first run directory), and its tree."""
    text = write_report(results, report_dir(results), **kw).read_text(encoding="utf-8")
    return text, lxml.html.document_fromstring(text)


def report_dir(results: list[RunResult]) -> Path:
    return results[0].run_dir.parent / "report"


def sub_page(results: list[RunResult], path: str) -> Any:
    """A page beside the index (after page() wrote the report), as a tree."""
    return lxml.html.parse(str(report_dir(results) / path)).getroot()


def message_page(results: list[RunResult], i: int, message_id: str) -> Any:
    """The page the index (or the messages page) links for ``message_id`` of scenario ``i``."""
    messages = sub_page(results, f"s{i}/messages.html")
    (link,) = [a for a in messages.xpath("//a[@data-msg]") if a.get("data-msg") == message_id]
    return sub_page(results, f"s{i}/{link.get('href')}")


class TestWriteReport:
    def test_writes_index_html(self, tmp_path: Path, failing: RunResult) -> None:
        """write_report creates the directory and returns its index.html."""
        index = write_report([failing], tmp_path / "out" / "report")
        assert index == tmp_path / "out" / "report" / "index.html"
        assert index.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

    def test_an_earlier_report_is_replaced(self, tmp_path: Path, failing: RunResult) -> None:
        """Writing a report of one scenario where one of two was leaves no page of the other."""
        out = tmp_path / "report"
        second = make_result(fake_run(tmp_path / "other"), "other", [])
        write_report([failing, second], out)
        assert (out / "s1" / "messages.html").is_file()
        write_report([failing], out)
        assert not (out / "s1").exists()
        assert (out / "s0" / "messages.html").is_file()
        assert (out / "report.css").is_file()
        assert (out / "report.js").is_file()

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
        """No network reference, no @import, no web fonts; every link is a file of the report."""
        results = [failing, passing]
        text, tree = page(results)
        pages = [text] + [
            f.read_text(encoding="utf-8") for f in report_dir(results).rglob("*.html")
        ]
        for t in pages:
            assert not re.search(r"""(src|href)\s*=\s*["']?\s*([a-z]+:)?//""", t, re.I)
            assert "@import" not in t
            assert not re.search(r"url\(", t, re.I)
            assert "@font-face" not in t
        assert tree.xpath("//link | //img | //script[@src] | //iframe[@src]") == []
        hrefs = [a.get("href") for a in tree.xpath("//a[@href]")]
        assert any(h.startswith("#") for h in hrefs)
        for h in hrefs:
            if not h.startswith("#"):
                assert (report_dir(results) / h.partition("#")[0]).is_file(), h

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

    def test_failures_come_first(self, passing: RunResult, failing: RunResult) -> None:
        """Before any scenario: the run error, then the failed expectation, each with its fix
        and the re-run command."""
        text, tree = page([passing, failing])
        assert text.index("What went wrong") < text.index("All scenarios")
        error, first = tree.xpath("//section[@class='failure']//div[@class='explain']")[:2]
        assert "error [RUN_TIMEOUT]" in error.text_content()
        said = first.text_content()
        assert "expected dead_lettered = 0, got 2" in said
        for box in (error, first):
            assert "How to fix it" in box.text_content()
            rerun = "Re-run: b2bsim run scenarios/poison-message.yaml --seed 7"
            assert rerun in box.text_content()

    def test_passed_scenarios_are_folded(self, passing: RunResult, failing: RunResult) -> None:
        """A passed scenario is a closed <details>; a failed one is open."""
        _, tree = page([passing, failing])
        passed, failed = tree.xpath("//details[@class='scenario']")
        assert passed.get("open") is None
        assert failed.get("open") is not None
        assert passed.xpath(".//h2[@id='s-0']")

    def test_dead_letter_advice_follows_the_reason(self, tmp_path: Path) -> None:
        """An expired certificate is not advised as an outage."""
        reason = (
            "certificate refused: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
            "certificate has expired (_ssl.c:1006)"
        )
        figures = Reconciliation(
            dead_lettered=1,
            dead_letters=[{"message_id": "m3", "code": "DELIVERY_GAVE_UP", "reason": reason}],
        )
        exp = [
            Expectation("dead_lettered", 0, 1),
            Expectation("dead_letter_codes.DELIVERY_GAVE_UP", 0, 1),
        ]
        r = make_result(fake_run(tmp_path / "run"), "cert-expired", exp, figures=figures)
        _, tree = page([r])
        boxes = [b.text_content() for b in tree.xpath("//section[@class='failure']/div")]
        assert len(boxes) == 3
        assert all("Bring the supplier back" not in b for b in boxes)
        assert sum("renew its certificate" in b for b in boxes) == 2
        assert "server certificate has expired" in boxes[2]

    def test_passing_scenario_has_no_failures_section(self, passing: RunResult) -> None:
        """Nothing failed, nothing to explain."""
        text, _ = page([passing])
        assert "What went wrong" not in text
        assert "PASSED" in text


class TestTimeline:
    def test_rows_and_percentiles(self, failing: RunResult) -> None:
        """One row per message with its hops; percentiles per hop for all."""
        _, tree = page([failing])
        links = [a.get("data-msg") for a in tree.xpath("//a[@data-msg]")]
        assert links == ["m1", "m2", "m3", EVIL_ID]  # unstamped poison last
        (row,) = tree.xpath("//tr[td/a[@data-msg='m1']]")
        cells = [c.text_content() for c in row]
        assert "10 ms" in cells  # broker hop: produced +1, consumed +11
        assert "35 ms" in cells  # end to end: loaded +36
        assert tree.xpath("//div[@class='bar']/span[@class='broker']")
        hops = [r[0].text_content() for r in tree.xpath("//table[tr/th[.='p99']]/tr[td]")]
        assert "KA → ICC (broker)" in hops
        assert tree.xpath("//svg/rect")

    def test_detail_rows_are_capped(self, tmp_path: Path) -> None:
        """Past the cap only problem messages and the first rows show; the messages page has all."""
        results = [make_result(fake_run(tmp_path / "big", count=40), "big", [])]
        _, tree = page(results, detail_rows=5)
        shown = [a.get("data-msg") for a in tree.xpath("//a[@data-msg]")]
        assert shown == ["m1", "m2", "m3", "m4", EVIL_ID]
        assert "Showing 5 of 41 messages" in tree.text_content()
        messages = sub_page(results, "s0/messages.html")
        assert len(messages.xpath("//a[@data-msg]")) == 41
        assert len(list((report_dir(results) / "s0" / "m").glob("*.html"))) == 41

    def test_long_ids_are_shortened(self, tmp_path: Path) -> None:
        """A message id longer than a few characters is cut in the table, whole in its title."""
        _, tree = page([make_result(fake_run(tmp_path / "run"), "run", [])])
        (link,) = [a for a in tree.xpath("//a[@data-msg]") if a.get("data-msg") == EVIL_ID]
        assert link.get("title") == EVIL_ID
        assert link.text.endswith("…")
        assert len(link.text) < len(EVIL_ID)

    def test_envelope_budget(self, tmp_path: Path) -> None:
        """Beyond the budget a message's page says where to find its envelope."""
        results = [make_result(fake_run(tmp_path / "big", count=6), "big", [])]
        page(results, envelope_budget=1)
        pages = sorted((report_dir(results) / "s0" / "m").glob("*.html"))
        with_envelope = [f for f in pages if 'id="envelope"' in f.read_text(encoding="utf-8")]
        assert len(with_envelope) == 1
        assert "SELECT envelope FROM envelopes" in message_page(results, 0, "m6").text_content()


class TestSize:
    def test_index_does_not_grow_with_the_envelopes(self, tmp_path: Path) -> None:
        """Envelopes are beside the index: 300 more messages add well under 100 bytes each."""
        sizes = []
        for count in (60, 360):
            results = [make_result(fake_run(tmp_path / f"run{count}", count=count), "big", [])]
            index = write_report(results, tmp_path / f"report{count}", detail_rows=50)
            text = index.read_text(encoding="utf-8")
            assert "StandardBusinessDocumentHeader" not in text
            assert "INV-1<" not in text
            sizes.append(len(text.encode()))
            envelopes = list((tmp_path / f"report{count}" / "s0" / "m").glob("*.html"))
            assert len(envelopes) == count + 1
        assert sizes[1] - sizes[0] < 300 * 100, sizes
        assert sizes[1] < 100_000, sizes


class TestMessageDetail:
    def test_envelope_and_document_on_its_page(self, failing: RunResult) -> None:
        """A delivered message's page carries its pretty-printed envelope and document."""
        page([failing])
        m1 = message_page([failing], 0, "m1")
        (envelope,) = m1.xpath("//pre[@id='envelope']")
        (document,) = m1.xpath("//pre[@id='document']")
        assert "<sbd:StandardBusinessDocumentHeader>" in envelope.text_content()
        assert "the business document: shown below" in envelope.text_content()
        assert "INV-1" not in envelope.text_content()
        assert document.text_content().startswith("<Invoice")
        assert "\n  <cbc:ID>INV-1</cbc:ID>" in document.text_content()
        assert "broker" in m1.xpath("//pre")[0].text_content()

    def test_dead_letter_detail_explains(self, failing: RunResult) -> None:
        """A dead letter has no envelope; its page says why, with the cause's advice."""
        page([failing])
        m3 = message_page([failing], 0, "m3")
        assert m3.xpath("//pre[@id='envelope']") == []
        text = m3.text_content()
        assert "dead-lettered with DELIVERY_REFUSED" in text
        assert "The supplier refused the envelope" in text

    def test_hostile_document_is_escaped(self, failing: RunResult) -> None:
        """`</script>` in a document or an id cannot end a script block or add markup."""
        results = [failing]
        text, tree = page(results)
        messages = (report_dir(results) / "s0" / "messages.html").read_text(encoding="utf-8")
        m2 = (report_dir(results) / "s0" / "m" / "2.html").read_text(encoding="utf-8")
        for t in (text, messages, m2):
            assert "<script>alert" not in t
            assert "<img" not in t
            scripts = lxml.html.document_fromstring(t).findall(".//script")
            assert t.count("<script") == len(scripts)
            for block in re.findall(r"<script[^>]*>(.*?)</script>", t, re.S):
                assert "<" not in block or "JSON.parse" in block
        (document,) = sub_page(results, "s0/m/2.html").xpath("//pre[@id='document']")
        assert EVIL_COMMENT in document.text_content()  # the browser shows the real text
        (numbers,) = sub_page(results, "s0/messages.html").xpath("//script[@id='message-numbers']")
        assert EVIL_ID in json.loads(numbers.text)
        link = tree.xpath("(//a[@data-msg])[last()]")[0]
        assert link.get("data-msg") == EVIL_ID
        evil = message_page(results, 0, EVIL_ID)
        assert evil.xpath("//h1/code")[0].text == EVIL_ID


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


class TestNotApplicable:
    def test_a_not_applicable_step_shows_its_reason_and_never_passes(
        self, tmp_path: Path, passing: RunResult
    ) -> None:
        run_dir = tmp_path / "na-run"
        run_dir.mkdir()
        na = make_result(
            run_dir,
            "supplier-outage",
            [
                Expectation("lost", 0, 0),
                Expectation("step 4", 0, 0, "not applicable", "`fault: {supplier: down}`: stub"),
                Expectation("endpoint.resend_duplicate", 0, 0, "not exercised", "no re-send"),
            ],
        )
        text, tree = page([passing, na])
        assert "1 of 2 scenario(s) passed" in text
        cells = [td.text_content() for td in tree.xpath("//td[@class='na']")]
        assert "not applicable: `fault: {supplier: down}`: stub" in cells
        assert "not exercised: no re-send" in cells
        assert "not applicable" in cells  # the scenario's verdict in the overview
