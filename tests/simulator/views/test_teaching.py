"""Tests for simulator.views.teaching: what the live view teaches, and teaching mode's gate."""

from __future__ import annotations

import asyncio
from pathlib import Path

from simulator.runs.scenario import Scenario
from simulator.views.live_records import MessageState
from simulator.views.teaching import (
    EVENT_TEXT,
    FIELDS,
    STEP_ALLOWANCE,
    StepGate,
    envelope_view,
    explanations,
    message_detail,
    teaching,
)
from simulator.vocabulary.codes import CATALOGUE
from simulator.vocabulary.envelope import Envelope, to_xml
from simulator.vocabulary.messages import MessageMeta, MessageType
from simulator.vocabulary.xmlsafe import serialize

ORG = "5520000018"
DOCUMENT = b'<Order xmlns="urn:oasis:names:specification:ubl:schema:xsd:Order-2"><ID>1</ID></Order>'


def envelope_bytes() -> bytes:
    meta = MessageMeta.new(MessageType.INKOPSORDER, ORG, 3, produced_at_ms=1_767_225_600_123)
    env = Envelope.create(
        meta, DOCUMENT, receiver_cert_sha256="ab" * 32, receiver_url="https://127.0.0.1:9444/b2b"
    )
    return serialize(to_xml(env))


class TestEnvelopeView:
    def test_marks_every_af_field_and_separates_the_document(self) -> None:
        """The five AF fields are marked segments; the payload comes out apart."""
        view = envelope_view(envelope_bytes())
        assert view["error"] is None
        marked = {s["field"] for s in view["envelope"] if s["field"]}
        assert marked == set(FIELDS)
        assert view["fields"]["ORG_NUMBER"] == ORG
        assert view["fields"]["RECEIVER_CERT_SHA256"] == "ab" * 32
        assert view["fields"]["PRODUCED_AT"] == "2026-01-01T00:00:00.123Z"
        assert "<ID>1</ID>" in view["document"]
        text = "".join(s["text"] for s in view["envelope"])
        assert "<ID>1</ID>" not in text
        assert "the business document" in text

    def test_hostile_xml_is_shown_as_text_never_parsed(self) -> None:
        """A DOCTYPE is refused by the hardened parser: plain text with the reason."""
        raw = b'<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>'
        view = envelope_view(raw)
        assert "XML_DOCTYPE" in view["error"]
        assert view["envelope"] == [{"text": raw.decode(), "field": None}]
        assert view["fields"] == {}


class TestExplanations:
    def test_what_befell_a_message_in_english_and_swedish(self) -> None:
        """Each thing that befell the message is explained in both languages."""
        m = MessageState("m1", retries=2, held=True, station="ledger")
        out = explanations(m)
        assert [x["key"] for x in out] == ["retry", "held", "loaded"]
        assert out[0] == {
            "key": "retry",
            "en": EVENT_TEXT["retry"][0],
            "sv": EVENT_TEXT["retry"][1],
        }

    def test_a_dead_letter_code_has_the_catalogues_swedish_text(self) -> None:
        """A code with Swedish text in the catalogue shows it; English from the catalogue too."""
        out = explanations(MessageState("m1", station="dead", code="DELIVERY_GAVE_UP"))
        entry = CATALOGUE["DELIVERY_GAVE_UP"]
        assert out[-1]["key"] == "DELIVERY_GAVE_UP"
        assert out[-1]["sv"].endswith(f"DELIVERY_GAVE_UP: {entry.sv}")
        assert entry.title in out[-1]["en"]

    def test_a_code_without_swedish_text_points_to_the_english(self) -> None:
        """A code without Swedish text says to read the English explanation, with its title."""
        assert CATALOGUE["XML_MALFORMED"].sv is None
        out = explanations(MessageState("m1", station="dead", code="XML_MALFORMED"))
        title = CATALOGUE["XML_MALFORMED"].title
        assert out[-1]["sv"].endswith(f"se förklaringen på engelska ({title}).")


class TestMessageDetail:
    def test_no_envelope_stored_says_where_the_message_is(self) -> None:
        """Without an envelope the page is told where the message is now."""
        detail = message_detail(MessageState("m1", station="queue"), None)
        assert detail["envelope"] == []
        assert (
            detail["note"]
            == "No envelope stored for this message (yet): it is on the broker's queue."
        )
        assert set(detail["labels"]) == set(FIELDS)

    def test_a_dead_letter_without_envelope_says_so(self) -> None:
        detail = message_detail(MessageState("m1", station="dead", code="UNKNOWN_SUPPLIER"), None)
        assert detail["note"] == "No envelope was stored: the ICC dead-lettered the message."

    def test_a_stored_envelope_is_shown_without_a_note(self) -> None:
        view = envelope_view(envelope_bytes())
        detail = message_detail(MessageState("m1", station="ledger"), view)
        assert detail["note"] is None
        assert detail["fields"]["ORG_NUMBER"] == ORG
        assert detail["message"]["message_id"] == "m1"


class TestTeachingMode:
    def test_the_timeout_allows_for_the_pauses(self, tmp_path: Path) -> None:
        scenario = Scenario(name="s", description="", path=tmp_path / "s.yaml", timeout=60.0)
        assert teaching(scenario).timeout == 60.0 + STEP_ALLOWANCE

    def test_a_release_without_a_waiting_step_is_refused(self) -> None:
        gate = StepGate()
        assert not gate.waiting
        assert gate.release() is False

    def test_a_step_waits_until_released(self) -> None:
        """wait() arms the gate before announcing, so a release from the announcement lands."""

        async def main() -> list[str]:
            gate = StepGate()
            said: list[str] = []

            def announce() -> None:
                said.append(f"waiting={gate.waiting}")
                gate.release()

            await asyncio.wait_for(gate.wait(announce), 5)
            said.append(f"waiting={gate.waiting}")
            return said

        assert asyncio.run(main()) == ["waiting=True", "waiting=False"]
